/**
 * The real senders and Slack client against providers' documented answers, not our emulators:
 * a tiny server replays each recorded answer (status, Retry-After, body) from
 * test/fixtures/provider-answers/ (sources in its index.json), and the test checks what the agent
 * would be told and whether Rapport would retry.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createMessengerSender } from '../../src/channels/messenger/send';
import type { OutboundMessage } from '../../src/channels/sender';
import { SlackApiError, createSlackClient } from '../../src/channels/slack/client';
import { createTwilioSender } from '../../src/channels/twilio/send';
import { createWhatsAppCloudSender } from '../../src/channels/whatsapp-cloud/send';
import { failureOf, outbound, rejectionOf } from '../helpers/outbound';

const DIR = join(__dirname, '../fixtures/provider-answers');

interface Recorded {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
}

const answer = (file: string): Recorded => JSON.parse(readFileSync(join(DIR, file), 'utf8')) as Recorded;

/** Answers every request with the queued recorded answers in turn, and records the requests. */
function replayServer() {
  const queue: Recorded[] = [];
  const seen: { method: string; path: string }[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      seen.push({ method: req.method ?? '', path: req.url ?? '' });
      const next = queue.shift() ?? { status: 500, body: { error: 'nothing queued' } };
      res.writeHead(next.status, { 'content-type': 'application/json', ...(next.headers ?? {}) });
      res.end(JSON.stringify(next.body));
    });
  });
  return {
    server,
    seen,
    play: (...files: string[]) => queue.push(...files.map(answer)),
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
  };
}

const replay = replayServer();
beforeAll(() => new Promise<void>((resolve) => replay.server.listen(0, '127.0.0.1', resolve)));
afterEach(() => (replay.seen.length = 0));
afterAll(() => new Promise<void>((resolve) => replay.server.close(() => resolve())));

const message = (o: Partial<OutboundMessage>) =>
  outbound({ channel: 'sms', provider: 'twilio', to: '+14155550100' }, { key: 'k1', ...o });

describe('Twilio: documented answers', () => {
  const twilio = () =>
    createTwilioSender({
      accountSid: 'AC' + 'c3'.repeat(16),
      authToken: 'replayed-token-123',
      smsFrom: '+15550001111',
      whatsappFrom: 'whatsapp:+15550002222',
      apiBaseUrl: replay.url(),
    });

  it('201 Message resource: sent, with its sid', async () => {
    replay.play('twilio-message-created.json');
    const result = await twilio().send(message({}));
    expect(result.providerMessageId).toBe('SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX');
  });

  it.each([
    [
      'twilio-20429.json',
      { reason: 'rate_limited', retryable: true, providerCode: '20429', retryAfterMs: 1_000 },
    ],
    ['twilio-21610.json', { reason: 'opted_out', retryable: false, providerCode: '21610' }],
    ['twilio-63016.json', { reason: 'window_closed', retryable: false, providerCode: '63016' }],
  ])('%s', async (file, expected) => {
    replay.play(file);
    expect(await failureOf(twilio().send(message({})))).toMatchObject(expected);
    expect(replay.seen).toHaveLength(1); // no lookup, no resend: the answer was definite
  });
});

describe('WhatsApp Cloud: documented answers', () => {
  const cloud = () =>
    createWhatsAppCloudSender({
      accessToken: 'replayed-cloud-token',
      phoneNumberId: '106540352242922',
      graphBaseUrl: replay.url(),
      graphVersion: 'v21.0',
    });
  const wa = (o: Partial<OutboundMessage> = {}) =>
    message({ channel: 'whatsapp', provider: 'whatsapp-cloud', ...o });

  it('200 with messages[0].id: sent', async () => {
    replay.play('graph-cloud-sent.json');
    expect((await cloud().send(wa())).providerMessageId).toMatch(/^wamid\./);
  });

  it.each([
    ['graph-131047.json', { reason: 'window_closed', retryable: false, providerCode: '131047' }],
    ['graph-131026.json', { reason: 'invalid_recipient', retryable: false, providerCode: '131026' }],
  ])('%s', async (file, expected) => {
    replay.play(file);
    const err = await failureOf(cloud().send(wa()));
    expect(err).toMatchObject(expected);
    expect(err.message).not.toContain('replayed-cloud-token');
  });
});

describe('Messenger: documented answers', () => {
  const messenger = () =>
    createMessengerSender({
      pageAccessToken: 'replayed-page-token',
      graphBaseUrl: replay.url(),
      graphVersion: 'v21.0',
    });
  const fb = () => message({ channel: 'messenger', provider: 'messenger', to: '1254477777772919' });

  it('200 with message_id: sent', async () => {
    replay.play('messenger-sent.json');
    expect((await messenger().send(fb())).providerMessageId).toMatch(/^m_/);
  });

  it('graph-2018278.json: outside the window, not retried', async () => {
    replay.play('graph-2018278.json');
    expect(await failureOf(messenger().send(fb()))).toMatchObject({
      reason: 'window_closed',
      retryable: false,
      providerCode: '10/2018278',
    });
  });
});

describe('Slack: documented answers', () => {
  const slack = () => createSlackClient({ token: 'xoxb-replayed', apiUrl: `${replay.url()}/api/` });
  const errorOf = (p: Promise<unknown>) => rejectionOf(p, SlackApiError);

  it('slack-ratelimited.json: retryable after Retry-After', async () => {
    replay.play('slack-ratelimited.json');
    const err = await errorOf(slack().postMessage({ channel: 'C1', text: 'hi' }));
    expect(err).toMatchObject({ slackError: 'ratelimited', retryable: true, retryAfterMs: 30_000 });
  });

  it('slack-not_in_channel.json: not retryable', async () => {
    replay.play('slack-not_in_channel.json');
    const err = await errorOf(slack().postMessage({ channel: 'C1', text: 'hi' }));
    expect(err).toMatchObject({ slackError: 'not_in_channel', retryable: false });
  });

  it('slack-message_not_found.json: a reaction on a deleted message fails as message_not_found', async () => {
    replay.play('slack-message_not_found.json');
    const err = await errorOf(slack().addReaction('C1', '1700000000.000100', 'eyes'));
    expect(err).toMatchObject({ slackError: 'message_not_found', retryable: false });
  });
});

/**
 * The Messenger sender, through the real messaging-api-messenger client, against the local Graph
 * emulator: the exact Send API bodies, and how Graph's failures reach the agent — never with the
 * page token that the SDK puts in the query string.
 */
import { createHmac } from 'node:crypto';
import { inspect } from 'node:util';
import { createMessengerSender, type MessengerSenderOptions } from '../../src/channels/messenger/send';
import { OutboundError, type OutboundMessage } from '../../src/channels/sender';
import { startGraphEmulator, type GraphEmulator } from '../emulators/graph';
import { expectNoneOf, failureOf, hangingServer, outbound } from '../helpers/outbound';

const PAGE_TOKEN = 'EAAB-page-secret-token-99';
const APP_SECRET = 'meta-app-secret-for-proof';
const PSID = '6543210987654321';

let graph: GraphEmulator;

beforeAll(async () => {
  graph = await startGraphEmulator({
    whatsappToken: 'cloud-token',
    pageToken: PAGE_TOKEN,
    phoneNumberId: '106540352242922',
    appSecret: APP_SECRET,
  });
});
afterEach(() => graph.reset());
afterAll(() => graph.close());

function sender(overrides: Partial<MessengerSenderOptions> = {}) {
  return createMessengerSender({
    pageAccessToken: PAGE_TOKEN,
    graphBaseUrl: graph.url,
    graphVersion: 'v21.0',
    ...overrides,
  });
}

const reply = (overrides: Partial<OutboundMessage> = {}) =>
  outbound({ channel: 'messenger', provider: 'messenger', to: PSID }, overrides);

const expectNoToken = (err: OutboundError, token = PAGE_TOKEN) => expectNoneOf(err, [token, 'access_token']);

const bodies = () => graph.requests.map((r) => r.body);

describe('Messenger sender: requests', () => {
  it('answers inside the window as RESPONSE to /{version}/me/messages and returns the message id', async () => {
    const result = await sender().send(reply());

    expect(graph.requests).toHaveLength(1);
    expect(graph.requests[0]).toMatchObject({
      method: 'POST',
      path: '/v21.0/me/messages',
      query: { access_token: PAGE_TOKEN },
    });
    expect(bodies()).toEqual([
      { messaging_type: 'RESPONSE', recipient: { id: PSID }, message: { text: 'Hello from Ana' } },
    ]);
    expect(result).toEqual({
      provider: 'messenger',
      providerMessageId: graph.messengerMessages()[0]?.messageId,
    });
    expect(result.providerMessageId).toMatch(/^m_/);
  });

  it('sends with the HUMAN_AGENT tag when asked, which passes after the 24-hour window', async () => {
    graph.closeWindowFor(PSID);
    await sender().send(reply({ messengerTag: 'HUMAN_AGENT' }));
    expect(bodies()).toEqual([
      {
        messaging_type: 'MESSAGE_TAG',
        tag: 'HUMAN_AGENT',
        recipient: { id: PSID },
        message: { text: 'Hello from Ana' },
      },
    ]);
  });

  it('sends the text first, then one reusable attachment per media item, and returns the first id', async () => {
    const result = await sender().send(
      reply({
        media: [
          { url: 'https://cdn.example.test/a.jpg', contentType: 'image/jpeg' },
          { url: 'https://cdn.example.test/v.mp4', contentType: 'video/mp4' },
          { url: 'https://cdn.example.test/n.ogg', contentType: 'audio/ogg' },
          { url: 'https://cdn.example.test/invoice.pdf', contentType: 'application/pdf' },
        ],
      }),
    );
    const attachment = (type: string, url: string) => ({
      messaging_type: 'RESPONSE',
      recipient: { id: PSID },
      message: { attachment: { type, payload: { url, is_reusable: true } } },
    });
    expect(bodies()).toEqual([
      { messaging_type: 'RESPONSE', recipient: { id: PSID }, message: { text: 'Hello from Ana' } },
      attachment('image', 'https://cdn.example.test/a.jpg'),
      attachment('video', 'https://cdn.example.test/v.mp4'),
      attachment('audio', 'https://cdn.example.test/n.ogg'),
      attachment('file', 'https://cdn.example.test/invoice.pdf'),
    ]);
    expect(result.providerMessageId).toBe(graph.messengerMessages()[0]?.messageId);
  });

  it('adds appsecret_proof when the app secret is configured (and the emulator checks it)', async () => {
    await sender({ appSecret: APP_SECRET }).send(reply());
    const proof = createHmac('sha256', APP_SECRET).update(PAGE_TOKEN).digest('hex');
    expect(graph.requests[0]?.query.appsecret_proof).toBe(proof);
  });

  it('refuses a template-only message: Messenger has no templates', async () => {
    const err = await failureOf(sender().send(reply({ text: undefined, template: { id: 'x' } })));
    expect(err).toMatchObject({ reason: 'unsupported', provider: 'messenger' });
    expect(graph.requests).toHaveLength(0);
  });
});

describe('Messenger sender: failures', () => {
  it('outside the window a RESPONSE is window_closed (10/2018278)', async () => {
    graph.closeWindowFor(PSID);
    const err = await failureOf(sender().send(reply()));
    expect(err).toMatchObject({ reason: 'window_closed', retryable: false, providerCode: '10/2018278' });
    expectNoToken(err);
  });

  it('a 500 is unavailable and retryable', async () => {
    graph.failNext({ status: 500 });
    const err = await failureOf(sender().send(reply()));
    expect(err).toMatchObject({ reason: 'unavailable', retryable: true });
    expectNoToken(err);
  });

  it('a 429 with Retry-After is rate_limited with retryAfterMs', async () => {
    graph.failNext({
      status: 429,
      code: 613,
      message: '(#613) Calls to this api have exceeded the rate limit.',
      retryAfterSec: 3,
    });
    const err = await failureOf(sender().send(reply()));
    expect(err).toMatchObject({
      reason: 'rate_limited',
      retryable: true,
      retryAfterMs: 3_000,
      providerCode: '613',
    });
  });

  it('a person who cannot be reached is invalid_recipient (551)', async () => {
    graph.failNext({
      status: 400,
      code: 551,
      subcode: 1545041,
      message: "(#551) This person isn't available right now.",
    });
    const err = await failureOf(sender().send(reply()));
    expect(err).toMatchObject({ reason: 'invalid_recipient', providerCode: '551/1545041' });
  });

  it('a wrong page token is auth (190) and appears nowhere in the error', async () => {
    const err = await failureOf(sender({ pageAccessToken: 'wrong-page-token-1' }).send(reply()));
    expect(err).toMatchObject({ reason: 'auth', retryable: false, providerCode: '190' });
    expectNoToken(err, 'wrong-page-token-1');
  });

  it('a wrong appsecret_proof is rejected without leaking the token or the secret', async () => {
    const err = await failureOf(sender({ appSecret: 'not-the-app-secret' }).send(reply()));
    expect(err).toMatchObject({ reason: 'rejected', providerCode: '100' });
    expectNoToken(err);
    expect(inspect(err, { depth: 10 })).not.toContain('not-the-app-secret');
  });

  describe('with no answer', () => {
    const hanging = hangingServer();

    it('a timeout is uncertain and not retried (Messenger cannot be asked), without the token', async () => {
      const err = await failureOf(sender({ graphBaseUrl: hanging(), timeoutMs: 200 }).send(reply()));
      expect(err).toMatchObject({ reason: 'uncertain', retryable: false, providerCode: 'timeout' });
      expectNoToken(err);
    });

    it('a refused connection is unavailable and retryable, without the token', async () => {
      const err = await failureOf(sender({ graphBaseUrl: 'http://127.0.0.1:1' }).send(reply()));
      expect(err).toMatchObject({ reason: 'unavailable', retryable: true, providerCode: 'refused' });
      expectNoToken(err);
    });
  });
});

describe('Messenger sender: lost answers', () => {
  it('a lost answer is uncertain and not retryable: the Send API did take the message', async () => {
    graph.loseNext();
    const err = await failureOf(sender().send(reply()));
    expect(err).toMatchObject({ reason: 'uncertain', retryable: false });
    expect(graph.messengerMessages()).toHaveLength(1);
  });

  it('text then a file: after the text is accepted and the file is throttled, a retry sends only the file', async () => {
    graph.failNext({ status: 429, code: 613 }, { skip: 1 });
    const done: string[] = [];
    const progress = { done, onPart: async (_i: number, id: string) => void done.push(id) };
    const message = reply({
      media: [{ url: 'https://cdn.example.test/a.pdf', contentType: 'application/pdf' }],
    });
    expect(await failureOf(sender().send(message, progress))).toMatchObject({ reason: 'rate_limited' });
    await sender().send(message, progress);
    const sent = graph.messengerMessages().map((m) => (m.message.text ? 'text' : 'file'));
    expect(sent).toEqual(['text', 'file']);
    expect(done).toEqual(graph.messengerMessages().map((m) => m.messageId));
  });
});

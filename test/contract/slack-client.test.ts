/**
 * The Slack client (the real @slack/web-api WebClient underneath) against the local Slack Web API
 * emulator: what lands in Slack, and how Slack's failures come back as SlackApiError for the queue.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSlackClient, SlackApiError, type SlackClient } from '../../src/channels/slack';
import { startSlackEmulator, type SlackEmulator } from '../emulators/slack';

const CHANNEL = 'C07SUPPORT1';

let slack: SlackEmulator;
let client: SlackClient;

beforeAll(async () => {
  slack = await startSlackEmulator();
  client = createSlackClient({ token: slack.token, apiUrl: slack.url, timeoutMs: 15_000 });
});

afterEach(() => slack.reset());

afterAll(async () => {
  await slack.close();
});

async function slackErrorOf(promise: Promise<unknown>): Promise<SlackApiError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof SlackApiError) return err;
    throw err;
  }
  throw new Error('expected a SlackApiError');
}

async function startThread(text = 'New conversation: Ana Souza (WhatsApp)'): Promise<string> {
  return (await client.postMessage({ channel: CHANNEL, text })).ts;
}

describe('SlackClient against the Slack emulator', () => {
  it('authTest reports the bot user, bot and team', async () => {
    await expect(client.authTest()).resolves.toEqual({
      userId: slack.botUserId,
      botId: slack.botId,
      teamId: slack.teamId,
      team: 'Rapport Test',
      url: 'https://rapport-test.slack.com/',
    });
  });

  it("a customer's message posted in a thread shows their name and icon and carries its metadata", async () => {
    const threadTs = await startThread();
    const posted = await client.postMessage({
      channel: CHANNEL,
      threadTs,
      text: 'Is my order on its way?',
      username: 'Ana Souza (WhatsApp)',
      iconEmoji: ':speech_balloon:',
      metadata: { eventType: 'rapport_inbound', payload: { key: 'twilio:SM123', customerId: 'cust_8f2a' } },
    });
    expect(posted.channel).toBe(CHANNEL);

    const thread = slack.thread(CHANNEL, threadTs);
    expect(thread.map((m) => m.ts)).toEqual([threadTs, posted.ts]);
    expect(thread[1]).toMatchObject({
      text: 'Is my order on its way?',
      thread_ts: threadTs,
      username: 'Ana Souza (WhatsApp)',
      icon_emoji: ':speech_balloon:',
      metadata: {
        event_type: 'rapport_inbound',
        event_payload: { key: 'twilio:SM123', customerId: 'cust_8f2a' },
      },
    });
  });

  it('findInThread finds a message posted with metadata by its payload field', async () => {
    const threadTs = await startThread();
    await client.postMessage({
      channel: CHANNEL,
      threadTs,
      text: 'first',
      metadata: { eventType: 'rapport_inbound', payload: { key: 'twilio:SM1' } },
    });
    const second = await client.postMessage({
      channel: CHANNEL,
      threadTs,
      text: 'second',
      metadata: { eventType: 'rapport_inbound', payload: { key: 'twilio:SM2' } },
    });

    await expect(
      client.findInThread(CHANNEL, threadTs, 'rapport_inbound', 'key', 'twilio:SM2'),
    ).resolves.toBe(second.ts);
    await expect(
      client.findInThread(CHANNEL, threadTs, 'rapport_inbound', 'key', 'twilio:SM3'),
    ).resolves.toBeUndefined();
    await expect(
      client.findInThread(CHANNEL, threadTs, 'other_event', 'key', 'twilio:SM2'),
    ).resolves.toBeUndefined();
    expect(slack.callsTo('conversations.replies').every((c) => c.args.include_all_metadata === 'true')).toBe(
      true,
    );
  });

  it('findInThread pages through a long thread to find a late message', async () => {
    const threadTs = await startThread();
    const post = (i: number) =>
      client.postMessage({
        channel: CHANNEL,
        threadTs,
        text: `m${i}`,
        metadata: { eventType: 'rapport_inbound', payload: { key: `k${i}` } },
      });
    // In batches: 249 calls at once can outlast the client's timeout on a busy 2-core machine.
    for (let batch = 0; batch < 249; batch += 50) {
      await Promise.all(Array.from({ length: Math.min(50, 249 - batch) }, (_, i) => post(batch + i)));
    }
    await post(249);
    await expect(client.findInThread(CHANNEL, threadTs, 'rapport_inbound', 'key', 'k249')).resolves.toBe(
      slack.thread(CHANNEL, threadTs).at(-1)?.ts,
    );
    const pages = slack.callsTo('conversations.replies');
    expect(pages).toHaveLength(2);
    expect(pages[1]?.args.cursor).toEqual(expect.any(String));
  });

  it('finds a post that carries several keys (metadata parts) by each of them, in one read', async () => {
    const threadTs = await startThread();
    const single = await client.postMessage({
      channel: CHANNEL,
      threadTs,
      text: 'one',
      metadata: { eventType: 'rapport_post', payload: { key: 'k1' } },
    });
    const joined = await client.postMessage({
      channel: CHANNEL,
      threadTs,
      text: 'two\nthree',
      metadata: { eventType: 'rapport_post', payload: { key: 'k2', parts: [{ key: 'k2' }, { key: 'k3' }] } },
    });
    // The parts reach Slack as a list of objects.
    expect(slack.thread(CHANNEL, threadTs).at(-1)?.metadata?.event_payload).toEqual({
      key: 'k2',
      parts: [{ key: 'k2' }, { key: 'k3' }],
    });
    const reads = slack.callsTo('conversations.replies').length;
    await expect(
      client.findAllInThread(CHANNEL, threadTs, 'rapport_post', 'key', ['k1', 'k3', 'k4']),
    ).resolves.toEqual(
      new Map([
        ['k1', single.ts],
        ['k3', joined.ts],
      ]),
    );
    expect(slack.callsTo('conversations.replies').length - reads).toBe(1);
    await expect(client.findInThread(CHANNEL, threadTs, 'rapport_post', 'key', 'k3')).resolves.toBe(
      joined.ts,
    );
  });

  it('findInThread of a thread that does not exist finds nothing', async () => {
    await expect(
      client.findInThread(CHANNEL, '1600000000.000100', 'rapport_inbound', 'key', 'x'),
    ).resolves.toBeUndefined();
  });

  it('a 429 with Retry-After surfaces at once as a retryable SlackApiError with retryAfterMs', async () => {
    slack.failNext('chat.postMessage', { status: 429, retryAfterSec: 7 });
    const started = Date.now();
    const err = await slackErrorOf(client.postMessage({ channel: CHANNEL, text: 'hello' }));
    expect(err).toMatchObject({
      slackError: 'ratelimited',
      code: 'slack_ratelimited',
      retryable: true,
      retryAfterMs: 7000,
      status: 502,
    });
    // Not waited out inside the client: the queue decides when to retry.
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(slack.callsTo('chat.postMessage')).toHaveLength(1);
    expect(slack.messages(CHANNEL)).toHaveLength(0);
  });

  it('an HTTP 500 is a retryable SlackApiError, and the next call goes through', async () => {
    slack.failNext('chat.postMessage', { status: 500 });
    const err = await slackErrorOf(client.postMessage({ channel: CHANNEL, text: 'hello' }));
    expect(err).toMatchObject({ slackError: 'http_500', retryable: true });
    await client.postMessage({ channel: CHANNEL, text: 'hello' });
    expect(slack.messages(CHANNEL).map((m) => m.text)).toEqual(['hello']);
  });

  it('not_in_channel is a SlackApiError that is not retryable', async () => {
    slack.failNext('chat.postMessage', { error: 'not_in_channel' }, { channel: 'C0OTHER' });
    await client.postMessage({ channel: CHANNEL, text: 'other channels are unaffected' });
    const err = await slackErrorOf(client.postMessage({ channel: 'C0OTHER', text: 'hello' }));
    expect(err).toMatchObject({
      slackError: 'not_in_channel',
      code: 'slack_not_in_channel',
      retryable: false,
    });
  });

  it('a wrong token is an invalid_auth SlackApiError that is not retryable, and the token is not in the message', async () => {
    const wrong = createSlackClient({ token: 'xoxb-wrong-token', apiUrl: slack.url });
    const err = await slackErrorOf(wrong.authTest());
    expect(err).toMatchObject({ slackError: 'invalid_auth', retryable: false });
    expect(err.message).not.toContain('xoxb-wrong-token');
    expect(slack.calls[0]?.token).toBe('xoxb-wrong-token');
  });

  it('an unreachable Slack is a retryable request failure', async () => {
    const closed = await startSlackEmulator();
    const url = closed.url;
    await closed.close();
    const offline = createSlackClient({ token: 'xoxb-test-token', apiUrl: url, timeoutMs: 1_000 });
    await expect(slackErrorOf(offline.authTest())).resolves.toMatchObject({
      slackError: 'request_failed',
      retryable: true,
    });
  });

  it('a Slack that accepts the connection but never answers times out as a retryable error', async () => {
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    try {
      const slow = createSlackClient({
        token: 'xoxb-test-token',
        apiUrl: `http://127.0.0.1:${port}/api/`,
        timeoutMs: 200,
      });
      await expect(slackErrorOf(slow.authTest())).resolves.toMatchObject({
        slackError: 'timeout',
        retryable: true,
      });
    } finally {
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('adding a reaction twice, and removing one that is gone, both succeed and leave one reaction state', async () => {
    const ts = await startThread();
    await client.addReaction(CHANNEL, ts, 'white_check_mark');
    await client.addReaction(CHANNEL, ts, 'white_check_mark');
    expect(slack.messages(CHANNEL)[0]?.reactions).toEqual(['white_check_mark']);
    await client.removeReaction(CHANNEL, ts, 'white_check_mark');
    await client.removeReaction(CHANNEL, ts, 'white_check_mark');
    expect(slack.messages(CHANNEL)[0]?.reactions).toEqual([]);
    expect(slack.callsTo('reactions.add')).toHaveLength(2);
  });

  it('a reaction on a message that does not exist is not retryable', async () => {
    const err = await slackErrorOf(client.addReaction(CHANNEL, '1600000000.000100', 'eyes'));
    expect(err).toMatchObject({ slackError: 'message_not_found', retryable: false });
  });

  it('updateMessage changes the text in place', async () => {
    const ts = await startThread('Ana Souza (WhatsApp) — unassigned');
    await client.updateMessage(CHANNEL, ts, {
      text: 'Ana Souza (WhatsApp) — Maria',
      blocks: [{ type: 'section', text: { type: 'mrkdwn', text: '*Maria*' } }],
    });
    expect(slack.messages(CHANNEL)).toEqual([
      expect.objectContaining({
        ts,
        text: 'Ana Souza (WhatsApp) — Maria',
        blocks: [{ type: 'section', text: { type: 'mrkdwn', text: '*Maria*' } }],
      }),
    ]);
  });

  it('deleteMessage removes the message, and deleting it again still succeeds', async () => {
    const ts = await startThread();
    await client.deleteMessage(CHANNEL, ts);
    await client.deleteMessage(CHANNEL, ts);
    expect(slack.messages(CHANNEL)).toEqual([]);
  });

  it('postEphemeral reaches Slack with the user and thread', async () => {
    const threadTs = await startThread();
    await client.postEphemeral(CHANNEL, 'U07AGENT001', 'You are now away until 14:00', threadTs);
    expect(slack.callsTo('chat.postEphemeral')[0]?.args).toMatchObject({
      channel: CHANNEL,
      user: 'U07AGENT001',
      text: 'You are now away until 14:00',
      thread_ts: threadTs,
    });
  });

  it("uploadFile puts the customer's file, bytes intact, into the thread", async () => {
    const threadTs = await startThread();
    const data = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0x10]);
    await client.uploadFile({
      channel: CHANNEL,
      threadTs,
      filename: 'photo.png',
      data,
      title: 'Photo from Ana',
      initialComment: 'Ana sent a photo',
    });

    const thread = slack.thread(CHANNEL, threadTs);
    expect(thread).toHaveLength(2);
    const message = thread[1];
    expect(message).toMatchObject({ thread_ts: threadTs, text: 'Ana sent a photo' });
    expect(message?.files).toEqual([
      expect.objectContaining({
        name: 'photo.png',
        title: 'Photo from Ana',
        mimetype: 'image/png',
        size: data.length,
      }),
    ]);
    const fileId = message?.files?.[0]?.id ?? '';
    expect(slack.fileContent(fileId)?.equals(data)).toBe(true);
    expect(slack.calls.map((c) => c.method)).toEqual(
      expect.arrayContaining(['files.getUploadURLExternal', 'files.completeUploadExternal']),
    );
  });

  it('a failed upload step surfaces as a SlackApiError and shares nothing', async () => {
    const threadTs = await startThread();
    slack.failNext('files.completeUploadExternal', { status: 500 });
    const err = await slackErrorOf(
      client.uploadFile({ channel: CHANNEL, threadTs, filename: 'a.txt', data: Buffer.from('hi') }),
    );
    expect(err.retryable).toBe(true);
    expect(slack.thread(CHANNEL, threadTs)).toHaveLength(1);
  });

  it("userInfo returns the agent's name, real name and time zone", async () => {
    slack.addUser({ id: 'U07AGENT001', name: 'maria', realName: 'Maria Lopes', tz: 'Europe/Lisbon' });
    await expect(client.userInfo('U07AGENT001')).resolves.toEqual({
      id: 'U07AGENT001',
      name: 'maria',
      realName: 'Maria Lopes',
      tz: 'Europe/Lisbon',
    });
    await expect(slackErrorOf(client.userInfo('nobody'))).resolves.toMatchObject({
      slackError: 'user_not_found',
      retryable: false,
    });
  });
});

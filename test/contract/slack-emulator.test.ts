/**
 * The Slack emulator speaks Slack's Web API wire format (raw HTTP here, no SDK): the shapes other
 * tests rely on — errors as HTTP 200 `ok:false`, 429 with Retry-After, metadata only on request,
 * cursor pagination — so a test that passes against it means something against Slack.
 */
import { startSlackEmulator, type SlackEmulator } from '../emulators/slack';

let slack: SlackEmulator;

beforeAll(async () => {
  slack = await startSlackEmulator({ token: 'xoxb-emulator-test' });
});
afterEach(() => slack.reset());
afterAll(async () => {
  await slack.close();
});

async function api(
  method: string,
  args: Record<string, string>,
  opts: { token?: string | null; json?: boolean } = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const token = opts.token === undefined ? slack.token : opts.token;
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const res = await fetch(`${slack.url}${method}`, {
    method: 'POST',
    headers: {
      ...headers,
      'content-type': opts.json ? 'application/json; charset=utf-8' : 'application/x-www-form-urlencoded',
    },
    body: opts.json ? JSON.stringify(args) : new URLSearchParams(args).toString(),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

async function post(text: string, extra: Record<string, string> = {}): Promise<string> {
  const { body } = await api('chat.postMessage', { channel: 'C1', text, ...extra });
  return String(body.ts);
}

describe('Slack emulator wire format', () => {
  it('chat.postMessage answers ok, channel, ts and the message, with increasing unique ts', async () => {
    const first = await api('chat.postMessage', { channel: 'C1', text: 'one' });
    const second = await api('chat.postMessage', { channel: 'C1', text: 'two' });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      ok: true,
      channel: 'C1',
      ts: expect.stringMatching(/^\d{10}\.\d{6}$/),
      message: { type: 'message', text: 'one', user: slack.botUserId, bot_id: slack.botId },
    });
    expect(String(second.body.ts) > String(first.body.ts)).toBe(true);
  });

  it('a wrong token is HTTP 200 with ok:false invalid_auth; no token is not_authed', async () => {
    expect(await api('auth.test', {}, { token: 'xoxb-nope' })).toMatchObject({
      status: 200,
      body: { ok: false, error: 'invalid_auth' },
    });
    expect((await api('auth.test', {}, { token: null })).body).toEqual({ ok: false, error: 'not_authed' });
  });

  it('accepts the token as a form argument and JSON bodies with a Bearer token', async () => {
    expect((await api('auth.test', { token: slack.token }, { token: null })).body.ok).toBe(true);
    expect((await api('chat.postMessage', { channel: 'C1', text: 'json' }, { json: true })).body.ok).toBe(
      true,
    );
    expect(slack.calls.every((c) => c.token === slack.token && !('token' in c.args))).toBe(true);
  });

  it('a rate-limited call answers 429 with Retry-After and ok:false ratelimited', async () => {
    slack.failNext('chat.postMessage', { status: 429, retryAfterSec: 3 }, { times: 2 });
    for (let i = 0; i < 2; i += 1) {
      const res = await api('chat.postMessage', { channel: 'C1', text: 'x' });
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('3');
      expect(res.body).toEqual({ ok: false, error: 'ratelimited' });
    }
    expect((await api('chat.postMessage', { channel: 'C1', text: 'x' })).status).toBe(200);
  });

  it('with limitPosting, chat.postMessage allows a burst per channel, then 429 with Retry-After until a token refills', async () => {
    slack.limitPosting({ perSecond: 1, burst: 2 });
    try {
      expect((await api('chat.postMessage', { channel: 'C1', text: 'a' })).status).toBe(200);
      expect((await api('chat.postMessage', { channel: 'C1', text: 'b' })).status).toBe(200);
      const limited = await api('chat.postMessage', { channel: 'C1', text: 'c' });
      expect(limited.status).toBe(429);
      expect(limited.headers.get('retry-after')).toBe('1');
      expect(limited.body).toEqual({ ok: false, error: 'ratelimited' });
      // Another channel has its own bucket; a refused post is recorded as such and not stored.
      expect((await api('chat.postMessage', { channel: 'C2', text: 'd' })).status).toBe(200);
      expect(slack.messages('C1').map((m) => m.text)).toEqual(['a', 'b']);
      expect(slack.callsTo('chat.postMessage').filter((c) => c.rateLimited).map((c) => c.args.text)).toEqual(['c']);
      await new Promise((r) => setTimeout(r, 1_100));
      expect((await api('chat.postMessage', { channel: 'C1', text: 'e' })).status).toBe(200);
    } finally {
      slack.limitPosting(undefined);
    }
  });

  it('a message without text or blocks is no_text', async () => {
    expect((await api('chat.postMessage', { channel: 'C1' })).body).toEqual({ ok: false, error: 'no_text' });
  });

  it('conversations.replies returns parent then replies, with thread fields, and metadata only on request', async () => {
    const parent = await post('parent');
    const metadata = JSON.stringify({ event_type: 'rapport_inbound', event_payload: { key: 'k1' } });
    const reply = await post('reply', { thread_ts: parent, metadata });

    const plain = await api('conversations.replies', { channel: 'C1', ts: parent });
    const messages = plain.body.messages as Record<string, unknown>[];
    expect(messages.map((m) => m.ts)).toEqual([parent, reply]);
    expect(messages[0]).toMatchObject({ thread_ts: parent, reply_count: 1, latest_reply: reply });
    expect(messages[1]).toMatchObject({ thread_ts: parent, parent_user_id: slack.botUserId });
    expect(messages[1]).not.toHaveProperty('metadata');
    expect(plain.body.has_more).toBe(false);

    const withMetadata = await api('conversations.replies', {
      channel: 'C1',
      ts: parent,
      include_all_metadata: 'true',
    });
    expect((withMetadata.body.messages as Record<string, unknown>[])[1]).toMatchObject({
      metadata: { event_type: 'rapport_inbound', event_payload: { key: 'k1' } },
    });
  });

  it('a reply posted with a reply ts as thread_ts joins the parent thread', async () => {
    const parent = await post('parent');
    const reply = await post('reply', { thread_ts: parent });
    await post('reply to reply', { thread_ts: reply });
    expect(slack.thread('C1', parent).map((m) => m.text)).toEqual(['parent', 'reply', 'reply to reply']);
  });

  it('conversations.replies pages with limit and response_metadata.next_cursor', async () => {
    const parent = await post('p');
    for (const text of ['r1', 'r2', 'r3', 'r4']) await post(text, { thread_ts: parent });
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const { body } = await api('conversations.replies', {
        channel: 'C1',
        ts: parent,
        limit: '2',
        ...(cursor ? { cursor } : {}),
      });
      seen.push(...(body.messages as { text: string }[]).map((m) => m.text));
      const meta = body.response_metadata as { next_cursor?: string } | undefined;
      cursor = meta?.next_cursor || undefined;
      expect(body.has_more).toBe(cursor !== undefined);
      pages += 1;
    } while (cursor);
    expect(seen).toEqual(['p', 'r1', 'r2', 'r3', 'r4']);
    expect(pages).toBe(3);
  });

  it('conversations.replies of an unknown ts is thread_not_found', async () => {
    expect((await api('conversations.replies', { channel: 'C1', ts: '1.000001' })).body).toEqual({
      ok: false,
      error: 'thread_not_found',
    });
  });

  it('only the bot’s own messages can be updated or deleted', async () => {
    const human = slack.postAsUser('C1', { user: 'U07AGENT001', text: 'hi' });
    expect((await api('chat.update', { channel: 'C1', ts: human.ts, text: 'x' })).body.error).toBe(
      'cant_update_message',
    );
    expect((await api('chat.delete', { channel: 'C1', ts: human.ts })).body.error).toBe(
      'cant_delete_message',
    );
  });

  it('reactions.add twice is already_reacted; reactions.remove of none is no_reaction', async () => {
    const ts = await post('x');
    expect((await api('reactions.add', { channel: 'C1', timestamp: ts, name: 'eyes' })).body).toEqual({
      ok: true,
    });
    expect((await api('reactions.add', { channel: 'C1', timestamp: ts, name: 'eyes' })).body.error).toBe(
      'already_reacted',
    );
    expect((await api('reactions.remove', { channel: 'C1', timestamp: ts, name: 'tada' })).body.error).toBe(
      'no_reaction',
    );
  });

  it('a failure for one channel leaves calls for other channels alone', async () => {
    slack.failNext('chat.postMessage', { error: 'not_in_channel' }, { channel: 'C2' });
    expect((await api('chat.postMessage', { channel: 'C1', text: 'x' })).body.ok).toBe(true);
    expect((await api('chat.postMessage', { channel: 'C2', text: 'x' })).body.error).toBe('not_in_channel');
    expect((await api('chat.postMessage', { channel: 'C2', text: 'x' })).body.ok).toBe(true);
  });

  it('an unknown method is unknown_method', async () => {
    expect((await api('chat.teleport', {})).body).toMatchObject({ ok: false, error: 'unknown_method' });
  });
});

/**
 * Coalescing a customer's waiting messages into one Slack post while their channel is rate limited
 * (src/router/coalesce.ts, slack-delivery.ts), on real Redis, the real MongoDB-protocol server and
 * the Slack emulator through @slack/web-api: one post carrying every key, marked in one write; a
 * lost answer or a try that died after part of its posts is found in the thread by each key, so no
 * message is posted twice and none is skipped; order and Slack's size advice are kept.
 */
import { randomBytes } from 'node:crypto';
import { Types } from 'mongoose';
import { eventually } from '../helpers/eventually';
import { uniqueName } from '../helpers/env';
import { flushSlackNow, startWorld, type World } from '../helpers/world';
import { createPostAttempts } from '../../src/router/post-attempts';
import { LISTING_TRUST_MS, POST_EVENT_TYPE } from '../../src/router/slack-delivery';
import {
  channelBusyKey,
  COALESCED_MAX_CHARS,
  COALESCED_MAX_PARTS,
  markChannelBusy,
  postKeys,
} from '../../src/router/coalesce';
import { pendingPostsKey } from '../../src/router/outbox';
import type { AgentPost, AgentPostFile } from '../../src/router/models';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const CORA = { slackUserId: 'U0COALESCE', name: 'Cora', inboxChannelId: 'C0COALESCE' };

let w: World;
const seen: string[] = [];

beforeAll(async () => {
  w = await startWorld({ MONGODB_URI: `${MONGO}/rapport_${uniqueName('coalesce')}?monitorCommands=true` });
  await w.t.app.mongo.ready;
  await w.addAgent(CORA);
  // Listings trusted (as on a Rapport that has run for a while).
  await w.t.app.redis.set(
    `${prefix()}:to-agent:listing-since`,
    String(Date.now() - LISTING_TRUST_MS - 60_000),
  );
  w.t.app.mongo.connection
    .getClient()
    .on('commandStarted', (e: { commandName: string; command: Record<string, unknown> }) =>
      seen.push(`${e.commandName} ${String(e.command[e.commandName])}`),
    );
});
afterAll(() => w.stop());
// Every test starts on a free channel (all customers here are Cora's: one inbox).
beforeEach(() => w.t.app.redis.del(channelBusyKey(prefix(), CORA.inboxChannelId)));

const models = () => w.t.app.models;
const prefix = () => w.t.app.config.queuePrefix;
const busy = () => markChannelBusy(w.t.app.redis, prefix(), CORA.inboxChannelId);

/** Flushes the customer's Slack outbox now, waiting out a channel's 429 or a held lock. */
const flushNow = (customerId: Types.ObjectId, triedBefore = false) =>
  flushSlackNow(w, customerId, triedBefore);

/** A customer with an open thread (a first SMS, posted): their id and thread. */
async function customerWithThread(phone: string) {
  const text = `first ${phone}`;
  expect((await w.sms(phone, text)).status).toBe(200);
  const first = await eventually(
    async () => models().AgentPost.findOne({ text, state: 'posted' }).lean<AgentPost>(),
    Boolean,
    20_000,
  );
  const t = await models().CurrentThread.findById(first!.customerId).lean();
  // Let the first contact's other work (acknowledgement, card refresh) settle.
  await new Promise((r) => setTimeout(r, 1_000));
  return {
    customerId: first!.customerId,
    username: first!.username,
    thread: { channel: t!.channel, ts: t!.ts },
  };
}

type Waiting = {
  text: string;
  kind?: 'message' | 'note';
  channel?: 'sms' | 'whatsapp';
  files?: AgentPostFile[];
};

/** Messages stored in the customer's outbox and listed, as appends whose flush has not run yet. */
async function waiting(customerId: Types.ObjectId, username: string | undefined, items: Waiting[]) {
  const keys: string[] = [];
  for (const item of items) {
    const key = `test:${randomBytes(6).toString('hex')}`;
    await w.t.app.redis.zadd(pendingPostsKey(prefix(), customerId), Date.now(), key);
    await models().AgentPost.create({
      key,
      customerId,
      seq: await w.t.app.router.outbox.nextSeq(customerId),
      kind: item.kind ?? 'message',
      channel: item.kind === 'note' ? undefined : (item.channel ?? 'sms'),
      username: item.kind === 'note' ? 'Rapport' : username,
      text: item.text,
      state: 'pending',
      ...(item.files ? { files: item.files } : {}),
    });
    keys.push(key);
  }
  return keys;
}

/** The thread's Rapport posts (not the card) after `afterTs`: ts, text and the keys each carries. */
function postsIn(thread: { channel: string; ts: string }, afterTs = thread.ts) {
  return w.slack
    .thread(thread.channel, thread.ts)
    .filter((m) => m.metadata?.event_type === POST_EVENT_TYPE && Number(m.ts) > Number(afterTs))
    .map((m) => ({ ts: m.ts, text: m.text, keys: postKeys(m.metadata?.event_payload) }));
}

const lastTs = (thread: { channel: string; ts: string }) =>
  w.slack.thread(thread.channel, thread.ts).at(-1)!.ts;

async function marksOf(keys: string[]) {
  const rows = await models()
    .AgentPost.find({ key: { $in: keys } })
    .lean<AgentPost[]>();
  return keys.map((k) => {
    const r = rows.find((p) => p.key === k)!;
    return { state: r.state, ts: r.slack?.ts };
  });
}

/** A post an earlier try made in Slack (through the emulator's API) carrying `keys`, never marked. */
async function madeByDeadTry(thread: { channel: string; ts: string }, keys: string[], text: string) {
  const payload =
    keys.length === 1 ? { key: keys[0] } : { key: keys[0], parts: keys.map((key) => ({ key })) };
  const res = await fetch(`${w.slack.url}chat.postMessage`, {
    method: 'POST',
    headers: { authorization: `Bearer ${w.slack.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      channel: thread.channel,
      thread_ts: thread.ts,
      text,
      metadata: { event_type: POST_EVENT_TYPE, event_payload: payload },
    }),
  });
  return ((await res.json()) as { ts: string }).ts;
}

describe('coalescing waiting messages while the channel is rate limited', () => {
  it('a free channel: one post per message; after a 429: the waiting messages in one post, marked in one write', async () => {
    const c = await customerWithThread('+14155550931');
    const start = lastTs(c.thread);
    const free = await waiting(c.customerId, c.username, [{ text: 'free one' }, { text: 'free two' }]);
    await flushNow(c.customerId);
    expect(postsIn(c.thread, start).map((p) => p.keys)).toEqual([[free[0]], [free[1]]]);

    const mark = lastTs(c.thread);
    const keys = await waiting(c.customerId, c.username, [
      { text: 'where is my order' },
      { text: 'it was due <today>' },
      { text: 'hello??' },
    ]);
    // Slack refuses the first post of the flush (429): the channel is busy from then on.
    w.slack.failNext('chat.postMessage', { status: 429, retryAfterSec: 1 }, { channel: c.thread.channel });
    seen.length = 0;
    await flushNow(c.customerId);
    const posts = postsIn(c.thread, mark);
    expect(posts).toHaveLength(1);
    expect(posts[0]!.keys).toEqual(keys);
    // Each message on its own line under its label, customer text escaped as in a single post.
    expect(posts[0]!.text.split('\n')).toEqual([
      '*[SMS]* where is my order',
      '*[SMS]* it was due &lt;today&gt;',
      '*[SMS]* hello??',
    ]);
    expect(await marksOf(keys)).toEqual(keys.map(() => ({ state: 'posted', ts: posts[0]!.ts })));
    // The three marks in one command.
    expect(seen.filter((s) => s === 'update agent_posts')).toHaveLength(1);
  });

  it('a coalesced post whose answer was lost is found by the retry: no message posted twice', async () => {
    const c = await customerWithThread('+14155550932');
    const mark = lastTs(c.thread);
    const keys = await waiting(c.customerId, c.username, [
      { text: 'lost a' },
      { text: 'lost b' },
      { text: 'lost c' },
    ]);
    await busy();
    // Slack makes the post, then the connection drops before its answer.
    w.slack.failNext('chat.postMessage', { lost: true }, { channel: c.thread.channel });
    const lookups = () =>
      w.slack.callsTo('conversations.replies').filter((call) => call.args.ts === c.thread.ts).length;
    const before = lookups();
    await flushNow(c.customerId);
    const posts = postsIn(c.thread, mark);
    expect(posts.map((p) => p.keys)).toEqual([keys]);
    expect(await marksOf(keys)).toEqual(keys.map(() => ({ state: 'posted', ts: posts[0]!.ts })));
    // One read of the thread for the whole group.
    expect(lookups() - before).toBe(1);
  });

  it('a try that died after its first coalesced post: the resumed flush finds each key it carried and posts the rest once', async () => {
    const c = await customerWithThread('+14155550933');
    const mark = lastTs(c.thread);
    const keys = await waiting(c.customerId, c.username, [
      { text: 'part 1' },
      { text: 'part 2' },
      { text: 'part 3' },
      { text: 'part 4' },
    ]);
    // The dead try recorded its attempts and posted the first two together, then was killed.
    const attempts = createPostAttempts(w.t.app.redis, prefix());
    for (const key of keys.slice(0, 2)) await attempts.begin({ key }, false);
    const deadTs = await madeByDeadTry(c.thread, keys.slice(0, 2), '*[SMS]* part 1\n*[SMS]* part 2');
    await busy();
    // The job stalled under the killed worker: run again as a retry.
    await flushNow(c.customerId, true);
    const posts = postsIn(c.thread, mark);
    expect(posts.map((p) => p.keys)).toEqual([keys.slice(0, 2), keys.slice(2)]);
    expect(posts[1]!.text).toBe('*[SMS]* part 3\n*[SMS]* part 4');
    const marks = await marksOf(keys);
    expect(marks.slice(0, 2)).toEqual([
      { state: 'posted', ts: deadTs },
      { state: 'posted', ts: deadTs },
    ]);
    expect(marks.slice(2)).toEqual([
      { state: 'posted', ts: posts[1]!.ts },
      { state: 'posted', ts: posts[1]!.ts },
    ]);
  });

  it('keeps order: notes, files and a channel switch break or mark the groups, never reorder them', async () => {
    const c = await customerWithThread('+14155550934');
    const mark = lastTs(c.thread);
    const file: AgentPostFile = {
      mediaId: new Types.ObjectId().toHexString(),
      filename: 'a.jpg',
      contentType: 'image/jpeg',
      bytes: 10,
    };
    const keys = await waiting(c.customerId, c.username, [
      { text: 'm1' },
      { text: 'm2', channel: 'whatsapp' },
      { text: 'a note', kind: 'note' },
      { text: 'm3' },
      { text: 'with a photo', files: [file] },
      { text: 'm4' },
      { text: 'm5' },
    ]);
    await busy();
    await flushNow(c.customerId);
    const posts = postsIn(c.thread, mark);
    expect(posts.map((p) => p.keys)).toEqual([
      keys.slice(0, 2),
      [keys[2]],
      [keys[3]],
      [keys[4]],
      keys.slice(5),
    ]);
    expect(posts[0]!.text).toBe(
      '*[SMS]* m1\n:twisted_rightwards_arrows: _now writing on WhatsApp_\n*[WhatsApp]* m2',
    );
    expect(posts[2]!.text).toBe(':twisted_rightwards_arrows: _now writing on SMS_\n*[SMS]* m3');
    expect(posts[4]!.text).toBe('*[SMS]* m4\n*[SMS]* m5');
    expect((await marksOf(keys)).every((m) => m.state === 'posted')).toBe(true);
  });

  it("splits a long run of waiting messages by Slack's size advice and a part count", async () => {
    const c = await customerWithThread('+14155550935');
    const mark = lastTs(c.thread);
    const long = 'x'.repeat(1_800);
    const keys = await waiting(c.customerId, c.username, [
      { text: `a${long}` },
      { text: `b${long}` },
      { text: `c${long}` },
      ...Array.from({ length: COALESCED_MAX_PARTS + 3 }, (_, i) => ({ text: `short ${i}` })),
    ]);
    await busy();
    await flushNow(c.customerId);
    const posts = postsIn(c.thread, mark);
    expect(posts.every((p) => p.text.length <= COALESCED_MAX_CHARS)).toBe(true);
    expect(posts.every((p) => p.keys.length <= COALESCED_MAX_PARTS)).toBe(true);
    // Two long ones fit; the third starts a post the short ones fill up to the part count.
    expect(posts.map((p) => p.keys.length)).toEqual([2, COALESCED_MAX_PARTS, 4]);
    expect(posts.flatMap((p) => p.keys)).toEqual(keys);
  });
});

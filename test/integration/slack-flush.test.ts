/**
 * The Slack flush's database cost and its exactly-once guarantee without a database attempt mark
 * (src/router/slack-delivery.ts, post-attempts.ts), on real Redis, the real MongoDB-protocol server
 * and the Slack emulator: a returning customer's post costs the outbox its append, the pending read
 * and one mark; a post that an earlier try made but never marked (the worker died, the answer was
 * lost, Redis lost the attempt) is found in the thread and not posted again.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Types } from 'mongoose';
import { eventually } from '../helpers/eventually';
import { uniqueName } from '../helpers/env';
import { flushSlackNow, startWorld, type World } from '../helpers/world';
import { createPostAttempts, UNSETTLED_MS } from '../../src/router/post-attempts';
import { channelWaitKey, LISTING_TRUST_MS, POST_EVENT_TYPE } from '../../src/router/slack-delivery';
import { DeferError } from '../../src/errors';
import { pendingPostsKey } from '../../src/router/outbox';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const FLO = { slackUserId: 'U0FLUSHFLO', name: 'Flo', inboxChannelId: 'C0FLUSHFLO' };

let w: World;
const seen: string[] = [];

beforeAll(async () => {
  w = await startWorld({ MONGODB_URI: `${MONGO}/rapport_${uniqueName('flush')}?monitorCommands=true` });
  await w.t.app.mongo.ready;
  await w.addAgent(FLO);
  await trustListings(true);
  w.t.app.mongo.connection
    .getClient()
    .on('commandStarted', (e: { commandName: string; command: Record<string, unknown> }) =>
      seen.push(
        `${e.commandName} ${String(e.command[e.commandName])} ${JSON.stringify(e.command.filter ?? e.command.updates ?? e.command.pipeline ?? '')}`,
      ),
    );
});
afterAll(() => w.stop());

const models = () => w.t.app.models;
const prefix = () => w.t.app.config.queuePrefix;

/** As on a Rapport whose listings started long ago (true), or just now (a wiped Redis: false). */
async function trustListings(trusted: boolean): Promise<void> {
  const since = trusted ? Date.now() - LISTING_TRUST_MS - 60_000 : Date.now();
  await w.t.app.redis.set(`${w.t.app.config.queuePrefix}:to-agent:listing-since`, String(since));
}

/** Flushes the customer's Slack outbox now, waiting for a flush job that holds the lock. */
const flushNow = (customerId: Types.ObjectId, triedBefore = false) =>
  flushSlackNow(w, customerId, triedBefore);

/** The customer's current thread (a post's own ref is its reply, not the thread). */
async function threadOf(customerId: Types.ObjectId): Promise<{ channel: string; ts: string }> {
  const t = await models().CurrentThread.findById(customerId).lean();
  return { channel: t!.channel, ts: t!.ts };
}

/** Sends an SMS and waits until its post is marked posted; the post. */
async function posted(phone: string, text: string) {
  expect((await w.sms(phone, text)).status).toBe(200);
  const post = await eventually(
    async () => models().AgentPost.findOne({ text, state: 'posted' }).lean(),
    Boolean,
    20_000,
  );
  return post!;
}

/** The thread's replies that carry `key` as their post key. */
const postsWithKey = (thread: { channel: string; ts: string }, key: string) =>
  w.slack
    .thread(thread.channel, thread.ts)
    .filter((m) => m.metadata?.event_type === POST_EVENT_TYPE && m.metadata.event_payload.key === key);

/** A post a try made in Slack and died before marking: the Slack message, and the pending row. */
async function madeButNotMarked(customerId: Types.ObjectId, thread: { channel: string; ts: string }) {
  const key = `test:${randomBytes(6).toString('hex')}`;
  const res = await fetch(`${w.slack.url}chat.postMessage`, {
    method: 'POST',
    headers: { authorization: `Bearer ${w.slack.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      channel: thread.channel,
      thread_ts: thread.ts,
      text: 'a note that went out',
      metadata: { event_type: POST_EVENT_TYPE, event_payload: { key } },
    }),
  });
  const { ts } = (await res.json()) as { ts: string };
  await models().AgentPost.create({
    key,
    customerId,
    seq: 1e9,
    kind: 'note',
    text: 'a note that went out',
    state: 'pending',
  });
  return { key, ts };
}

describe('the Slack flush', () => {
  it("a returning customer's message: the outbox's append and one mark, and no look-up", async () => {
    const phone = '+14155550901';
    await posted(phone, 'flush first 901');
    // Let the first contact's other work (acknowledgement, card refresh) settle.
    await new Promise((r) => setTimeout(r, 1_500));
    seen.length = 0;
    const lookups = w.slack.callsTo('conversations.replies').length;
    const post = await posted(phone, 'flush again 901');
    await new Promise((r) => setTimeout(r, 500));
    const outbox = seen
      .filter((c) => c.includes(' agent_posts ') && !c.includes('"text":"flush again 901","state"'))
      .map((c) => c.split(' ').slice(0, 2).join(' '));
    // (The test's own polls for the posted row are left out.)
    // No pending read: the post rode in its flush job and was the only one listed.
    expect(outbox).toEqual([
      'update agent_posts', // the append (upsert)
      'update agent_posts', // posted: its ts and state together
    ]);
    expect(post.slack?.ts).toBeTruthy();
    // A fresh post's first try is not looked up first.
    expect(w.slack.callsTo('conversations.replies').length).toBe(lookups);
  });

  it("a returning customer's first return reads no current thread: the flush that opened it left its copy", async () => {
    const phone = '+14155550911';
    // The first contact opens the thread and records the channel it was written on.
    await posted(phone, 'thread first 911');
    await new Promise((r) => setTimeout(r, 1_500));
    seen.length = 0;
    await posted(phone, 'thread again 911');
    await new Promise((r) => setTimeout(r, 500));
    expect(seen.filter((c) => c.startsWith('find current_threads'))).toEqual([]);
  });

  it('a post made by a try that died before its mark (attempt in Redis) is found, not posted again', async () => {
    const first = await posted('+14155550902', 'flush died 902');
    const thread = await threadOf(first.customerId);
    const { key, ts } = await madeButNotMarked(first.customerId, thread);
    // As the try that died recorded it.
    await createPostAttempts(w.t.app.redis, prefix()).begin({ key }, false);
    await flushNow(first.customerId);
    expect(postsWithKey(thread, key)).toHaveLength(1);
    expect(await models().AgentPost.findOne({ key }).lean()).toMatchObject({
      state: 'posted',
      slack: { channel: thread.channel, ts },
    });
  });

  it('Redis lost the attempt: a retried job, or a post pending for long, is still looked up', async () => {
    const first = await posted('+14155550903', 'flush lost 903');
    const thread = await threadOf(first.customerId);
    const retried = await madeButNotMarked(first.customerId, thread);
    await flushNow(first.customerId, true);
    expect(postsWithKey(thread, retried.key)).toHaveLength(1);
    const old = await madeButNotMarked(first.customerId, thread);
    await models().AgentPost.collection.updateOne(
      { key: old.key },
      { $set: { createdAt: new Date(Date.now() - 2 * 3600_000) } },
    );
    await flushNow(first.customerId);
    expect(postsWithKey(thread, old.key)).toHaveLength(1);
    expect(
      await models().AgentPost.countDocuments({ key: { $in: [retried.key, old.key] }, state: 'posted' }),
    ).toBe(2);
  });
});

describe('the pending listing (a post riding in its flush job)', () => {
  it('a carried post waits for an older pending one: both posted, in order', async () => {
    const first = await posted('+14155550904', 'flush order 904');
    const customerId = first.customerId;
    const thread = await threadOf(customerId);
    // An older post stored and listed whose own flush has not run yet (say, in backoff).
    const older = `test:older:${randomBytes(4).toString('hex')}`;
    await w.t.app.redis.zadd(pendingPostsKey(prefix(), customerId), Date.now(), older);
    await models().AgentPost.create({
      key: older,
      customerId,
      seq: 1,
      kind: 'note',
      text: 'older 904',
      state: 'pending',
    });
    await w.t.app.router.outbox.postToAgent(customerId, {
      key: `test:newer:${randomBytes(4).toString('hex')}`,
      kind: 'note',
      text: 'newer 904',
    });
    const texts = async () => w.slack.thread(thread.channel, thread.ts).map((m) => m.text);
    await eventually(texts, (t) => t.includes('newer 904'));
    const shown = await texts();
    expect(shown.indexOf('older 904')).toBeGreaterThan(-1);
    expect(shown.indexOf('older 904')).toBeLessThan(shown.indexOf('newer 904'));
  });

  it('listings that just started (a wiped Redis, a first deploy) are not trusted; the read lists what it finds', async () => {
    const first = await posted('+14155550907', 'flush wiped 907');
    const customerId = first.customerId;
    const thread = await threadOf(customerId);
    // Stored while nothing listed it; then Redis was wiped (its flush job lost with it).
    await models().AgentPost.create({
      key: `test:unlisted:${randomBytes(4).toString('hex')}`,
      customerId,
      seq: 1,
      kind: 'note',
      text: 'unlisted 907',
      state: 'pending',
    });
    await new Promise((r) => setTimeout(r, 5));
    await trustListings(false);
    try {
      await w.t.app.router.outbox.postToAgent(customerId, {
        key: `test:after:${randomBytes(4).toString('hex')}`,
        kind: 'note',
        text: 'after wipe 907',
      });
      const texts = async () => w.slack.thread(thread.channel, thread.ts).map((m) => m.text);
      await eventually(texts, (t) => t.includes('after wipe 907'));
      const shown = await texts();
      expect(shown.indexOf('unlisted 907')).toBeGreaterThan(-1);
      expect(shown.indexOf('unlisted 907')).toBeLessThan(shown.indexOf('after wipe 907'));
    } finally {
      await trustListings(true);
    }
    // A read lists the pending posts it finds (here held back by the channel's 429 wait).
    const waiting = `test:waiting:${randomBytes(4).toString('hex')}`;
    await models().AgentPost.create({
      key: waiting,
      customerId,
      seq: 2,
      kind: 'note',
      text: 'waiting 907',
      state: 'pending',
    });
    await w.t.app.redis.set(channelWaitKey(prefix(), thread.channel), '1', 'PX', 5_000);
    await expect(w.t.app.router.slackDelivery!.flush(customerId)).rejects.toThrow(DeferError);
    expect(await w.t.app.redis.zscore(pendingPostsKey(prefix(), customerId), waiting)).not.toBeNull();
    await w.t.app.redis.del(channelWaitKey(prefix(), thread.channel));
    await flushNow(customerId);
    expect(await w.t.app.redis.zscore(pendingPostsKey(prefix(), customerId), waiting)).toBeNull();
  });

  it('the outbox read drops listed keys that are done and older than a minute, and keeps young ones', async () => {
    const first = await posted('+14155550905', 'flush listing 905');
    const listed = pendingPostsKey(prefix(), first.customerId);
    await w.t.app.redis.zadd(listed, Date.now() - 120_000, 'test:gone', Date.now(), 'test:storing');
    await flushNow(first.customerId);
    expect(await w.t.app.redis.zscore(listed, 'test:gone')).toBeNull();
    expect(await w.t.app.redis.zscore(listed, 'test:storing')).not.toBeNull();
    expect(await w.t.app.redis.zscore(listed, first.key)).toBeNull();
  });
});

describe('after a dropped Redis connection', () => {
  it('posts are looked up and the outbox is read, whatever the listing and attempts say', async () => {
    const phone = '+14155550906';
    await posted(phone, 'flush redis 906');
    const closed = new Promise((r) => w.t.app.redis.once('close', r));
    w.t.app.redis.disconnect(true);
    await closed;
    await eventually(
      async () => w.t.app.redis.status,
      (s) => s === 'ready',
    );
    seen.length = 0;
    const lookups = w.slack.callsTo('conversations.replies').length;
    const post = await posted(phone, 'flush redis again 906');
    expect(seen.some((c) => c.startsWith('find agent_posts {"customerId"'))).toBe(true);
    const keys = w.slack
      .callsTo('conversations.replies')
      .slice(lookups)
      .map((c) => c.args.ts);
    expect(keys).toContain((await threadOf(post.customerId)).ts);
  });
});

describe('post attempts (post-attempts.ts)', () => {
  it('an attempt is remembered; after a dropped Redis connection every post counts as maybe made', async () => {
    const redis = new Redis(w.t.app.config.redisUrl);
    try {
      const info = await redis.info('server');
      const young = Number(/uptime_in_seconds:(\d+)/.exec(info)?.[1]) * 1000 < UNSETTLED_MS;
      const p = `${prefix()}:attempts-test`;
      const attempts = createPostAttempts(redis, p);
      const fresh = () => ({ key: randomBytes(6).toString('hex'), createdAt: new Date() });
      const post = fresh();
      expect(await attempts.begin(post, false)).toBe(young);
      expect(await attempts.begin(post, false)).toBe(true);
      expect(await attempts.begin(fresh(), true)).toBe(true);
      const closed = new Promise((r) => redis.once('close', r));
      redis.disconnect(true);
      await closed;
      await eventually(
        async () => redis.status,
        (s) => s === 'ready',
      );
      expect(await attempts.begin(fresh(), false)).toBe(true);
    } finally {
      redis.disconnect();
    }
  });
});

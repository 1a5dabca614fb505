/**
 * The hot-state cache (src/identity/cache.ts, src/router/hot-state.ts), through the public paths,
 * on real Redis and the real MongoDB-protocol server: a returning customer's message is resolved
 * without identity or customer commands, and every identity or ownership change — merge, undo,
 * link, rename, handoff (slash command and deactivation), an owner going away, the Slack thread
 * re-created, erasure — is seen by the very next message (never the stale customer, agent or thread).
 */
import { eventually } from '../helpers/eventually';
import { uniqueName } from '../helpers/env';
import { startWorld, type World } from '../helpers/world';
import { hotCustomerOf } from '../../src/identity/cache';
import { scanKeys } from '../../src/queue/connection';
import { epochKey } from '../../src/identity/cache';
import { prefixFor } from '../../src/queue/options';
import { ERASURE_RESUME_SCHEDULER, MAINTENANCE_QUEUE } from '../../src/privacy/retention';
import { Queue } from 'bullmq';
import { registerPrivacyModels } from '../../src/privacy/models';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const ANA = { slackUserId: 'U0HOTANA', name: 'Ana', inboxChannelId: 'C0HOTANA' };
const BEN = { slackUserId: 'U0HOTBEN', name: 'Ben', inboxChannelId: 'C0HOTBEN' };

let w: World;
let ids: { ana: string; ben: string };
const seen: string[] = [];

beforeAll(async () => {
  w = await startWorld({ MONGODB_URI: `${MONGO}/rapport_${uniqueName('hot')}?monitorCommands=true` });
  await w.t.app.mongo.ready;
  ids = { ana: (await w.addAgent(ANA)).id, ben: (await w.addAgent(BEN)).id };
  w.t.app.mongo.connection
    .getClient()
    .on('commandStarted', (e: { commandName: string; command: Record<string, unknown> }) =>
      seen.push(
        `${e.commandName} ${String(e.command[e.commandName])} ${Object.keys((e.command.filter ?? e.command.query ?? {}) as object).join(',')}`.trim(),
      ),
    );
});
afterAll(() => w.stop());

const models = () => w.t.app.models;
const prefix = () => w.t.app.config.queuePrefix;

/** Sends an SMS and waits until it is stored; the customer it was filed under. */
async function sms(from: string, text: string): Promise<string> {
  expect((await w.sms(from, text)).status).toBe(200);
  const m = await eventually(() => models().Message.findOne({ text }).lean(), Boolean);
  return String(m!.customerId);
}

/** Waits until `phone`'s hot entry is current (its next message is answered from Redis). */
async function hot(phone: string, customerId: string): Promise<void> {
  await eventually(async () => String(await hotCustomerOf(w.t.app.redis, prefix(), `phone:${phone}`)), (c) => c === customerId);
}

/**
 * The inbox channel the post showing `text` went to, once posted (from the outbox record: the old
 * thread's card, edited to show the latest message, would match the Slack history too).
 */
const postedIn = (text: string) =>
  eventually(
    async () =>
      (await models().AgentPost.find({ state: 'posted' }).lean()).find((p) => p.text.includes(text))?.slack?.channel,
    Boolean,
  );

/** The ts of the thread in `channel` whose replies show `text`. */
const threadOf = (channel: string, text: string) =>
  w.slack.messages(channel).find((m) => m.text.includes(text))?.thread_ts;

describe('the hot-state cache', () => {
  it('resolves a returning customer from Redis: no identity or customer command, and no merge re-check', async () => {
    const hello = `hello ${uniqueName('')}`;
    const first = await sms('+14155550301', hello);
    await postedIn(hello);
    await hot('+14155550301', first);
    seen.length = 0;
    const text = `again ${uniqueName('')}`;
    expect(await sms('+14155550301', text)).toBe(first);
    await postedIn(text);
    // Resolution (identity upsert-touch, customer touch) and the store's merge check (identity by
    // key, customer by id) sent nothing; the card refresh and the ack's delivery read identities by
    // customer, as before.
    expect(seen.filter((c) => /^findAndModify (identities|customers)/.test(c))).toEqual([]);
    expect(seen.filter((c) => c === 'find identities key')).toEqual([]);
    expect(seen.filter((c) => c.startsWith('insert messages'))).toHaveLength(1);
  });

  it('a merge and its undo move the next message at once', async () => {
    const a = await sms('+14155550311', `merge a ${uniqueName('')}`);
    const b = await sms('+14155550312', `merge b ${uniqueName('')}`);
    await hot('+14155550312', b);
    const merged = await w.admin('POST', `/customers/${b}/merge`, { otherId: a, survivorId: a });
    expect(merged.status).toBe(200);
    expect(await sms('+14155550312', `after merge ${uniqueName('')}`)).toBe(a);
    const undone = await w.admin('POST', `/merges/${merged.body.merge.id}/undo`);
    expect(undone.status).toBe(200);
    expect(await sms('+14155550312', `after undo ${uniqueName('')}`)).toBe(b);
  });

  it('a rename shows in the next post', async () => {
    const c = await sms('+14155550321', `rename me ${uniqueName('')}`);
    await hot('+14155550321', c);
    expect((await w.admin('PATCH', `/customers/${c}`, { displayName: 'Quentin Hot' })).status).toBe(200);
    const text = `named ${uniqueName('')}`;
    await sms('+14155550321', text);
    await postedIn(text);
    const post = (await models().AgentPost.find({ state: 'posted' }).lean()).find((p) => p.text.includes(text));
    expect(post?.username).toBe('Quentin Hot (SMS)');
  });

  it("an owner going away is seen by the next message (their cover is called in); deactivation hands the next one over", async () => {
    const whose = `whose ${uniqueName('')}`;
    const c = await sms('+14155550331', whose);
    await postedIn(whose);
    const owner = (await models().Customer.findById(c).lean())!.ownerAgentId!;
    const [me, other] = owner === ids.ana ? [ANA, BEN] : [BEN, ANA];
    const otherId = owner === ids.ana ? ids.ben : ids.ana;
    expect((await w.admin('PATCH', `/agents/${owner}`, { backupAgentId: otherId })).status).toBe(200);
    // A message after the change: the owner's record (with the backup) is in the agent cache now.
    const cached = `cached ${uniqueName('')}`;
    await sms('+14155550331', cached);
    await postedIn(cached);
    // Going away (slash command) must replace the cached record.
    expect((await w.command(me.slackUserId, me.inboxChannelId, 'away')).status).toBe(200);
    await sms('+14155550331', `while away ${uniqueName('')}`);
    expect(await postedIn(`<@${other.slackUserId}> ${me.name} is away`)).toBe(me.inboxChannelId);
    expect((await w.command(me.slackUserId, me.inboxChannelId, 'back')).status).toBe(200);
    // Deactivation (admin API) reassigns the customer: the next message goes to the other agent.
    expect((await w.admin('PATCH', `/agents/${owner}`, { active: false })).status).toBe(200);
    const text = `handed ${uniqueName('')}`;
    await sms('+14155550331', text);
    expect(await postedIn(text)).toBe(other.inboxChannelId);
    expect((await w.admin('PATCH', `/agents/${owner}`, { active: true, backupAgentId: null })).status).toBe(200);
  });

  it("linking a customer's number to another customer (admin) files the next message under the survivor", async () => {
    const a = await sms('+14155550351', `link a ${uniqueName('')}`);
    const b = await sms('+14155550352', `link b ${uniqueName('')}`);
    await hot('+14155550351', a);
    await hot('+14155550352', b);
    const linked = await w.admin('POST', `/customers/${a}/identities`, { phone: '+14155550352' });
    expect(linked.status).toBe(200);
    const survivor = String(linked.body.merge.survivorId);
    expect([a, b]).toContain(survivor);
    expect(await sms('+14155550352', `after link ${uniqueName('')}`)).toBe(survivor);
    expect(await sms('+14155550351', `a after link ${uniqueName('')}`)).toBe(survivor);
  });

  it('a handoff (slash command) sends the next message to the new owner', async () => {
    const first = `before handoff ${uniqueName('')}`;
    const c = await sms('+14155550361', first);
    const channel = await postedIn(first);
    const [from, to] = channel === ANA.inboxChannelId ? [ANA, BEN] : [BEN, ANA];
    await hot('+14155550361', c);
    expect((await w.command(from.slackUserId, from.inboxChannelId, `handoff <@${to.slackUserId}> ${c}`)).status).toBe(200);
    await eventually(async () => (await models().Customer.findById(c).lean())?.ownerAgentId, (o) => o === (to === ANA ? ids.ana : ids.ben));
    const text = `after handoff ${uniqueName('')}`;
    await sms('+14155550361', text);
    expect(await postedIn(text)).toBe(to.inboxChannelId);
    // The thread was re-created in the new owner's inbox: the next post joins it (the cached
    // current thread was replaced), no second card.
    const next = `next after handoff ${uniqueName('')}`;
    await sms('+14155550361', next);
    expect(await postedIn(next)).toBe(to.inboxChannelId);
    expect(threadOf(to.inboxChannelId, next)).toBe(threadOf(to.inboxChannelId, text));
    // One card (thread) in the new inbox: the handoff note opened it, the messages joined it.
    const cards = w.slack
      .messages(to.inboxChannelId)
      .filter((m) => (m.thread_ts === undefined || m.thread_ts === m.ts) && m.text.includes(c));
    expect(cards).toHaveLength(1);
  });

  it('an erasure leaves no hot key and the next message is a new customer', async () => {
    const c = await sms('+14155550341', `erase me ${uniqueName('')}`);
    await hot('+14155550341', c);
    const erased = await w.admin('DELETE', `/customers/${c}`);
    expect(erased.status).toBeLessThan(300);
    await eventually(
      async () => (await w.admin('GET', `/customers/${c}/erasure`)).body?.erasure?.status as string | undefined,
      (s) => s === 'done',
    );
    for (const key of await scanKeys(w.t.app.redis, `${prefix()}:hot:*`)) {
      expect(key).not.toContain(c);
      expect(String(await w.t.app.redis.get(key).catch(() => ''))).not.toContain(c);
    }
    expect(await sms('+14155550341', `new life ${uniqueName('')}`)).not.toBe(c);
  });
});

describe('the minutely erasure resume', () => {
  it('keeps the identity epoch (and so every hot copy) when no erasure is unfinished', async () => {
    const redis = w.t.app.redis;
    const connection = redis.duplicate();
    const queue = new Queue(MAINTENANCE_QUEUE, {
      connection,
      prefix: prefixFor(MAINTENANCE_QUEUE, prefix(), connection),
    });
    try {
      const { Erasure } = registerPrivacyModels(w.t.app.mongo.connection);
      expect(await Erasure.exists({ status: 'in_progress' })).toBeNull();
      const before = await redis.get(epochKey(prefix()));
      // The job the scheduler adds every minute, run now by the app's own maintenance worker.
      const job = await queue.add(ERASURE_RESUME_SCHEDULER, {});
      await eventually(() => job.getState(), (state) => state === 'completed' || state === 'failed', 30_000);
      expect(await job.getState()).toBe('completed');
      expect(await redis.get(epochKey(prefix()))).toBe(before);
    } finally {
      await queue.close();
      connection.disconnect();
    }
  });
});

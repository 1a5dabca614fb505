/**
 * The erasure's step units one by one (src/privacy/erase/), each given its inputs explicitly:
 * planning, the database steps against the real MongoDB-protocol server, the Redis steps against
 * real Redis and BullMQ, the Slack step through the real Slack client against the emulator, and the
 * tombstone lookups. One database, one queue prefix and one emulator for this file; no mocks.
 */
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import mongoose, { Types, type Connection } from 'mongoose';
import pino from 'pino';
import { createSlackClient, type SlackClient } from '../../src/channels/slack/client';
import { MergeBusyError } from '../../src/identity/merge';
import { registerIdentityModels, type Customer } from '../../src/identity/models';
import { cardKeysOf } from '../../src/router/card-updates';
import { registerRouterModels } from '../../src/router/models';
import { cardCheckKey } from '../../src/router/card-post';
import { createErasureService } from '../../src/privacy/erase';
import { erasureSaver } from '../../src/privacy/erase/audit';
import * as db from '../../src/privacy/erase/db-steps';
import { dataMarkerKey, identityHash, markerKeyId, optOutMarker } from '../../src/privacy/erase/keys';
import { planErasure, type PlanDeps } from '../../src/privacy/erase/plan';
import { eraseCustomerKeys, eraseJobs, type RedisStepDeps } from '../../src/privacy/erase/redis-steps';
import { eraseSlack, type SlackStepDeps } from '../../src/privacy/erase/slack-steps';
import { isErasedJob, isOptOutErased, type TombstoneDeps } from '../../src/privacy/erase/tombstones';
import type { AppModels } from '../../src/privacy/export';
import { registerPrivacyModels, type Erasure, type PrivacyModels } from '../../src/privacy/models';
import { startSlackEmulator, type SlackEmulator } from '../emulators/slack';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const REDIS = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const KEY = dataMarkerKey('erase-steps-data-key-0123456789abcdef');
const OLD_KEY = dataMarkerKey('erase-steps-old-key-0123456789abcdef');
const log = pino({ level: 'silent' });

let conn: Connection;
let models: AppModels;
let privacy: PrivacyModels;
let redis: Redis;
let emulator: SlackEmulator;
let slack: SlackClient;
const prefix = `rapport-steps-${randomBytes(4).toString('hex')}`;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

beforeAll(async () => {
  conn = mongoose.createConnection(`${MONGO}/rapport_steps_${randomBytes(4).toString('hex')}`);
  await conn.asPromise();
  models = { ...registerIdentityModels(conn), ...registerRouterModels(conn) };
  privacy = registerPrivacyModels(conn);
  await Promise.all(Object.values(conn.models).map((m) => m.createIndexes()));
  redis = new Redis(REDIS, { maxRetriesPerRequest: null });
  emulator = await startSlackEmulator();
  slack = createSlackClient({ token: emulator.token, apiUrl: emulator.url });
});

afterAll(async () => {
  await conn.dropDatabase().catch(() => undefined);
  await conn.close();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
  redis.disconnect();
  await emulator.close();
});

const save = () => erasureSaver(privacy.Erasure);
const dbDeps = (): db.DbStepDeps => ({ models, privacy, save: save(), markerKey: KEY, sleep });
const planDeps = (): PlanDeps => ({ models, privacy, markerKey: KEY, log });
const redisDeps = (): RedisStepDeps => ({ redis, prefix, save: save(), log, activeJobWaitMs: 200 });
const stored = async (e: Erasure) => (await privacy.Erasure.findById(e._id).lean<Erasure>())!;

let numbers = 0;
/** A live customer with a phone identity and a tombstone merged into it (its own phone). */
async function family(): Promise<{ live: Customer; tombstone: Customer; phones: string[] }> {
  const n = ++numbers;
  const phones = [`+1415555${String(1000 + n)}`, `+1415556${String(1000 + n)}`];
  const now = new Date();
  const live = await models.Customer.create({ displayName: `Live ${n}`, firstSeenAt: now, lastSeenAt: now });
  const tombstone = await models.Customer.create({
    displayName: `Merged ${n}`,
    firstSeenAt: now,
    lastSeenAt: now,
    mergedInto: live._id,
  });
  for (const [i, c] of [live, tombstone].entries()) {
    await models.Identity.create({
      key: `phone:${phones[i]}`,
      kind: 'phone',
      value: phones[i],
      customerId: c._id,
      verified: true,
      source: 'twilio',
    });
  }
  return { live: live.toObject(), tombstone: tombstone.toObject(), phones };
}

async function planned(): Promise<{ e: Erasure; live: Customer; tombstone: Customer; phones: string[] }> {
  const f = await family();
  const e = await planErasure(planDeps(), f.tombstone._id, f.tombstone, 'test');
  return { e, ...f };
}

let seq = 0;
function message(customerId: Types.ObjectId, phone: string, extra: Record<string, unknown> = {}) {
  const id = `SM${++seq}${randomBytes(3).toString('hex')}`;
  return models.Message.create({
    key: `twilio:${id}`,
    customerId,
    direction: 'in',
    channel: 'sms',
    provider: 'twilio',
    providerMessageId: id,
    identityKey: `phone:${phone}`,
    text: `hello from ${phone}`,
    sentAt: new Date(),
    ...extra,
  });
}

function post(customerId: Types.ObjectId, slackRef?: { channel: string; ts: string }) {
  return models.AgentPost.create({
    key: `post:${++seq}`,
    customerId,
    seq,
    kind: 'message',
    text: 'customer said something',
    state: slackRef ? 'posted' : 'pending',
    ...(slackRef ? { slack: slackRef } : {}),
  });
}

function send(customerId: Types.ObjectId, slackRef?: { channel: string; ts: string }) {
  return models.CustomerSend.create({
    key: `send:${++seq}`,
    customerId,
    seq,
    origin: 'agent',
    text: 'an agent answered',
    state: 'sent',
    sendAfter: new Date(),
    ...(slackRef ? { slack: slackRef } : {}),
  });
}

describe('planning', () => {
  it('plans the whole family once: keys, needles, tombstone hashes, Slack refs (posts, then cards, then replies) and counts', async () => {
    const { live, tombstone, phones } = await family();
    const thread = { channel: 'C0PLAN', ts: '1700000000.000100' };
    await models.SlackThread.create({ ...thread, customerId: live._id, agentId: 'U0A' });
    await post(tombstone._id, { channel: 'C0PLAN', ts: '1700000000.000200' });
    await send(live._id, { channel: 'C0PLAN', ts: '1700000000.000300' });
    await message(live._id, phones[0]!);

    const e = await planErasure(planDeps(), tombstone._id, tombstone, 'cli:someone');

    expect(String(e.liveId)).toBe(String(live._id));
    expect(e.customerIds.map(String).sort()).toEqual([String(live._id), String(tombstone._id)].sort());
    expect(e.plan!.identityKeys.sort()).toEqual(phones.map((p) => `phone:${p}`).sort());
    expect(e.plan!.needles).toEqual(
      expect.arrayContaining([phones[0], phones[0]!.slice(1), String(live._id)]),
    );
    expect(e.identityHashes).toContain(identityHash(KEY, `phone:${phones[1]}`));
    expect(e.slack.refs.map((r) => r.kind)).toEqual(['post', 'card', 'human']);
    expect(e.slack.threads).toEqual([thread]);
    expect(e.counts).toMatchObject({
      customers: 2,
      identities: 2,
      messages: 1,
      agentPosts: 1,
      customerSends: 1,
    });
    expect(e.counts.slackHumanRemaining).toBe(1);
    expect(await privacy.Erasure.countDocuments({ customerIds: live._id })).toBe(1);
  });

  it('refuses while a merge on the family is still running', async () => {
    const { live, tombstone } = await family();
    const merge = await models.MergeEvent.create({
      survivorId: live._id,
      mergedId: tombstone._id,
      reason: 'admin',
      actor: 'admin',
      status: 'in_progress',
    });
    await models.MergeLock.create({ _id: live._id, eventId: merge._id });
    await expect(planErasure(planDeps(), live._id, live, 'test')).rejects.toBeInstanceOf(MergeBusyError);
    expect(await privacy.Erasure.countDocuments({ customerIds: live._id })).toBe(0);
  });
});

describe('database steps', () => {
  it('opt-outs: an active STOP leaves a marker under the current key, an opt-in none; both records go', async () => {
    const { e, phones } = await planned();
    const [stop, optIn] = [`phone:${phones[0]}`, `phone:${phones[1]}`];
    await models.OptOut.create({
      key: `${stop}|sms`,
      identityKey: stop,
      channel: 'sms',
      optedOut: true,
      at: new Date(),
    });
    await models.OptOut.create({
      key: `${optIn}|sms`,
      identityKey: optIn,
      channel: 'sms',
      optedOut: false,
      at: new Date(),
    });

    await db.eraseOptOuts(dbDeps(), e);

    expect(await models.OptOut.countDocuments({ identityKey: { $in: [stop, optIn] } })).toBe(0);
    const marker = await privacy.ErasedOptOut.findById(optOutMarker(KEY, stop, 'sms')).lean();
    expect(marker).toMatchObject({ channel: 'sms', kid: markerKeyId(KEY) });
    expect(await privacy.ErasedOptOut.exists({ _id: optOutMarker(KEY, optIn, 'sms') })).toBeNull();
    expect((await stored(e)).counts.optOutMarkers).toBe(1);
  });

  it('messages: bodies go, ids that embed the number are replaced, provider errors keep their code; a re-run changes nothing', async () => {
    const { e, live, phones } = await planned();
    const bare = phones[0]!.slice(1);
    const m = await message(live._id, phones[0]!, {
      key: `whatsapp-web:false_${bare}@c.us_ABC${seq}`,
      providerMessageId: `false_${bare}@c.us_ABC${seq}`,
      parts: ['a part'],
      replyTo: 'earlier',
      status: {
        key: 'failed',
        state: 'failed',
        at: new Date(),
        providerErrors: [
          { code: '21211', title: 'bad', detail: `The 'To' number ${phones[0]} is not valid` },
        ],
      },
    });
    const plain = await message(live._id, phones[0]!);

    expect(await db.eraseMessages(dbDeps(), e)).toBe(2);

    const after = (await models.Message.findById(m._id).lean())!;
    expect(after.text).toBeUndefined();
    expect(after.replyTo).toBeUndefined();
    expect(after.parts).toEqual([]);
    expect(after.identityKey).toBe(db.ERASED_IDENTITY_KEY);
    expect(after.key).toBe(`erased:${String(m._id)}`);
    expect(after.providerMessageId).toBe(`erased:${String(m._id)}`);
    expect(after.status!.providerErrors).toEqual([{ code: '21211' }]);
    expect(JSON.stringify(after)).not.toContain(bare);
    const kept = (await models.Message.findById(plain._id).lean())!;
    expect(kept.key).toBe(plain.key);
    expect(kept.direction).toBe('in');
    expect(await db.eraseMessages(dbDeps(), e)).toBe(0);
  });

  it("claims: the family's and others' claims on its identities go with their attempts; an unrelated claim stays", async () => {
    const { e, live, phones } = await planned();
    const other = new Types.ObjectId();
    const claim = (customerId: Types.ObjectId, claimedKey: string) =>
      models.Claim.create({
        customerId,
        identityKey: `email:x${++seq}@example.test`,
        kind: 'phone',
        value: phones[0],
        claimedKey,
        codeHash: 'h',
        salt: 's',
        expiresAt: new Date(Date.now() + 60_000),
        status: 'pending',
      });
    const own = await claim(live._id, 'phone:+15550000000');
    const onOurNumber = await claim(other, `phone:${phones[0]}`);
    const unrelated = await claim(other, 'phone:+15550000001');
    await models.ClaimAttempt.create({ _id: `attempt-${seq}`, claimId: own._id });

    await db.eraseClaims(dbDeps(), e);

    expect(await models.Claim.exists({ _id: own._id })).toBeNull();
    expect(await models.Claim.exists({ _id: onOurNumber._id })).toBeNull();
    expect(await models.ClaimAttempt.countDocuments({ claimId: own._id })).toBe(0);
    expect(await models.Claim.exists({ _id: unrelated._id })).not.toBeNull();
  });

  it('merges: inside the family deleted, with an outside customer scrubbed of snapshots and keys', async () => {
    const { e, live, tombstone, phones } = await planned();
    const base = {
      reason: 'admin' as const,
      actor: 'admin',
      status: 'done' as const,
      identityKeys: [`phone:${phones[1]}`],
    };
    const snapshot = { displayName: 'Someone', firstSeenAt: new Date(), lastSeenAt: new Date() };
    const inside = await models.MergeEvent.create({ ...base, survivorId: live._id, mergedId: tombstone._id });
    const outsider = new Types.ObjectId();
    const crossing = await models.MergeEvent.create({
      ...base,
      status: 'undone' as const,
      survivorId: outsider,
      mergedId: live._id,
      mergedSnapshot: snapshot,
      displayNameTaken: 'Someone',
    });

    await db.eraseMerges(dbDeps(), e);

    expect(await models.MergeEvent.exists({ _id: inside._id })).toBeNull();
    const scrubbed = (await models.MergeEvent.findById(crossing._id).lean())!;
    expect(scrubbed.identityKeys).toEqual([]);
    expect(scrubbed.mergedSnapshot).toBeUndefined();
    expect(scrubbed.displayNameTaken).toBeUndefined();
    expect((await stored(e)).counts).toMatchObject({ mergeEventsDeleted: 1, mergeEventsScrubbed: 1 });
  });

  it('outboxes: a Slack post made after the plan joins the Slack list before the records go', async () => {
    const { e, live } = await planned();
    expect(e.slack.refs).toEqual([]);
    const late = { channel: 'C0LATE', ts: '1700000001.000100' };
    await post(live._id, late);
    await send(live._id);

    await db.eraseOutboxes(dbDeps(), e);

    expect((await stored(e)).slack.refs).toEqual([{ ...late, kind: 'post' }]);
    expect(await models.AgentPost.countDocuments({ customerId: live._id })).toBe(0);
    expect(await models.CustomerSend.countDocuments({ customerId: live._id })).toBe(0);
  });

  it('settle: what raced the steps (a late identity, message and customer record) is swept again', async () => {
    const { e, live, tombstone, phones } = await planned();
    for (const step of [db.eraseIdentities, db.eraseMessages, db.eraseRouterRecords, db.eraseCustomers]) {
      await step(dbDeps(), e);
    }
    expect(await models.Customer.countDocuments({ _id: { $in: [live._id, tombstone._id] } })).toBe(0);
    // Work in flight as the steps ran: a message stored, an identity re-created.
    await message(live._id, phones[0]!);
    await models.Identity.create({
      key: `phone:${phones[0]}`,
      kind: 'phone',
      value: phones[0],
      customerId: live._id,
      verified: true,
      source: 'twilio',
    });
    let sweeps = 0;

    await db.settle(dbDeps(), e, async () => void sweeps++);

    expect(sweeps).toBeGreaterThan(0);
    expect(await models.Identity.countDocuments({ customerId: live._id })).toBe(0);
    expect(await models.Message.countDocuments({ customerId: live._id, text: { $exists: true } })).toBe(0);
  });
});

describe('Redis steps', () => {
  it("the customer's outbox sequence, card and card-check keys go; another customer's stay", async () => {
    const { e, live } = await planned();
    e.slack.threads = [{ channel: 'C0KEYS', ts: '1700000002.000100' }];
    const other = String(new Types.ObjectId());
    const ours = [
      `${prefix}:seq:${String(live._id)}`,
      ...cardKeysOf(prefix, String(live._id)),
      cardCheckKey(prefix, e.slack.threads[0]!),
    ];
    const theirs = [`${prefix}:seq:${other}`, ...cardKeysOf(prefix, other)];
    for (const key of [...ours, ...theirs]) await redis.set(key, '1');

    await eraseCustomerKeys(redisDeps(), e);

    expect(await redis.exists(...ours)).toBe(0);
    expect(await redis.exists(...theirs)).toBe(theirs.length);
  });

  it('jobs naming the customer go from any queue under the prefix, in any state; others stay; counted', async () => {
    const { e, phones } = await planned();
    const queue = new Queue(`steps-${randomBytes(3).toString('hex')}`, { connection: redis, prefix });
    try {
      const named = await queue.add('x', { from: phones[0], text: 'hi' });
      const delayed = await queue.add('x', { to: phones[1] }, { delay: 60_000 });
      const unrelated = await queue.add('x', { from: '+15550009999' });

      expect(await eraseJobs(redisDeps(), e)).toBe(true);

      expect(await queue.getJob(named.id!)).toBeUndefined();
      expect(await queue.getJob(delayed.id!)).toBeUndefined();
      expect(await queue.getJob(unrelated.id!)).toBeDefined();
      expect((await stored(e)).counts.jobsRemoved).toBe(2);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});

describe('Slack step (real client, emulator)', () => {
  const slackDeps = (over: Partial<SlackStepDeps> = {}): SlackStepDeps => ({
    slack,
    save: save(),
    log,
    sleep,
    budgetMs: 20_000,
    maxWaitMs: 30_000,
    attempts: 5,
    ...over,
  });

  /** A card with a bot post and an agent's reply in its thread, recorded for a planned family. */
  async function slackFamily(channel: string) {
    const f = await family();
    const card = await slack.postMessage({ channel, text: 'card' });
    const botPost = await slack.postMessage({ channel, threadTs: card.ts, text: 'customer wrote' });
    const reply = emulator.postAsUser(channel, { user: 'U0AGENT', text: 'agent reply', threadTs: card.ts });
    await models.SlackThread.create({ channel, ts: card.ts, customerId: f.live._id, agentId: 'U0AGENT' });
    await post(f.live._id, { channel, ts: botPost.ts });
    await send(f.live._id, { channel, ts: reply.ts });
    const e = await planErasure(planDeps(), f.live._id, f.live, 'test');
    return { e, card, botPost, reply };
  }

  it("posts one notice per thread, deletes Rapport's messages, leaves people's, counts; a re-run posts nothing more", async () => {
    const channel = 'C0SLACKSTEP';
    const { e, card, botPost, reply } = await slackFamily(channel);

    expect(await eraseSlack(slackDeps(), e)).toBe(true);

    const left = emulator.messages(channel).map((m) => m.ts);
    expect(left).not.toContain(card.ts);
    expect(left).not.toContain(botPost.ts);
    const notices = emulator
      .callsTo('chat.postMessage')
      .filter((c) => c.args.thread_ts === card.ts && String(c.args.text).includes('erased'));
    expect(notices).toHaveLength(1);
    expect(String(notices[0]!.args.text)).toContain('1 reply');
    expect(emulator.callsTo('chat.delete').map((c) => c.args.ts)).not.toContain(reply.ts);
    const after = await stored(e);
    expect(after.counts).toMatchObject({
      slackDeleted: 2,
      slackNotices: 1,
      slackFailed: 0,
      slackHumanRemaining: 1,
    });
    expect(after.slack.next).toBe(3);

    expect(await eraseSlack(slackDeps(), after)).toBe(true);
    expect(
      emulator
        .callsTo('chat.postMessage')
        .filter((c) => c.args.thread_ts === card.ts && c.args.text !== 'customer wrote'),
    ).toHaveLength(1);
  });

  it('a Retry-After longer than it may wait stops the step with its progress saved; the next run finishes', async () => {
    const channel = 'C0SLACKWAIT';
    const { e, card } = await slackFamily(channel);
    emulator.failNext('chat.delete', { status: 429, retryAfterSec: 60 }, { channel });

    expect(await eraseSlack(slackDeps({ maxWaitMs: 1_000 }), e)).toBe(false);

    const paused = await stored(e);
    expect(paused.slack.noticesPosted).toEqual([`${channel}/${card.ts}`]);
    expect(paused.slack.next).toBe(0);
    expect(paused.lastError).toContain('ratelimited');
    expect(emulator.messages(channel).map((m) => m.ts)).toContain(card.ts);

    expect(await eraseSlack(slackDeps(), paused)).toBe(true);
    expect(emulator.messages(channel).map((m) => m.ts)).not.toContain(card.ts);
    expect((await stored(e)).counts).toMatchObject({ slackDeleted: 2, slackNotices: 1 });
  });

  it('a deletion Slack refuses for good (channel gone) counts as failed and the step goes on', async () => {
    const channel = 'C0SLACKGONE';
    const { e, card } = await slackFamily(channel);
    emulator.failNext('chat.delete', { error: 'channel_not_found' }, { channel });

    expect(await eraseSlack(slackDeps(), e)).toBe(true);

    expect((await stored(e)).counts).toMatchObject({ slackDeleted: 1, slackFailed: 1 });
    expect(emulator.messages(channel).map((m) => m.ts)).not.toContain(card.ts);
  });

  it('without a Slack client, records that the Slack copies were left in place', async () => {
    const { e } = await slackFamily('C0SLACKNONE');

    expect(await eraseSlack(slackDeps({ slack: undefined }), e)).toBe(true);

    expect((await stored(e)).slack.skipped).toBe('slack not configured');
  });
});

describe('tombstones', () => {
  const deps = (over: Partial<TombstoneDeps> = {}): TombstoneDeps => ({
    privacy,
    markerKey: KEY,
    allKeys: [KEY, OLD_KEY],
    defaultRegion: 'US',
    log,
    ...over,
  });

  it('an opt-out marker found under an earlier key is honoured and re-written under the current one', async () => {
    const identityKey = 'phone:+14155557777';
    await privacy.ErasedOptOut.create({
      _id: optOutMarker(OLD_KEY, identityKey, 'sms'),
      channel: 'sms',
      erasureId: new Types.ObjectId(),
      at: new Date(),
    });

    expect(await isOptOutErased(deps(), identityKey, 'sms')).toBe(true);
    expect(await isOptOutErased(deps(), identityKey, 'whatsapp')).toBe(false);

    const rekeyed = await privacy.ErasedOptOut.findById(optOutMarker(KEY, identityKey, 'sms')).lean();
    expect(rekeyed).toMatchObject({ channel: 'sms', kid: markerKeyId(KEY) });
  });

  it('a job is erased when its customer id was erased, or its sender was erased after it was queued', async () => {
    const { e, live, phones } = await planned();
    const queuedBefore = e.startedAt.getTime() - 60_000;
    const inbound = (phone: string) => ({ message: { from: { kind: 'phone', e164: phone } } });

    expect(await isErasedJob(deps(), { customerId: String(live._id) }, Date.now())).toBe(true);
    expect(await isErasedJob(deps(), inbound(phones[1]!), queuedBefore)).toBe(true);
    // Queued after the erasure started: a new customer writing from that number.
    expect(await isErasedJob(deps(), inbound(phones[1]!), Date.now() + 1_000)).toBe(false);
    expect(await isErasedJob(deps(), inbound('+14155550000'), queuedBefore)).toBe(false);
    expect(await isErasedJob(deps({ allKeys: [OLD_KEY] }), inbound(phones[1]!), queuedBefore)).toBe(false);
  });
});

describe('orchestrator', () => {
  it('runs every step in order once and leaves an audit record without the plan', async () => {
    const { live, tombstone, phones } = await family();
    await message(tombstone._id, phones[1]!);
    const steps: string[] = [];
    const service = createErasureService({
      models,
      redis,
      prefix,
      markerKey: KEY,
      log,
      onStep: (step) => void steps.push(step),
    });

    const view = await service.erase(String(tombstone._id), 'test');

    expect(view.status).toBe('done');
    expect(view.pending).toEqual([]);
    expect(steps).toEqual(view.stepsDone);
    expect(view.customerIds.sort()).toEqual([String(live._id), String(tombstone._id)].sort());
    const audit = (await privacy.Erasure.findById(view.id).lean<Erasure>())!;
    expect(audit.plan).toBeUndefined();
    expect(await models.Customer.countDocuments({ _id: { $in: [live._id, tombstone._id] } })).toBe(0);
    expect((await service.erase(String(live._id), 'test')).id).toBe(view.id);
    expect(steps).toHaveLength(view.stepsDone.length);
  });
});

/**
 * Message-body retention against the real database and Redis: bodies older than
 * MESSAGE_RETENTION_DAYS are blanked (with Rapport's outbox copies), newer ones are untouched, the
 * purge is counted in `rapport_retention_purged_messages_total`, and the BullMQ job scheduler runs
 * it on its own.
 */
import { Types } from 'mongoose';
import {
  createRetentionPurge,
  startRetention,
  PURGED_METRIC,
  RETENTION_SCHEDULER,
  type Retention,
} from '../../src/privacy/retention';
import { eventually } from '../helpers/eventually';
import { startTestApp, type TestApp } from '../helpers/app';

const DAY = 86_400_000;
let t: TestApp;
const running: Retention[] = [];

function retention(days: number | undefined, everyMs?: number): Retention {
  const { app } = t;
  const r = startRetention({
    config: { retention: days ? { messageDays: days } : {} },
    models: app.models,
    redisUrl: app.config.redisUrl,
    prefix: app.config.queuePrefix,
    registry: app.metrics.registry,
    log: app.log.child({ component: 'retention' }),
    everyMs,
  });
  running.push(r);
  return r;
}

async function purgedCount(collection: string): Promise<number> {
  const metric = await t.app.metrics.registry.getSingleMetric(PURGED_METRIC)?.get();
  return metric?.values.find((v) => v.labels.collection === collection)?.value ?? 0;
}

let seq = 0;
async function message(ageDays: number, text: string) {
  const sentAt = new Date(Date.now() - ageDays * DAY);
  const n = ++seq;
  return t.app.models.Message.create({
    key: `twilio:SMretention${n}`,
    customerId: new Types.ObjectId(),
    direction: 'in',
    channel: 'sms',
    provider: 'twilio',
    providerMessageId: `SMretention${n}`,
    identityKey: 'phone:+14155550300',
    text,
    parts: [
      { kind: 'text', text },
      { kind: 'media', url: `https://api.twilio.test/media/${n}`, contentType: 'image/jpeg' },
    ],
    sentAt,
  });
}

beforeAll(async () => {
  t = await startTestApp({ MESSAGE_RETENTION_DAYS: '30' }, { role: 'api' });
});
afterAll(async () => {
  for (const r of running) await r.close();
  await t.stop();
});

describe('message retention', () => {
  it('reads MESSAGE_RETENTION_DAYS into config (0 or unset keeps forever)', () => {
    expect(t.app.config.retention).toEqual({ messageDays: 30 });
  });

  it('blanks bodies older than the period, and nothing newer', async () => {
    const old = await message(31, 'old body KILO');
    const older = await message(400, 'ancient body LIMA');
    const recent = await message(29, 'recent body MIKE');
    const fresh = await message(0, 'fresh body NOVEMBER');
    const { AgentPost, CustomerSend } = t.app.models;
    const oldPost = await AgentPost.create({
      key: 'retention-post-old',
      customerId: old.customerId,
      seq: 1,
      kind: 'message',
      text: '*[SMS]* old body KILO',
      state: 'posted',
      createdAt: new Date(Date.now() - 31 * DAY),
    });
    const newPost = await AgentPost.create({
      key: 'retention-post-new',
      customerId: recent.customerId,
      seq: 1,
      kind: 'message',
      text: '*[SMS]* recent body MIKE',
      state: 'posted',
    });
    const oldSend = await CustomerSend.create({
      key: 'retention-send-old',
      customerId: old.customerId,
      seq: 2,
      origin: 'agent',
      text: 'old reply OSCAR',
      media: [{ url: 'https://files.test/a.jpg' }],
      state: 'sent',
      sendAfter: new Date(Date.now() - 31 * DAY),
      createdAt: new Date(Date.now() - 31 * DAY),
    });
    // Mongoose timestamps overwrite createdAt on create: set it directly.
    await AgentPost.collection.updateOne(
      { _id: oldPost._id },
      { $set: { createdAt: new Date(Date.now() - 31 * DAY) } },
    );
    await CustomerSend.collection.updateOne(
      { _id: oldSend._id },
      { $set: { createdAt: new Date(Date.now() - 31 * DAY) } },
    );

    // The purge alone (no scheduler racing the assertions on counts).
    const r = createRetentionPurge({
      config: { retention: { messageDays: 30 } },
      models: t.app.models,
      registry: t.app.metrics.registry,
      log: t.app.log,
    });
    const before = await purgedCount('messages');
    const result = await r.runOnce(new Date());
    expect(result).toMatchObject({ messages: 2, agentPosts: 1, customerSends: 1 });
    expect(await purgedCount('messages')).toBe(before + 2);

    const get = (id: Types.ObjectId) => t.app.models.Message.findById(id).lean();
    for (const m of [old, older]) {
      const after = await get(m._id);
      expect(after?.text).toBeUndefined();
      expect(after?.parts).toEqual([]);
      // The record stays: who, when, which channel.
      expect(after).toMatchObject({ key: m.key, direction: 'in', channel: 'sms' });
    }
    expect(await get(recent._id)).toMatchObject({ text: 'recent body MIKE', parts: recent.parts });
    expect(await get(fresh._id)).toMatchObject({ text: 'fresh body NOVEMBER' });
    expect((await AgentPost.findById(oldPost._id).lean())?.text).toBe('');
    expect((await AgentPost.findById(newPost._id).lean())?.text).toContain('MIKE');
    const send = await CustomerSend.findById(oldSend._id).lean();
    expect(send?.text).toBeUndefined();
    expect(send?.media).toEqual([]);

    // Running again changes and counts nothing.
    expect(await r.runOnce(new Date())).toMatchObject({ messages: 0, agentPosts: 0, customerSends: 0 });
    expect(await purgedCount('messages')).toBe(before + 2);
    // A month later the "recent" one has aged out too.
    expect((await r.runOnce(new Date(Date.now() + 2 * DAY))).messages).toBe(1);
    expect((await get(recent._id))?.text).toBeUndefined();
    expect((await get(fresh._id))?.text).toBe('fresh body NOVEMBER');
  });

  it('runs on its own through the BullMQ job scheduler of the maintenance queue', async () => {
    const r = retention(30, 400);
    await r.ready;
    const schedulers = await r.queue.getJobSchedulers();
    expect(schedulers.map((s) => s.key)).toContain(RETENTION_SCHEDULER);
    const m = await message(45, 'scheduled purge PAPA');
    const after = await eventually(
      () => t.app.models.Message.findById(m._id).lean(),
      (d) => d?.text === undefined,
      10_000,
    );
    expect(after?.text).toBeUndefined();
    await r.close();
  });

  it('keeps everything, and removes the scheduler, when retention is off', async () => {
    const m = await message(4000, 'kept forever QUEBEC');
    const r = retention(undefined);
    await r.ready;
    expect(await r.runOnce(new Date())).toMatchObject({ cutoff: null, messages: 0 });
    expect((await r.queue.getJobSchedulers()).map((s) => s.key)).not.toContain(RETENTION_SCHEDULER);
    expect((await t.app.models.Message.findById(m._id).lean())?.text).toBe('kept forever QUEBEC');
  });
});

/**
 * Intake's seen marker over real Redis and real BullMQ queues: what a delivery cut off at each step
 * leaves behind, and what the provider's redelivery then gets. The marker walks `pending` (claimed)
 * → `done` (queued); see the header of src/queue/intake.ts.
 *
 * A process killed after its claim is reproduced with an intake whose queue's Redis does not answer:
 * the claim lands, the add fails (the provider is answered 503). One killed between its add and its
 * mark is that, followed by the add the killed process made.
 */
import { once } from 'node:events';
import { Worker } from 'bullmq';
import type { InboundEvent } from '../../src/canonical';
import { normalizeTwilioMessage } from '../../src/channels/twilio/normalize';
import { UnavailableError } from '../../src/errors';
import { createRedisConnection, deleteKeys, type RedisClient } from '../../src/queue/connection';
import { createIntake, orderKeyOf, type Intake } from '../../src/queue/intake';
import { jobIdFor, QueueName } from '../../src/queue/names';
import { prefixFor } from '../../src/queue/options';
import { createPartitionedQueue } from '../../src/queue/partitions';
import { closeQueues, createQueues, type Queues } from '../../src/queue/queues';
import { uniqueName } from '../helpers/env';
import { eventually } from '../helpers/eventually';
import { twilioFixture } from '../helpers/fixtures';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

let sids = 0;
/** A canonical SMS with a message id of its own. */
function smsEvent(): InboundEvent {
  const sid = `SM${String(++sids).padStart(32, '0')}`;
  const form = { ...twilioFixture('sms').form, MessageSid: sid, SmsSid: sid, SmsMessageSid: sid };
  return { type: 'message', message: normalizeTwilioMessage(form, new Date())! };
}

const keyOf = (e: InboundEvent) => (e.type === 'message' ? e.message.key : e.status.key);

describe('intake across crashes and concurrent deliveries', () => {
  const prefix = `rapport-${uniqueName('intakecrash')}`;
  const seenKey = (e: InboundEvent) => `${prefix}:seen:${keyOf(e)}`;
  const connections: RedisClient[] = [];
  const ownQueues: Queues[] = [];
  let redis: RedisClient;
  let queues: Queues;

  async function connect(options: Parameters<typeof createRedisConnection>[2] = {}): Promise<RedisClient> {
    const c = createRedisConnection(REDIS_URL, 'producer', options);
    connections.push(c);
    if (c.status !== 'ready') await once(c, 'ready');
    return c;
  }

  /** One api process's intake, on its own connection as in app.ts. */
  async function replica(): Promise<Intake> {
    const producer = await connect();
    const own = createQueues(producer, { prefix, inboundPartitions: 2 });
    ownQueues.push(own);
    return createIntake({
      queue: own.inbound,
      redis: producer,
      prefix,
    });
  }

  /** An intake whose process dies right after claiming: its queue's connection is gone, so the add fails. */
  async function dyingAfterClaim(): Promise<Intake> {
    // The add goes to a Redis that does not answer (nothing listens on port 1): it fails at once.
    const gone = createRedisConnection('redis://127.0.0.1:1', 'producer', { retryStrategy: () => null });
    connections.push(gone);
    const inbound = createPartitionedQueue(QueueName.inbound, 2, gone, { prefix });
    return createIntake({ queue: inbound, redis: await connect(), prefix });
  }

  const jobOf = (e: InboundEvent) => queues.inbound.getJob(jobIdFor(keyOf(e)));

  /** Runs the event's job to completion, then removes it, as retention eventually does. */
  async function completeAndRemove(e: InboundEvent): Promise<void> {
    const connection = await connect({ maxRetriesPerRequest: null });
    const done: string[] = [];
    const name = queues.inbound.queueFor(orderKeyOf(e)).name;
    const worker = new Worker(name, async (job) => void done.push(job.id!), {
      connection,
      // On a Redis Cluster each queue's keys carry their own hash tag (options.ts).
      prefix: prefixFor(name, prefix, connection),
    });
    try {
      await eventually(async () => done, (d) => d.includes(jobIdFor(keyOf(e))));
      expect(done).toContain(jobIdFor(keyOf(e)));
    } finally {
      await worker.close();
    }
    await (await eventually(() => jobOf(e), (j) => j !== undefined && j.finishedOn !== undefined))!.remove();
    expect(await jobOf(e)).toBeUndefined();
  }

  beforeAll(async () => {
    redis = await connect();
    queues = createQueues(redis, { prefix, inboundPartitions: 2 });
  });
  afterAll(async () => {
    await queues.inbound.obliterate({ force: true });
    await deleteKeys(redis, `${prefix}:*`);
    await closeQueues(queues);
    await Promise.all(ownQueues.map((q) => closeQueues(q)));
    // Waits for the sockets to close, so the test file ends with nothing open.
    await Promise.all(
      connections.map(async (c) => {
        if (c.status === 'end') return;
        const ended = once(c, 'end');
        c.disconnect();
        await ended;
      }),
    );
  });

  it('a delivery cut off before its add leaves the key pending, and the redelivery queues the event', async () => {
    const event = smsEvent();
    await expect((await dyingAfterClaim()).accept([event])).rejects.toBeInstanceOf(UnavailableError);
    expect(await redis.get(seenKey(event))).toBe('pending');
    expect(await jobOf(event)).toBeUndefined();

    const redelivery = await (await replica()).accept([event]);
    expect(redelivery).toEqual({ queued: [event], duplicates: [] });
    expect((await jobOf(event))?.data).toEqual(event);
    expect(await eventually(() => redis.get(seenKey(event)), (v) => v === 'done')).toBe('done');
  });

  it('a delivery cut off between its add and its mark: the redelivery is queued again, not answered as a duplicate', async () => {
    /** The state a process killed between its add and its mark leaves: claimed, added, not marked. */
    const cutOffAfterAdd = async (e: InboundEvent) => {
      await expect((await dyingAfterClaim()).accept([e])).rejects.toBeInstanceOf(UnavailableError);
      await queues.inbound.queueFor(orderKeyOf(e)).add(e.type, e, { jobId: jobIdFor(keyOf(e)) });
      expect(await redis.get(seenKey(e))).toBe('pending');
    };
    const api = await replica();

    // The job completed and was removed before the redelivery: queued again (the downstream unique
    // message key absorbs the second copy); a lost mark never turns an event into a "duplicate".
    const processed = smsEvent();
    await cutOffAfterAdd(processed);
    await completeAndRemove(processed);
    expect(await api.accept([processed])).toEqual({ queued: [processed], duplicates: [] });
    expect((await jobOf(processed))?.data).toEqual(processed);
    await queues.inbound.obliterate({ force: true });

    // The job still exists: adding it again is a no-op, the queue holds it once.
    const waiting = smsEvent();
    await cutOffAfterAdd(waiting);
    expect(await api.accept([waiting])).toEqual({ queued: [waiting], duplicates: [] });
    expect(await queues.inbound.count()).toBe(1);
    expect(await eventually(() => redis.get(seenKey(waiting)), (v) => v === 'done')).toBe('done');
    await queues.inbound.obliterate({ force: true });
  });

  it('a redelivery after the job completed and was removed is a duplicate, as is one an older version marked', async () => {
    const api = await replica();
    const event = smsEvent();
    expect(await api.accept([event])).toEqual({ queued: [event], duplicates: [] });
    expect(await eventually(() => redis.get(seenKey(event)), (v) => v === 'done')).toBe('done');
    // The marker lives for 8 days from the add.
    expect(await redis.ttl(seenKey(event))).toBeGreaterThan(8 * 24 * 3600 - 60);
    await completeAndRemove(event);
    expect(await api.accept([event])).toEqual({ queued: [], duplicates: [event] });
    expect(await queues.inbound.count()).toBe(0);

    // Versions before the pending/done marker wrote the acceptance time once the add was done.
    const older = smsEvent();
    await redis.set(seenKey(older), String(Date.now()), 'EX', 3600);
    expect(await api.accept([older])).toEqual({ queued: [], duplicates: [older] });
    expect(await jobOf(older)).toBeUndefined();
  });

  it('concurrent identical deliveries to three api processes queue the event once', async () => {
    const apis = [await replica(), await replica(), await replica()];
    const event = smsEvent();
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => apis[i % 3]!.accept([event])));
    // Every delivery is answered (none is refused or lost), and the queue holds one job.
    expect(results).toHaveLength(12);
    expect(await queues.inbound.count()).toBe(1);
    expect((await jobOf(event))?.data).toEqual(event);
    expect(await eventually(() => redis.get(seenKey(event)), (v) => v === 'done')).toBe('done');

    await completeAndRemove(event);
    const late = await Promise.all(apis.map((api) => api.accept([event])));
    expect(late).toEqual(apis.map(() => ({ queued: [], duplicates: [event] })));
    expect(await queues.inbound.count()).toBe(0);
  });
});

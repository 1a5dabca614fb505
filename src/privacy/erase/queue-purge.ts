/**
 * The erasure step that reaches into Redis: BullMQ keeps job payloads (a customer's number, their
 * message text, an agent's reply) and `failedReason`s for up to 30 days, in every queue Rapport
 * runs (the five of src/queue/names.ts with every inbound partition, the whatsapp-web send queue,
 * the maintenance queue). Every job under the queue prefix whose data, id, failure text, stack trace
 * or return value contains one of the erasure's needles (phone numbers in every spelling, PSIDs,
 * emails, identity keys, customer ids) is removed, in every state but `active` — completed, failed
 * (dead letters), delayed, waiting, prioritized, paused. A job that is active while the erasure runs
 * is waited for (briefly) and removed once it has finished. The intake's duplicate guard keys
 * (`<prefix>:seen:<message key>`; whatsapp-web keys embed the number) are deleted too, and so are
 * the entries of each queue's event stream that name the customer (job ids, failure texts).
 *
 * Queues are found by their `:meta` key, so a queue added later is covered without a change here.
 */
import { Queue, type Job } from 'bullmq';
import { scanKeys, type RedisClient } from '../../queue/connection';

export interface QueuePurgeOptions {
  redis: RedisClient;
  /** QUEUE_PREFIX. */
  prefix: string;
  /** Strings that identify the erased customer; a job containing any is removed. */
  needles: string[];
  /** How long to wait for active jobs that match to finish. @defaultValue 5000 */
  activeWaitMs?: number;
}

export interface QueuePurgeResult {
  removed: number;
  /** Jobs still active (being processed) when the wait ran out; a resumed erasure retries them. */
  active: number;
  seenKeys: number;
}

const STATES = [
  'completed',
  'failed',
  'delayed',
  'waiting',
  'prioritized',
  'paused',
  'waiting-children',
] as const;
const PAGE = 500;

/** Every BullMQ queue under `prefix` (also a cluster's per-queue `{prefix-name}` hash tags): [key prefix, name]. */
export async function queuesUnder(redis: RedisClient, prefix: string): Promise<[string, string][]> {
  const bare = prefix.replace(/[{}]/g, '');
  const keys = [
    ...(await scanKeys(redis, `${prefix}:*:meta`)),
    ...(await scanKeys(redis, `{${bare}-*}:*:meta`)),
  ];
  const out = new Map<string, [string, string]>();
  for (const key of keys) {
    const parts = key.split(':');
    if (parts.length === 3 && parts[1]) out.set(key, [parts[0]!, parts[1]]);
  }
  return [...out.values()];
}

function jobText(job: Job): string {
  return JSON.stringify([job.id, job.name, job.data, job.failedReason, job.stacktrace, job.returnvalue]);
}

/** Matching jobs of one queue, in the given states. */
async function matching(queue: Queue, states: readonly string[], needles: string[]): Promise<Job[]> {
  const found: Job[] = [];
  for (const state of states) {
    for (let start = 0; ; start += PAGE) {
      const page = (await queue.getJobs([state as 'completed'], start, start + PAGE - 1)).filter(Boolean);
      for (const job of page) if (needles.some((n) => jobText(job).includes(n))) found.push(job);
      if (page.length < PAGE) break;
    }
  }
  return found;
}

/** Removes what can be removed; returns how many jobs were removed and how many were active. */
async function purgeQueue(queue: Queue, needles: string[], activeWaitMs: number): Promise<[number, number]> {
  let removed = 0;
  for (const job of await matching(queue, STATES, needles)) {
    if (
      (await job.remove().then(
        () => true,
        () => false,
      )) ||
      !(await job.isActive())
    )
      removed++;
  }
  const deadline = Date.now() + activeWaitMs;
  let active = await matching(queue, ['active'], needles);
  while (active.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    for (const job of active)
      if (
        await job.remove().then(
          () => true,
          () => false,
        )
      )
        removed++;
    active = await matching(queue, ['active'], needles);
  }
  return [removed, active.length];
}

/** Deletes the entries of a queue's event stream that name the customer (`failed` events carry failedReason). */
async function purgeEvents(redis: RedisClient, key: string, needles: string[]): Promise<number> {
  let deleted = 0;
  let start = '-';
  for (;;) {
    const page = await redis.xrange(key, start, '+', 'COUNT', 1000);
    const hits = page.filter(([, fields]) => needles.some((n) => fields.some((f) => f.includes(n))));
    if (hits.length > 0) deleted += await redis.xdel(key, ...hits.map(([id]) => id));
    if (page.length < 1000) return deleted;
    start = `(${page[page.length - 1]![0]}`;
  }
}

export async function purgeQueues(o: QueuePurgeOptions): Promise<QueuePurgeResult> {
  const needles = o.needles.filter((n) => n.length >= 6);
  const result: QueuePurgeResult = { removed: 0, active: 0, seenKeys: 0 };
  if (needles.length === 0) return result;
  for (const [keyPrefix, name] of await queuesUnder(o.redis, o.prefix)) {
    const queue = new Queue(name, { connection: o.redis, prefix: keyPrefix });
    try {
      const [removed, active] = await purgeQueue(queue, needles, o.activeWaitMs ?? 5_000);
      result.removed += removed;
      result.active += active;
      await purgeEvents(o.redis, `${keyPrefix}:${name}:events`, needles);
    } finally {
      await queue.close();
    }
  }
  for (const key of await scanKeys(o.redis, `${o.prefix}:seen:*`)) {
    if (needles.some((n) => key.includes(n))) result.seenKeys += await o.redis.del(key);
  }
  return result;
}

/**
 * Partitioned queues: per-key order in open-source BullMQ.
 *
 * BullMQ's per-group ordering is a paid feature, and a plain queue with concurrency > 1 (or several
 * worker processes) finishes jobs out of order. So a stream that must stay in order per key (the
 * messages of one customer) is split into N queues, `<name>-0 … <name>-(N-1)`, and every event of one
 * key goes to the same partition (a stable hash of the key). Each partition has a *global*
 * concurrency of 1 (`queue.setGlobalConcurrency(1)`): across every worker process at most one job of
 * a partition runs at a time, so a partition is processed strictly in the order it was queued, and N
 * partitions run in parallel. Adding worker processes adds standby consumers, not disorder.
 *
 * A retryable failure must not let the next job of the partition overtake the failed one, so the
 * ordered worker (see ordered-worker.ts) does not use BullMQ's delayed retry: it rate-limits the
 * partition for the backoff and puts the job back at the head of the wait list.
 *
 * Keys are chosen so every spelling of one sender lands together: for phone numbers the last eight
 * digits (the `whatsapp:` prefix, `+`, a country code with or without WhatsApp's extra digits — BR's
 * ninth digit is inserted before the last eight — all leave them unchanged).
 */
import { createHash } from 'node:crypto';
import { Queue, type Job, type JobState } from 'bullmq';
import type { RedisClient } from './connection';
import type { Address } from '../canonical';
import type { Logger } from '../logger';
import { DEFAULT_JOB_OPTIONS, prefixFor, type QueueOptions } from './options';
import type { QueueName } from './names';

/** Stable partition of a key in [0, partitions). */
export function partitionOf(key: string, partitions: number): number {
  const digest = createHash('sha1').update(key).digest();
  return digest.readUInt32BE(0) % partitions;
}

/** The ordering key of a sender: every spelling of one phone number gives the same key. */
export function senderOrderKey(address: Address): string {
  if (address.kind === 'psid') return `psid:${address.pageId}:${address.psid}`;
  const digits = address.e164.replace(/@.*$/, '').replace(/\D/g, '');
  return `phone:${digits.slice(-8)}`;
}

export interface PartitionedQueue {
  readonly name: QueueName;
  readonly partitions: Queue[];
  queueFor(orderKey: string): Queue;
  /** Finds a job by id in whichever partition holds it. */
  getJob(id: string): Promise<Job | undefined>;
  getJobs(states: JobState[]): Promise<Job[]>;
  /** Dead letters of every partition. */
  getFailed(): Promise<Job[]>;
  /** Waiting + delayed + active + prioritized jobs over all partitions. */
  count(): Promise<number>;
  getJobCounts(...states: JobState[]): Promise<Record<string, number>>;
  obliterate(opts?: { force?: boolean }): Promise<void>;
  close(): Promise<void>;
}

export function partitionName(name: QueueName, index: number): string {
  return `${name}-${index}`;
}

export function createPartitionedQueue(
  name: QueueName,
  count: number,
  connection: RedisClient,
  options: QueueOptions,
  log?: Logger,
): PartitionedQueue {
  const partitions = Array.from({ length: count }, (_, i) => {
    const queueName = partitionName(name, i);
    const queue = new Queue(queueName, {
      connection,
      prefix: prefixFor(queueName, options.prefix, connection),
      defaultJobOptions: DEFAULT_JOB_OPTIONS,
    });
    queue.on('error', (err) => log?.debug({ err, queue: queue.name }, 'queue connection error'));
    return queue;
  });
  return {
    name,
    partitions,
    queueFor(orderKey) {
      return partitions[partitionOf(orderKey, count)]!;
    },
    async getJob(id) {
      for (const q of partitions) {
        const job = await q.getJob(id);
        if (job) return job;
      }
      return undefined;
    },
    async getJobs(states) {
      return (await Promise.all(partitions.map((q) => q.getJobs(states)))).flat();
    },
    async getFailed() {
      return (await Promise.all(partitions.map((q) => q.getFailed()))).flat();
    },
    async count() {
      return (await Promise.all(partitions.map((q) => q.count()))).reduce((a, b) => a + b, 0);
    },
    async getJobCounts(...states) {
      const total: Record<string, number> = {};
      for (const counts of await Promise.all(partitions.map((q) => q.getJobCounts(...states)))) {
        for (const [k, v] of Object.entries(counts)) total[k] = (total[k] ?? 0) + v;
      }
      return total;
    },
    async obliterate(opts) {
      await Promise.all(partitions.map((q) => q.obliterate(opts)));
    },
    async close() {
      await Promise.all(partitions.map((q) => q.close()));
    },
  };
}

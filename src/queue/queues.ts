/**
 * BullMQ queues with Rapport's defaults: bounded retries with exponential backoff, bounded retention
 * (completed jobs trimmed; failed jobs kept for inspection and replay as dead letters).
 *
 * Redis Cluster: every key of one queue must hash to one slot. BullMQ keys look like
 * `${prefix}:${queue}:...`, so a prefix of `{rapport}` puts every queue in one slot; pass
 * `QUEUE_PREFIX=rapport` and set `clusterHashTags` to get `{rapport-inbound}`-style prefixes, one tag
 * per queue, which spreads queues across slots.
 */
import { Queue, type DefaultJobOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger';
import { ALL_QUEUES, type QueueName } from './names';

export interface QueueOptions {
  /** Key prefix for every queue. @defaultValue `'rapport'` */
  prefix: string;
  /** Give each queue its own `{prefix-queue}` hash tag (Redis Cluster). @defaultValue `false` */
  clusterHashTags?: boolean;
}

export const DEFAULT_JOB_OPTIONS: DefaultJobOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 1_000, jitter: 0.5 },
  removeOnComplete: { age: 24 * 3600, count: 10_000 },
  removeOnFail: { age: 30 * 24 * 3600, count: 50_000 },
};

/** The BullMQ prefix for one queue, with a per-queue hash tag when asked. */
export function prefixFor(name: QueueName, options: QueueOptions): string {
  return options.clusterHashTags ? `{${options.prefix}-${name}}` : options.prefix;
}

export type Queues = Record<QueueName, Queue>;

export function createQueues(connection: Redis, options: QueueOptions, log?: Logger): Queues {
  const entries = ALL_QUEUES.map((name) => {
    const queue = new Queue(name, {
      connection,
      prefix: prefixFor(name, options),
      defaultJobOptions: DEFAULT_JOB_OPTIONS,
    });
    // Connection errors surface here while Redis is down; /readyz reports them, so keep the log quiet.
    queue.on('error', (err) => log?.debug({ err, queue: name }, 'queue connection error'));
    return [name, queue];
  });
  return Object.fromEntries(entries) as Queues;
}

export async function closeQueues(queues: Queues): Promise<void> {
  await Promise.all(Object.values(queues).map((q) => q.close()));
}

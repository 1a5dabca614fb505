/** Queue options and job defaults shared by plain and partitioned queues. */
import type { DefaultJobOptions } from 'bullmq';
import { Cluster } from 'ioredis';
import type { RedisClient } from './connection';

export interface QueueOptions {
  /** Key prefix for every queue. @defaultValue `'rapport'` */
  prefix: string;
  /** Partitions of the `inbound` queue (per-sender order, see partitions.ts). @defaultValue 8 */
  inboundPartitions?: number;
}

export const DEFAULT_JOB_OPTIONS: DefaultJobOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 1_000, jitter: 0.5 },
  removeOnComplete: { age: 24 * 3600, count: 10_000 },
  removeOnFail: { age: 30 * 24 * 3600, count: 50_000 },
};

/**
 * The BullMQ prefix of one queue (or partition). On one Redis server it is the configured prefix.
 * On a Redis Cluster every key of a queue must hash to one slot (BullMQ's scripts touch several
 * keys), and different queues should land on different slots so they spread over the masters: so
 * each queue gets its own hash tag, `{rapport-inbound-3}`. Braces already in the configured prefix
 * are dropped there (a tag inside a tag would put every queue in one slot).
 */
export function prefixFor(queueName: string, prefix: string, connection: RedisClient): string {
  return connection instanceof Cluster ? `{${prefix.replace(/[{}]/g, '')}-${queueName}}` : prefix;
}

/** Queue options and job defaults shared by plain and partitioned queues. */
import type { DefaultJobOptions } from 'bullmq';
import type { QueueName } from './names';

export interface QueueOptions {
  /** Key prefix for every queue. @defaultValue `'rapport'` */
  prefix: string;
  /** Give each queue its own `{prefix-queue}` hash tag (Redis Cluster). @defaultValue `false` */
  clusterHashTags?: boolean;
  /** Partitions of the `inbound` queue (per-sender order, see partitions.ts). @defaultValue 8 */
  inboundPartitions?: number;
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

/**
 * BullMQ queues with Rapport's defaults: bounded retries with exponential backoff, bounded retention
 * (completed jobs trimmed; failed jobs kept for inspection and replay as dead letters).
 *
 * Redis Cluster: on a cluster connection every queue (and every inbound partition) gets its own hash
 * tag, `{rapport-inbound-3}` (see `prefixFor`), so each queue's keys share a slot and the queues
 * spread across the masters.
 */
import { Queue } from 'bullmq';
import type { RedisClient } from './connection';
import type { Logger } from '../logger';
import { ALL_QUEUES, QueueName } from './names';
import { DEFAULT_JOB_OPTIONS, prefixFor, type QueueOptions } from './options';
import { createPartitionedQueue, type PartitionedQueue } from './partitions';

export { DEFAULT_JOB_OPTIONS, prefixFor, type QueueOptions } from './options';

type PlainQueueName = Exclude<QueueName, 'inbound'>;

/** Every queue; `inbound` is partitioned (per-sender order), the others are plain queues. */
export type Queues = Record<PlainQueueName, Queue> & { inbound: PartitionedQueue };

export function createQueues(connection: RedisClient, options: QueueOptions, log?: Logger): Queues {
  const plain = ALL_QUEUES.filter((name): name is PlainQueueName => name !== QueueName.inbound).map(
    (name) => {
      const queue = new Queue(name, {
        connection,
        prefix: prefixFor(name, options.prefix, connection),
        defaultJobOptions: DEFAULT_JOB_OPTIONS,
      });
      // Connection errors surface here while Redis is down; /readyz reports them, so keep the log quiet.
      queue.on('error', (err) => log?.debug({ err, queue: name }, 'queue connection error'));
      return [name, queue] as const;
    },
  );
  const inbound = createPartitionedQueue(
    QueueName.inbound,
    options.inboundPartitions ?? 8,
    connection,
    options,
    log,
  );
  return { ...(Object.fromEntries(plain) as Record<PlainQueueName, Queue>), inbound };
}

export async function closeQueues(queues: Queues): Promise<void> {
  await Promise.all(Object.values(queues).map((q: { close(): Promise<void> }) => q.close()));
}

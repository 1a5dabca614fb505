/**
 * BullMQ queues with Rapport's defaults: bounded retries with exponential backoff, bounded retention
 * (completed jobs trimmed; failed jobs kept for inspection and replay as dead letters).
 *
 * Redis Cluster: every key of one queue must hash to one slot. BullMQ keys look like
 * `${prefix}:${queue}:...`, so a prefix of `{rapport}` puts every queue in one slot; pass
 * `QUEUE_PREFIX=rapport` and set `clusterHashTags` to get `{rapport-inbound}`-style prefixes, one tag
 * per queue, which spreads queues across slots.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger';
import { ALL_QUEUES, QueueName } from './names';
import { DEFAULT_JOB_OPTIONS, prefixFor, type QueueOptions } from './options';
import { createPartitionedQueue, type PartitionedQueue } from './partitions';

export { DEFAULT_JOB_OPTIONS, prefixFor, type QueueOptions } from './options';

type PlainQueueName = Exclude<QueueName, 'inbound'>;

/** Every queue; `inbound` is partitioned (per-sender order), the others are plain queues. */
export type Queues = Record<PlainQueueName, Queue> & { inbound: PartitionedQueue };

export function createQueues(connection: Redis, options: QueueOptions, log?: Logger): Queues {
  const plain = ALL_QUEUES.filter((name): name is PlainQueueName => name !== QueueName.inbound).map(
    (name) => {
      const queue = new Queue(name, {
        connection,
        prefix: prefixFor(name, options),
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

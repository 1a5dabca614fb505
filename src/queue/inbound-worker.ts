/**
 * The `inbound` queue consumers: one ordered worker per partition (see partitions.ts), so each
 * sender's events are handled one at a time in the order they were queued, with any number of
 * worker processes. Each event goes to the identity processor (resolve the customer, store the
 * message once, apply statuses) and then to the router (owner, acknowledgement, Slack post, SLA).
 *
 * The router step runs for every delivery of a message, not only the first: a job that failed after
 * storing the message is retried, finds it stored, and still routes it. Every router step is
 * idempotent, so nothing is posted or sent twice.
 */
import type { Worker } from 'bullmq';
import type { InboundEvent } from '../canonical';
import type { InboundProcessor } from '../identity/inbound-processor';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import { QueueName } from './names';
import type { PartitionedQueue } from './partitions';
import { createOrderedWorkers } from './workers';

export interface InboundWorkerOptions {
  queue: PartitionedQueue;
  redisUrl: string;
  prefix: string;
  processor: InboundProcessor;
  log: Logger;
  metrics: Metrics;
}

export function createInboundWorkers({
  queue,
  redisUrl,
  prefix,
  processor,
  log,
  metrics,
}: InboundWorkerOptions): Worker<InboundEvent>[] {
  return createOrderedWorkers<InboundEvent>({
    queue,
    label: QueueName.inbound,
    prefix,
    redisUrl,
    log,
    metrics,
    handler: (job) => processor.process(job.data),
  });
}

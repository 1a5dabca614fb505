/**
 * The `inbound` queue consumers: one ordered worker per partition (see partitions.ts), so each
 * sender's events are handled one at a time in the order they were queued, with any number of
 * worker processes. Each event goes to the identity processor (resolve the customer, store the
 * message once, apply statuses) and then to the router (owner, acknowledgement, Slack post, SLA).
 *
 * The router step runs for every delivery of a message, not only the first: a job that failed after
 * storing the message is retried, finds it stored, and still routes it. Every router step is
 * idempotent, so nothing is posted or sent twice.
 *
 * A job queued before its customer was erased (a dead letter retried from the dashboard, say) is
 * not processed: it would recreate the customer. Only jobs older than a minute are checked
 * (`isErased`, a database lookup), so fresh messages pay nothing; its data is replaced by a marker.
 */
import type { Job, Worker } from 'bullmq';
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
  /** Whether a job belongs to a customer erased since it was queued (ErasureService.isErasedJob). */
  isErased?: (job: Job<InboundEvent>) => Promise<boolean>;
}

/** Jobs younger than this are not checked against erasures (see module comment). */
const ERASURE_CHECK_AGE_MS = 60_000;

export function createInboundWorkers({
  queue,
  redisUrl,
  prefix,
  processor,
  log,
  metrics,
  isErased,
}: InboundWorkerOptions): Worker<InboundEvent>[] {
  return createOrderedWorkers<InboundEvent>({
    queue,
    label: QueueName.inbound,
    prefix,
    redisUrl,
    log,
    metrics,
    handler: async (job) => {
      if (isErased && Date.now() - job.timestamp > ERASURE_CHECK_AGE_MS && (await isErased(job))) {
        log.info({ jobId: job.id }, 'job of an erased customer dropped');
        await job.updateData({ type: 'erased' } as unknown as InboundEvent);
        return { dropped: 'erased' };
      }
      // Any earlier run (failed, stalled, deferred) may have posted to Slack: its flush looks first.
      return processor.process(job.data, { retried: job.attemptsStarted > 1 || job.stalledCounter > 0 });
    },
  });
}

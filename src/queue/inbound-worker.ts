/**
 * The `inbound` queue consumer: hands each canonical event to the identity processor (resolve the
 * customer, store the message idempotently, apply statuses).
 *
 * Errors: AppErrors that are not retryable (e.g. a sender address that cannot be a phone number)
 * become BullMQ's UnrecoverableError, so a poison job fails once and stays in the failed set as a
 * dead letter; everything else (database down) retries with the queue's bounded backoff.
 *
 * Ordering: this worker runs with concurrency 1, so one worker process handles events in the order
 * they were queued. Order across several worker processes (per-sender partitions) is not done yet.
 */
import { UnrecoverableError, Worker } from 'bullmq';
import type { InboundEvent } from '../canonical';
import { isAppError } from '../errors';
import type { InboundProcessor } from '../identity/inbound-processor';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import { createRedisConnection } from './connection';
import { QueueName } from './names';
import { prefixFor, type QueueOptions } from './queues';

export interface InboundWorkerOptions extends QueueOptions {
  redisUrl: string;
  processor: InboundProcessor;
  log: Logger;
  metrics: Metrics;
}

export function createInboundWorker({
  redisUrl,
  processor,
  log,
  metrics,
  ...queueOptions
}: InboundWorkerOptions): Worker {
  const connection = createRedisConnection(redisUrl, 'worker');
  const worker = new Worker<InboundEvent>(
    QueueName.inbound,
    async (job) => {
      try {
        return await processor.process(job.data);
      } catch (err) {
        if (isAppError(err) && !err.retryable) throw new UnrecoverableError(`${err.code}: ${err.message}`);
        throw err;
      }
    },
    { connection, prefix: prefixFor(QueueName.inbound, queueOptions), concurrency: 1 },
  );
  worker.on('completed', () => metrics.jobs.inc({ queue: QueueName.inbound, outcome: 'completed' }));
  worker.on('failed', (job, err) => {
    const final = !job || err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    metrics.jobs.inc({ queue: QueueName.inbound, outcome: final ? 'failed' : 'retried' });
    log.warn(
      {
        jobId: job?.id,
        attemptsMade: job?.attemptsMade,
        final,
        err: { message: err.message, name: err.name },
      },
      'inbound job failed',
    );
  });
  worker.on('error', (err) => log.debug({ err }, 'inbound worker connection error'));
  worker.on('closed', () => connection.disconnect());
  return worker;
}

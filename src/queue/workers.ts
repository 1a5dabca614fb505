/**
 * Queue consumers with Rapport's error policy, for every queue:
 * - a non-retryable AppError (bad input, a permanent provider refusal) becomes BullMQ's
 *   UnrecoverableError: the job fails once and stays in the failed set as a dead letter;
 * - anything else retries with the queue's bounded backoff;
 * - `DeferError` postpones the job without spending an attempt (a Slack channel that asked us to
 *   wait, a per-customer lock held by another worker);
 * - a job whose worker died under it is run again, up to MAX_STALLED_RUNS times (not BullMQ's once).
 *
 * `createOrderedWorkers` consumes a partitioned queue (partitions.ts) strictly in order: one job per
 * partition at a time across all processes, and a retryable failure keeps the job at the head of its
 * partition (the partition is rate-limited for the backoff) instead of letting later jobs pass it.
 */
import { DelayedError, UnrecoverableError, Worker, type Job, type Processor } from 'bullmq';
import { DeferError, isAppError } from '../errors';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import { createRedisConnection, type RedisClient } from './connection';
import { prefixFor } from './options';
import type { PartitionedQueue } from './partitions';

// Handlers and tests throw it from here; it lives with the other error types.
export { DeferError } from '../errors';

/**
 * How often a job may stall — its worker killed (or cut off from Redis past its lock) while it ran —
 * before BullMQ gives it up as a dead letter. BullMQ's default, 1, is meant for a job that crashes its
 * worker; here a second kill or restart that happens to catch the same job would drop it silently:
 * an agent's reply never sent and nobody told, a customer's message never posted. Every handler is
 * idempotent (keyed upserts, `sending` → uncertain), so running a stalled job again is safe; a job
 * that really kills its worker still ends in the dead letters, after this many restarts.
 */
export const MAX_STALLED_RUNS = 10;

/** BullMQ's stall detection, for tests that kill a worker: defaults are BullMQ's (30 s each). */
export interface StallOptions {
  /** How long a job's lock lasts without its worker renewing it. */
  lockDurationMs?: number;
  /** How often a worker looks for stalled jobs. */
  stalledIntervalMs?: number;
}

function stallSettings(o: StallOptions = {}) {
  return {
    maxStalledCount: MAX_STALLED_RUNS,
    ...(o.lockDurationMs ? { lockDuration: o.lockDurationMs } : {}),
    ...(o.stalledIntervalMs ? { stalledInterval: o.stalledIntervalMs } : {}),
  };
}

export interface QueueWorkerOptions<T> {
  /** BullMQ queue name (a partition's name for partitioned queues). */
  queueName: string;
  /** Name used in logs and metrics. */
  label: string;
  prefix: string;
  redisUrl: string;
  concurrency?: number;
  handler: (job: Job<T>) => Promise<unknown>;
  log: Logger;
  metrics: Metrics;
  stall?: StallOptions;
}

function backoffMs(attempt: number): number {
  const base = Math.min(1_000 * 2 ** Math.max(0, attempt - 1), 60_000);
  return Math.round(base / 2 + Math.random() * (base / 2));
}

function observe<T>(worker: Worker<T>, label: string, log: Logger, metrics: Metrics): Worker<T> {
  worker.on('completed', () => metrics.jobs.inc({ queue: label, outcome: 'completed' }));
  worker.on('failed', (job, err) => {
    const final = !job || err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    metrics.jobs.inc({ queue: label, outcome: final ? 'failed' : 'retried' });
    log[final ? 'warn' : 'info'](
      {
        queue: label,
        jobId: job?.id,
        attemptsMade: job?.attemptsMade,
        final,
        err: { message: err.message, name: err.name },
      },
      final ? 'job failed (dead letter)' : 'job failed; will retry',
    );
  });
  worker.on('error', (err) => log.debug({ err, queue: label }, 'worker connection error'));
  return worker;
}

/** A worker for an unordered queue (or one whose handler orders its own work). */
export function createQueueWorker<T>(o: QueueWorkerOptions<T>): Worker<T> {
  const connection = createRedisConnection(o.redisUrl, 'worker');
  const processor: Processor<T> = async (job, token) => {
    try {
      return await o.handler(job);
    } catch (err) {
      if (err instanceof DeferError) {
        await job.moveToDelayed(Date.now() + err.delayMs, token);
        throw new DelayedError(err.message);
      }
      if (isAppError(err) && !err.retryable) throw new UnrecoverableError(`${err.code}: ${err.message}`);
      throw err;
    }
  };
  const worker = new Worker<T>(o.queueName, processor, {
    connection,
    prefix: prefixFor(o.queueName, o.prefix, connection),
    concurrency: o.concurrency ?? 1,
    ...stallSettings(o.stall),
  });
  worker.on('closed', () => connection.disconnect());
  return observe(worker, o.label, o.log, o.metrics);
}

export interface OrderedWorkersOptions<T> extends Omit<QueueWorkerOptions<T>, 'queueName' | 'concurrency'> {
  queue: PartitionedQueue;
  /** Attempts before a job is given up as a dead letter. @defaultValue 8 */
  maxAttempts?: number;
}

/**
 * How many of the job's runs were deferrals (`count` one more first). Kept in Redis beside the
 * partition (a day's expiry), since BullMQ's `attemptsStarted` counts every run, deferred or not.
 */
async function deferrals(client: RedisClient, prefix: string, job: Job, count: boolean): Promise<number> {
  const key = `${prefix}:${job.queueName}:deferrals:${job.id ?? ''}`;
  try {
    if (!count) return Number((await client.get(key)) ?? 0);
    const n = await client.incr(key);
    await client.expire(key, 24 * 3600);
    return n;
  } catch {
    // Redis unreachable: the partition pause below fails too and holds the job; count nothing.
    return 0;
  }
}

/** One worker per partition; each partition runs one job at a time across every process, in order. */
export function createOrderedWorkers<T>(o: OrderedWorkersOptions<T>): Worker<T>[] {
  const maxAttempts = o.maxAttempts ?? 8;
  return o.queue.partitions.map((queue) => {
    // Idempotent; every process sets the same value.
    queue
      .setGlobalConcurrency(1)
      .catch((err: unknown) => o.log.warn({ err, queue: queue.name }, 'setGlobalConcurrency failed'));
    const connection = createRedisConnection(o.redisUrl, 'worker');
    const processor: Processor<T> = async (job) => {
      try {
        return await o.handler(job);
      } catch (err) {
        if (isAppError(err) && !err.retryable) throw new UnrecoverableError(`${err.code}: ${err.message}`);
        if (err instanceof UnrecoverableError) throw err;
        // A deferral only waited: it is counted apart and does not use up an attempt.
        const deferred = await deferrals(
          connection,
          prefixFor(queue.name, o.prefix, connection),
          job,
          err instanceof DeferError,
        );
        const attempts = job.attemptsStarted - deferred;
        if (!(err instanceof DeferError) && attempts >= maxAttempts) {
          throw new UnrecoverableError(
            `gave up after ${attempts} attempts: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        const delay = err instanceof DeferError ? err.delayMs : backoffMs(job.attemptsStarted);
        o.log.info(
          {
            queue: queue.name,
            jobId: job.id,
            attempt: job.attemptsStarted,
            retryInMs: delay,
            err: { message: err instanceof Error ? err.message : String(err) },
          },
          'ordered job will retry at the head of its partition',
        );
        o.metrics.jobs.inc({ queue: o.label, outcome: 'retried' });
        // Pause this partition only, and put the job back at its head. Any other error thrown from
        // here would make BullMQ retry the job from the delayed set, letting the partition's next
        // job overtake it — so if Redis cannot record the pause (an outage, a cluster failover: seen
        // as a reordered message in the failover test), hold the partition here for the delay
        // instead, and still hand the job back to the head of the wait list.
        try {
          await queue.rateLimit(delay);
        } catch (limitErr) {
          o.log.warn(
            { queue: queue.name, jobId: job.id, err: { message: (limitErr as Error).message } },
            'could not pause the partition in Redis; holding it in this worker',
          );
          await new Promise((r) => setTimeout(r, delay));
        }
        throw Worker.RateLimitError();
      }
    };
    const worker = new Worker<T>(queue.name, processor, {
      connection,
      prefix: prefixFor(queue.name, o.prefix, connection),
      concurrency: 1,
      // The manual rate limit above needs a limiter to be configured; this one never binds.
      limiter: { max: 1_000_000, duration: 1_000 },
      ...stallSettings(o.stall),
    });
    worker.on('closed', () => connection.disconnect());
    return observe(worker, o.label, o.log, o.metrics);
  });
}

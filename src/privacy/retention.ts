/**
 * Message-body retention: with MESSAGE_RETENTION_DAYS = N > 0, the bodies of messages older than N
 * days are blanked (`text` removed, `parts` emptied), together with Rapport's other copies of them:
 * the Slack outbox's post text and the send outbox's text/media. The records themselves (who, when,
 * which channel, delivery status) stay. Slack's own copy follows the workspace's retention settings.
 *
 * It runs as a BullMQ Job Scheduler (`upsertJobScheduler`) on the `maintenance` queue: one job per
 * period however many worker processes run, consumed by whichever is free. Turning retention off
 * removes the scheduler. The same queue resumes unfinished erasures every minute when given the
 * erasure service (src/privacy/erase/).
 *
 * Purging works in batches of ids (find, then updateMany by id), so each run's work is bounded per
 * round trip and a concurrent writer (FerretDB v1 lost updates) at worst leaves a body for the next
 * run, which finds it again: the filter selects bodies still present, not a time window.
 */
import { Queue, Worker, type Job } from 'bullmq';
import type { Types } from 'mongoose';
import { Counter, type Registry } from 'prom-client';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { createRedisConnection } from '../queue/connection';
import { DEFAULT_JOB_OPTIONS, prefixFor } from '../queue/options';
import type { MediaStore } from '../media/store';
import type { ErasureService } from './erase';
import type { AppModels } from './export';

export const MAINTENANCE_QUEUE = 'maintenance';
export const RETENTION_SCHEDULER = 'retention';
export const ERASURE_RESUME_SCHEDULER = 'erasure-resume';
export const PURGED_METRIC = 'rapport_retention_purged_messages_total';

export interface RetentionOptions {
  config: Pick<Config, 'retention'>;
  models: AppModels;
  redisUrl: string;
  /** QUEUE_PREFIX. */
  prefix: string;
  /** The app's metrics registry. */
  registry: Registry;
  log: Logger;
  /** How often the retention job runs. @defaultValue 1 hour */
  everyMs?: number;
  /** Resume unfinished erasures on this queue (every `erasureResumeEveryMs`). */
  erasures?: ErasureService;
  /** @defaultValue 60000 */
  erasureResumeEveryMs?: number;
  /** Documents per update. @defaultValue 500 */
  batchSize?: number;
  /** Customers' files (GridFS), deleted after `days` (MEDIA_RETENTION_DAYS). */
  media?: MediaRetention;
}

export interface MediaRetention {
  store: Pick<MediaStore, 'deleteOlderThan'>;
  /** Absent: files are kept. */
  days?: number;
}

export interface RetentionResult {
  cutoff: string | null;
  messages: number;
  agentPosts: number;
  customerSends: number;
  /** Files deleted (absent when file retention is off). */
  files?: number;
}

export interface Retention {
  worker: Worker;
  queue: Queue;
  /** Purges what is older than the period at `now`; the scheduled job calls it with the current time. */
  runOnce(now?: Date): Promise<RetentionResult>;
  /** Resolves once the schedulers are set up (or removed, when retention is off). */
  ready: Promise<void>;
  close(): Promise<void>;
}

const DAY_MS = 86_400_000;

function purgedCounter(registry: Registry): Counter<'collection'> {
  const existing = registry.getSingleMetric(PURGED_METRIC);
  if (existing) return existing as Counter<'collection'>;
  return new Counter({
    name: PURGED_METRIC,
    help: 'Message bodies blanked (messages, agent_posts, customer_sends) and files deleted (media) by the retention job',
    labelNames: ['collection'],
    registers: [registry],
  });
}

export interface RetentionPurgeOptions {
  config: Pick<Config, 'retention'>;
  models: AppModels;
  /** The app's metrics registry. */
  registry: Registry;
  log: Logger;
  /** Documents per update. @defaultValue 500 */
  batchSize?: number;
  media?: MediaRetention;
}

/** The purge itself, without a queue (startRetention schedules it; a one-off run can call it). */
export function createRetentionPurge(o: RetentionPurgeOptions): {
  runOnce(now?: Date): Promise<RetentionResult>;
} {
  const { models, log } = o;
  const batchSize = o.batchSize ?? 500;
  const days = o.config.retention.messageDays;
  const purged = purgedCounter(o.registry);

  /** Runs `find → updateMany by id` until nothing matches; returns how many were changed. */
  async function inBatches(
    find: () => Promise<{ _id: Types.ObjectId }[]>,
    update: (ids: Types.ObjectId[]) => Promise<{ modifiedCount: number }>,
  ): Promise<number> {
    let total = 0;
    for (let round = 0; round < 100_000; round++) {
      const batch = await find();
      if (batch.length === 0) break;
      const { modifiedCount } = await update(batch.map((d) => d._id));
      total += modifiedCount;
      if (batch.length < batchSize) break;
    }
    return total;
  }

  /** Files older than MEDIA_RETENTION_DAYS; undefined when files are kept. */
  async function purgeFiles(now: Date): Promise<{ files?: number }> {
    const fileDays = o.media?.days;
    if (!o.media || !fileDays) return {};
    const files = await o.media.store.deleteOlderThan(new Date(now.getTime() - fileDays * DAY_MS));
    purged.inc({ collection: 'media' }, files);
    if (files > 0) log.info({ files, days: fileDays }, 'retention deleted files');
    return { files };
  }

  async function runOnce(now = new Date()): Promise<RetentionResult> {
    const files = await purgeFiles(now);
    if (!days) return { cutoff: null, messages: 0, agentPosts: 0, customerSends: 0, ...files };
    const cutoff = new Date(now.getTime() - days * DAY_MS);
    const messages = await inBatches(
      () =>
        models.Message.find(
          { sentAt: { $lt: cutoff }, $or: [{ text: { $exists: true } }, { 'parts.0': { $exists: true } }] },
          { _id: 1 },
        )
          .limit(batchSize)
          .lean<{ _id: Types.ObjectId }[]>(),
      (ids) => models.Message.updateMany({ _id: { $in: ids } }, { $set: { parts: [] }, $unset: { text: 1 } }),
    );
    purged.inc({ collection: 'messages' }, messages);
    const agentPosts = await inBatches(
      () =>
        models.AgentPost.find({ createdAt: { $lt: cutoff }, state: 'posted', text: { $ne: '' } }, { _id: 1 })
          .limit(batchSize)
          .lean<{ _id: Types.ObjectId }[]>(),
      (ids) => models.AgentPost.updateMany({ _id: { $in: ids } }, { $set: { text: '' } }),
    );
    purged.inc({ collection: 'agent_posts' }, agentPosts);
    const customerSends = await inBatches(
      () =>
        models.CustomerSend.find(
          {
            createdAt: { $lt: cutoff },
            state: { $in: ['sent', 'failed', 'cancelled'] },
            $or: [{ text: { $exists: true } }, { 'media.0': { $exists: true } }],
          },
          { _id: 1 },
        )
          .limit(batchSize)
          .lean<{ _id: Types.ObjectId }[]>(),
      (ids) =>
        models.CustomerSend.updateMany(
          { _id: { $in: ids } },
          { $set: { media: [] }, $unset: { text: 1, 'template.variables': 1 } },
        ),
    );
    purged.inc({ collection: 'customer_sends' }, customerSends);
    if (messages + agentPosts + customerSends > 0) {
      log.info(
        { cutoff: cutoff.toISOString(), messages, agentPosts, customerSends },
        'retention purged message bodies',
      );
    }
    return { cutoff: cutoff.toISOString(), messages, agentPosts, customerSends, ...files };
  }

  return { runOnce };
}

export function startRetention(o: RetentionOptions): Retention {
  const { log } = o;
  const everyMs = o.everyMs ?? 3_600_000;
  const days = o.config.retention.messageDays || o.media?.days;
  const { runOnce } = createRetentionPurge(o);
  // `maintenance` is this module's own queue (not in names.ts' list of message-carrying queues).
  const queueConnection = createRedisConnection(o.redisUrl, 'worker');
  const prefix = prefixFor(MAINTENANCE_QUEUE, o.prefix, queueConnection);
  const workerConnection = createRedisConnection(o.redisUrl, 'worker');
  const queue = new Queue(MAINTENANCE_QUEUE, {
    connection: queueConnection,
    prefix,
    defaultJobOptions: DEFAULT_JOB_OPTIONS,
  });
  // While Redis is down BullMQ reports connection errors here; /readyz shows the outage.
  queue.on('error', (err) =>
    log.debug({ err, queue: MAINTENANCE_QUEUE }, 'maintenance queue connection error'),
  );

  const worker = new Worker(
    MAINTENANCE_QUEUE,
    async (job: Job) => {
      if (job.name === RETENTION_SCHEDULER) return runOnce(new Date());
      if (job.name === ERASURE_RESUME_SCHEDULER && o.erasures) return o.erasures.resume();
      return undefined;
    },
    { connection: workerConnection, prefix, concurrency: 1 },
  );
  worker.on('failed', (job, err) =>
    log.warn(
      { queue: MAINTENANCE_QUEUE, jobId: job?.id, job: job?.name, err: { message: err.message } },
      'maintenance job failed',
    ),
  );
  worker.on('error', (err) =>
    log.debug({ err, queue: MAINTENANCE_QUEUE }, 'maintenance worker connection error'),
  );

  const keep = { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } };
  const scheduled = (async () => {
    if (days) {
      await queue.upsertJobScheduler(
        RETENTION_SCHEDULER,
        { every: everyMs },
        { name: RETENTION_SCHEDULER, data: {}, opts: keep },
      );
      log.info({ days, everyMs }, 'message retention scheduled');
    } else {
      await queue.removeJobScheduler(RETENTION_SCHEDULER);
    }
    if (o.erasures) {
      await queue.upsertJobScheduler(
        ERASURE_RESUME_SCHEDULER,
        { every: o.erasureResumeEveryMs ?? 60_000 },
        { name: ERASURE_RESUME_SCHEDULER, data: {}, opts: keep },
      );
    } else {
      await queue.removeJobScheduler(ERASURE_RESUME_SCHEDULER);
    }
  })().catch((err: unknown) => log.error({ err }, 'maintenance schedulers could not be set up'));

  return {
    worker,
    queue,
    runOnce,
    ready: scheduled,
    async close() {
      await scheduled;
      await worker.close();
      await queue.close();
      queueConnection.disconnect();
      workerConnection.disconnect();
    },
  };
}

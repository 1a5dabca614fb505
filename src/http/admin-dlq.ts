/**
 * `/api/dead-letters`: failed jobs, kept by BullMQ in each queue's failed set, across every queue
 * including every partition of `inbound` (`inbound-0 … inbound-N-1`).
 *
 *   GET    /dead-letters?queue=&limit=&include=data   newest first; `queue` is a queue or partition name
 *   GET    /dead-letters/:queue/:id                   one dead letter (with its stack trace)
 *   POST   /dead-letters/:queue/:id/replay            put it back on its queue (`job.retry()`)
 *   DELETE /dead-letters/:queue/:id                   drop it for good
 *   POST   /dead-letters/replay?queue=                replay every dead letter (of one queue); returns the count
 *
 * Job data is customer data (phone numbers, message bodies), so it is left out unless the caller
 * asks with `?include=data`. Only jobs in the failed state are touched: replaying or dropping a
 * waiting or active job through this API answers 409. A dead letter of a customer erased since it
 * was queued is never replayed (409 `erased_customer`; the bulk replay skips and counts it): it
 * would recreate the customer. Erasure normally removes those jobs; this guards the ones that failed
 * while the erasure ran.
 */
import { Router, type Request } from 'express';
import type { Job, Queue } from 'bullmq';
import { z } from 'zod';
import { AppError, ConflictError, NotFoundError, PayloadError } from '../errors';
import type { Queues } from '../queue/queues';

export interface DlqRoutesOptions {
  queues: Queues;
  /** Most dead letters one list answers with. @defaultValue 1000 */
  maxLimit?: number;
  /** Whether a job belongs to a customer erased since it was queued (ErasureService.isErasedJob). */
  isErased?: (job: Job) => Promise<boolean>;
}

/** Replaying this dead letter would recreate an erased customer. */
export class ErasedCustomerJobError extends AppError {
  constructor() {
    super(
      'this dead letter belongs to an erased customer and cannot be replayed; drop it',
      'erased_customer',
      409,
      false,
    );
  }
}

/** One dead letter as the API answers with it (published as `DeadLetter` in the OpenAPI document). */
export const deadLetterView = z.object({
  id: z.string(),
  queue: z.string().describe('The queue or partition name, e.g. `to-agent`, `inbound-3`'),
  name: z.string(),
  failedReason: z.string(),
  attemptsMade: z.number().int(),
  timestamp: z.number().describe('When it was queued, ms since the epoch'),
  finishedOn: z.number().nullable().describe('When its last attempt failed, ms since the epoch'),
  processedOn: z.number().nullable().optional().describe('One dead letter: when its last attempt started'),
  stacktrace: z.array(z.string()).optional().describe('One dead letter: the stack trace of each attempt'),
  data: z.unknown().optional().describe('With `include=data`: the job data (customer data)'),
});

export type DeadLetterJson = z.infer<typeof deadLetterView>;

/** GET /dead-letters. */
export const deadLetterListView = z.object({
  total: z.number().int(),
  counts: z.record(z.string(), z.number().int()).describe('Dead letters per queue'),
  deadLetters: z.array(deadLetterView),
});

/** POST /dead-letters/replay. */
export const replayAllView = z.object({
  replayed: z.number().int(),
  refused: z
    .number()
    .int()
    .describe('Dead letters of customers erased since they were queued (not replayed)'),
  queues: z.record(z.string(), z.number().int()).describe('Replayed per queue'),
});

/** POST /dead-letters/:queue/:id/replay. */
export const replayOneView = z.object({ replayed: z.literal(true), queue: z.string(), id: z.string() });

/** Every concrete BullMQ queue, by its name (`to-agent`, `inbound-0`, …). */
export function concreteQueues(queues: Queues): Map<string, Queue> {
  const out = new Map<string, Queue>();
  for (const [name, queue] of Object.entries(queues)) {
    if (name === queues.inbound.name) for (const p of queues.inbound.partitions) out.set(p.name, p);
    else out.set(name, queue as Queue);
  }
  return out;
}

export function deadLetterJson(
  job: Job,
  queue: string,
  opts: { data?: boolean; stacktrace?: boolean } = {},
): DeadLetterJson {
  return {
    id: String(job.id),
    queue,
    name: job.name,
    failedReason: job.failedReason ?? '',
    attemptsMade: job.attemptsMade,
    timestamp: job.timestamp,
    finishedOn: job.finishedOn ?? null,
    ...(opts.stacktrace ? { processedOn: job.processedOn ?? null, stacktrace: job.stacktrace ?? [] } : {}),
    ...(opts.data ? { data: job.data as unknown } : {}),
  };
}

export function dlqRoutes({ queues, maxLimit = 1000, isErased }: DlqRoutesOptions): Router {
  const all = concreteQueues(queues);
  const router = Router();

  /** `?queue=` names one queue, or a partitioned queue's base name (all its partitions). */
  const selected = (req: Request): [string, Queue][] => {
    const name = typeof req.query.queue === 'string' ? req.query.queue : undefined;
    if (!name) return [...all];
    if (all.has(name)) return [[name, all.get(name)!]];
    if (name === queues.inbound.name) return queues.inbound.partitions.map((p) => [p.name, p]);
    throw new NotFoundError(`queue "${name}"`);
  };
  const includeData = (req: Request) => req.query.include === 'data';

  const failedJob = async (req: Request): Promise<[string, Job]> => {
    const name = String(req.params.queue);
    const queue = all.get(name);
    if (!queue) throw new NotFoundError(`queue "${name}"`);
    const job = await queue.getJob(String(req.params.id));
    if (!job) throw new NotFoundError('dead letter');
    return [name, job];
  };
  const requireFailed = async (job: Job) => {
    const state = await job.getState();
    if (state !== 'failed') throw new ConflictError(`job is ${state}, not a dead letter`);
  };

  router.get('/dead-letters', async (req, res) => {
    const raw = req.query.limit;
    const limit = raw === undefined ? 50 : Number(raw);
    if (!Number.isInteger(limit) || limit < 1 || limit > maxLimit) {
      throw new PayloadError(`limit must be an integer from 1 to ${maxLimit}`);
    }
    const chosen = selected(req);
    const perQueue = await Promise.all(
      chosen.map(async ([name, queue]) => {
        const [count, jobs] = await Promise.all([queue.getFailedCount(), queue.getFailed(0, limit - 1)]);
        return { name, count, jobs: jobs.filter((j): j is Job => Boolean(j)) };
      }),
    );
    const deadLetters = perQueue
      .flatMap(({ name, jobs }) => jobs.map((job) => deadLetterJson(job, name, { data: includeData(req) })))
      .sort((a, b) => (b.finishedOn ?? b.timestamp) - (a.finishedOn ?? a.timestamp))
      .slice(0, limit);
    const counts = Object.fromEntries(perQueue.map(({ name, count }) => [name, count]));
    const total = perQueue.reduce((sum, { count }) => sum + count, 0);
    res.json({ total, counts, deadLetters } satisfies z.infer<typeof deadLetterListView>);
  });

  // Registered before `/:queue/:id` routes so `replay` is never read as a queue name.
  router.post('/dead-letters/replay', async (req, res) => {
    const perQueue: Record<string, number> = {};
    let replayed = 0;
    let refused = 0;
    for (const [name, queue] of selected(req)) {
      // Snapshot the ids first: replayed jobs leave the failed set (and may come back to it if they
      // fail again), so paging through the live set would skip some and repeat others.
      const ids: string[] = [];
      for (let start = 0; ; start += 500) {
        const page = await queue.getFailed(start, start + 499);
        ids.push(...page.filter(Boolean).map((j) => String(j.id)));
        if (page.length < 500) break;
      }
      let n = 0;
      for (const id of ids) {
        const job = await queue.getJob(id);
        if (!job || (await job.getState()) !== 'failed') continue;
        if (await isErased?.(job)) {
          refused++;
          continue;
        }
        await job.retry('failed');
        n++;
      }
      perQueue[name] = n;
      replayed += n;
    }
    res.json({ replayed, refused, queues: perQueue } satisfies z.infer<typeof replayAllView>);
  });

  router.get('/dead-letters/:queue/:id', async (req, res) => {
    const [name, job] = await failedJob(req);
    await requireFailed(job);
    res.json(deadLetterJson(job, name, { data: includeData(req), stacktrace: true }));
  });

  router.post('/dead-letters/:queue/:id/replay', async (req, res) => {
    const [name, job] = await failedJob(req);
    await requireFailed(job);
    if (await isErased?.(job)) throw new ErasedCustomerJobError();
    await job.retry('failed');
    res.json({ replayed: true, queue: name, id: String(job.id) } satisfies z.infer<typeof replayOneView>);
  });

  router.delete('/dead-letters/:queue/:id', async (req, res) => {
    const [, job] = await failedJob(req);
    await requireFailed(job);
    await job.remove();
    res.status(204).end();
  });

  return router;
}

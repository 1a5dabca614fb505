/**
 * Queue workers (src/queue/workers.ts) on a real Redis: a job whose worker dies while running it
 * (the worker stops without finishing or releasing it, as a SIGKILLed process does) is run again by
 * another worker — also when that happens to it twice. BullMQ's default gives such a job up as a
 * dead letter on its second stall: in the chaos runs, an agent's reply whose event job was caught by
 * two worker kills was neither sent nor reported.
 */
import { Queue, type Job, type Worker } from 'bullmq';
import { createLogger } from '../../src/logger';
import { createMetrics } from '../../src/metrics';
import { createRedisConnection } from '../../src/queue/connection';
import { createQueueWorker } from '../../src/queue/workers';
import { eventually } from '../helpers/eventually';
import { uniqueName } from '../helpers/env';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
jest.setTimeout(60_000);

const prefix = uniqueName('stall');
const connection = createRedisConnection(REDIS_URL, 'worker');
const queue = new Queue('agent-events', { connection, prefix });
let runs = 0;
/** Runs that never finish (their worker is "killed"); released at the end so nothing is left open. */
const hung: (() => void)[] = [];
const workers: Worker[] = [];

/** A worker that hangs on the job's first two runs and completes the third. */
function startWorker(): Worker {
  const worker = createQueueWorker({
    queueName: 'agent-events',
    label: 'agent-events',
    prefix,
    redisUrl: REDIS_URL,
    log: createLogger({ level: 'silent' }),
    metrics: createMetrics(),
    // Short locks so that a dead worker's job is noticed in a second, not a minute.
    stall: { lockDurationMs: 1_000, stalledIntervalMs: 500 },
    handler: async (_job: Job) => {
      runs++;
      if (runs <= 2) await new Promise<void>((resolve) => hung.push(resolve));
      return 'done';
    },
  });
  workers.push(worker);
  return worker;
}

/** The worker dies with the job in hand: it neither finishes nor releases it, and stops renewing its lock. */
async function kill(worker: Worker): Promise<void> {
  await worker.close(true);
}

afterAll(async () => {
  for (const release of hung) release();
  await Promise.all(workers.map((w) => w.close(true).catch(() => undefined)));
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close();
  connection.disconnect();
});

it('a job whose worker is killed under it twice still runs to completion', async () => {
  const job = await queue.add('thread_reply', { type: 'thread_reply' }, { jobId: 'twice-stalled' });
  const first = startWorker();
  await eventually(
    async () => runs,
    (n) => n === 1,
  );
  await kill(first);
  const second = startWorker();
  await eventually(
    async () => runs,
    (n) => n === 2,
  );
  await kill(second);
  startWorker();

  const state = await eventually(
    () => job.getState(),
    (s) => s === 'completed' || s === 'failed',
    30_000,
  );
  const failedReason = (await queue.getJob(job.id!))?.failedReason;
  expect({ state, failedReason, runs }).toEqual({ state: 'completed', failedReason: undefined, runs: 3 });
});

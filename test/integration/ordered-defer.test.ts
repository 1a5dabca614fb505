/**
 * Ordered workers (src/queue/workers.ts) on a real Redis: a job that only waited (DeferError) does
 * not use up its attempts, so a message that waits longer than `maxAttempts` runs is still handled
 * instead of ending in the dead letters; real failures still give up after `maxAttempts`.
 */
import type { Job, Worker } from 'bullmq';
import { createLogger } from '../../src/logger';
import { createMetrics } from '../../src/metrics';
import { createRedisConnection } from '../../src/queue/connection';
import { createPartitionedQueue } from '../../src/queue/partitions';
import { DeferError, createOrderedWorkers } from '../../src/queue/workers';
import { eventually } from '../helpers/eventually';
import { uniqueName } from '../helpers/env';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('ordered workers: a deferral is not an attempt', () => {
  const prefix = uniqueName('defer');
  const connection = createRedisConnection(REDIS_URL, 'producer');
  const queue = createPartitionedQueue('inbound', 1, connection, { prefix });
  const runs = new Map<string, number>();
  let workers: Worker[] = [];

  beforeAll(() => {
    workers = createOrderedWorkers<{ kind: 'wait' | 'break' }>({
      queue,
      label: 'inbound',
      prefix,
      redisUrl: REDIS_URL,
      maxAttempts: 2,
      log: createLogger({ level: 'silent' }),
      metrics: createMetrics(),
      handler: async (job: Job<{ kind: 'wait' | 'break' }>) => {
        const n = (runs.get(job.id!) ?? 0) + 1;
        runs.set(job.id!, n);
        if (job.data.kind === 'break') throw new Error('always broken');
        if (n <= 4) throw new DeferError(20, 'waiting for something');
        return 'done';
      },
    });
  });
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.close()));
    await queue.obliterate({ force: true }).catch(() => undefined);
    connection.disconnect();
  });

  it('a job deferred 4 times with maxAttempts 2 completes', async () => {
    const job = await queue.queueFor('a').add('m', { kind: 'wait' }, { jobId: 'wait-1' });
    const state = await eventually(
      () => job.getState(),
      (s) => s === 'completed' || s === 'failed',
      20_000,
    );
    expect(state).toBe('completed');
    expect(runs.get('wait-1')).toBe(5);
  });

  it('a job that really fails still ends in the dead letters after maxAttempts', async () => {
    const job = await queue.queueFor('b').add('m', { kind: 'break' }, { jobId: 'break-1' });
    const state = await eventually(
      () => job.getState(),
      (s) => s === 'failed',
      30_000,
    );
    expect(state).toBe('failed');
    expect(runs.get('break-1')).toBe(2);
  });
});

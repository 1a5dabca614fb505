/**
 * The producer connection (webhooks, Rapport's own keys, and the queues' adds) sends each command as
 * it comes instead of batching them per tick: with BullMQ's scripts defined on it, every batch built
 * an ioredis Pipeline copying each script's methods — 30 % of what the api allocated (see
 * connection.ts). Commands still go out without waiting for earlier replies.
 */
import { Queue } from 'bullmq';
import { createRedisConnection, deleteKeys, type RedisClient } from '../../src/queue/connection';
import { uniqueName } from '../helpers/env';

describe('producer connection', () => {
  const prefix = `rapport-${uniqueName('prod')}`;
  let redis: RedisClient;
  let queue: Queue;

  beforeAll(async () => {
    redis = createRedisConnection(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', 'producer');
    queue = new Queue('inbound-0', { connection: redis, prefix });
    await queue.waitUntilReady();
  });

  afterAll(async () => {
    await queue.obliterate({ force: true });
    await deleteKeys(redis, `${prefix}*`);
    await queue.close();
    redis.disconnect();
  });

  it('queues no auto-pipeline batch for concurrent commands, and answers them all', async () => {
    const pending = [
      redis.set(`${prefix}:a`, '1'),
      redis.exists(`${prefix}:a`),
      queue.add('message', { n: 1 }, { jobId: 'one' }),
    ];
    expect(redis.autoPipelineQueueSize).toBe(0);
    const [set, exists, job] = await Promise.all(pending);
    expect(set).toBe('OK');
    expect(exists).toBe(1);
    expect((job as { id?: string }).id).toBe('one');
  });
});

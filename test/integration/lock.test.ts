/** The per-key Redis mutex (src/queue/lock.ts) on a real Redis: exclusive, released, renewed. */
import { Redis } from 'ioredis';
import { withLock } from '../../src/queue/lock';
import { DeferError } from '../../src/queue/workers';
import { uniqueName } from '../helpers/env';

const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterAll(async () => {
  await redis.quit();
});

describe('withLock', () => {
  it('a second holder is deferred while the first works, and the lock is released after', async () => {
    const key = uniqueName('lock');
    let second: unknown;
    await withLock(redis, key, 5_000, async () => {
      second = await withLock(redis, key, 5_000, async () => 'ran').catch((err: unknown) => err);
    });
    expect(second).toBeInstanceOf(DeferError);
    expect(await redis.exists(key)).toBe(0);
  });

  it('renew keeps a short lock while its holder works past the TTL', async () => {
    const key = uniqueName('lock');
    const seen: number[] = [];
    await withLock(
      redis,
      key,
      300,
      async () => {
        for (let i = 0; i < 4; i++) {
          await sleep(250);
          seen.push(await redis.exists(key));
        }
      },
      { renew: true },
    );
    expect(seen).toEqual([1, 1, 1, 1]);
    expect(await redis.exists(key)).toBe(0);
  });

  it('without renew, a holder that dies (never releases) blocks the key only for the TTL', async () => {
    const key = uniqueName('lock');
    // A holder killed mid-work: its lock is set and nobody releases or renews it.
    await redis.set(key, 'dead-holder', 'PX', 300);
    await expect(withLock(redis, key, 300, async () => 'x')).rejects.toBeInstanceOf(DeferError);
    await sleep(400);
    await expect(withLock(redis, key, 300, async () => 'ran')).resolves.toBe('ran');
  });
});

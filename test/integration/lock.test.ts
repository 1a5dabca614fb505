/** The per-key Redis mutex (src/queue/lock.ts) on a real Redis: exclusive, released, renewed. */
import { Redis } from 'ioredis';
import { conversationLockKey, withLock, withLockReading } from '../../src/queue/lock';
import { DeferError } from '../../src/queue/workers';
import { uniqueName } from '../helpers/env';
import { startPrivateCluster } from '../helpers/redis-cluster';
import { createRedisConnection } from '../../src/queue/connection';
import { conversationKeys } from '../../src/router/hot-state';

const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', {
  maxRetriesPerRequest: null,
});
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

describe('withLockReading (the inbound router: lock and copy in two exchanges)', () => {
  /** Round trips this client sends while `fn` runs: a MULTI…EXEC is one, like a lone command. */
  async function exchanges<T>(fn: () => Promise<T>): Promise<{ result: T; sent: string[][] }> {
    const sent: string[][] = [];
    const client = redis as unknown as { sendCommand: (c: { name: string }, s?: unknown) => unknown };
    const send = client.sendCommand;
    let batch: string[] | undefined;
    client.sendCommand = function (this: unknown, c: { name: string }, s?: unknown) {
      if (c.name === 'multi') sent.push((batch = ['multi']));
      else if (batch) batch.push(c.name);
      else sent.push([c.name]);
      if (c.name === 'exec') batch = undefined;
      return send.call(this, c, s);
    };
    try {
      return { result: await fn(), sent };
    } finally {
      client.sendCommand = send;
    }
  }

  it('the conversation lock shares the customer slot with its copy (one script on Redis Cluster)', () => {
    expect(conversationLockKey('p', 'c1')).toMatch(/\{c:c1\}/);
  });

  it('takes the lock with a read, then files a value as it releases: two exchanges', async () => {
    const key = `${uniqueName('lock')}:{c:x}`;
    const [a, b, epoch] = [`${key}:a`, `${key}:b`, uniqueName('epoch')];
    await redis.set(a, 'A');
    await redis.set(epoch, 'E');
    const { result, sent } = await exchanges(() =>
      withLockReading(
        redis,
        key,
        5_000,
        [a, b],
        () => redis.get(epoch),
        async (values, also) => {
          expect(await redis.exists(key)).toBe(1);
          return { result: [...values, also], file: { key: b, value: 'B', ttlS: 60 } };
        },
      ),
    );
    expect(result).toEqual(['A', null, 'E']);
    expect(await redis.get(b)).toBe('B');
    expect(await redis.exists(key)).toBe(0);
    // Lock + read (one script), the epoch beside it, the file-and-release script; the exists above.
    // No MULTI: ioredis builds one as a Pipeline copying every Lua script's methods defined on the
    // connection (BullMQ's ~50 on the queues' connection), garbage on every message (lock.ts).
    expect(sent.filter((c) => c[0] !== 'exists')).toEqual([
      [expect.stringMatching(/^eval/)],
      ['get'],
      [expect.stringMatching(/^eval/)],
    ]);
  });

  it('a held lock defers the second holder (its read is not used), and a release never frees another holder', async () => {
    const key = `${uniqueName('lock')}:{c:y}`;
    await redis.set(key, 'someone-else', 'PX', 5_000);
    let ran = false;
    await expect(
      withLockReading(
        redis,
        key,
        5_000,
        [`${key}:a`],
        async () => null,
        async () => {
          ran = true;
          return { result: 1 };
        },
      ),
    ).rejects.toBeInstanceOf(DeferError);
    expect(ran).toBe(false);
    // A holder whose lock expired and was taken over: it files, but leaves the new holder's lock.
    await redis.del(key);
    await withLockReading(
      redis,
      key,
      5_000,
      [`${key}:a`],
      async () => null,
      async () => {
        await redis.set(key, 'taken-over', 'PX', 5_000);
        return { result: 1, file: { key: `${key}:a`, value: 'v', ttlS: 60 } };
      },
    );
    expect(await redis.get(key)).toBe('taken-over');
    expect(await redis.get(`${key}:a`)).toBe('v');
  });
});

describe('withLockReading on a Redis Cluster', () => {
  jest.setTimeout(120_000);

  it("the conversation lock and its copy's keys go in the taking script and the releasing one (one hash slot)", async () => {
    const cluster = await startPrivateCluster();
    const client = createRedisConnection(cluster.url, 'worker');
    try {
      await cluster.waitOk();
      const prefix = uniqueName('p');
      const id = 'c0ffee';
      const keys = conversationKeys(prefix, id);
      await client.set(keys.gen, 'G');
      const seen = await withLockReading(
        client,
        conversationLockKey(prefix, id),
        5_000,
        [keys.gen, keys.doc],
        () => client.get(`${prefix}:hot:epoch`),
        async (values) => ({ result: values, file: { key: keys.doc, value: 'copy', ttlS: 60 } }),
      );
      expect(seen).toEqual(['G', null]);
      expect(await client.get(keys.doc)).toBe('copy');
      expect(await client.exists(conversationLockKey(prefix, id))).toBe(0);
    } finally {
      client.disconnect();
      await cluster.stop();
    }
  });
});

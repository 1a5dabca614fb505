/**
 * A short per-key mutex in Redis (SET NX PX, released only by its holder), for work on one customer
 * that must not interleave: flushing an outbox, and updating the customer's conversation document.
 * Single-key commands only (Redis Cluster safe).
 *
 * Why the conversation needs it: MongoDB applies each single-document update atomically, but
 * FerretDB v1 (SQLite and PostgreSQL handlers alike) rewrites the whole document and loses
 * concurrent updates to one document (measured: 50 concurrent `$inc` on one document → 6). Rapport
 * therefore gives every document one writer at a time; on MongoDB the lock is merely redundant.
 *
 * `waitMs`: how long to wait for a holder to finish before giving up with a DeferError (the job is
 * retried later without spending an attempt). `renew`: the holder extends the lock every third of
 * `ttlMs` while it works, so the TTL can be short — a holder killed mid-work (SIGKILL) then blocks
 * the key for at most `ttlMs`, while a long flush keeps its lock.
 */
import { randomBytes } from 'node:crypto';
import type { RedisClient } from './connection';
import { DeferError } from '../errors';

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * Tries `take` until it returns a value (the lock is ours), waiting up to `waitMs` with a short
 * random pause between tries; then a DeferError (the job is retried later).
 */
async function acquire<R>(
  key: string,
  options: { waitMs?: number; retryInMs?: number },
  take: () => Promise<R | undefined>,
): Promise<R> {
  const deadline = Date.now() + (options.waitMs ?? 0);
  for (;;) {
    const taken = await take();
    if (taken !== undefined) return taken;
    if (Date.now() >= deadline) throw new DeferError(options.retryInMs ?? 250, `lock ${key} is held`);
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
  }
}

export async function withLock<T>(
  redis: RedisClient,
  key: string,
  ttlMs: number,
  fn: () => Promise<T>,
  options: { waitMs?: number; retryInMs?: number; renew?: boolean } = {},
): Promise<T> {
  const token = randomBytes(12).toString('hex');
  await acquire(key, options, async () =>
    (await redis.set(key, token, 'PX', ttlMs, 'NX')) === 'OK' ? true : undefined,
  );
  const renewal = options.renew
    ? setInterval(
        () => {
          redis.eval(RENEW, 1, key, token, String(ttlMs)).catch(() => undefined);
        },
        Math.max(100, Math.floor(ttlMs / 3)),
      )
    : undefined;
  try {
    return await fn();
  } finally {
    if (renewal) clearInterval(renewal);
    await redis.eval(RELEASE, 1, key, token).catch(() => undefined);
  }
}

/**
 * The lock under which a customer's conversation document is changed: in the customer's `{c:<id>}`
 * hash slot, beside the router's copy of the conversation (src/router/hot-state.ts), so the inbound
 * router takes the lock and reads the copy in one exchange, and files the copy and releases the lock
 * in another (`withLockReading`), on Redis Cluster too.
 */
export function conversationLockKey(prefix: string, customerId: string): string {
  return `${prefix}:lock:{c:${customerId}}:conversation`;
}

/**
 * The lock under which a customer's Slack outbox is posted and their cards are edited
 * (src/router/slack-delivery.ts, card-updates.ts): one key for the flush job, the inbound job's
 * inline flush and the card refresh.
 */
export function toAgentLockKey(prefix: string, customerId: string): string {
  return `${prefix}:lock:to-agent:${customerId}`;
}

/** A flush lock's time to live, renewed by its holder: a killed worker blocks its customer ≤ 15 s. */
export const FLUSH_LOCK_TTL_MS = 15_000;

/** Files `value` at KEYS[2] (whoever holds the lock: as a plain SET after it would), then releases KEYS[1] if ARGV[1] holds it. */
const FILE_AND_RELEASE = `redis.call('set', KEYS[2], ARGV[2], 'EX', ARGV[3])
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

export interface LockedRead<T> {
  result: T;
  /** Written to `key` (same hash slot as the lock) in the exchange that releases the lock. */
  file?: { key: string; value: string; ttlS: number };
}

/**
 * Takes the lock KEYS[1] for ARGV[1] (SET NX PX ARGV[2]) and, if it was free, returns the values of
 * KEYS[2..] read in the same atomic step (false, a null reply, when the lock is held).
 *
 * A script, not MULTI…EXEC: ioredis builds each MULTI as a Pipeline that copies two methods per Lua
 * script defined on its connection, and this connection carries the queues, so BullMQ has defined
 * ~50 there. Sampled in bench/e2e's worker (`BENCH_ALLOC_PROFILE`, objects that outlived the young
 * generation), this MULTI and the outbox's were 13 % of everything the worker promoted to its old
 * generation: garbage that its heap grew by until a full collection.
 */
const TAKE_AND_READ = `if not redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return false end
if #KEYS < 2 then return {} end
return redis.call('mget', unpack(KEYS, 2))`;

/**
 * `withLock` for the inbound router's hot path, in two Redis exchanges instead of four: the lock is
 * taken together with a read of `readKeys` (one script, atomic, so the values are read under the
 * lock), `fn` gets those values, and what it returns to `file` is written by the script that
 * releases the lock. The keys must share the lock's hash slot (Redis Cluster). `alongside` (a read
 * of another slot, e.g. the identity epoch) is sent right after each attempt's script, so it is
 * answered after the values were read, as a `Promise.all` after them would be.
 */
export async function withLockReading<A, T>(
  redis: RedisClient,
  key: string,
  ttlMs: number,
  readKeys: string[],
  alongside: () => Promise<A>,
  fn: (values: (string | null)[], also: A) => Promise<LockedRead<T>>,
  options: { waitMs?: number; retryInMs?: number } = {},
): Promise<T> {
  const token = randomBytes(12).toString('hex');
  const read = await acquire(key, options, async () => {
    const [values, also] = await Promise.all([
      redis.eval(TAKE_AND_READ, 1 + readKeys.length, key, ...readKeys, token, String(ttlMs)) as Promise<
        (string | null)[] | null
      >,
      alongside(),
    ]);
    return values ? { values, also } : undefined;
  });
  let done: LockedRead<T> | undefined;
  try {
    done = await fn(read.values, read.also);
    return done.result;
  } finally {
    const file = done?.file;
    if (file) await redis.eval(FILE_AND_RELEASE, 2, key, file.key, token, file.value, String(file.ttlS));
    else await redis.eval(RELEASE, 1, key, token).catch(() => undefined);
  }
}

export interface ConversationLockOptions {
  /** How long the lock is held at most. @defaultValue 10000 */
  ttlMs?: number;
  /** How long to wait for another writer before a DeferError. @defaultValue 5000 */
  waitMs?: number;
}

/** Runs `fn` as the one writer of the customer's conversation document (see above for why). */
export function withConversationLock<T>(
  redis: RedisClient,
  prefix: string,
  customerId: { toString(): string },
  fn: () => Promise<T>,
  options: ConversationLockOptions = {},
): Promise<T> {
  const key = conversationLockKey(prefix, String(customerId));
  return withLock(redis, key, options.ttlMs ?? 10_000, fn, { waitMs: options.waitMs ?? 5_000 });
}

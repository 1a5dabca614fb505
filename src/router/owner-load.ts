/**
 * The owner pick's open counts (issue 22): how many open customers each agent has, shared by every
 * process in Redis, so a first contact does not count every open conversation again (the aggregate
 * over all of them grew with them: 4–5× slower picks at 6,000 open conversations than at 400).
 *
 * A snapshot of the database's counts (the aggregate), taken at most every `maxAgeMs` by one process
 * at a time, plus what happened since in Redis:
 * - An assignment reserves its customer in the same script that picks the agent: the pick and the
 *   increment are one atomic step, so two picks in any processes cannot both take an agent's last
 *   place (the old code read the aggregate per pick, and concurrent picks all saw the same count).
 * - A handoff (transfer) counts the customer for the new owner at once.
 * - Both are also kept as "recent" (customer → agent): a snapshot counts a recent customer from
 *   this list, not from the database, until their conversation shows that owner there (it is written
 *   after the assignment); then the database's count takes over ("settled"). So an assignment is
 *   never lost by a snapshot taken meanwhile, nor counted twice. A recent customer whose
 *   conversation never shows the owner (erased meanwhile, a job that died) stops counting after
 *   `RECENT_MS`.
 * - A conversation reopening counts for its owner the same way (the inbound router).
 *
 * A merge, an undo, a link or an erasure replaces the identity epoch (src/identity/cache.ts): the next
 * pick sees the snapshot's epoch is not the current one and rebuilds before it picks, so those are
 * counted right at once. What the counts miss until the next snapshot (at most `maxAgeMs`): closes
 * and a handoff's previous owner still count (too high: an agent may get a new customer up to
 * `maxAgeMs` later than possible, never too many). Which agents may be picked is never from here: the
 * candidates (active, available, capacity) come from the agents' records.
 *
 * All keys share the `{owner-load}` hash slot (one script, safe on Redis Cluster).
 */
import type { RedisClient } from '../queue/connection';

/** How long a reserved customer is counted from Redis rather than from the database. */
const RECENT_MS = 60_000;
/** The rebuild lock's lifetime: a process that died while rebuilding holds it no longer. */
const REBUILD_LOCK_MS = 30_000;
/** The counts key outlives idle periods without staying forever once a prefix is abandoned. */
const COUNTS_TTL_MS = 24 * 3600_000;
const BUILT = '@built';
/** Lua: `now`, the Redis server's clock in ms (one clock for every process's reservations). */
const NOW = `local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;
const EPOCH = '@epoch';

export interface LoadCandidate {
  id: string;
  /** Available (not away or offline) — only these are picked while below capacity. */
  available: boolean;
  capacity: number;
}

export interface OwnerLoad {
  /**
   * Picks among `candidates` (in tie order: oldest first): the least-loaded available one below
   * capacity, else the least-loaded. With `customerId`, reserves a place for that customer with the
   * chosen agent in the same atomic step. Undefined when the snapshot is missing (build it first).
   */
  pick(
    candidates: LoadCandidate[],
    epoch: string,
    customerId?: string,
  ): Promise<{ id?: string; rebuild: boolean; first?: boolean } | undefined>;
  /** Undoes a reservation whose assignment lost to another one. */
  release(customerId: string, agentId: string): Promise<void>;
  /** The customer now belongs to `agentId` (a handoff): counted for them at once. */
  moved(customerId: string, agentId: string): Promise<void>;
  /** The customers counted from Redis (recent) and the agent each is counted for. */
  recent(): Promise<Map<string, string>>;
  /** These customers' conversations show their owner in the database now: count them from there. */
  settle(settled: Map<string, string>): Promise<void>;
  /**
   * Stores `counts` (the database's, recent customers left out) plus the recent customers, as of
   * `epoch` (the identity epoch read before the database).
   */
  store(counts: Map<string, number>, epoch: string): Promise<void>;
  /** Whether this process may rebuild now (one at a time); `store` releases it. */
  claimRebuild(): Promise<boolean>;
  /** The current counts (tests and the admin view), undefined when there is no snapshot. */
  snapshot(): Promise<Map<string, number> | undefined>;
}

/**
 * KEYS: counts, recent (zset customer → ms), recent owners (hash customer → agent), rebuild lock.
 * ARGV: customer ('' = no reservation), max age ms, lock ms, identity epoch ('*': not checked), then id, available
 * (1/0), capacity per candidate in tie order. Returns {chosen id or '', rebuild 1/0}, {'!missing'},
 * or {'!epoch'} when a merge, undo, link or erasure happened since the snapshot and this caller
 * holds the rebuild lock: rebuild first, then pick.
 */
const PICK = `
if redis.call('exists', KEYS[1]) == 0 then return {'!missing', 0} end
if ARGV[4] ~= '*' and redis.call('hget', KEYS[1], '${EPOCH}') ~= ARGV[4] and redis.call('set', KEYS[4], '1', 'NX', 'PX', tonumber(ARGV[3])) then
  return {'!epoch', 1}
end
${NOW}if ARGV[1] ~= '' then
  -- A repeated pick for the same customer (a retried job) replaces its earlier reservation.
  local prev = redis.call('hget', KEYS[3], ARGV[1])
  if prev then redis.call('hincrby', KEYS[1], prev, -1) end
end
local best, bestN, any, anyN
for i = 5, #ARGV, 3 do
  local id = ARGV[i]
  local n = tonumber(redis.call('hget', KEYS[1], id) or '0')
  if ARGV[i + 1] == '1' and n < tonumber(ARGV[i + 2]) and (best == nil or n < bestN) then best, bestN = id, n end
  if any == nil or n < anyN then any, anyN = id, n end
end
local chosen = best or any
if chosen and ARGV[1] ~= '' then
  redis.call('hincrby', KEYS[1], chosen, 1)
  redis.call('zadd', KEYS[2], now, ARGV[1])
  redis.call('hset', KEYS[3], ARGV[1], chosen)
end
local rebuild = 0
local built = tonumber(redis.call('hget', KEYS[1], '${BUILT}') or '0')
if now - built >= tonumber(ARGV[2]) and redis.call('set', KEYS[4], '1', 'NX', 'PX', tonumber(ARGV[3])) then rebuild = 1 end
return {chosen or '', rebuild}`;

/** KEYS: counts, recent, recent owners. ARGV: customer, agent. Only if the reservation is still its own. */
const RELEASE = `
if redis.call('hget', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('zrem', KEYS[2], ARGV[1])
redis.call('hdel', KEYS[3], ARGV[1])
if redis.call('exists', KEYS[1]) == 1 then redis.call('hincrby', KEYS[1], ARGV[2], -1) end
return 1`;

/**
 * KEYS: counts, recent, recent owners. ARGV: customer, agent. Counted for the agent unless it
 * already is (a repeated handoff step). The previous owner keeps their count until the next snapshot.
 */
const MOVED = `
${NOW}local before = redis.call('hget', KEYS[3], ARGV[1])
redis.call('zadd', KEYS[2], now, ARGV[1])
redis.call('hset', KEYS[3], ARGV[1], ARGV[2])
if before ~= ARGV[2] and redis.call('exists', KEYS[1]) == 1 then redis.call('hincrby', KEYS[1], ARGV[2], 1) end
return 1`;

/**
 * KEYS: recent, recent owners. ARGV: recent ms. Drops expired reservations; returns the rest as
 * customer, agent pairs (flat).
 */
const RECENT = `
${NOW}local old = redis.call('zrangebyscore', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
for _, c in ipairs(old) do redis.call('hdel', KEYS[2], c) end
redis.call('zremrangebyscore', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
local out = {}
for _, c in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
  local a = redis.call('hget', KEYS[2], c)
  if a then out[#out + 1] = c; out[#out + 1] = a end
end
return out`;

/**
 * KEYS: recent, recent owners. ARGV: customer, agent pairs whose conversation shows that owner in
 * the database: from now on the database's count includes them. Kept if reserved anew meanwhile.
 */
const SETTLE = `
for i = 1, #ARGV, 2 do
  if redis.call('hget', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('zrem', KEYS[1], ARGV[i])
    redis.call('hdel', KEYS[2], ARGV[i])
  end
end
return 1`;

/**
 * KEYS: counts, recent, recent owners, lock. ARGV: counts ttl ms, the identity epoch read before
 * the database, then agent, count pairs. The
 * database's counts plus every customer reserved now (those reserved since the recent list was read
 * may be in both: counted twice until the next snapshot, the safe side).
 */
const STORE = `
${NOW}redis.call('del', KEYS[1])
redis.call('hset', KEYS[1], '${BUILT}', now, '${EPOCH}', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('hincrby', KEYS[1], ARGV[i], tonumber(ARGV[i + 1])) end
for _, c in ipairs(redis.call('zrange', KEYS[2], 0, -1)) do
  local a = redis.call('hget', KEYS[3], c)
  if a then redis.call('hincrby', KEYS[1], a, 1) end
end
redis.call('pexpire', KEYS[1], tonumber(ARGV[1]))
redis.call('del', KEYS[4])
return 1`;

const loadKeys = (prefix: string) => ({
  counts: `${prefix}:{owner-load}:counts`,
  recent: `${prefix}:{owner-load}:recent`,
  owners: `${prefix}:{owner-load}:recent-owners`,
  lock: `${prefix}:{owner-load}:rebuild`,
});

/**
 * Erasure: the customer's id leaves the recent reservations. Its count needs no undo here: an
 * erasure replaces the identity epoch, so the next pick rebuilds the counts from the database.
 */
export async function forgetLoadCustomer(redis: RedisClient, prefix: string, customerId: string): Promise<void> {
  const k = loadKeys(prefix);
  await redis.zrem(k.recent, customerId);
  await redis.hdel(k.owners, customerId);
}

export function createOwnerLoad(redis: RedisClient, prefix: string, maxAgeMs: number): OwnerLoad {
  const k = loadKeys(prefix);
  return {
    async pick(candidates, epoch, customerId) {
      const args = candidates.flatMap((c) => [c.id, c.available ? '1' : '0', String(c.capacity)]);
      const [chosen, rebuild] = (await redis.eval(
        PICK,
        4,
        k.counts,
        k.recent,
        k.owners,
        k.lock,
        customerId ?? '',
        String(maxAgeMs),
        String(REBUILD_LOCK_MS),
        epoch,
        ...args,
      )) as [string, number];
      if (chosen === '!missing') return undefined;
      if (chosen === '!epoch') return { rebuild: true, first: true };
      return { ...(chosen ? { id: chosen } : {}), rebuild: rebuild === 1 };
    },
    async release(customerId, agentId) {
      await redis.eval(RELEASE, 3, k.counts, k.recent, k.owners, customerId, agentId);
    },
    async moved(customerId, agentId) {
      await redis.eval(MOVED, 3, k.counts, k.recent, k.owners, customerId, agentId);
    },
    async recent() {
      const flat = (await redis.eval(RECENT, 2, k.recent, k.owners, String(RECENT_MS))) as string[];
      const out = new Map<string, string>();
      for (let i = 0; i + 1 < flat.length; i += 2) out.set(flat[i]!, flat[i + 1]!);
      return out;
    },
    async settle(settled) {
      if (settled.size > 0) await redis.eval(SETTLE, 2, k.recent, k.owners, ...[...settled].flat());
    },
    async store(counts, epoch) {
      const pairs = [...counts].flatMap(([id, n]) => [id, String(n)]);
      await redis.eval(STORE, 4, k.counts, k.recent, k.owners, k.lock, String(COUNTS_TTL_MS), epoch, ...pairs);
    },
    async claimRebuild() {
      return (await redis.set(k.lock, '1', 'PX', REBUILD_LOCK_MS, 'NX')) === 'OK';
    },
    async snapshot() {
      const all = await redis.hgetall(k.counts);
      if (Object.keys(all).length === 0) return undefined;
      delete all[BUILT];
      return new Map(Object.entries(all).map(([id, n]) => [id, Number(n)]));
    },
  };
}

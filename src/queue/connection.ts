/**
 * Redis connections for BullMQ and Rapport's own keys. Producers (the HTTP side) fail fast when Redis
 * is down, so a webhook answers 503 at once and the provider retries; workers wait for Redis to come
 * back (`maxRetriesPerRequest: null`, as BullMQ requires). Both reconnect by themselves.
 *
 * Redis Cluster: a `REDIS_URL` listing several nodes, comma-separated
 * (`redis://10.0.0.1:6379,redis://10.0.0.2:6379`), is a cluster; the client discovers the other
 * nodes and follows failovers. Every queue then gets its own hash tag (see options.ts), and every key
 * Rapport touches itself is a single key per command, so nothing spans slots.
 */
import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';

export type ConnectionRole = 'producer' | 'worker';

/** A connection to one Redis server or to a Redis Cluster; both speak the same commands. */
export type RedisClient = Redis | Cluster;

/** True when `url` lists several nodes: Rapport then talks to them as one Redis Cluster. */
export function isClusterUrl(url: string): boolean {
  return url.includes(',');
}

/** The node URLs of a `REDIS_URL` (one for a single server, several for a cluster). */
export function redisNodeUrls(url: string): string[] {
  return url
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
}

function clusterNodes(url: string): { nodes: ClusterNode[]; auth: RedisOptions } {
  const parsed = redisNodeUrls(url).map((u) => new URL(u));
  const first = parsed[0];
  const auth: RedisOptions = {};
  if (first?.username) auth.username = decodeURIComponent(first.username);
  if (first?.password) auth.password = decodeURIComponent(first.password);
  if (first?.protocol === 'rediss:') auth.tls = {};
  return { nodes: parsed.map((u) => ({ host: u.hostname, port: Number(u.port || 6379) })), auth };
}

export function createRedisConnection(
  url: string,
  role: ConnectionRole,
  extra: RedisOptions = {},
): RedisClient {
  const common: RedisOptions = {
    connectTimeout: 2_000,
    // Reconnect forever, backing off to 2 s, so the process recovers when Redis returns.
    retryStrategy: (times) => Math.min(100 * times, 2_000),
    lazyConnect: false,
  };
  // No auto-pipelining: the producer connection also carries the queues, so BullMQ has defined its
  // ~50 Lua scripts on it, and every auto-pipeline batch (one per tick with a command) built an ioredis
  // Pipeline copying each script's two methods onto itself. Measured with BENCH_ALLOC_PROFILE in
  // bench/e2e: 30 % of everything the api allocated, and the garbage that grew its heap between
  // collections. ioredis still writes commands without waiting for earlier replies.
  const byRole: RedisOptions =
    role === 'producer'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1 }
      : { maxRetriesPerRequest: null, enableReadyCheck: true };
  let redis: RedisClient;
  if (isClusterUrl(url)) {
    const { nodes, auth } = clusterNodes(url);
    const { enableOfflineQueue, enableAutoPipelining, ...perNode } = { ...common, ...byRole, ...extra };
    redis = new Cluster(nodes, {
      redisOptions: { ...perNode, ...auth },
      // As for one server: producers fail fast while the cluster is unreachable (the webhook answers
      // 503), workers queue commands until it is back. During a failover ioredis retries commands on
      // the promoted replica (retryDelayOnFailover / ClusterDown / TryAgain).
      enableOfflineQueue: enableOfflineQueue ?? true,
      enableAutoPipelining: enableAutoPipelining ?? false,
      clusterRetryStrategy: (times) => Math.min(100 * times, 2_000),
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 300,
      retryDelayOnTryAgain: 200,
      slotsRefreshTimeout: 2_000,
      maxRedirections: 16,
      enableReadyCheck: true,
    });
  } else {
    redis = new Redis(url, { ...common, ...byRole, ...extra });
  }
  // ioredis emits 'error' on every failed reconnect; without a listener Node would crash the process.
  // Health is reported by /readyz, not by this event.
  redis.on('error', () => undefined);
  return redis;
}

/**
 * Every key matching `pattern` (SCAN; on a cluster, over every master), deleted by `remove` or
 * returned. For tests, benchmarks and maintenance; never on a request path.
 */
export async function scanKeys(redis: RedisClient, pattern: string): Promise<string[]> {
  const servers = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const found: string[] = [];
  for (const server of servers) {
    let cursor = '0';
    do {
      const [next, keys] = await server.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      found.push(...keys);
    } while (cursor !== '0');
  }
  return found;
}

/** Deletes every key matching `pattern`, one key per command (keys of a cluster live in many slots). */
export async function deleteKeys(redis: RedisClient, pattern: string): Promise<number> {
  const keys = await scanKeys(redis, pattern);
  for (let i = 0; i < keys.length; i += 500) {
    await Promise.all(keys.slice(i, i + 500).map((k) => redis.del(k)));
  }
  return keys.length;
}

/** Deletes every key Rapport wrote under `prefix`: its own keys and (on a cluster) the queues' `{prefix-queue}` keys. */
export async function deletePrefixedKeys(redis: RedisClient, prefix: string): Promise<number> {
  const bare = prefix.replace(/[{}]/g, '');
  return (await deleteKeys(redis, `${prefix}*`)) + (await deleteKeys(redis, `{${bare}-*`));
}

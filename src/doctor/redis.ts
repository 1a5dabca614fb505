/**
 * Redis as BullMQ needs it: reachable, version 5.0.0+ (6.2.0+ recommended), `maxmemory-policy
 * noeviction` (eviction silently drops queued jobs) and AOF persistence (a restart keeps what was
 * queued). Read from `INFO`, which managed Redis services allow even when they rename `CONFIG`.
 */
import { Redis } from 'ioredis';
import { isClusterUrl, redisNodeUrls } from '../queue/connection';
import { withTimeout } from '../storage/mongo';
import { messageOf, redactUrl, type DoctorCheck } from './types';

/** `INFO` text → field map (`redis_version` → `7.0.15`, …). */
export function parseRedisInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon > 0) out[line.slice(0, colon)] = line.slice(colon + 1).trim();
  }
  return out;
}

/** -1, 0 or 1, comparing dotted versions numerically (`6.2.0` vs `7.0.15`). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((n) => Number.parseInt(n, 10) || 0);
  const pb = b.split('.').map((n) => Number.parseInt(n, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/** The checks `INFO` answers (pure). */
export function redisInfoChecks(info: Record<string, string>, url: string): DoctorCheck[] {
  return [
    redisVersionCheck(info.redis_version ?? 'unknown', redactUrl(url)),
    maxmemoryPolicyCheck(info.maxmemory_policy),
    aofCheck(info.aof_enabled),
  ];
}

function redisVersionCheck(version: string, where: string): DoctorCheck {
  if (version !== 'unknown' && compareVersions(version, '5.0.0') < 0) {
    return {
      id: 'redis.version',
      section: 'services',
      status: 'fail',
      title: 'Redis',
      detail: `version ${version} at ${where}; BullMQ needs 5.0.0 or later`,
      fix: 'Upgrade Redis to 6.2 or later (7.x recommended).',
    };
  }
  if (version !== 'unknown' && compareVersions(version, '6.2.0') < 0) {
    return {
      id: 'redis.version',
      section: 'services',
      status: 'warn',
      title: 'Redis',
      detail: `version ${version} at ${where}; BullMQ recommends 6.2.0 or later`,
      fix: 'Upgrade Redis to 6.2 or later when you can.',
    };
  }
  return {
    id: 'redis.version',
    section: 'services',
    status: 'ok',
    title: 'Redis',
    detail: `reachable, version ${version} at ${where}`,
  };
}

/** A Redis setting BullMQ relies on: ok when it is as wanted, else a warning with the fix. */
function settingCheck(
  id: string,
  title: string,
  found: { ok: true; detail: string } | { ok: false; detail: string; fix: string },
): DoctorCheck {
  return found.ok
    ? { id, section: 'services', status: 'ok', title, detail: found.detail }
    : { id, section: 'services', status: 'warn', title, detail: found.detail, fix: found.fix };
}

function maxmemoryPolicyCheck(policy: string | undefined): DoctorCheck {
  return settingCheck(
    'redis.maxmemory-policy',
    'Redis maxmemory-policy',
    policy === 'noeviction'
      ? { ok: true, detail: 'noeviction' }
      : {
          ok: false,
          detail:
            policy === undefined
              ? 'not reported by INFO'
              : `${policy}: under memory pressure Redis may evict queued messages`,
          fix: 'Set `maxmemory-policy noeviction` in redis.conf (or `CONFIG SET maxmemory-policy noeviction` then `CONFIG REWRITE`).',
        },
  );
}

function aofCheck(aof: string | undefined): DoctorCheck {
  return settingCheck(
    'redis.aof',
    'Redis persistence',
    aof === '1'
      ? { ok: true, detail: 'appendonly yes (AOF)' }
      : {
          ok: false,
          detail:
            aof === undefined
              ? 'AOF state not reported by INFO'
              : 'appendonly no: a Redis restart loses messages queued since the last snapshot',
          fix: 'Set `appendonly yes` in redis.conf (or `CONFIG SET appendonly yes` then `CONFIG REWRITE`).',
        },
  );
}

/**
 * Redis, or every node listed for a Redis Cluster (REDIS_URL with comma-separated nodes): each node's
 * INFO checks, plus the cluster's state. A single URL that turns out to be a cluster node is flagged:
 * Rapport would then get MOVED errors instead of following the cluster.
 */
export async function checkRedis(url: string, timeoutMs: number): Promise<DoctorCheck[]> {
  if (!isClusterUrl(url)) return checkRedisNode(url, timeoutMs, false);
  const nodes = redisNodeUrls(url);
  return (await Promise.all(nodes.map((node) => checkRedisNode(node, timeoutMs, true)))).flat();
}

/** Connects once (no retries), reads `INFO`, disconnects. A connection failure is one failed check. */
async function checkRedisNode(url: string, timeoutMs: number, inCluster: boolean): Promise<DoctorCheck[]> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  // connect() rejects with a bare "Connection is closed"; the cause (ECONNREFUSED, …) comes as an event.
  let lastError: unknown;
  redis.on('error', (err: unknown) => {
    lastError = err;
  });
  try {
    await withTimeout(redis.connect(), timeoutMs, `no answer within ${timeoutMs} ms`);
    const info = parseRedisInfo(await withTimeout(redis.info(), timeoutMs, `INFO took over ${timeoutMs} ms`));
    const checks = redisInfoChecks(info, url);
    if (info.cluster_enabled === '1' && !inCluster) {
      checks.push({
        id: 'redis.cluster',
        section: 'services',
        status: 'fail',
        title: 'Redis Cluster',
        detail: `${redactUrl(url)} is a Redis Cluster node, but REDIS_URL names only it`,
        fix: 'List the cluster nodes in REDIS_URL, comma-separated (e.g. `redis://10.0.0.1:6379,redis://10.0.0.2:6379`).',
      });
    } else if (inCluster) {
      const state =
        info.cluster_enabled === '1' ? parseRedisInfo(String(await redis.call('CLUSTER', 'INFO'))) : {};
      const ok = state.cluster_state === 'ok';
      checks.push({
        id: 'redis.cluster',
        section: 'services',
        status: ok ? 'ok' : 'fail',
        title: 'Redis Cluster',
        detail:
          info.cluster_enabled !== '1'
            ? `${redactUrl(url)} is not a cluster node (cluster_enabled:0)`
            : `${redactUrl(url)}: cluster_state ${state.cluster_state ?? 'unknown'}, ${state.cluster_size ?? '?'} masters`,
        ...(ok
          ? {}
          : {
              fix: 'REDIS_URL lists several nodes, so they must form one healthy Redis Cluster (`redis-cli --cluster check`).',
            }),
      });
    }
    return checks;
  } catch (err) {
    return [
      {
        id: 'redis.reachable',
        section: 'services',
        status: 'fail',
        title: 'Redis',
        detail: `cannot reach ${redactUrl(url)}: ${messageOf(lastError ?? err)}`,
        fix: 'Start Redis or correct REDIS_URL (`npm run services` starts one on this machine; `docker compose up redis` another).',
      },
    ];
  } finally {
    // On a connection that already ended, disconnect() would hold the process for 2 s (a stream timer).
    if (redis.status !== 'end') redis.disconnect();
  }
}

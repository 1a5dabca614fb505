/**
 * Redis connections for BullMQ. Producers (the HTTP side) fail fast when Redis is down, so a webhook
 * answers 503 at once and the provider retries; workers wait for Redis to come back
 * (`maxRetriesPerRequest: null`, as BullMQ requires). Both reconnect by themselves.
 */
import { Redis, type RedisOptions } from 'ioredis';

export type ConnectionRole = 'producer' | 'worker';

export function createRedisConnection(url: string, role: ConnectionRole, extra: RedisOptions = {}): Redis {
  const common: RedisOptions = {
    connectTimeout: 2_000,
    // Reconnect forever, backing off to 2 s, so the process recovers when Redis returns.
    retryStrategy: (times) => Math.min(100 * times, 2_000),
    lazyConnect: false,
  };
  const byRole: RedisOptions =
    role === 'producer'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, enableAutoPipelining: true }
      : { maxRetriesPerRequest: null, enableReadyCheck: true };
  const redis = new Redis(url, { ...common, ...byRole, ...extra });
  // ioredis emits 'error' on every failed reconnect; without a listener Node would crash the process.
  // Health is reported by /readyz, not by this event.
  redis.on('error', () => undefined);
  return redis;
}

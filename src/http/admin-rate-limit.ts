/**
 * A fixed-window rate limit for the admin API, shared by every api replica through Redis.
 *
 * One key per client and window (`<prefix>:admin-rl:<client>:<window>`), counted with one Lua call
 * on that single key (INCR, and PEXPIRE on the first hit), so it is atomic and Redis Cluster safe.
 * Over the limit: 429 with `Retry-After` (seconds to the next window). Mount it before `adminAuth`
 * so guessing tokens is limited too.
 *
 * If Redis cannot answer, requests are let through (and logged): the admin API still needs its
 * bearer token, and an operator locked out of erasure during a Redis outage is worse than a briefly
 * unlimited, authenticated API.
 */
import type { Request, RequestHandler } from 'express';
import type { RedisClient } from '../queue/connection';
import type { Logger } from '../logger';

export interface AdminRateLimitOptions {
  redis: RedisClient;
  /** Key prefix (QUEUE_PREFIX). */
  prefix: string;
  /** Requests per client per minute. @defaultValue 120 */
  perMinute?: number;
  /** Window length. @defaultValue 60000 */
  windowMs?: number;
  /** Who a request counts against. @defaultValue the client IP (`req.ip`, honours `trust proxy`) */
  keyOf?: (req: Request) => string;
  log?: Logger;
  now?: () => number;
}

const HIT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`;

export function adminRateLimit(o: AdminRateLimitOptions): RequestHandler {
  const limit = o.perMinute ?? 120;
  const windowMs = o.windowMs ?? 60_000;
  const now = o.now ?? Date.now;
  const keyOf = o.keyOf ?? ((req: Request) => req.ip ?? 'unknown');
  return (req, res, next) => {
    const t = now();
    const window = Math.floor(t / windowMs);
    const key = `${o.prefix}:admin-rl:${keyOf(req)}:${window}`;
    (o.redis.eval(HIT, 1, key, String(windowMs * 2)) as Promise<number>).then(
      (count) => {
        const remaining = Math.max(0, limit - count);
        res.setHeader('X-RateLimit-Limit', String(limit));
        res.setHeader('X-RateLimit-Remaining', String(remaining));
        if (count <= limit) {
          next();
          return;
        }
        const retryAfter = Math.max(1, Math.ceil(((window + 1) * windowMs - t) / 1000));
        res.setHeader('Retry-After', String(retryAfter));
        o.log?.info({ route: req.baseUrl + req.path, retryAfter }, 'admin API rate limited');
        res
          .status(429)
          .json({ error: { code: 'rate_limited', message: `too many requests; retry in ${retryAfter} s` } });
      },
      (err: unknown) => {
        o.log?.warn(
          { err: { message: err instanceof Error ? err.message : String(err) } },
          'admin rate limit unavailable; request let through',
        );
        next();
      },
    );
  };
}

/**
 * Fixed-window rate limits for the admin surface (`/api`, `/admin/queues`), shared by every api
 * replica through Redis.
 *
 * One key per client and window (`<prefix>:<name>:<client>:<window>`), counted with one Lua call on
 * that single key (INCR, and PEXPIRE on the first hit), so it is atomic and Redis Cluster safe.
 * Over the limit: 429 with `Retry-After` (seconds to the next window).
 *
 * The client is the real peer (`req.ip`), which names the TCP peer unless `TRUST_PROXY` tells
 * express which proxies may set `X-Forwarded-For` (see config.ts): with the default (trust nobody)
 * a client cannot escape its limit by rotating that header.
 *
 * If Redis cannot answer, requests are let through (and logged): the admin API still needs its
 * bearer token, and an operator locked out of erasure during a Redis outage is worse than a briefly
 * unlimited, authenticated API.
 */
import type { Request, RequestHandler, Response } from 'express';
import type { RedisClient } from '../queue/connection';
import type { Logger } from '../logger';

export interface AdminRateLimitOptions {
  redis: RedisClient;
  /** Key prefix (QUEUE_PREFIX). */
  prefix: string;
  /** Requests per client per window. @defaultValue 120 */
  perMinute?: number;
  /** Window length. @defaultValue 60000 */
  windowMs?: number;
  /** Who a request counts against. @defaultValue the client IP (`req.ip`, honours TRUST_PROXY) */
  keyOf?: (req: Request) => string;
  log?: Logger;
  now?: () => number;
}

const HIT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`;

/** The real peer a request counts against (`req.ip` honours TRUST_PROXY only). */
export const peerOf = (req: Request): string => req.ip ?? req.socket.remoteAddress ?? 'unknown';

/** A counter per client and fixed window, in Redis. */
export interface WindowCounter {
  readonly limit: number;
  /** Adds one hit; resolves to the window's count after it. */
  hit(client: string): Promise<number>;
  /** The window's count, without adding one. */
  peek(client: string): Promise<number>;
  /** Seconds until the current window ends (at least 1). */
  retryAfter(): number;
}

export function windowCounter(o: {
  redis: RedisClient;
  /** Full key stem, e.g. `<prefix>:admin-rl`. */
  stem: string;
  limit: number;
  windowMs: number;
  now?: () => number;
}): WindowCounter {
  const now = o.now ?? Date.now;
  const keyOf = (client: string) => `${o.stem}:${client}:${Math.floor(now() / o.windowMs)}`;
  return {
    limit: o.limit,
    hit: (client) => o.redis.eval(HIT, 1, keyOf(client), String(o.windowMs * 2)) as Promise<number>,
    peek: async (client) => Number((await o.redis.get(keyOf(client))) ?? 0),
    retryAfter() {
      const t = now();
      return Math.max(1, Math.ceil(((Math.floor(t / o.windowMs) + 1) * o.windowMs - t) / 1000));
    },
  };
}

/** Answers 429 with `Retry-After` and the usual JSON error body. */
export function tooManyRequests(res: Response, retryAfter: number, message = 'too many requests'): void {
  res.setHeader('Retry-After', String(retryAfter));
  res.status(429).json({ error: { code: 'rate_limited', message: `${message}; retry in ${retryAfter} s` } });
}

/** Logs that Redis could not count, and lets the request through (see module comment). */
export function letThrough(log: Logger | undefined, err: unknown, what: string): void {
  log?.warn(
    { err: { message: err instanceof Error ? err.message : String(err) } },
    `${what} unavailable; request let through`,
  );
}

export function adminRateLimit(o: AdminRateLimitOptions): RequestHandler {
  const counter = windowCounter({
    redis: o.redis,
    stem: `${o.prefix}:admin-rl`,
    limit: o.perMinute ?? 120,
    windowMs: o.windowMs ?? 60_000,
    now: o.now,
  });
  const keyOf = o.keyOf ?? peerOf;
  return (req, res, next) => {
    counter.hit(keyOf(req)).then(
      (count) => {
        res.setHeader('X-RateLimit-Limit', String(counter.limit));
        res.setHeader('X-RateLimit-Remaining', String(Math.max(0, counter.limit - count)));
        if (count <= counter.limit) {
          next();
          return;
        }
        const retryAfter = counter.retryAfter();
        o.log?.info({ route: req.baseUrl + req.path, retryAfter }, 'admin API rate limited');
        tooManyRequests(res, retryAfter);
      },
      (err: unknown) => {
        letThrough(o.log, err, 'admin rate limit');
        next();
      },
    );
  };
}

/**
 * The one token guard of the admin surface: the admin API (`/api/...`) and the queue dashboard
 * (`/admin/queues`) both mount `adminAuth`.
 *
 * Tokens are named (`ADMIN_TOKENS=alice:…,ops-bot:…`; `ADMIN_TOKEN` is the token named `admin`), and
 * the name of the token that matched is the actor of the request (`res.locals.adminActor`), which
 * the audit log and the routes record. The presented token is hashed (SHA-256) and compared with
 * every configured token's hash by `timingSafeEqual`, without stopping at a match, so neither the
 * token's length, a matching prefix nor which token matched leaks through timing.
 *
 * Failed authentication is limited on its own, tightly (default 10 failures a minute per peer,
 * counted in Redis): past it the peer gets 429 with `Retry-After` for the rest of the window, even
 * with a right token — otherwise guessing would go on at the generous rate authenticated calls get.
 * A missing or wrong token answers 401 with `WWW-Authenticate` (RFC 6750; plus a Basic challenge
 * where Basic is accepted, so a browser shows its login prompt).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import type { Logger } from '../logger';
import type { RedisClient } from '../queue/connection';
import { letThrough, peerOf, tooManyRequests, windowCounter } from './admin-rate-limit';

/** A configured admin token and the name the audit log records for it. */
export interface AdminToken {
  name: string;
  token: string;
}

export interface AdminAuthOptions {
  tokens: readonly AdminToken[];
  redis: RedisClient;
  /** Key prefix (QUEUE_PREFIX). */
  prefix: string;
  log?: Logger;
  /** Also accept HTTP Basic auth with the token as the password (the dashboard, in a browser). @defaultValue false */
  basic?: boolean;
  /** Failed authentications per peer and window before 429. @defaultValue 10 */
  failuresPerWindow?: number;
  /** @defaultValue 60000 */
  failureWindowMs?: number;
  now?: () => number;
}

const BEARER = /^Bearer[ ]+(\S+)\s*$/i;
const BASIC = /^Basic[ ]+([A-Za-z0-9+/=]+)\s*$/i;

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** The token presented as a bearer token, or (when `basic`) as a Basic auth password, if any. */
export function presentedToken(authorization: string | undefined, basic = false): string | undefined {
  if (!authorization) return undefined;
  const bearer = BEARER.exec(authorization)?.[1];
  if (bearer || !basic) return bearer;
  const encoded = BASIC.exec(authorization)?.[1];
  if (!encoded) return undefined;
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 ? decoded.slice(colon + 1) : undefined;
}

/** The name of the token `presented` equals, comparing with every token in constant time. */
export function tokenMatcher(tokens: readonly AdminToken[]): (presented: string | undefined) => string | undefined {
  if (tokens.length === 0 || tokens.some((t) => t.token.length === 0))
    throw new Error('adminAuth needs at least one non-empty token');
  const expected = tokens.map((t) => ({ name: t.name, hash: digest(t.token) }));
  return (presented) => {
    // Hash even when absent, so a missing header costs the same as a wrong one.
    const hash = digest(presented ?? '');
    let matched: string | undefined;
    for (const t of expected) if (timingSafeEqual(hash, t.hash) && matched === undefined) matched = t.name;
    return presented === undefined ? undefined : matched;
  };
}

/** The name of the admin token that authenticated this request (`anonymous` before or without one). */
export function adminActor(res: Response): string {
  const actor: unknown = res.locals.adminActor;
  return typeof actor === 'string' ? actor : 'anonymous';
}

function unauthorized(res: Response, presented: string | undefined, basic: boolean): void {
  const bearer = 'Bearer realm="rapport-admin"';
  res.setHeader('WWW-Authenticate', basic ? ['Basic realm="rapport-admin", charset="UTF-8"', bearer] : bearer);
  res.status(401).json({
    error: { code: 'unauthorized', message: presented ? 'invalid admin token' : 'missing admin token' },
  });
}

export function adminAuth(o: AdminAuthOptions): RequestHandler {
  const match = tokenMatcher(o.tokens);
  const basic = o.basic ?? false;
  const failures = windowCounter({
    redis: o.redis,
    stem: `${o.prefix}:admin-auth-fail`,
    limit: o.failuresPerWindow ?? 10,
    windowMs: o.failureWindowMs ?? 60_000,
    now: o.now,
  });
  const blocked = (res: Response, peer: string) => {
    const retryAfter = failures.retryAfter();
    o.log?.warn({ peer, retryAfter }, 'admin authentication blocked after repeated failures');
    tooManyRequests(res, retryAfter, 'too many failed authentications');
  };
  return async (req, res, next) => {
    const peer = peerOf(req);
    const before = await failures.peek(peer).catch((err: unknown) => {
      letThrough(o.log, err, 'admin authentication failure limit');
      return 0;
    });
    if (before >= failures.limit) return blocked(res, peer);
    const presented = presentedToken(req.get('authorization'), basic);
    const name = match(presented);
    if (name !== undefined) {
      res.locals.adminActor = name;
      next();
      return;
    }
    const after = await failures.hit(peer).catch(() => 0);
    if (after > failures.limit) return blocked(res, peer);
    unauthorized(res, presented, basic);
  };
}

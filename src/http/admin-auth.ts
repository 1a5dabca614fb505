/**
 * Bearer-token guard for the admin API (`/api/...`, `ADMIN_TOKEN`).
 *
 * Both the presented and the expected token are hashed (SHA-256) before `timingSafeEqual`, so the
 * comparison takes the same time whatever the presented token's length or content: neither the
 * token's length nor a matching prefix leaks through timing. A missing or wrong token answers 401
 * with `WWW-Authenticate: Bearer` (RFC 6750) and the usual JSON error body.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';

const BEARER = /^Bearer[ ]+(\S+)\s*$/i;

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

export function adminAuth(token: string): RequestHandler {
  if (token.length === 0) throw new Error('adminAuth needs a non-empty token');
  const expected = digest(token);
  return (req, res, next) => {
    const presented = BEARER.exec(req.get('authorization') ?? '')?.[1];
    // Hash even when absent, so a missing header costs the same as a wrong one.
    const ok = timingSafeEqual(digest(presented ?? ''), expected) && presented !== undefined;
    if (ok) {
      next();
      return;
    }
    res.setHeader('WWW-Authenticate', 'Bearer realm="rapport-admin"');
    res.status(401).json({
      error: { code: 'unauthorized', message: presented ? 'invalid bearer token' : 'missing bearer token' },
    });
  };
}

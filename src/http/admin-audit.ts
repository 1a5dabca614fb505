/**
 * One log line per admin API call: actor (the name of the admin token that authenticated it, or
 * `anonymous`), method, route shape, target ids, status, duration (reads that succeed at debug,
 * everything else at info). The
 * path is logged with ids only (24-hex ids and Slack ids are kept as targets); the query string is
 * never logged, since lookups carry phone numbers and emails there (`/customers?phone=…`).
 */
import type { RequestHandler } from 'express';
import type { Logger } from '../logger';
import { adminActor } from './admin-auth';

const ID = /^[0-9a-f]{24}$/i;

/** `/customers/65a…/merge` → `{ route: '/customers/:id/merge', targets: ['65a…'] }`; other segments that are not plain words become `:param`. */
export function routeShape(path: string): { route: string; targets: string[] } {
  const targets: string[] = [];
  const segments = path.split('/').map((s) => {
    if (ID.test(s)) {
      targets.push(s.toLowerCase());
      return ':id';
    }
    return /^[a-z-]+$/.test(s) || s === '' ? s : ':param';
  });
  return { route: segments.join('/'), targets };
}

export function adminAudit(o: { log: Logger }): RequestHandler {
  return (req, res, next) => {
    const started = Date.now();
    res.on('finish', () => {
      const { route, targets } = routeShape(req.baseUrl + req.path);
      // Reads that succeed are polling (the sandbox page refreshes every second): debug. Changes and
      // failures are the audit trail: info.
      const read = (req.method === 'GET' || req.method === 'HEAD') && res.statusCode < 400;
      o.log[read ? 'debug' : 'info'](
        {
          actor: adminActor(res),
          method: req.method,
          route,
          targets,
          status: res.statusCode,
          ms: Date.now() - started,
        },
        'admin request',
      );
    });
    next();
  };
}

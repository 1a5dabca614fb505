/**
 * The queue dashboard (bull-board) at `/admin/queues`: every queue, each `inbound` partition as its
 * own queue (`inbound-0 … inbound-N-1`), with waiting/active/delayed/failed jobs, retry and clean.
 *
 * Protected by ADMIN_TOKEN, like `/api`. A script sends `Authorization: Bearer <token>`; a browser
 * cannot easily, so HTTP Basic auth is accepted too, with any user name and the token as the
 * password: open the page, the browser asks, type e.g. `admin` / `<ADMIN_TOKEN>` (or
 * `curl -u admin:$ADMIN_TOKEN …`). Serve it over HTTPS only: Basic auth sends the token with every
 * request. The dashboard shows job data, which is customer data.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { Router, type RequestHandler } from 'express';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queues } from '../queue/queues';
import { concreteQueues } from './admin-dlq';

export interface QueueDashboardOptions {
  queues: Queues;
  /** The admin token (ADMIN_TOKEN): as a bearer token, or as the Basic auth password. */
  adminToken: string;
  /** Where the dashboard is mounted. @defaultValue '/admin/queues' */
  basePath?: string;
  /** Hide retry/clean/remove buttons. @defaultValue false */
  readOnly?: boolean;
}

const BEARER = /^Bearer[ ]+(\S+)\s*$/i;
const BASIC = /^Basic[ ]+([A-Za-z0-9+/=]+)\s*$/i;

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** The token presented as a bearer token or as a Basic auth password, if any. */
export function presentedToken(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const bearer = BEARER.exec(authorization)?.[1];
  if (bearer) return bearer;
  const basic = BASIC.exec(authorization)?.[1];
  if (!basic) return undefined;
  const decoded = Buffer.from(basic, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 ? decoded.slice(colon + 1) : undefined;
}

/** Bearer or Basic (token as password); compared as SHA-256 digests in constant time, like adminAuth. */
export function dashboardAuth(token: string): RequestHandler {
  if (token.length === 0) throw new Error('dashboardAuth needs a non-empty token');
  const expected = digest(token);
  return (req, res, next) => {
    const presented = presentedToken(req.get('authorization'));
    const ok = timingSafeEqual(digest(presented ?? ''), expected) && presented !== undefined;
    if (ok) {
      next();
      return;
    }
    // The Basic challenge makes a browser show its login prompt.
    res.setHeader('WWW-Authenticate', [
      'Basic realm="rapport-admin", charset="UTF-8"',
      'Bearer realm="rapport-admin"',
    ]);
    res.status(401).json({
      error: { code: 'unauthorized', message: presented ? 'invalid admin token' : 'missing admin token' },
    });
  };
}

export function queueDashboard({
  queues,
  adminToken,
  basePath = '/admin/queues',
  readOnly = false,
}: QueueDashboardOptions): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(basePath);
  createBullBoard({
    queues: [...concreteQueues(queues).values()].map((q) => new BullMQAdapter(q, { readOnlyMode: readOnly })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Rapport queues' } },
  });
  const router = Router();
  router.use(basePath, dashboardAuth(adminToken), serverAdapter.getRouter() as RequestHandler);
  return router;
}

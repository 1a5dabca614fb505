/**
 * The queue dashboard (bull-board) at `/admin/queues`: every queue, each `inbound` partition as its
 * own queue (`inbound-0 … inbound-N-1`), with waiting/active/delayed/failed jobs, retry and clean.
 *
 * Guarded like `/api`, by the same middleware (the caller passes it as `guard`: the admin rate
 * limit and `adminAuth` from admin-auth.ts, with Basic auth accepted). A script sends
 * `Authorization: Bearer <token>`; a browser cannot easily, so HTTP Basic auth is accepted too, with
 * any user name and an admin token as the password: open the page, the browser asks, type e.g.
 * `admin` / `<ADMIN_TOKEN>` (or `curl -u admin:$ADMIN_TOKEN …`). Serve it over HTTPS only: Basic
 * auth sends the token with every request. The dashboard shows job data, which is customer data.
 */
import { Router, type RequestHandler } from 'express';
import type { Queues } from '../queue/queues';
import { concreteQueues } from './admin-dlq';

export interface QueueDashboardOptions {
  queues: Queues;
  /** Middleware run before the dashboard: rate limit and `adminAuth({ basic: true })`. */
  guard: RequestHandler[];
  /** Where the dashboard is mounted. @defaultValue '/admin/queues' */
  basePath?: string;
  /** Hide retry/clean/remove buttons. @defaultValue false */
  readOnly?: boolean;
}

export function queueDashboard({
  queues,
  guard,
  basePath = '/admin/queues',
  readOnly = false,
}: QueueDashboardOptions): Router {
  // bull-board (and the ~190 modules under it) is loaded here, not at import: only api and all
  // processes mount the dashboard, and a worker should not carry it (bench/e2e measures each RSS).
  /* eslint-disable @typescript-eslint/no-require-imports -- deliberate lazy load (see above) */
  const { createBullBoard } = require('@bull-board/api') as typeof import('@bull-board/api');
  const { BullMQAdapter } = require('@bull-board/api/bullMQAdapter') as typeof import('@bull-board/api/bullMQAdapter');
  const { ExpressAdapter } = require('@bull-board/express') as typeof import('@bull-board/express');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(basePath);
  createBullBoard({
    queues: [...concreteQueues(queues).values()].map((q) => new BullMQAdapter(q, { readOnlyMode: readOnly })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Rapport queues' } },
  });
  const router = Router();
  router.use(basePath, ...guard, serverAdapter.getRouter() as RequestHandler);
  return router;
}

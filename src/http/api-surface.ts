/**
 * What a process that serves traffic (roles api and all) mounts besides health and metrics: the
 * provider webhooks, Slack's events, commands and interactions, the queue dashboard, the media
 * links and the admin API at /api.
 *
 * The composition root (src/app.ts) loads this module only in those roles: a worker or
 * whatsapp-web process serves health and metrics only, and carrying the webhook adapters, the admin
 * routes and their schemas would cost it ~1.2 MB of heap for good (measured), and up to ~4 times
 * that in RSS, since V8 lets the old generation grow to a multiple of its live size between full
 * collections (bench/README.md, "Where the RSS goes").
 */
import express, { type Express, type RequestHandler, type Router as ExpressRouter } from 'express';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { RedisClient } from '../queue/connection';
import type { Queues } from '../queue/queues';
import type { Intake } from '../queue/intake';
import { QueueName } from '../queue/names';
import type { IdentityModels } from '../identity/models';
import type { MergeService } from '../identity/merge';
import type { ClaimService } from '../identity/claims';
import type { RouterModels } from '../router/models';
import type { Router as RapportRouter } from '../router';
import { agentChanged } from '../router/hot-state';
import { mergeOutcome } from '../router/claims-bridge';
import type { ErasureService } from '../privacy/erase';
import type { MediaStore } from '../media/store';
import { buildWebhookAdapters } from '../channels';
import { webhookRoute } from './webhooks';
import { slackRoutes } from './slack';
import { adminAuth } from './admin-auth';
import { agentAdminRoutes } from './admin-agents';
import { dlqRoutes } from './admin-dlq';
import { openApiRoute } from './openapi';
import { queueDashboard } from './admin-queues';
import { privacyRoutes } from './admin-privacy';
import { adminRateLimit } from './admin-rate-limit';
import { adminAudit } from './admin-audit';
import { customerAdminRoutes } from './admin-customers';
import { mediaRoutes } from './media';

/** The parts of the app the traffic routes are built from (src/app.ts passes all of its parts). */
export interface ApiSurfaceParts {
  config: Readonly<Config>;
  log: Logger;
  metrics: Metrics;
  redis: RedisClient;
  queues: Queues;
  intake: Intake;
  models: IdentityModels & RouterModels;
  router: RapportRouter;
  erasures: ErasureService;
  mediaStore: MediaStore;
  merges: MergeService;
  claims: ClaimService;
}

/** Mounts the webhooks, Slack's routes, the dashboard, the media links and /api on `http`. */
export function mountApiSurface(http: Express, parts: ApiSurfaceParts): void {
  const { config, log, queues, mediaStore } = parts;
  mountWebhooks(http, parts);
  const guard = adminGuard(parts);
  http.use(queueDashboard({ queues, guard: guard(true), basePath: '/admin/queues' }));
  http.use(
    mediaRoutes({
      store: mediaStore,
      urlSecret: config.media.urlSecret,
      log: log.child({ component: 'webhooks' }),
    }),
  );
  http.use('/api', adminApi(parts, guard));
}

/** One webhook route per enabled channel adapter, and the Slack events/interactivity/commands routes. */
function mountWebhooks(
  http: Express,
  { config, log, metrics, redis, queues, intake, router }: ApiSurfaceParts,
): void {
  const webhookLog = log.child({ component: 'webhooks' });
  for (const { path, adapter } of buildWebhookAdapters(config)) {
    http.use(
      webhookRoute({ path, adapter, intake, metrics, log: webhookLog, maxBytes: config.webhookMaxBytes }),
    );
  }
  if (config.slack) {
    http.use(
      slackRoutes({
        signingSecret: config.slack.signingSecret,
        agentEvents: queues[QueueName.agentEvents],
        redis,
        prefix: config.queuePrefix,
        commands: router.commands,
        log: log.child({ component: 'slack' }),
        metrics,
        maxBytes: config.webhookMaxBytes,
      }),
    );
  }
}

type AdminGuard = (basic: boolean) => RequestHandler[];

/**
 * One guard for the whole admin surface: the generous per-peer limit, then the token check (with its
 * tight limit on failures); the dashboard also takes Basic auth for browsers.
 */
function adminGuard({ config, log, redis }: ApiSurfaceParts): AdminGuard {
  const adminLog = log.child({ component: 'admin' });
  return (basic) => [
    adminRateLimit({ redis, prefix: config.queuePrefix, perMinute: 600, log: adminLog }),
    adminAudit({ log: adminLog }),
    adminAuth({ tokens: config.adminTokens, redis, prefix: config.queuePrefix, log: adminLog, basic }),
  ];
}

/** The admin API mounted at /api. */
function adminApi(parts: ApiSurfaceParts, guard: AdminGuard): ExpressRouter {
  const { config, log, queues, models, router, erasures, mediaStore, merges, claims, redis } = parts;
  const api = express.Router();
  // Every admin call is audited (ids only), under the name of the token that made it.
  api.use(...guard(false));
  api.use(express.json({ limit: '1mb' }));
  api.use(openApiRoute());
  api.use(
    agentAdminRoutes({
      models,
      router,
      log: log.child({ component: 'admin' }),
      agentChanged: (id) => agentChanged(redis, config.queuePrefix, id),
    }),
  );
  api.use(dlqRoutes({ queues, isErased: (job) => erasures.isErasedJob(job.data, job.timestamp) }));
  // Export and erase come before the customers routes (DELETE /customers/:id, GET …/export).
  api.use(privacyRoutes({ models, erasures, media: mediaStore, log: log.child({ component: 'admin' }) }));
  api.use(
    customerAdminRoutes({
      models,
      merges,
      claims,
      defaultRegion: config.defaultRegion,
      onMerged: (result) => router.onMerged(mergeOutcome(result)),
      onUnmerged: (result) =>
        router.onUnmerged({
          survivorId: String(result.event.survivorId),
          restoredId: String(result.event.mergedId),
          mergeId: String(result.event._id),
        }),
      rename: (id, name) => router.naming.rename(id, name, 'admin', 'admin'),
    }),
  );
  return api;
}

/**
 * The composition root: builds every part of Rapport from config with plain factory functions.
 * Nothing here is a module-level singleton, so a test can build two apps side by side.
 *
 * Roles: `api` serves HTTP (webhooks, health, admin); `worker` runs the queue consumers; `all` does
 * both (local development).
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import type { Job, Worker } from 'bullmq';
import type { RedisClient } from './queue/connection';
import { channelStates, type Config } from './config';
import { createLogger, type Logger } from './logger';
import { createMetrics, type Metrics } from './metrics';
import { createRedisConnection } from './queue/connection';
import { closeQueues, createQueues, type Queues } from './queue/queues';
import { QueueName } from './queue/names';
import { createIntake, type Intake } from './queue/intake';
import { connectMongo, type MongoHandle } from './storage/mongo';
import { healthRoutes } from './http/health';
import { errorHandler, notFound } from './http/errors';
import { requestMetrics } from './http/metrics-middleware';
import { webhookRoute } from './http/webhooks';
import { buildWebhookAdapters } from './channels';
import { registerIdentityModels, type IdentityModels } from './identity/models';
import { createIdentityStore } from './identity/resolve';
import { identityChanging, withHotIdentity } from './identity/cache';
import { agentChanged } from './router/hot-state';
import type { MergeStep } from './identity/merge';
import { createInboundProcessor, type InboundProcessor } from './identity/inbound-processor';
import { createInboundWorkers } from './queue/inbound-worker';
import { createQueueWorker } from './queue/workers';
import { registerRouterModels, type RouterModels } from './router/models';
import { createRouter, type Router as RapportRouter } from './router';
import type { Senders } from './router/delivery';
import { createInboundPipeline } from './router/pipeline';
import { createSlackClient, type SlackClient } from './channels/slack/client';
import { createTwilioSender } from './channels/twilio/send';
import { createWhatsAppCloudSender } from './channels/whatsapp-cloud/send';
import { createMessengerProfiles, createMessengerSender } from './channels/messenger/send';
import { slackRoutes } from './http/slack';
import { adminAuth } from './http/admin-auth';
import { agentAdminRoutes } from './http/admin-agents';
import { dlqRoutes } from './http/admin-dlq';
import { openApiRoute } from './http/openapi';
import { queueDashboard } from './http/admin-queues';
import { observeJobDurations, registerChannelMetrics, registerQueueMetrics } from './queue/queue-metrics';
import { createErasureService, markerKeysOf } from './privacy/erase';
import { startRetention, type Retention } from './privacy/retention';
import { privacyRoutes } from './http/admin-privacy';
import { adminRateLimit } from './http/admin-rate-limit';
import { adminAudit } from './http/admin-audit';
import { customerAdminRoutes } from './http/admin-customers';
import { createMergeService } from './identity/merge';
import { createClaimService } from './identity/claims';
import { createClaimLimits } from './identity/claim-limits';
import { createClaimsBridge, mergeOutcome } from './router/claims-bridge';
import { createWhatsAppWebChannel, type WhatsAppWebChannel } from './channels/whatsapp-web/session';
import { createMediaStore } from './media/store';
import { createInboundMedia } from './media/inbound';
import type { MediaFetchOptions } from './media/fetch';
import { createOutboundMedia } from './media/outbound';
import { mediaRoutes } from './http/media';
import { createMediaStore as createWhatsAppWebMediaStore } from './channels/whatsapp-web/media';
import { createBlobStore } from './channels/whatsapp-web/store';
import type pino from 'pino';

export type Role = 'api' | 'worker' | 'whatsapp-web' | 'all';

export interface AppOptions {
  role?: Role;
  /** Log destination (tests capture logs to check nothing sensitive is written). */
  logDestination?: pino.DestinationStream;
}

export interface RapportApp {
  config: Readonly<Config>;
  role: Role;
  log: Logger;
  metrics: Metrics;
  http: Express;
  workers: Worker[];
  queues: Queues;
  intake: Intake;
  redis: RedisClient;
  mongo: MongoHandle;
  models: IdentityModels & RouterModels;
  inbound: InboundProcessor;
  router: RapportRouter;
  slack?: SlackClient;
  /** The WhatsApp Web session channel, when WHATSAPP_WEB_ENABLED (the session runs in roles whatsapp-web/all). */
  whatsappWeb?: WhatsAppWebChannel;
  /** Starts listening (port 0 picks a free one); resolves with the bound port. */
  /** Listens on `port` (default PORT) and `host` (default all interfaces); resolves to the port. */
  listen(port?: number, host?: string): Promise<number>;
  /** Stops taking requests, finishes in-flight jobs, closes connections; bounded by SHUTDOWN_TIMEOUT_MS. */
  close(): Promise<void>;
}

/** Merge and undo steps at which the hot cache's epoch changes (before writes; identities moved; done). */
const HOT_CACHE_STEPS = new Set<MergeStep>([
  'survivor-locked',
  'identities-moved',
  'unlocked',
  'undo-locked',
  'merged-restored',
  'undo-unlocked',
]);

export function buildApp(config: Readonly<Config>, options: AppOptions = {}): RapportApp {
  const role = options.role ?? 'all';
  const log = createLogger({
    level: config.logLevel,
    destination: options.logDestination,
    dataKey: config.dataKey,
  });
  const metrics = createMetrics();

  const redis = createRedisConnection(config.redisUrl, 'producer');
  const queues = createQueues(
    redis,
    { prefix: config.queuePrefix, inboundPartitions: config.inboundPartitions },
    log.child({ component: 'queue' }),
  );
  const intake = createIntake({ queue: queues[QueueName.inbound], redis, prefix: config.queuePrefix });
  registerQueueMetrics(metrics.registry, queues);
  registerChannelMetrics(metrics.registry, { channels: channelStates(config), intake });
  const mongo = connectMongo(config.mongodbUri, log.child({ component: 'mongo' }));
  // Registered before the connection opens, so their (correctness-carrying) unique indexes are built.
  const models = { ...registerIdentityModels(mongo.connection), ...registerRouterModels(mongo.connection) };
  // Returning customers are resolved from the hot cache in Redis (src/identity/cache.ts).
  const identityStore = withHotIdentity(
    createIdentityStore(models, { defaultRegion: config.defaultRegion }),
    redis,
    config.queuePrefix,
    config.defaultRegion,
  );
  const identityChanged = () => identityChanging(redis, config.queuePrefix);
  const identity = createInboundProcessor({ store: identityStore, log: log.child({ component: 'inbound' }) });

  const slack = config.slack
    ? createSlackClient({ token: config.slack.botToken, apiUrl: config.slack.apiUrl })
    : undefined;
  const mediaStore = createMediaStore(mongo.connection);
  const merges = createMergeService(models, {
    log: log.child({ component: 'merge' }),
    // The hot cache's epoch changes before a merge (undo) writes and again once identities moved,
    // before messages are swept (cache.ts; src/identity/README.md, "Messages in flight").
    onStep: async (step) => {
      if (HOT_CACHE_STEPS.has(step)) await identityChanged();
    },
    onResumeFailed: (_id, _failures, alert) =>
      metrics.mergeResumeFailures.inc({ outcome: alert ? 'alert' : 'failed' }),
  });
  const erasureService = createErasureService({
    models,
    slack,
    redis,
    prefix: config.queuePrefix,
    ...markerKeysOf(config),
    defaultRegion: config.defaultRegion,
    media: mediaStore,
    log: log.child({ component: 'erasure' }),
  });
  // The hot cache's epoch changes before an erasure starts; its Redis step deletes the customer's
  // hot keys and changes the epoch again (forgetHotCustomer).
  const erasures: typeof erasureService = {
    ...erasureService,
    erase: async (id, actor) => {
      await identityChanged();
      return erasureService.erase(id, actor);
    },
    resume: async (opts) => {
      await identityChanged();
      return erasureService.resume(opts);
    },
  };
  const claimLimits = createClaimLimits({ redis, prefix: config.queuePrefix, limits: config.claims.limits });
  const claims = createClaimService({ models, merges, limits: claimLimits, identityChanging: identityChanged });
  const claimsBridge = createClaimsBridge({
    claims,
    models,
    defaultRegion: config.defaultRegion,
    config: config.claims,
    limits: claimLimits,
    isErasedOptOut: (key, channel) => erasures.isOptOutErased(key, channel),
    onCode: (outcome) => metrics.claimCodes.inc({ outcome }),
  });
  const senders = buildSenders(config);
  const whatsappWeb = config.whatsappWeb.enabled
    ? createWhatsAppWebChannel({
        chromiumPath: config.whatsappWeb.chromiumPath,
        redis,
        redisUrl: config.redisUrl,
        queuePrefix: config.queuePrefix,
        intake,
        mongoConnection: mongo.connection,
        log: log.child({ component: 'whatsapp-web' }),
        registry: metrics.registry,
        notify:
          slack && config.slack?.escalationChannel
            ? notifier(slack, config.slack.escalationChannel)
            : undefined,
      })
    : undefined;
  // Any process can send through the session: the sender queues the job for the session holder.
  if (whatsappWeb) senders['whatsapp-web'] = whatsappWeb.sender();
  const runsSession = whatsappWeb !== undefined && (role === 'whatsapp-web' || role === 'all');
  const inboundMedia = createInboundMedia({
    store: mediaStore,
    fetch: mediaFetchOptions(config, mongo),
    maxBytes: config.media.maxBytes,
    log: log.child({ component: 'media' }),
  });
  const router = createRouter({
    config: config.router,
    models,
    queues,
    redis,
    prefix: config.queuePrefix,
    slack,
    escalationChannel: config.slack?.escalationChannel,
    senders,
    claims: claimsBridge,
    link: claimsBridge,
    claimOffers: claimsBridge,
    isErasedOptOut: (key, channel) => erasures.isOptOutErased(key, channel),
    media: {
      store: mediaStore,
      inbound: inboundMedia,
      outbound: createOutboundMedia({
        store: mediaStore,
        slack,
        publicUrl: config.publicUrl,
        urlSecret: config.media.urlSecret,
        urlTtlMs: config.media.urlTtlMs,
        maxBytes: config.media.maxBytes,
      }),
    },
    messengerProfiles: config.messenger
      ? createMessengerProfiles({
          pageAccessToken: config.messenger.pageAccessToken,
          graphBaseUrl: config.graph.baseUrl,
          graphVersion: config.graph.version,
          appSecret: config.meta?.appSecret,
        })
      : undefined,
    log,
    metrics,
  });
  const inbound = createInboundPipeline(identity, router, models, config.defaultRegion);

  const http = express();
  http.disable('x-powered-by');
  // Only TRUST_PROXY decides whose X-Forwarded-For is believed (req.ip keys the admin limits);
  // Twilio signatures are checked against PUBLIC_URL, never the forwarded host or protocol.
  http.set('trust proxy', config.trustProxy);
  http.use(requestMetrics(metrics));
  http.use(
    healthRoutes({
      metrics,
      queues,
      intake,
      channels: channelStates(config),
      dependencies: [
        { name: 'redis', check: async () => void (await redis.ping()) },
        { name: 'mongodb', check: () => mongo.ping(800) },
        ...(runsSession && whatsappWeb
          ? [
              {
                name: 'whatsapp-web',
                check: async () => {
                  const r = whatsappWeb.readiness();
                  if (!r.ok) throw new Error(`${r.state}${r.detail ? `: ${r.detail}` : ''}`);
                  return { state: r.state };
                },
              },
            ]
          : []),
      ],
    }),
  );
  // Worker and whatsapp-web processes serve only health and metrics; api and all serve traffic.
  if (role === 'api' || role === 'all') {
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
    // One guard for the whole admin surface: the generous per-peer limit, then the token check
    // (with its tight limit on failures); the dashboard also takes Basic auth for browsers.
    const adminLog = log.child({ component: 'admin' });
    const guard = (basic: boolean) => [
      adminRateLimit({ redis, prefix: config.queuePrefix, perMinute: 600, log: adminLog }),
      adminAudit({ log: adminLog }),
      adminAuth({ tokens: config.adminTokens, redis, prefix: config.queuePrefix, log: adminLog, basic }),
    ];
    http.use(queueDashboard({ queues, guard: guard(true), basePath: '/admin/queues' }));
    http.use(mediaRoutes({ store: mediaStore, urlSecret: config.media.urlSecret, log: webhookLog }));
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
    http.use('/api', api);
  }
  http.use(notFound());
  http.use(errorHandler(log.child({ component: 'http' })));

  const workers: Worker[] = [];
  if (runsSession && whatsappWeb) {
    // The session needs the database (its auth store); start it once MongoDB is there.
    void mongo.ready
      .then(() => whatsappWeb.start())
      .catch((err: unknown) => log.error({ err }, 'whatsapp-web failed to start'));
  }
  let resumeTimer: NodeJS.Timeout | undefined;
  let retention: Retention | undefined;
  if (role !== 'api' && role !== 'whatsapp-web') {
    retention = startRetention({
      config,
      models,
      redisUrl: config.redisUrl,
      prefix: config.queuePrefix,
      registry: metrics.registry,
      log: log.child({ component: 'retention' }),
      erasures,
      media: { store: mediaStore, days: config.media.retentionDays },
    });
    // Merges left half-done by a crash are finished by whichever worker finds them.
    resumeTimer = setInterval(() => {
      merges.resumeMerges().catch((err: unknown) => log.warn({ err }, 'resuming merges failed'));
      router.sweepStale().catch((err: unknown) => log.warn({ err }, 'outbox sweep failed'));
    }, 60_000);
    resumeTimer.unref();
    const common = { prefix: config.queuePrefix, redisUrl: config.redisUrl, metrics };
    workers.push(
      ...createInboundWorkers({
        ...common,
        queue: queues[QueueName.inbound],
        processor: inbound,
        isErased: (job) => erasures.isErasedJob(job.data, job.timestamp),
        log: log.child({ component: 'inbound-worker' }),
      }),
    );
    // The plain queues: each with its handler and concurrency (to-agent only when Slack is on).
    const slackDelivery = router.slackDelivery;
    type PlainWorker = [QueueName, number, (job: Job) => Promise<unknown>];
    const plain: PlainWorker[] = [
      [QueueName.toCustomer, 8, (job) => router.delivery.handle(job)],
      [QueueName.timers, 4, (job) => router.sla.handle(job)],
      [QueueName.agentEvents, 4, (job) => router.agentEvents.handle(job)],
      ...(slackDelivery
        ? [[QueueName.toAgent, 8, (job: Job) => slackDelivery.handle(job)] satisfies PlainWorker]
        : []),
    ];
    for (const [name, concurrency, handler] of plain) {
      workers.push(
        createQueueWorker({
          ...common,
          queueName: name,
          label: name,
          concurrency,
          handler,
          log: log.child({ component: `${name}-worker` }),
        }),
      );
    }
  }

  for (const worker of workers) observeJobDurations(worker, metrics.jobDuration);

  let server: Server | undefined;
  let closing: Promise<void> | undefined;

  return {
    config,
    role,
    log,
    metrics,
    http,
    workers,
    queues,
    intake,
    redis,
    mongo,
    models,
    inbound,
    router,
    slack,
    whatsappWeb,
    async listen(port = config.port, host = '0.0.0.0') {
      server = http.listen(port, host);
      await once(server, 'listening');
      return (server.address() as AddressInfo).port;
    },
    close() {
      closing ??= (async () => {
        const deadline = new Promise<void>((resolve) =>
          setTimeout(resolve, config.shutdownTimeoutMs).unref(),
        );
        const graceful = (async () => {
          if (server) {
            const listening = server;
            const closed = new Promise<void>((resolve) => listening.close(() => resolve()));
            // A keep-alive connection busy with a request when the shutdown began becomes idle once
            // that response is sent, and would then hold the server open until the deadline (seen
            // under load: 3 of 27 api stops took the whole SHUTDOWN_TIMEOUT_MS). Close those as they
            // go idle; in-flight requests still finish.
            const sweep = setInterval(() => listening.closeIdleConnections(), 50);
            listening.closeIdleConnections();
            await closed;
            clearInterval(sweep);
          }
          clearInterval(resumeTimer);
          await Promise.all(workers.map((w) => w.close()));
          await retention?.close();
          await whatsappWeb?.stop();
          await closeQueues(queues);
          await mongo.close();
          redis.disconnect();
        })();
        await Promise.race([graceful, deadline]);
        server?.closeAllConnections();
      })();
      return closing;
    },
  };
}

/** The outbound sender of every enabled channel. */
function buildSenders(config: Readonly<Config>): Senders {
  const senders: Senders = {};
  if (config.twilio) {
    senders.twilio = createTwilioSender({
      accountSid: config.twilio.accountSid,
      authToken: config.twilio.authToken,
      smsFrom: config.twilio.smsFrom,
      whatsappFrom: config.twilio.whatsappFrom,
      apiBaseUrl: config.twilio.apiBaseUrl,
      statusCallbackUrl: `${config.publicUrl}/webhooks/twilio/status`,
    });
  }
  if (config.whatsappCloud) {
    senders['whatsapp-cloud'] = createWhatsAppCloudSender({
      accessToken: config.whatsappCloud.accessToken,
      phoneNumberId: config.whatsappCloud.phoneNumberId,
      graphBaseUrl: config.graph.baseUrl,
      graphVersion: config.graph.version,
    });
  }
  if (config.messenger) {
    senders.messenger = createMessengerSender({
      pageAccessToken: config.messenger.pageAccessToken,
      graphBaseUrl: config.graph.baseUrl,
      graphVersion: config.graph.version,
      appSecret: config.meta?.appSecret,
    });
  }
  return senders;
}

/** How inbound files are fetched: each provider's credentials and base URL. */
function mediaFetchOptions(config: Readonly<Config>, mongo: MongoHandle): MediaFetchOptions {
  const kept = createWhatsAppWebMediaStore({ blobs: createBlobStore({ connection: mongo.connection }) });
  return {
    graph: {
      baseUrl: (config.graph.baseUrl ?? 'https://graph.facebook.com').replace(/\/+$/, ''),
      version: config.graph.version,
      ...(config.whatsappCloud ? { whatsappToken: config.whatsappCloud.accessToken } : {}),
    },
    ...(config.twilio
      ? {
          twilio: {
            accountSid: config.twilio.accountSid,
            authToken: config.twilio.authToken,
            apiBaseUrl: config.twilio.apiBaseUrl ?? 'https://api.twilio.com',
          },
        }
      : {}),
    whatsappWeb: (id) => kept.get(id),
  };
}

/** Posts operator alerts (WhatsApp Web QR codes, repeated failures) to the escalation channel. */
function notifier(slack: SlackClient, channel: string) {
  return async (text: string, image?: { filename: string; data: Buffer }) => {
    if (image)
      await slack.uploadFile({ channel, filename: image.filename, data: image.data, initialComment: text });
    else await slack.postMessage({ channel, text });
  };
}

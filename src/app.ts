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
import { registerIdentityModels, type IdentityModels } from './identity/models';
import { createIdentityStore } from './identity/resolve';
import { identityChanging, withHotIdentity } from './identity/cache';
import type { MergeStep } from './identity/merge';
import { createInboundProcessor, type InboundProcessor } from './identity/inbound-processor';
import { createInboundWorkers } from './queue/inbound-worker';
import { createQueueWorker } from './queue/workers';
import { registerRouterModels, type RouterModels } from './router/models';
import { createRouter, type Router as RapportRouter } from './router';
import { createOwnership } from './router/ownership';
import type { Senders } from './router/delivery';
import { createInboundPipeline } from './router/pipeline';
import { createSlackClient, type SlackClient } from './channels/slack/client';
import { createTwilioSender } from './channels/twilio/send';
import { createWhatsAppCloudSender } from './channels/whatsapp-cloud/send';
import { createMessengerProfiles, createMessengerSender } from './channels/messenger/send';
import { observeJobDurations, registerChannelMetrics, registerQueueMetrics } from './queue/queue-metrics';
import { createErasureService, markerKeysOf, type ErasureService } from './privacy/erase';
import { startRetention, type Retention } from './privacy/retention';
import { createMergeService } from './identity/merge';
import { createClaimService } from './identity/claims';
import { createClaimLimits } from './identity/claim-limits';
import { createClaimsBridge } from './router/claims-bridge';
import { createWhatsAppWebChannel, type WhatsAppWebChannel } from './channels/whatsapp-web/session';
import { createMediaStore, type MediaStore } from './media/store';
import { createInboundMedia } from './media/inbound';
import type { MediaFetchOptions } from './media/fetch';
import { createOutboundMedia } from './media/outbound';
import {
  DEFAULT_MAX_MEDIA_BYTES,
  createMediaStore as createWhatsAppWebMediaStore,
} from './channels/whatsapp-web/media';
import { createBlobStore } from './channels/whatsapp-web/store';
import type { WhatsAppWebClientFactoryOptions } from './channels/whatsapp-web/client';
import type { WhatsAppWebClientLike } from './channels/whatsapp-web/wire';
import type pino from 'pino';
import { createOptOuts } from './router/opt-outs';

export type Role = 'api' | 'worker' | 'whatsapp-web' | 'all';

export interface AppOptions {
  role?: Role;
  /** Log destination (tests capture logs to check nothing sensitive is written). */
  logDestination?: pino.DestinationStream;
  /** Builds WhatsApp Web clients; the default is the real whatsapp-web.js Client (tests pass a fake). */
  whatsappWebClient?: (opts: WhatsAppWebClientFactoryOptions) => WhatsAppWebClientLike;
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

export function buildApp(config: Readonly<Config>, options: AppOptions = {}): RapportApp {
  const role = options.role ?? 'all';
  const log = createLogger({
    level: config.logLevel,
    destination: options.logDestination,
    dataKey: config.dataKey,
  });
  const metrics = createMetrics();
  const base = { config, role, log, metrics, ...connectStores(config, log, metrics) };
  const services = buildServices(base);
  const whatsappWeb = buildWhatsAppWeb(base, services, options);
  const senders = buildSenders(config);
  // Any process can send through the session: the sender queues the job for the session holder.
  if (whatsappWeb) senders['whatsapp-web'] = whatsappWeb.sender();
  const runsSession = whatsappWeb !== undefined && (role === 'whatsapp-web' || role === 'all');
  const router = buildRouter(base, services, senders);
  const inbound = createInboundPipeline(services.identity, router, base.models, config.defaultRegion);
  const parts: AppParts = { ...base, ...services, whatsappWeb, runsSession, router, inbound };

  const http = buildHttp(parts);
  const background = startBackground(parts);
  const { queues, mongo, redis } = base;
  const lifecycle = serverLifecycle(http, config, async () => {
    await background.stop();
    await whatsappWeb?.stop();
    await closeQueues(queues);
    await mongo.close();
    redis.disconnect();
  });

  return {
    config,
    role,
    log,
    metrics,
    http,
    workers: background.workers,
    queues,
    intake: base.intake,
    redis,
    mongo,
    models: base.models,
    inbound,
    router,
    slack: services.slack,
    whatsappWeb,
    ...lifecycle,
  };
}

/** What every part is built from: config, logging, metrics and the stores. */
interface AppBase {
  config: Readonly<Config>;
  role: Role;
  log: Logger;
  metrics: Metrics;
  redis: RedisClient;
  queues: Queues;
  intake: Intake;
  mongo: MongoHandle;
  models: IdentityModels & RouterModels;
}

type AppServices = ReturnType<typeof buildServices>;

/** Everything built, as the HTTP surfaces and the background work need it. */
interface AppParts extends AppBase, AppServices {
  whatsappWeb?: WhatsAppWebChannel;
  /** Whether this process holds the WhatsApp Web session (roles whatsapp-web and all). */
  runsSession: boolean;
  router: RapportRouter;
  inbound: InboundProcessor;
}

/** Redis, the queues and the intake on it, MongoDB and the models (with their metrics). */
function connectStores(config: Readonly<Config>, log: Logger, metrics: Metrics) {
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
  return { redis, queues, intake, mongo, models };
}

/** Identity, Slack, media, merges, erasure and claims: the services the router and admin API share. */
/** Merge and undo steps at which the hot cache's epoch changes (before writes; identities moved; done). */
const HOT_CACHE_STEPS = new Set<MergeStep>([
  'survivor-locked',
  'identities-moved',
  'unlocked',
  'undo-locked',
  'merged-restored',
  'undo-unlocked',
]);

/**
 * The hot cache's epoch changes before an erasure starts (or resumes); its Redis step deletes the
 * customer's hot keys and changes the epoch again (src/identity/cache.ts `forgetHotCustomer`).
 */
function withHotErasure(erasures: ErasureService, identityChanged: () => Promise<void>): ErasureService {
  return {
    ...erasures,
    erase: async (id, actor) => {
      await identityChanged();
      return erasures.erase(id, actor);
    },
    resume: async (opts) => {
      // Only when there is one to resume: this runs every minute, and a new epoch sends every
      // returning customer's next message (and card) to the database once.
      if (await erasures.models.Erasure.exists({ status: 'in_progress' })) await identityChanged();
      return erasures.resume(opts);
    },
  };
}

function buildServices({ config, log, metrics, redis, mongo, models }: AppBase) {
  // The owner pick and assignments; shared with the router. A new customer is created with their
  // owner in the creating write (ownership.ts `createOwned`).
  const ownership = createOwnership(models, redis, config.queuePrefix, log.child({ component: 'ownership' }));
  // Returning customers are resolved from the hot cache in Redis (src/identity/cache.ts).
  const identityStore = withHotIdentity(
    createIdentityStore(models, { defaultRegion: config.defaultRegion, createOwned: ownership.createOwned }),
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
  const erasures = withHotErasure(
    createErasureService({
      models,
      slack,
      redis,
      prefix: config.queuePrefix,
      ...markerKeysOf(config),
      defaultRegion: config.defaultRegion,
      media: mediaStore,
      log: log.child({ component: 'erasure' }),
    }),
    identityChanged,
  );
  // Every send's opt-out check answers from Redis while its copy is complete (src/router/opt-outs.ts).
  const optOuts = createOptOuts({
    models,
    redis,
    prefix: config.queuePrefix,
    log: log.child({ component: 'opt-outs' }),
    erased: {
      isErased: (key, channel) => erasures.isOptOutErased(key, channel),
      markerIds: (key, channel) => erasures.optOutMarkerIds(key, channel),
      allMarkerIds: () => erasures.erasedOptOutIds(),
    },
  });
  const claimLimits = createClaimLimits({ redis, prefix: config.queuePrefix, limits: config.claims.limits });
  const claims = createClaimService({
    models,
    merges,
    limits: claimLimits,
    identityChanging: identityChanged,
  });
  const claimsBridge = createClaimsBridge({
    claims,
    models,
    defaultRegion: config.defaultRegion,
    config: config.claims,
    limits: claimLimits,
    optOuts,
    onCode: (outcome) => metrics.claimCodes.inc({ outcome }),
  });
  return { identity, ownership, slack, mediaStore, merges, erasures, claims, claimsBridge, optOuts };
}

/** The WhatsApp Web session channel, when WHATSAPP_WEB_ENABLED (not started here). */
function buildWhatsAppWeb(
  base: AppBase,
  services: AppServices,
  options: AppOptions,
): WhatsAppWebChannel | undefined {
  const { config, redis, intake, mongo, log, metrics } = base;
  if (!config.whatsappWeb.enabled) return undefined;
  const { mediaStore, slack } = services;
  return whatsappWebChannel(config, options, { redis, intake, mongo, log, metrics, mediaStore, slack });
}

function buildRouter(base: AppBase, services: AppServices, senders: Senders): RapportRouter {
  const { config, log, metrics, redis, queues, mongo, models } = base;
  const { slack, mediaStore, claimsBridge, optOuts, ownership } = services;
  const inboundMedia = createInboundMedia({
    store: mediaStore,
    fetch: mediaFetchOptions(config, mongo),
    maxBytes: config.media.maxBytes,
    log: log.child({ component: 'media' }),
  });
  return createRouter({
    config: config.router,
    models,
    ownership,
    queues,
    redis,
    prefix: config.queuePrefix,
    slack,
    escalationChannel: config.slack?.escalationChannel,
    senders,
    claims: claimsBridge,
    link: claimsBridge,
    claimOffers: claimsBridge,
    optOuts,
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
}

/** The express app: health and metrics everywhere; webhooks, media and the admin API in api/all. */
function buildHttp(parts: AppParts): Express {
  const { config, role, log, metrics, queues, intake } = parts;
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
      dependencies: healthDependencies(parts),
    }),
  );
  // Worker and whatsapp-web processes serve only health and metrics; api and all serve traffic.
  if (role === 'api' || role === 'all') {
    // Loaded here, not at import: a worker or whatsapp-web process serves health and metrics only,
    // and should not carry the webhook adapters, the admin API and their schemas (src/http/api-surface.ts).
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- deliberate lazy load (see above)
    const { mountApiSurface } = require('./http/api-surface') as typeof import('./http/api-surface');
    mountApiSurface(http, parts);
  }
  http.use(notFound());
  http.use(errorHandler(log.child({ component: 'http' })));
  return http;
}

/** What /health/ready checks: Redis, MongoDB and, in the process holding it, the WhatsApp Web session. */
function healthDependencies({ redis, mongo, whatsappWeb, runsSession }: AppParts) {
  return [
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
  ];
}

/**
 * Starts what runs in the background: the WhatsApp Web session (in the process holding it) and, in
 * worker and all, retention, the merge-resume and outbox sweep, and the queue workers.
 */
function startBackground(parts: AppParts): { workers: Worker[]; stop(): Promise<void> } {
  const { config, role, log, metrics, mongo, merges, router, erasures, mediaStore, models, whatsappWeb } =
    parts;
  const workers: Worker[] = [];
  if (parts.runsSession && whatsappWeb) {
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
    workers.push(...createWorkers(parts));
  }
  for (const worker of workers) observeJobDurations(worker, metrics.jobDuration);
  return {
    workers,
    async stop() {
      clearInterval(resumeTimer);
      await Promise.all(workers.map((w) => w.close()));
      await retention?.close();
    },
  };
}

/** The inbound partition workers and the plain queues' workers (to-agent only when Slack is on). */
function createWorkers({ config, log, metrics, queues, inbound, erasures, router }: AppParts): Worker[] {
  const common = { prefix: config.queuePrefix, redisUrl: config.redisUrl, metrics };
  const workers = createInboundWorkers({
    ...common,
    queue: queues[QueueName.inbound],
    processor: inbound,
    isErased: (job) => erasures.isErasedJob(job.data, job.timestamp),
    log: log.child({ component: 'inbound-worker' }),
  });
  // The plain queues: each with its handler and concurrency.
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
  return workers;
}

/**
 * listen and close: close stops taking requests, then runs `shutdown` (workers, session, queues,
 * connections), bounded by SHUTDOWN_TIMEOUT_MS; what is still open then is cut.
 */
function serverLifecycle(
  http: Express,
  config: Readonly<Config>,
  shutdown: () => Promise<void>,
): Pick<RapportApp, 'listen' | 'close'> {
  let server: Server | undefined;
  let closing: Promise<void> | undefined;
  return {
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
          if (server) await stopListening(server);
          await shutdown();
        })();
        await Promise.race([graceful, deadline]);
        server?.closeAllConnections();
      })();
      return closing;
    },
  };
}

/** Stops accepting connections and resolves once the in-flight requests are answered. */
async function stopListening(listening: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => listening.close(() => resolve()));
  // A keep-alive connection busy with a request when the shutdown began becomes idle once that
  // response is sent, and would then hold the server open until the deadline (seen under load: 3 of
  // 27 api stops took the whole SHUTDOWN_TIMEOUT_MS). Close those as they go idle; in-flight
  // requests still finish.
  const sweep = setInterval(() => listening.closeIdleConnections(), 50);
  listening.closeIdleConnections();
  await closed;
  clearInterval(sweep);
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

/** The WhatsApp Web session channel over the app's connections (WHATSAPP_WEB_ENABLED). */
function whatsappWebChannel(
  config: Readonly<Config>,
  options: AppOptions,
  d: {
    redis: RedisClient;
    intake: Intake;
    mongo: MongoHandle;
    log: Logger;
    metrics: Metrics;
    mediaStore: MediaStore;
    slack: SlackClient | undefined;
  },
): WhatsAppWebChannel {
  return createWhatsAppWebChannel({
    chromiumPath: config.whatsappWeb.chromiumPath,
    redis: d.redis,
    redisUrl: config.redisUrl,
    queuePrefix: config.queuePrefix,
    intake: d.intake,
    mongoConnection: d.mongo.connection,
    log: d.log.child({ component: 'whatsapp-web' }),
    registry: d.metrics.registry,
    readStoredMedia: (id) => readStoredMedia(d.mediaStore, id),
    // No larger than MEDIA_MAX_BYTES: a file the pipeline would refuse is not downloaded at all.
    maxMediaBytes: Math.min(config.media.maxBytes, DEFAULT_MAX_MEDIA_BYTES),
    ...(options.whatsappWebClient ? { createClient: options.whatsappWebClient } : {}),
    notify:
      d.slack && config.slack?.escalationChannel
        ? notifier(d.slack, config.slack.escalationChannel)
        : undefined,
  });
}

/** A stored file's bytes, type and name (an agent's file, for the WhatsApp Web session). */
async function readStoredMedia(store: MediaStore, id: string) {
  const info = await store.info(id);
  if (!info) return undefined;
  return {
    data: await store.read(id),
    contentType: info.metadata.contentType,
    filename: info.metadata.filename,
  };
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

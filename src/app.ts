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
import type { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
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
import { createInboundProcessor, type InboundProcessor } from './identity/inbound-processor';
import { createInboundWorker } from './queue/inbound-worker';
import type pino from 'pino';

export type Role = 'api' | 'worker' | 'all';

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
  redis: Redis;
  mongo: MongoHandle;
  models: IdentityModels;
  inbound: InboundProcessor;
  /** Starts listening (port 0 picks a free one); resolves with the bound port. */
  listen(port?: number): Promise<number>;
  /** Stops taking requests, finishes in-flight jobs, closes connections; bounded by SHUTDOWN_TIMEOUT_MS. */
  close(): Promise<void>;
}

export function buildApp(config: Readonly<Config>, options: AppOptions = {}): RapportApp {
  const role = options.role ?? 'all';
  const log = createLogger({ level: config.logLevel, destination: options.logDestination });
  const metrics = createMetrics();

  const redis = createRedisConnection(config.redisUrl, 'producer');
  const queues = createQueues(redis, { prefix: config.queuePrefix }, log.child({ component: 'queue' }));
  const intake = createIntake({ queue: queues[QueueName.inbound], redis, prefix: config.queuePrefix });
  const mongo = connectMongo(config.mongodbUri, log.child({ component: 'mongo' }));
  // Registered before the connection opens, so their (correctness-carrying) unique indexes are built.
  const models = registerIdentityModels(mongo.connection);
  const identityStore = createIdentityStore(models, { defaultRegion: config.defaultRegion });
  const inbound = createInboundProcessor({ store: identityStore, log: log.child({ component: 'inbound' }) });

  const http = express();
  http.disable('x-powered-by');
  http.set('trust proxy', true);
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
      ],
    }),
  );
  const webhookLog = log.child({ component: 'webhooks' });
  for (const { path, adapter } of buildWebhookAdapters(config)) {
    http.use(
      webhookRoute({ path, adapter, intake, metrics, log: webhookLog, maxBytes: config.webhookMaxBytes }),
    );
  }
  http.use(notFound());
  http.use(errorHandler(log.child({ component: 'http' })));

  const workers: Worker[] = [];
  if (role !== 'api') {
    workers.push(
      createInboundWorker({
        redisUrl: config.redisUrl,
        prefix: config.queuePrefix,
        processor: inbound,
        log: log.child({ component: 'inbound-worker' }),
        metrics,
      }),
    );
  }

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
    async listen(port = config.port) {
      server = http.listen(port, '0.0.0.0');
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
            const closed = new Promise<void>((resolve) => server!.close(() => resolve()));
            server.closeIdleConnections();
            await closed;
          }
          await Promise.all(workers.map((w) => w.close()));
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

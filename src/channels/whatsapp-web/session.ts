/**
 * The WhatsApp Web channel: one live whatsapp-web.js session per number, kept alive. This module
 * only wires the parts together; each part is a unit of its own:
 * - `lifecycle.ts` — the lease, building/initialising clients, their events, stopping;
 * - `reconnect.ts` — failure classification, backoff and the repeated-failure alert;
 * - `qr.ts` — the login QR on the terminal, the admin page and Slack;
 * - `inbound.ts` — messages and acks to the intake in arrival order, retried until Redis is back
 *   (and then the unread chats are caught up — `catch-up.ts`; see README "Messages received while down");
 * - `send-worker.ts` — `sender()` works in any process (`send.ts`); the holder runs the send
 *   worker, paused whenever the session is not `ready`;
 * - `state.ts`, `metrics.ts` — the state /readyz reports and the `rapport_whatsapp_web_*` metrics.
 */
import type { Registry } from 'prom-client';
import type { Connection } from 'mongoose';
import type { RedisClient } from '../../queue/connection';
import type { Logger } from '../../logger';
import type { Intake } from '../../queue/intake';
import type { ChannelSender } from '../sender';
import {
  createRealWhatsAppWebClient,
  fetchOutboundMedia,
  type WhatsAppWebClientFactoryOptions,
} from './client';
import { WHATSAPP_WEB_DEFAULTS, chromiumArgs, outboundQueueName } from './config';
import { InboundPipeline } from './inbound';
import { Inflight } from './inflight';
import { SessionLifecycle, type SessionLifecycleOptions } from './lifecycle';
import { lockKeyFor } from './lock';
import {
  createMediaStore,
  outboundMediaLoader,
  type StoredMedia,
  type StoredMediaReader,
  type WhatsAppWebMediaStore,
} from './media';
import { sessionMetrics, type SessionMetrics } from './metrics';
import { QrPresenter, qrPngDataUrl, safeNotifier } from './qr';
import { FailureStreak } from './reconnect';
import type { MediaLoader } from './send';
import { SendWorkerHost, SenderHandle } from './send-worker';
import { SessionState, type WhatsAppWebState, type WhatsAppWebStateReport } from './state';
import { createBlobStore, createMongoRemoteAuthStore } from './store';
import type { WhatsAppWebClientLike } from './wire';

export { classifyStartFailure } from './reconnect';
export { WHATSAPP_WEB_STATES, type WhatsAppWebState, type WhatsAppWebStateReport } from './state';

export interface WhatsAppWebChannelOptions {
  /** One per configured number; letters, digits, `_` and `-`. @defaultValue `'default'` */
  clientId?: string;
  chromiumPath: string;
  /** ioredis producer connection, for the lease and the outbound queue. */
  redis: RedisClient;
  /** For the dedicated worker and QueueEvents connections. */
  redisUrl: string;
  queuePrefix: string;
  intake: Intake;
  /** For the RemoteAuth session store and inbound media. */
  mongoConnection: Connection;
  log: Logger;
  /** Where `rapport_whatsapp_web_*` metrics are registered. */
  registry: Registry;
  /** Posts to the escalation channel: the QR image, repeated-failure alerts, recovery notices. */
  notify?: (text: string, image?: { filename: string; data: Buffer }) => Promise<void>;
  /** Builds a client; the default is the real whatsapp-web.js Client (`client.ts`). */
  createClient?: (opts: WhatsAppWebClientFactoryOptions) => WhatsAppWebClientLike;
  /** Extra Chromium flags, after the defaults of `config.ts`. */
  puppeteerArgs?: string[];
  /** @defaultValue 30 000 */
  lockTtlMs?: number;
  /** How often a standby process retries the lease. @defaultValue lockTtlMs / 2 */
  lockRetryMs?: number;
  /** @defaultValue `{ initialMs: 2000, maxMs: 300000, alertAfter: 5 }` */
  reconnect?: { initialMs: number; maxMs: number; alertAfter: number };
  /** @defaultValue 180 000 */
  startTimeoutMs?: number;
  /** @defaultValue 30 000 */
  sendTimeoutMs?: number;
  /** @defaultValue 600 000 */
  maxSendAgeMs?: number;
  /** @defaultValue 16 MiB */
  maxMediaBytes?: number;
  /** Unread chats scanned after `ready`; `false` turns the catch-up off. */
  catchUp?: { maxChats: number; maxMessagesPerChat: number } | false;
  /** @defaultValue `<tmpdir>/rapport-whatsapp-web` */
  dataPath?: string;
  /** @defaultValue 300 000 (RemoteAuth's minimum is 60 000) */
  backupSyncIntervalMs?: number;
  /** @defaultValue 600 000 */
  qrNotifyIntervalMs?: number;
  /** Where the QR is drawn for a terminal; `null` to not draw it. @defaultValue process.stderr */
  qrTerminal?: NodeJS.WritableStream | null;
  /** Fetches outbound media; the default reads `readStoredMedia`, else downloads the URL into a `MessageMedia`. */
  loadMedia?: MediaLoader;
  /** Rapport's media store (agents' files, `OutboundMedia.storedId`), read by the default `loadMedia`. */
  readStoredMedia?: StoredMediaReader;
}

export interface WhatsAppWebChannel {
  readonly clientId: string;
  /** Takes the lease (or stays standby and retries) and runs the session. Resolves after the first attempt. */
  start(): Promise<void>;
  /** Stops the session, the worker and the sender; releases the lease. */
  stop(): Promise<void>;
  state(): WhatsAppWebStateReport;
  /** Provider `whatsapp-web`, channel `whatsapp`; usable in any process. */
  sender(): ChannelSender;
  /**
   * For /readyz: ok while `ready`, `standby` (another process holds the number) or `disabled`
   * (never started here); not ok while starting, waiting for a QR scan, or failing.
   */
  readiness(): { ok: boolean; state: WhatsAppWebState; detail?: string };
  /** The current login QR as a PNG data URL, for the admin page; undefined when none is pending. */
  qrPngDataUrl(): Promise<string | undefined>;
  /** A file kept from an inbound message, by its `providerMediaId`. */
  media(providerMediaId: string): Promise<StoredMedia | undefined>;
}

/** Options with their defaults filled in. */
function resolved(o: WhatsAppWebChannelOptions) {
  const clientId = o.clientId ?? WHATSAPP_WEB_DEFAULTS.clientId;
  if (!/^[-_\w]+$/.test(clientId)) throw new Error(`invalid whatsapp-web clientId "${clientId}"`);
  const lockTtlMs = o.lockTtlMs ?? WHATSAPP_WEB_DEFAULTS.lockTtlMs;
  return {
    clientId,
    log: o.log.child({ component: 'whatsapp-web', clientId }),
    lockTtlMs,
    lockRetryMs: o.lockRetryMs ?? Math.max(100, Math.floor(lockTtlMs / 2)),
    reconnect: o.reconnect ?? WHATSAPP_WEB_DEFAULTS.reconnect,
    startTimeoutMs: o.startTimeoutMs ?? WHATSAPP_WEB_DEFAULTS.startTimeoutMs,
    catchUp: o.catchUp === undefined ? WHATSAPP_WEB_DEFAULTS.catchUp : o.catchUp,
    dataPath: o.dataPath ?? WHATSAPP_WEB_DEFAULTS.dataPath,
    qrNotifyIntervalMs: o.qrNotifyIntervalMs ?? WHATSAPP_WEB_DEFAULTS.qrNotifyIntervalMs,
    qrTerminal: o.qrTerminal === undefined ? process.stderr : o.qrTerminal,
    outboundQueue: outboundQueueName(clientId),
  };
}

type Resolved = ReturnType<typeof resolved>;

/** A function that builds this number's client with the RemoteAuth store and Chromium flags. */
function clientBuilder(o: WhatsAppWebChannelOptions, r: Resolved, metrics: SessionMetrics) {
  const store = createMongoRemoteAuthStore({ connection: o.mongoConnection, dataPath: r.dataPath });
  const build = o.createClient ?? createRealWhatsAppWebClient;
  return () =>
    build({
      clientId: r.clientId,
      chromiumPath: o.chromiumPath,
      chromiumArgs: chromiumArgs(o.puppeteerArgs),
      dataPath: r.dataPath,
      store,
      backupSyncIntervalMs: o.backupSyncIntervalMs ?? WHATSAPP_WEB_DEFAULTS.backupSyncIntervalMs,
      log: r.log,
      onBackup: (outcome) => metrics.backup(outcome),
    });
}

/** The send worker, run by the session holder while the session is `ready`. */
function sendWorkerHost(
  o: WhatsAppWebChannelOptions,
  r: Resolved,
  metrics: SessionMetrics,
  lifecycle: () => SessionLifecycle,
): SendWorkerHost {
  return new SendWorkerHost({
    queueName: r.outboundQueue,
    queuePrefix: o.queuePrefix,
    redisUrl: o.redisUrl,
    log: r.log,
    canRun: () => !lifecycle().isStopped && lifecycle().lock.held,
    processor: {
      readyClient: () => lifecycle().readyClient(),
      loadMedia: o.loadMedia ?? outboundMediaLoader(o.readStoredMedia, fetchOutboundMedia),
      maxSendAgeMs: o.maxSendAgeMs ?? WHATSAPP_WEB_DEFAULTS.maxSendAgeMs,
      log: r.log,
      onOutcome: (outcome) => metrics.send(outcome),
    },
  });
}

/** The lifecycle over the channel's parts, with its lease, client builder and notices. */
function sessionLifecycle(
  o: WhatsAppWebChannelOptions,
  r: Resolved,
  p: Pick<SessionLifecycleOptions, 'state' | 'notifier' | 'inflight' | 'worker' | 'inbound'> & {
    metrics: SessionMetrics;
  },
): SessionLifecycle {
  const { clientId, log } = r;
  const { metrics, state, notifier, inflight, worker, inbound } = p;
  return new SessionLifecycle({
    clientId,
    log,
    state,
    metrics,
    inflight,
    lock: {
      redis: o.redis,
      key: lockKeyFor(o.queuePrefix, clientId),
      ttlMs: r.lockTtlMs,
      retryMs: r.lockRetryMs,
    },
    buildClient: clientBuilder(o, r, metrics),
    startTimeoutMs: r.startTimeoutMs,
    streak: new FailureStreak(clientId, r.reconnect),
    notifier,
    qr: new QrPresenter({
      clientId,
      terminal: r.qrTerminal,
      notifier,
      notifyIntervalMs: r.qrNotifyIntervalMs,
      log,
    }),
    worker,
    inbound,
    catchUp: r.catchUp,
  });
}

/** The channel's public face over its parts. */
function facade(
  clientId: string,
  lifecycle: SessionLifecycle,
  state: SessionState,
  sender: SenderHandle,
  mediaStore: WhatsAppWebMediaStore,
): WhatsAppWebChannel {
  return {
    clientId,
    start: () => lifecycle.start(),
    async stop() {
      if (lifecycle.idle && !sender.open) return;
      await lifecycle.stop();
      state.set('disabled', 'stopped');
      await sender.close();
    },
    state: () => state.current(),
    sender: () => sender.sender(),
    readiness: () => state.readiness(),
    async qrPngDataUrl() {
      const { state: now, qr } = state.current();
      return now === 'qr' && qr ? qrPngDataUrl(qr) : undefined;
    },
    media: (providerMediaId) => mediaStore.get(providerMediaId),
  };
}

export function createWhatsAppWebChannel(o: WhatsAppWebChannelOptions): WhatsAppWebChannel {
  const r = resolved(o);
  const { clientId, log } = r;
  const metrics = sessionMetrics(o.registry, clientId);
  const state = new SessionState(metrics, log);
  const notifier = safeNotifier(o.notify, log);
  const inflight = new Inflight();
  const mediaStore = createMediaStore({
    blobs: createBlobStore({ connection: o.mongoConnection }),
    ...(o.maxMediaBytes !== undefined ? { maxBytes: o.maxMediaBytes } : {}),
  });
  const inbound = new InboundPipeline({
    intake: o.intake,
    mediaStore,
    metrics,
    log,
    inflight,
    isStopped: () => lifecycle.isStopped,
    onIntakeRecovered: () => lifecycle.catchUpAfterOutage(),
  });
  const worker = sendWorkerHost(o, r, metrics, () => lifecycle);
  const lifecycle: SessionLifecycle = sessionLifecycle(o, r, {
    metrics,
    state,
    notifier,
    inflight,
    worker,
    inbound,
  });

  const sender = new SenderHandle({
    queueName: r.outboundQueue,
    queuePrefix: o.queuePrefix,
    redis: o.redis,
    redisUrl: o.redisUrl,
    timeoutMs: o.sendTimeoutMs ?? WHATSAPP_WEB_DEFAULTS.sendTimeoutMs,
    log,
  });
  return facade(clientId, lifecycle, state, sender, mediaStore);
}

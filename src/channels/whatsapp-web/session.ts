/**
 * The WhatsApp Web channel: one live whatsapp-web.js session per number, kept alive.
 *
 * Lifecycle: `start()` takes the number's lease (`lock.ts`); without it the process stays
 * `standby` and retries. The holder builds a client, initialises it, and follows its events
 * (`qr` → `authenticated` → `ready`). When a client dies — `disconnected` (the library destroys
 * that client itself), `initialize()` failing (WhatsApp Web unreachable, Chromium missing), or no
 * `qr`/`ready` within `startTimeoutMs` — a NEW client is built after an exponential backoff, and
 * after `alertAfter` consecutive failures `notify()` raises the alarm once (and again when the
 * session recovers). Every client gets a generation number; events of an older client are ignored,
 * so a late event from a dead client cannot change the state of its successor.
 *
 * Inbound: `message` and `message_ack` events are normalised (`normalize.ts`) and handed to the same
 * intake as the webhooks (same dedupe), one at a time in arrival order. A failed hand-over (Redis
 * down) is retried with backoff until Redis is back, however long that takes — a live message is
 * never dropped after a timeout — and once Redis answers again the unread chats are caught up too
 * (on every such reconnect, not only after `ready`; see README "Messages received while down").
 *
 * Outbound: `sender()` works in any process (`send.ts`); the holder runs the send worker, paused
 * whenever the session is not `ready`.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { Queue, QueueEvents, type Worker } from 'bullmq';
import type { Connection } from 'mongoose';
import type { RedisClient } from '../../queue/connection';
import QRCode from 'qrcode';
import type { Logger } from '../../logger';
import type { Intake } from '../../queue/intake';
import { createRedisConnection } from '../../queue/connection';
import { prefixFor } from '../../queue/options';
import type { InboundEvent } from '../../canonical';
import type { ChannelSender } from '../sender';
import {
  createRealWhatsAppWebClient,
  fetchOutboundMedia,
  type WhatsAppWebClientFactoryOptions,
} from './client';
import { WHATSAPP_WEB_DEFAULTS, backoffDelay, chromiumArgs, outboundQueueName } from './config';
import { createSessionLock, lockKeyFor } from './lock';
import { createMediaStore, type StoredMedia, type WhatsAppWebMediaStore } from './media';
import {
  MEDIA_TYPES,
  classifyInbound,
  digitsOfJid,
  jidKind,
  normalizeWhatsAppWebAck,
  normalizeWhatsAppWebMessage,
  type InboundMediaRef,
} from './normalize';
import {
  createSendProcessor,
  createSendWorker,
  createWhatsAppWebSender,
  type MediaLoader,
  type SendJobData,
  type SendJobResult,
} from './send';
import { createBlobStore, createMongoRemoteAuthStore } from './store';
import type { WhatsAppWebClientLike, WwebMessage } from './wire';

export type WhatsAppWebState =
  | 'disabled'
  | 'standby'
  | 'starting'
  | 'qr'
  | 'authenticated'
  | 'ready'
  | 'disconnected'
  | 'unreachable'
  | 'failed';

export const WHATSAPP_WEB_STATES: readonly WhatsAppWebState[] = [
  'disabled',
  'standby',
  'starting',
  'qr',
  'authenticated',
  'ready',
  'disconnected',
  'unreachable',
  'failed',
];

export interface WhatsAppWebStateReport {
  state: WhatsAppWebState;
  /** ISO time the state was entered. */
  since: string;
  detail?: string;
  /** The current login QR (a login secret: show it only behind admin auth). */
  qr?: string;
}

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
  /** Fetches outbound media; the default downloads the URL into a whatsapp-web.js `MessageMedia`. */
  loadMedia?: MediaLoader;
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

interface ChannelMetrics {
  state: Gauge<'client_id' | 'state'>;
  transitions: Counter<'client_id' | 'state'>;
  failures: Counter<'client_id' | 'kind'>;
  inbound: Counter<'client_id' | 'kind' | 'outcome'>;
  sends: Counter<'client_id' | 'outcome'>;
  backups: Counter<'client_id' | 'outcome'>;
}

/** One set of metrics per registry, shared by every number's channel (labelled by client id). */
function metricsOn(registry: Registry): ChannelMetrics {
  const gauge = <L extends string>(name: string, help: string, labelNames: L[]): Gauge<L> => {
    const existing = registry.getSingleMetric(name);
    if (existing instanceof Gauge) return existing as Gauge<L>;
    return new Gauge({ name, help, labelNames, registers: [registry] });
  };
  const counter = <L extends string>(name: string, help: string, labelNames: L[]): Counter<L> => {
    const existing = registry.getSingleMetric(name);
    if (existing instanceof Counter) return existing as Counter<L>;
    return new Counter({ name, help, labelNames, registers: [registry] });
  };
  return {
    state: gauge(
      'rapport_whatsapp_web_state',
      'WhatsApp Web session state: 1 for the current state, 0 otherwise',
      ['client_id', 'state'],
    ),
    transitions: counter(
      'rapport_whatsapp_web_state_changes_total',
      'WhatsApp Web state changes, by state entered',
      ['client_id', 'state'],
    ),
    failures: counter(
      'rapport_whatsapp_web_failures_total',
      'WhatsApp Web clients lost (disconnected/unreachable/failed), each followed by a rebuild',
      ['client_id', 'kind'],
    ),
    inbound: counter(
      'rapport_whatsapp_web_inbound_total',
      'WhatsApp Web events by kind (message/status) and outcome (queued/duplicate/ignored_*/lid_unresolved/failed)',
      ['client_id', 'kind', 'outcome'],
    ),
    sends: counter(
      'rapport_whatsapp_web_sends_total',
      'WhatsApp Web sends by outcome (sent or failure reason)',
      ['client_id', 'outcome'],
    ),
    backups: counter(
      'rapport_whatsapp_web_session_backups_total',
      'RemoteAuth session backups to MongoDB by outcome',
      ['client_id', 'outcome'],
    ),
  };
}

/** Why an attempt ended, in Rapport's states; the detail is what an operator reads in /readyz. */
export function classifyStartFailure(err: unknown): { state: 'unreachable' | 'failed'; detail: string } {
  const text = err instanceof Error ? err.message : typeof err === 'string' ? err : 'unknown error';
  const net = /net::ERR_[A-Z_]+/.exec(text);
  if (net) return { state: 'unreachable', detail: `cannot reach WhatsApp Web (${net[0]})` };
  if (/ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|Navigation timeout/i.test(text)) {
    return { state: 'unreachable', detail: `cannot reach WhatsApp Web (${text.slice(0, 120)})` };
  }
  if (/auth timeout|ready timeout/i.test(text)) {
    return { state: 'unreachable', detail: `WhatsApp Web did not load (${text})` };
  }
  if (/Failed to launch|ENOENT|spawn|Browser was not found|executable/i.test(text)) {
    return { state: 'failed', detail: `cannot start Chromium (${text.split('\n')[0]?.slice(0, 160) ?? ''})` };
  }
  return { state: 'failed', detail: text.split('\n')[0]?.slice(0, 200) ?? 'unknown error' };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for `promises` to settle, but no longer than `ms`. */
async function settleWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(promises),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

export function createWhatsAppWebChannel(o: WhatsAppWebChannelOptions): WhatsAppWebChannel {
  const clientId = o.clientId ?? WHATSAPP_WEB_DEFAULTS.clientId;
  if (!/^[-_\w]+$/.test(clientId)) throw new Error(`invalid whatsapp-web clientId "${clientId}"`);
  const log = o.log.child({ component: 'whatsapp-web', clientId });
  const lockTtlMs = o.lockTtlMs ?? WHATSAPP_WEB_DEFAULTS.lockTtlMs;
  const lockRetryMs = o.lockRetryMs ?? Math.max(100, Math.floor(lockTtlMs / 2));
  const reconnect = o.reconnect ?? WHATSAPP_WEB_DEFAULTS.reconnect;
  const startTimeoutMs = o.startTimeoutMs ?? WHATSAPP_WEB_DEFAULTS.startTimeoutMs;
  const catchUp = o.catchUp === undefined ? WHATSAPP_WEB_DEFAULTS.catchUp : o.catchUp;
  const dataPath = o.dataPath ?? WHATSAPP_WEB_DEFAULTS.dataPath;
  const qrNotifyIntervalMs = o.qrNotifyIntervalMs ?? WHATSAPP_WEB_DEFAULTS.qrNotifyIntervalMs;
  const qrTerminal = o.qrTerminal === undefined ? process.stderr : o.qrTerminal;
  const metrics = metricsOn(o.registry);
  const labels = { client_id: clientId };
  const outboundQueue = outboundQueueName(clientId);

  const blobs = createBlobStore({ connection: o.mongoConnection });
  const mediaStore: WhatsAppWebMediaStore = createMediaStore({
    blobs,
    ...(o.maxMediaBytes !== undefined ? { maxBytes: o.maxMediaBytes } : {}),
  });
  const authStore = createMongoRemoteAuthStore({ connection: o.mongoConnection, dataPath });
  const buildClient = o.createClient ?? createRealWhatsAppWebClient;

  // ---- state --------------------------------------------------------------------------------
  let current: WhatsAppWebStateReport = {
    state: 'disabled',
    since: new Date().toISOString(),
    detail: 'not started',
  };
  for (const s of WHATSAPP_WEB_STATES) metrics.state.set({ ...labels, state: s }, s === 'disabled' ? 1 : 0);

  const setState = (state: WhatsAppWebState, detail?: string, qr?: string) => {
    const changed = state !== current.state;
    current = {
      state,
      since: changed ? new Date().toISOString() : current.since,
      ...(detail !== undefined ? { detail } : {}),
      ...(qr !== undefined ? { qr } : {}),
    };
    if (!changed) return;
    for (const s of WHATSAPP_WEB_STATES) metrics.state.set({ ...labels, state: s }, s === state ? 1 : 0);
    metrics.transitions.inc({ ...labels, state });
    const level = state === 'failed' || state === 'unreachable' || state === 'disconnected' ? 'warn' : 'info';
    log[level]({ state, detail }, `whatsapp web ${state}`);
  };

  const notify = async (text: string, image?: { filename: string; data: Buffer }) => {
    if (!o.notify) return;
    try {
      await o.notify(text, image);
    } catch (err) {
      log.warn({ err }, 'whatsapp web notification failed');
    }
  };

  // ---- session ------------------------------------------------------------------------------
  let started = false;
  let stopped = true;
  let generation = 0;
  let client: WhatsAppWebClientLike | undefined;
  let failures = 0;
  let alerted = false;
  let lastQrNotifiedAt = 0;
  let standbyTimer: NodeJS.Timeout | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let startTimer: NodeJS.Timeout | undefined;
  const inflight = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    inflight.add(p);
    void p.finally(() => inflight.delete(p)).catch(() => undefined);
    return p;
  };

  const lock = createSessionLock({
    redis: o.redis,
    key: lockKeyFor(o.queuePrefix, clientId),
    ttlMs: lockTtlMs,
    onLost: (reason) => {
      log.error({ reason }, 'whatsapp web session lock lost; stopping the session');
      void track(
        (async () => {
          await teardown();
          if (stopped) return;
          setState('standby', `session lock lost (${reason})`);
          scheduleStandbyRetry();
        })(),
      );
    },
  });

  const clearTimers = () => {
    for (const t of [standbyTimer, reconnectTimer, startTimer]) if (t) clearTimeout(t);
    standbyTimer = reconnectTimer = startTimer = undefined;
  };

  const destroyClient = async (c: WhatsAppWebClientLike | undefined) => {
    if (!c) return;
    try {
      await c.destroy();
    } catch (err) {
      log.debug({ err }, 'destroying a whatsapp web client failed (it may be gone already)');
    }
  };

  /**
   * Ends the current client (if any) and pauses sending; the lease is kept. The generation moves
   * on synchronously, so the old client's events are ignored from this moment.
   */
  const dropClient = async () => {
    generation += 1;
    if (startTimer) clearTimeout(startTimer);
    startTimer = undefined;
    const old = client;
    client = undefined;
    await pauseWorker();
    await destroyClient(old);
  };

  /** Ends the session entirely: client, worker, lease. */
  const teardown = async () => {
    clearTimers();
    await dropClient();
    await closeWorker();
    await lock.release();
  };

  const scheduleStandbyRetry = () => {
    if (stopped) return;
    if (standbyTimer) clearTimeout(standbyTimer);
    standbyTimer = setTimeout(() => void track(takeSession()), lockRetryMs);
  };

  const takeSession = async (): Promise<void> => {
    standbyTimer = undefined;
    if (stopped) return;
    if (!(await lock.tryAcquire())) {
      const holder = await lock.holder().catch(() => null);
      setState(
        'standby',
        holder ? `session held by another process (${holder})` : 'waiting for the session lock',
      );
      scheduleStandbyRetry();
      return;
    }
    if (stopped) {
      await lock.release();
      return;
    }
    log.info({ token: lock.token }, 'whatsapp web session lock acquired');
    // Not awaited: initialising can take minutes (or wait for a QR scan); start() only takes the lease.
    void track(launch());
  };

  const onFailure = async (gen: number, state: 'disconnected' | 'unreachable' | 'failed', detail: string) => {
    if (gen !== generation || stopped) return;
    // State first, synchronously: /readyz and the metrics must not lag behind a dead client.
    failures += 1;
    metrics.failures.inc({ ...labels, kind: state });
    setState(state, detail);
    const alertNow = failures === reconnect.alertAfter;
    const delay = backoffDelay(failures, reconnect);
    // The library destroys a disconnected client itself; destroying again is harmless and also
    // covers clients that failed to initialise (their Chromium would otherwise stay up).
    await dropClient();
    if (alertNow) {
      alerted = true;
      await notify(
        `:warning: WhatsApp Web (${clientId}) has failed ${failures} times in a row — ${state}: ${detail}. ` +
          'Rapport keeps retrying; check the whatsapp-web process and the phone.',
      );
    }
    if (stopped || !lock.held) return;
    log.info({ failures, retryInMs: delay }, 'building a new whatsapp web client after backoff');
    if (reconnectTimer) clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      void track(launch());
    }, delay);
  };

  const launch = async (): Promise<void> => {
    if (stopped || !lock.held) return;
    generation += 1;
    const gen = generation;
    setState('starting');
    let c: WhatsAppWebClientLike;
    try {
      c = buildClient({
        clientId,
        chromiumPath: o.chromiumPath,
        chromiumArgs: chromiumArgs(o.puppeteerArgs),
        dataPath,
        store: authStore,
        backupSyncIntervalMs: o.backupSyncIntervalMs ?? WHATSAPP_WEB_DEFAULTS.backupSyncIntervalMs,
        log,
        onBackup: (outcome) => metrics.backups.inc({ ...labels, outcome }),
      });
    } catch (err) {
      const { state, detail } = classifyStartFailure(err);
      await onFailure(gen, state, detail);
      return;
    }
    client = c;
    attach(c, gen);
    startTimer = setTimeout(() => {
      void track(
        onFailure(
          gen,
          'unreachable',
          `WhatsApp Web did not show a QR code or become ready within ${Math.round(startTimeoutMs / 1000)} s`,
        ),
      );
    }, startTimeoutMs);
    try {
      await c.initialize();
    } catch (err) {
      const { state, detail } = classifyStartFailure(err);
      if (gen === generation) log.warn({ err }, 'whatsapp web client failed to start');
      await onFailure(gen, state, detail);
    } finally {
      // Stopped or replaced while initialising: this client is nobody's, close its browser.
      if (gen !== generation && client !== c) await destroyClient(c);
    }
  };

  const attach = (c: WhatsAppWebClientLike, gen: number) => {
    const live = () => gen === generation && !stopped;
    c.on('qr', (qr) => {
      if (!live()) return;
      if (startTimer) clearTimeout(startTimer);
      startTimer = undefined;
      // The QR string is a login secret: it goes to the terminal, the admin page and Slack, never the log.
      setState('qr', 'scan the QR code with the WhatsApp app: Settings → Linked devices', qr);
      log.info('whatsapp web login QR code issued');
      void track(showQr(qr));
    });
    c.on('authenticated', () => {
      if (!live()) return;
      setState('authenticated');
    });
    c.on('auth_failure', (message) => {
      if (!live()) return;
      void track(
        onFailure(gen, 'failed', `WhatsApp Web authentication failed: ${String(message).slice(0, 200)}`),
      );
    });
    c.on('ready', () => {
      if (!live()) return;
      if (startTimer) clearTimeout(startTimer);
      startTimer = undefined;
      const recovered = alerted;
      failures = 0;
      alerted = false;
      setState('ready');
      void track(resumeWorker());
      if (recovered) void track(notify(`:white_check_mark: WhatsApp Web (${clientId}) is connected again.`));
      if (catchUp) void track(catchUpUnread(c, gen, catchUp));
    });
    c.on('change_state', (state) => {
      if (!live()) return;
      log.debug({ waState: state }, 'whatsapp web socket state changed');
      // While ready, a socket that is not CONNECTED (TIMEOUT: the phone is offline; OPENING:
      // reconnecting) is worth showing; the library disconnects by itself if it gets worse.
      if (current.state === 'ready') {
        setState('ready', state === 'CONNECTED' ? undefined : `WhatsApp socket ${String(state)}`);
      }
    });
    c.on('disconnected', (reason) => {
      if (!live()) return;
      void track(onFailure(gen, 'disconnected', `WhatsApp Web disconnected: ${String(reason)}`));
    });
    c.on('remote_session_saved', () => {
      if (!live()) return;
      log.info('whatsapp web session saved to mongodb');
    });
    c.on('message', (message) => {
      if (!live()) return;
      enqueueInbound(() => handleMessage(c, message, 'live'));
    });
    c.on('message_ack', (message, ack) => {
      if (!live()) return;
      enqueueInbound(() => handleAck(message, ack));
    });
  };

  const showQr = async (qr: string) => {
    if (qrTerminal) {
      try {
        const art = await QRCode.toString(qr, { type: 'terminal', small: true });
        qrTerminal.write(
          `\nWhatsApp Web (${clientId}): scan this QR code in WhatsApp → Settings → Linked devices\n${art}\n`,
        );
      } catch (err) {
        log.debug({ err }, 'could not draw the QR code');
      }
    }
    const now = Date.now();
    if (!o.notify || now - lastQrNotifiedAt < qrNotifyIntervalMs) return;
    lastQrNotifiedAt = now;
    try {
      const png = await QRCode.toBuffer(qr, { type: 'png', margin: 2, width: 320 });
      await notify(
        `:iphone: WhatsApp Web (${clientId}) needs a login. Scan this QR code in WhatsApp → Settings → ` +
          'Linked devices. It changes every ~20 s: if it has expired, use the admin page for the current one.',
        { filename: `whatsapp-web-${clientId}-qr.png`, data: png },
      );
    } catch (err) {
      log.warn({ err }, 'could not post the QR code');
    }
  };

  // ---- inbound ------------------------------------------------------------------------------
  let inboundChain: Promise<void> = Promise.resolve();
  const enqueueInbound = (task: () => Promise<void>) => {
    inboundChain = inboundChain.then(task).catch((err: unknown) => {
      log.error({ err }, 'whatsapp web inbound handling failed');
    });
    void track(inboundChain);
  };

  /**
   * Hands events to the intake, retrying until Redis is back (only stopping the channel gives up);
   * after an outage the unread chats are caught up, since messages may have arrived meanwhile.
   */
  const accept = async (events: InboundEvent[], kind: 'message' | 'status'): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        const { queued, duplicates } = await o.intake.accept(events);
        if (queued.length) metrics.inbound.inc({ ...labels, kind, outcome: 'queued' }, queued.length);
        if (duplicates.length)
          metrics.inbound.inc({ ...labels, kind, outcome: 'duplicate' }, duplicates.length);
        if (attempt > 1) afterIntakeOutage(attempt);
        return;
      } catch (err) {
        if (stopped) {
          metrics.inbound.inc({ ...labels, kind, outcome: 'failed' }, events.length);
          throw err;
        }
        if (attempt === 6)
          log.warn({ err: { message: (err as Error).message } }, 'intake unreachable; still retrying');
        await sleep(Math.min(500 * 2 ** (attempt - 1), 8_000));
      }
    }
  };

  /** Redis answered again after failing: catch up unread chats (queued behind the current event). */
  const afterIntakeOutage = (attempts: number) => {
    log.info({ attempts }, 'intake reachable again; catching up unread chats');
    const c = client;
    if (catchUp && c && current.state === 'ready') {
      const gen = generation;
      enqueueInbound(() => catchUpUnread(c, gen, catchUp));
    }
  };

  const handleMessage = async (c: WhatsAppWebClientLike, message: WwebMessage, via: 'live' | 'catch_up') => {
    const verdict = classifyInbound(message);
    if (!verdict.customer) {
      metrics.inbound.inc({ ...labels, kind: 'message', outcome: `ignored_${verdict.reason}` });
      return;
    }
    let senderPhoneJid: string | undefined;
    if (verdict.from === 'lid') {
      senderPhoneJid = await resolveLid(c, message.from);
      if (!senderPhoneJid) metrics.inbound.inc({ ...labels, kind: 'message', outcome: 'lid_unresolved' });
    }
    let media: InboundMediaRef | undefined;
    if (message.hasMedia || MEDIA_TYPES.has(message.type)) {
      media = await mediaStore.keep(message);
      if (!media.stored)
        log.warn({ messageId: message.id.id, reason: media.reason }, 'whatsapp web media not kept');
    }
    const ownJid = c.info?.wid._serialized;
    const normalized = normalizeWhatsAppWebMessage(message, {
      receivedAt: new Date(),
      ...(ownJid ? { ownJid } : {}),
      ...(senderPhoneJid ? { senderPhoneJid } : {}),
      ...(media ? { media } : {}),
    });
    if (!normalized) return;
    await accept([{ type: 'message', message: normalized }], 'message');
    // Ids only: the key contains the customer's number.
    log.debug({ messageId: message.id.id, via }, 'whatsapp web message queued');
  };

  const resolveLid = async (c: WhatsAppWebClientLike, lid: string): Promise<string | undefined> => {
    if (!c.getContactLidAndPhone) return undefined;
    try {
      const [found] = await c.getContactLidAndPhone([lid]);
      const pn = found?.pn;
      return pn && digitsOfJid(pn) ? pn : undefined;
    } catch (err) {
      log.debug({ err }, 'could not resolve a LID sender to a phone number');
      return undefined;
    }
  };

  const handleAck = async (message: WwebMessage, ack: number) => {
    const status = normalizeWhatsAppWebAck(message, ack, new Date());
    if (!status) {
      metrics.inbound.inc({ ...labels, kind: 'status', outcome: 'ignored' });
      return;
    }
    await accept([{ type: 'status', status }], 'status');
  };

  /**
   * Messages that arrived while no session was up are not replayed as `message` events; unread
   * 1:1 chats still hold them. Re-reading them is safe: intake dedupes on the message key.
   */
  const catchUpUnread = async (
    c: WhatsAppWebClientLike,
    gen: number,
    limits: { maxChats: number; maxMessagesPerChat: number },
  ) => {
    if (!c.getChats) return;
    try {
      const chats = (await c.getChats())
        .filter((chat) => !chat.isGroup && chat.unreadCount > 0)
        .filter((chat) => ['phone', 'lid'].includes(jidKind(chat.id._serialized)))
        .slice(0, limits.maxChats);
      let found = 0;
      for (const chat of chats) {
        if (gen !== generation || stopped) return;
        const recent = await chat.fetchMessages({
          limit: Math.min(chat.unreadCount, limits.maxMessagesPerChat),
        });
        for (const message of recent) {
          if (message.fromMe || message.id.fromMe) continue;
          found += 1;
          enqueueInbound(() => handleMessage(c, message, 'catch_up'));
        }
      }
      log.info({ chats: chats.length, messages: found }, 'whatsapp web catch-up of unread chats queued');
    } catch (err) {
      log.warn({ err }, 'whatsapp web catch-up of unread chats failed');
    }
  };

  // ---- outbound -----------------------------------------------------------------------------
  let senderParts:
    { queue: Queue; events: QueueEvents; eventsConnection: RedisClient; sender: ChannelSender } | undefined;
  let worker: Worker<SendJobData, SendJobResult> | undefined;
  let workerConnection: RedisClient | undefined;
  let workerStarting: Promise<void> | undefined;

  const readyClient = () => (current.state === 'ready' ? client : undefined);

  const resumeWorker = async () => {
    if (stopped || !lock.held) return;
    if (!worker) {
      workerStarting ??= (async () => {
        workerConnection = createRedisConnection(o.redisUrl, 'worker');
        worker = createSendWorker({
          queueName: outboundQueue,
          prefix: o.queuePrefix,
          connection: workerConnection,
          log,
          processor: createSendProcessor({
            readyClient,
            loadMedia: o.loadMedia ?? ((m) => fetchOutboundMedia(m.url, m.filename)),
            maxSendAgeMs: o.maxSendAgeMs ?? WHATSAPP_WEB_DEFAULTS.maxSendAgeMs,
            log,
            onOutcome: (outcome) => metrics.sends.inc({ ...labels, outcome }),
          }),
        });
      })();
      await workerStarting;
      workerStarting = undefined;
      return;
    }
    if (worker.isPaused()) worker.resume();
  };

  const pauseWorker = async () => {
    await workerStarting;
    if (worker && !worker.isPaused()) await worker.pause(true).catch(() => undefined);
  };

  const closeWorker = async () => {
    await workerStarting;
    const w = worker;
    const conn = workerConnection;
    worker = undefined;
    workerConnection = undefined;
    if (w) await w.close().catch((err: unknown) => log.debug({ err }, 'closing the send worker failed'));
    if (conn) await conn.quit().catch(() => conn.disconnect());
  };

  return {
    clientId,
    async start() {
      if (started) return;
      started = true;
      stopped = false;
      await track(takeSession());
    },
    async stop() {
      if (stopped && !started && !senderParts) return;
      stopped = true;
      started = false;
      clearTimers();
      await dropClient();
      // Let work in flight settle — above all an initialisation whose Chromium is still starting,
      // so its browser is closed before stop() returns. Bounded: a hung launch must not hang shutdown.
      await settleWithin([...inflight], 10_000);
      await teardown();
      setState('disabled', 'stopped');
      const parts = senderParts;
      senderParts = undefined;
      if (parts) {
        await parts.events.close().catch(() => undefined);
        await parts.queue.close().catch(() => undefined);
        await parts.eventsConnection.quit().catch(() => parts.eventsConnection.disconnect());
      }
    },
    state: () => ({ ...current }),
    sender() {
      if (!senderParts) {
        const prefix = prefixFor(outboundQueue, o.queuePrefix, o.redis);
        const queue = new Queue(outboundQueue, { connection: o.redis, prefix });
        queue.on('error', (err) => log.debug({ err }, 'whatsapp-web-out queue connection error'));
        const eventsConnection = createRedisConnection(o.redisUrl, 'worker');
        const events = new QueueEvents(outboundQueue, {
          connection: eventsConnection,
          prefix,
        });
        events.on('error', (err) => log.debug({ err }, 'whatsapp-web-out events connection error'));
        const sender = createWhatsAppWebSender({
          queue,
          queueEvents: events,
          timeoutMs: o.sendTimeoutMs ?? WHATSAPP_WEB_DEFAULTS.sendTimeoutMs,
          log,
        });
        senderParts = { queue, events, eventsConnection, sender };
      }
      return senderParts.sender;
    },
    readiness() {
      // standby: another process serves the number; disabled: this process does not run a
      // session (it may still send through the queue). Neither is a fault of this replica.
      const ok = current.state === 'ready' || current.state === 'standby' || current.state === 'disabled';
      return {
        ok,
        state: current.state,
        ...(current.detail !== undefined ? { detail: current.detail } : {}),
      };
    },
    async qrPngDataUrl() {
      if (current.state !== 'qr' || !current.qr) return undefined;
      return QRCode.toDataURL(current.qr, { margin: 2, width: 320 });
    },
    media: (providerMediaId) => mediaStore.get(providerMediaId),
  };
}

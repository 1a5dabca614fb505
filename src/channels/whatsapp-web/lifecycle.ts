/**
 * The session's lifecycle: `start()` takes the number's lease (`lock.ts`); without it the process
 * stays `standby` and retries. The holder builds a client, initialises it, and follows its events
 * (`qr` → `authenticated` → `ready`). When a client dies — `disconnected` (the library destroys
 * that client itself), `initialize()` failing (WhatsApp Web unreachable, Chromium missing), or no
 * `qr`/`ready` within `startTimeoutMs` — a NEW client is built after an exponential backoff
 * (`reconnect.ts`). Every client gets a generation number; events of an older client are ignored,
 * so a late event from a dead client cannot change the state of its successor.
 */
import type { Logger } from '../../logger';
import type { RedisClient } from '../../queue/connection';
import { catchUpUnread, type CatchUpLimits } from './catch-up';
import type { InboundPipeline } from './inbound';
import type { Inflight } from './inflight';
import { createSessionLock, type SessionLock } from './lock';
import type { SessionMetrics } from './metrics';
import type { Notifier, QrPresenter } from './qr';
import { classifyStartFailure, type FailureState, type FailureStreak } from './reconnect';
import type { SessionState } from './state';
import type { WhatsAppWebClientLike } from './wire';

export interface SessionLifecycleOptions {
  clientId: string;
  log: Logger;
  state: SessionState;
  metrics: Pick<SessionMetrics, 'failure'>;
  inflight: Inflight;
  lock: { redis: RedisClient; key: string; ttlMs: number; retryMs: number };
  /** Builds a new client (throws if it cannot). */
  buildClient: () => WhatsAppWebClientLike;
  startTimeoutMs: number;
  streak: FailureStreak;
  notifier: Notifier;
  qr: Pick<QrPresenter, 'show'>;
  worker: { resume(): Promise<void>; pause(): Promise<void>; close(): Promise<void> };
  inbound: Pick<InboundPipeline, 'message' | 'ack' | 'enqueue'>;
  catchUp: CatchUpLimits | false;
}

export class SessionLifecycle {
  private started = false;
  private stopped = true;
  private generation = 0;
  private current: WhatsAppWebClientLike | undefined;
  private standbyTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private startTimer: NodeJS.Timeout | undefined;
  readonly lock: SessionLock;

  constructor(private readonly o: SessionLifecycleOptions) {
    this.lock = createSessionLock({
      redis: o.lock.redis,
      key: o.lock.key,
      ttlMs: o.lock.ttlMs,
      onLost: (reason) => this.onLockLost(reason),
    });
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Neither started nor running. */
  get idle(): boolean {
    return this.stopped && !this.started;
  }

  /** The client, only while the session is `ready`. */
  readyClient(): WhatsAppWebClientLike | undefined {
    return this.o.state.state === 'ready' ? this.current : undefined;
  }

  /** Takes the lease (or stays standby and retries); resolves after the first attempt. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.stopped = false;
    await this.o.inflight.track(this.takeSession());
  }

  /** Ends the client, lets work in flight settle (at most `settleMs`), closes the worker, releases the lease. */
  async stop(settleMs = 10_000): Promise<void> {
    this.stopped = true;
    this.started = false;
    this.clearTimers();
    await this.dropClient();
    // Let work in flight settle — above all an initialisation whose Chromium is still starting,
    // so its browser is closed before stop() returns. Bounded: a hung launch must not hang shutdown.
    await this.o.inflight.settle(settleMs);
    await this.teardown();
  }

  /** The intake is reachable again: catch up unread chats, queued behind the current event. */
  catchUpAfterOutage(): void {
    const c = this.current;
    const limits = this.o.catchUp;
    if (!limits || !c || this.o.state.state !== 'ready') return;
    const gen = this.generation;
    this.o.inbound.enqueue(() => this.catchUp(c, gen, limits));
  }

  private isLive(gen: number): boolean {
    return gen === this.generation && !this.stopped;
  }

  private catchUp(c: WhatsAppWebClientLike, gen: number, limits: CatchUpLimits): Promise<void> {
    return catchUpUnread(c, {
      limits,
      isCurrent: () => this.isLive(gen),
      deliver: (message) => this.o.inbound.message(c, message, 'catch_up'),
      log: this.o.log,
    });
  }

  private onLockLost(reason: string): void {
    this.o.log.error({ reason }, 'whatsapp web session lock lost; stopping the session');
    void this.o.inflight.track(
      (async () => {
        await this.teardown();
        if (this.stopped) return;
        this.o.state.set('standby', `session lock lost (${reason})`);
        this.scheduleStandbyRetry();
      })(),
    );
  }

  private clearTimers(): void {
    for (const t of [this.standbyTimer, this.reconnectTimer, this.startTimer]) if (t) clearTimeout(t);
    this.standbyTimer = this.reconnectTimer = this.startTimer = undefined;
  }

  private clearStartTimer(): void {
    if (this.startTimer) clearTimeout(this.startTimer);
    this.startTimer = undefined;
  }

  private async destroyClient(c: WhatsAppWebClientLike | undefined): Promise<void> {
    if (!c) return;
    try {
      await c.destroy();
    } catch (err) {
      this.o.log.debug({ err }, 'destroying a whatsapp web client failed (it may be gone already)');
    }
  }

  /**
   * Ends the current client (if any) and pauses sending; the lease is kept. The generation moves
   * on synchronously, so the old client's events are ignored from this moment.
   */
  private async dropClient(): Promise<void> {
    this.generation += 1;
    this.clearStartTimer();
    const old = this.current;
    this.current = undefined;
    await this.o.worker.pause();
    await this.destroyClient(old);
  }

  /** Ends the session entirely: client, worker, lease. */
  private async teardown(): Promise<void> {
    this.clearTimers();
    await this.dropClient();
    await this.o.worker.close();
    await this.lock.release();
  }

  private scheduleStandbyRetry(): void {
    if (this.stopped) return;
    if (this.standbyTimer) clearTimeout(this.standbyTimer);
    this.standbyTimer = setTimeout(() => void this.o.inflight.track(this.takeSession()), this.o.lock.retryMs);
  }

  private async takeSession(): Promise<void> {
    this.standbyTimer = undefined;
    if (this.stopped) return;
    if (!(await this.lock.tryAcquire())) {
      const holder = await this.lock.holder().catch(() => null);
      this.o.state.set(
        'standby',
        holder ? `session held by another process (${holder})` : 'waiting for the session lock',
      );
      this.scheduleStandbyRetry();
      return;
    }
    if (this.stopped) {
      await this.lock.release();
      return;
    }
    this.o.log.info({ token: this.lock.token }, 'whatsapp web session lock acquired');
    // Not awaited: initialising can take minutes (or wait for a QR scan); start() only takes the lease.
    void this.o.inflight.track(this.launch());
  }

  private async onFailure(gen: number, state: FailureState, detail: string): Promise<void> {
    if (!this.isLive(gen)) return;
    // State first, synchronously: /readyz and the metrics must not lag behind a dead client.
    const { delayMs, alert } = this.o.streak.fail(state, detail);
    this.o.metrics.failure(state);
    this.o.state.set(state, detail);
    // The library destroys a disconnected client itself; destroying again is harmless and also
    // covers clients that failed to initialise (their Chromium would otherwise stay up).
    await this.dropClient();
    if (alert) await this.o.notifier.send(alert);
    if (this.stopped || !this.lock.held) return;
    this.o.log.info(
      { failures: this.o.streak.failures, retryInMs: delayMs },
      'building a new whatsapp web client after backoff',
    );
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.o.inflight.track(this.launch());
    }, delayMs);
  }

  private async launch(): Promise<void> {
    if (this.stopped || !this.lock.held) return;
    this.generation += 1;
    const gen = this.generation;
    this.o.state.set('starting');
    let c: WhatsAppWebClientLike;
    try {
      c = this.o.buildClient();
    } catch (err) {
      const { state, detail } = classifyStartFailure(err);
      await this.onFailure(gen, state, detail);
      return;
    }
    this.current = c;
    this.attach(c, gen);
    const seconds = Math.round(this.o.startTimeoutMs / 1000);
    this.startTimer = setTimeout(() => {
      const detail = `WhatsApp Web did not show a QR code or become ready within ${seconds} s`;
      void this.o.inflight.track(this.onFailure(gen, 'unreachable', detail));
    }, this.o.startTimeoutMs);
    try {
      await c.initialize();
    } catch (err) {
      const { state, detail } = classifyStartFailure(err);
      if (gen === this.generation) this.o.log.warn({ err }, 'whatsapp web client failed to start');
      await this.onFailure(gen, state, detail);
    } finally {
      // Stopped or replaced while initialising: this client is nobody's, close its browser.
      if (gen !== this.generation && this.current !== c) await this.destroyClient(c);
    }
  }

  /** Follows a client's events; each handler ignores events of a client that is not current. */
  private attach(c: WhatsAppWebClientLike, gen: number): void {
    const live = () => this.isLive(gen);
    const track = (p: Promise<unknown>) => void this.o.inflight.track(p);
    c.on('qr', (qr) => live() && this.onQr(qr));
    c.on('authenticated', () => live() && this.o.state.set('authenticated'));
    c.on('auth_failure', (message) => {
      if (!live()) return;
      track(
        this.onFailure(gen, 'failed', `WhatsApp Web authentication failed: ${String(message).slice(0, 200)}`),
      );
    });
    c.on('ready', () => live() && this.onReady(c, gen));
    c.on('change_state', (state) => live() && this.onChangeState(state));
    c.on('disconnected', (reason) => {
      if (!live()) return;
      track(this.onFailure(gen, 'disconnected', `WhatsApp Web disconnected: ${String(reason)}`));
    });
    c.on('remote_session_saved', () => live() && this.o.log.info('whatsapp web session saved to mongodb'));
    c.on('message', (message) => live() && this.o.inbound.message(c, message, 'live'));
    c.on('message_ack', (message, ack) => live() && this.o.inbound.ack(message, ack));
  }

  private onQr(qr: string): void {
    this.clearStartTimer();
    // The QR string is a login secret: it goes to the terminal, the admin page and Slack, never the log.
    this.o.state.set('qr', 'scan the QR code with the WhatsApp app: Settings → Linked devices', qr);
    this.o.log.info('whatsapp web login QR code issued');
    void this.o.inflight.track(this.o.qr.show(qr));
  }

  private onReady(c: WhatsAppWebClientLike, gen: number): void {
    this.clearStartTimer();
    const recovery = this.o.streak.succeed();
    this.o.state.set('ready');
    void this.o.inflight.track(this.o.worker.resume());
    if (recovery) void this.o.inflight.track(this.o.notifier.send(recovery));
    if (this.o.catchUp) void this.o.inflight.track(this.catchUp(c, gen, this.o.catchUp));
  }

  private onChangeState(state: string): void {
    this.o.log.debug({ waState: state }, 'whatsapp web socket state changed');
    // While ready, a socket that is not CONNECTED (TIMEOUT: the phone is offline; OPENING:
    // reconnecting) is worth showing; the library disconnects by itself if it gets worse.
    if (this.o.state.state === 'ready') {
      this.o.state.set('ready', state === 'CONNECTED' ? undefined : `WhatsApp socket ${String(state)}`);
    }
  }
}

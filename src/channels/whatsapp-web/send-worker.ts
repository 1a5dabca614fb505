/**
 * The two ends of the `whatsapp-web-out` queue as the channel owns them (see `send.ts`):
 * `SenderHandle` — the producer (queue + QueueEvents), usable in any process, built on first use;
 * `SendWorkerHost` — the consumer, run only by the session holder and paused whenever the session
 * is not `ready`.
 */
import { Queue, QueueEvents, type Worker } from 'bullmq';
import type { Logger } from '../../logger';
import { createRedisConnection, type RedisClient } from '../../queue/connection';
import { prefixFor } from '../../queue/options';
import type { ChannelSender } from '../sender';
import {
  createSendProcessor,
  createSendWorker,
  createWhatsAppWebSender,
  type SendJobData,
  type SendJobResult,
  type SendProcessorOptions,
} from './send';

export interface SenderHandleOptions {
  queueName: string;
  queuePrefix: string;
  /** The producer connection (shared). */
  redis: RedisClient;
  /** For the QueueEvents connection (its own). */
  redisUrl: string;
  timeoutMs: number;
  log: Logger;
}

export class SenderHandle {
  private parts:
    { queue: Queue; events: QueueEvents; eventsConnection: RedisClient; sender: ChannelSender } | undefined;

  constructor(private readonly o: SenderHandleOptions) {}

  get open(): boolean {
    return this.parts !== undefined;
  }

  sender(): ChannelSender {
    this.parts ??= this.build();
    return this.parts.sender;
  }

  async close(): Promise<void> {
    const parts = this.parts;
    this.parts = undefined;
    if (!parts) return;
    await parts.events.close().catch(() => undefined);
    await parts.queue.close().catch(() => undefined);
    await parts.eventsConnection.quit().catch(() => parts.eventsConnection.disconnect());
  }

  private build() {
    const { queueName, log } = this.o;
    const prefix = prefixFor(queueName, this.o.queuePrefix, this.o.redis);
    const queue = new Queue(queueName, { connection: this.o.redis, prefix });
    queue.on('error', (err) => log.debug({ err }, 'whatsapp-web-out queue connection error'));
    const eventsConnection = createRedisConnection(this.o.redisUrl, 'worker');
    const events = new QueueEvents(queueName, { connection: eventsConnection, prefix });
    events.on('error', (err) => log.debug({ err }, 'whatsapp-web-out events connection error'));
    const sender = createWhatsAppWebSender({ queue, queueEvents: events, timeoutMs: this.o.timeoutMs, log });
    return { queue, events, eventsConnection, sender };
  }
}

export interface SendWorkerHostOptions {
  queueName: string;
  queuePrefix: string;
  redisUrl: string;
  log: Logger;
  processor: SendProcessorOptions;
  /** False when stopped or the lease is not held: the worker is not started then. */
  canRun: () => boolean;
}

export class SendWorkerHost {
  private worker: Worker<SendJobData, SendJobResult> | undefined;
  private connection: RedisClient | undefined;
  private starting: Promise<void> | undefined;

  constructor(private readonly o: SendWorkerHostOptions) {}

  get running(): boolean {
    return this.worker !== undefined && !this.worker.isPaused();
  }

  /** Starts the worker the first time, resumes it after a pause. */
  async resume(): Promise<void> {
    if (!this.o.canRun()) return;
    if (this.worker) {
      if (this.worker.isPaused()) this.worker.resume();
      return;
    }
    this.starting ??= (async () => {
      this.connection = createRedisConnection(this.o.redisUrl, 'worker');
      this.worker = createSendWorker({
        queueName: this.o.queueName,
        prefix: this.o.queuePrefix,
        connection: this.connection,
        log: this.o.log,
        processor: createSendProcessor(this.o.processor),
      });
    })();
    await this.starting;
    this.starting = undefined;
  }

  /** Lets the job in progress finish and takes no new one. */
  async pause(): Promise<void> {
    await this.starting;
    if (this.worker && !this.worker.isPaused()) await this.worker.pause(true).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.starting;
    const w = this.worker;
    const conn = this.connection;
    this.worker = undefined;
    this.connection = undefined;
    if (w)
      await w.close().catch((err: unknown) => this.o.log.debug({ err }, 'closing the send worker failed'));
    if (conn) await conn.quit().catch(() => conn.disconnect());
  }
}

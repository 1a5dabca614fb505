/**
 * An EventEmitter that implements `WhatsAppWebClientLike`, the event/send interface of the
 * whatsapp-web.js Client as Rapport uses it. The real service cannot be reached from tests; this
 * is the one fake allowed — Redis, MongoDB and BullMQ stay real.
 *
 * A test scripts each client the channel builds through `fakeClientFactory(plan)`: what
 * `initialize()` does (become ready, show a QR, reject like an unreachable WhatsApp Web, or never
 * settle), and then drives it with `receive()`, `ack()`, `disconnect()`.
 */
import { EventEmitter, once } from 'node:events';
import { Writable } from 'node:stream';
import type { RedisClient } from '../../src/queue/connection';
import { Registry } from 'prom-client';
import { createLogger, type Logger } from '../../src/logger';
import { createRedisConnection, deletePrefixedKeys } from '../../src/queue/connection';
import { createIntake, type Intake } from '../../src/queue/intake';
import { closeQueues, createQueues, type Queues } from '../../src/queue/queues';
import { connectMongo, type MongoHandle } from '../../src/storage/mongo';
import {
  createWhatsAppWebChannel,
  type WhatsAppWebChannel,
  type WhatsAppWebChannelOptions,
} from '../../src/channels/whatsapp-web/session';
import { uniqueName } from '../helpers/env';
import type { WhatsAppWebClientFactoryOptions } from '../../src/channels/whatsapp-web/client';
import type {
  WhatsAppWebClientLike,
  WwebChat,
  WwebMedia,
  WwebMessage,
  WwebMessageFields,
  WwebSendOptions,
  WwebSentMessage,
} from '../../src/channels/whatsapp-web/wire';

export const OWN_JID = '15550009999@c.us';

export type InitPlan =
  { kind: 'ready' } | { kind: 'qr'; qr: string } | { kind: 'reject'; error: Error } | { kind: 'hang' };

export interface SentRecord {
  chatId: string;
  content: string | WwebMedia;
  options?: WwebSendOptions;
  id: string;
}

let counter = 0;

/** A message as whatsapp-web.js would emit it; `media` is what `downloadMedia()` resolves. */
export function fakeMessage(
  fields: Partial<WwebMessageFields> & { from: string },
  media?: WwebMedia,
): WwebMessage {
  counter += 1;
  const fromMe = fields.fromMe ?? false;
  const chat = fromMe ? (fields.to ?? OWN_JID) : fields.from;
  const id = fields.id?.id ?? `3EB0${counter.toString(16).toUpperCase().padStart(16, '0')}`;
  return {
    id: fields.id ?? { fromMe, id, _serialized: `${fromMe}_${chat}_${id}` },
    to: fields.to ?? OWN_JID,
    body: '',
    type: 'chat',
    timestamp: 1_760_000_000,
    fromMe,
    hasMedia: media !== undefined,
    ...fields,
    async downloadMedia() {
      return media;
    },
  };
}

/**
 * whatsapp-web.js's own `MessageMedia` class (`src/structures/MessageMedia.js`, a plain holder of
 * mimetype, base64 data, filename, filesize), loaded alone: the package index would load puppeteer.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the library's class, without its browser
const MessageMedia = require('whatsapp-web.js/src/structures/MessageMedia') as new (
  mimetype: string,
  data: string,
  filename?: string | null,
  filesize?: number | null,
) => WwebMedia;

export interface FakeFile {
  /** whatsapp-web.js message type: `image`, `ptt` (voice note), `audio`, `video`, `document`, `sticker`. */
  type: string;
  mimetype: string;
  bytes: Buffer;
  /** Documents carry their name; photos and voice notes none (null, as the library gives it). */
  filename?: string;
  caption?: string;
}

/**
 * A customer's file as whatsapp-web.js emits it (`Message.js`): `hasMedia` true, the caption as
 * `body`, the page model's `mimetype`/`size`/`filename` in `_data` (known before downloading), and
 * `downloadMedia()` resolving a `MessageMedia` with the base64 data and `filesize`. `download`
 * scripts it like the library: `expired` resolves undefined (media REUPLOADING / 404), `error`
 * rejects (the page failed to decrypt it).
 */
export function fakeMediaMessage(
  from: string,
  file: FakeFile,
  download: 'ok' | 'expired' | 'error' = 'ok',
): WwebMessage {
  const message = fakeMessage({
    from,
    type: file.type,
    body: file.caption ?? '',
    _data: {
      mimetype: file.mimetype,
      size: file.bytes.length,
      ...(file.filename ? { filename: file.filename } : {}),
    },
  });
  return {
    ...message,
    hasMedia: true,
    async downloadMedia() {
      if (download === 'expired') return undefined;
      if (download === 'error') throw new Error('Evaluation failed: TypeError: Failed to fetch');
      return new MessageMedia(
        file.mimetype,
        file.bytes.toString('base64'),
        file.filename ?? null,
        file.bytes.length,
      );
    },
  };
}

export class FakeWhatsAppWebClient extends EventEmitter implements WhatsAppWebClientLike {
  readonly sent: SentRecord[] = [];
  destroyed = 0;
  initialized = 0;
  info: { wid: { _serialized: string; user: string } } | undefined;
  chats: WwebChat[] = [];
  /** Numbers `getNumberId` reports as not on WhatsApp. */
  readonly unregistered = new Set<string>();
  /** LID → phone jid, for `getContactLidAndPhone`. */
  readonly lids = new Map<string, string>();
  /** Make the next sendMessage calls throw this. */
  sendError: Error | undefined;

  constructor(
    readonly options: WhatsAppWebClientFactoryOptions,
    private readonly plan: InitPlan,
  ) {
    super();
  }

  async initialize(): Promise<void> {
    this.initialized += 1;
    switch (this.plan.kind) {
      case 'reject':
        throw this.plan.error;
      case 'hang':
        // Like a page load that never finishes: it ends only when the browser is closed.
        return new Promise<void>((_, reject) => {
          this.once('destroyed', () => reject(new Error('Navigating frame was detached')));
        });
      case 'qr': {
        const qr = this.plan.qr;
        setImmediate(() => this.emit('qr', qr));
        return;
      }
      case 'ready':
        setImmediate(() => this.becomeReady());
        return;
    }
  }

  becomeReady(): void {
    this.info = { wid: { _serialized: OWN_JID, user: OWN_JID.split('@')[0]! } };
    this.emit('authenticated');
    this.emit('ready');
  }

  async destroy(): Promise<void> {
    this.destroyed += 1;
    this.emit('destroyed');
  }

  async getState(): Promise<string | null> {
    return this.info ? 'CONNECTED' : null;
  }

  async sendMessage(
    chatId: string,
    content: string | WwebMedia,
    options?: WwebSendOptions,
  ): Promise<WwebSentMessage> {
    if (this.sendError) throw this.sendError;
    counter += 1;
    const id = `true_${chatId}_3EB0SENT${counter}`;
    this.sent.push({ chatId, content, ...(options ? { options } : {}), id });
    return { id: { _serialized: id } };
  }

  async getNumberId(number: string): Promise<{ _serialized: string } | null> {
    const digits = number.replace(/@c\.us$/, '');
    return this.unregistered.has(digits) ? null : { _serialized: `${digits}@c.us` };
  }

  async getChats(): Promise<WwebChat[]> {
    return this.chats;
  }

  async getContactLidAndPhone(userIds: string[]): Promise<{ lid?: string; pn?: string }[]> {
    return userIds.map((lid) => {
      const pn = this.lids.get(lid);
      return pn ? { lid, pn } : { lid };
    });
  }

  // ---- driving the client from a test ----

  receive(message: WwebMessage): void {
    this.emit('message', message);
  }

  ack(message: WwebMessage, ack: number): void {
    this.emit('message_ack', message, ack);
  }

  disconnect(reason = 'NAVIGATION'): void {
    this.emit('disconnected', reason);
  }
}

/** A `createClient` that records every client the channel builds; `plan(n)` scripts the n-th (0-based). */
export function fakeClientFactory(plan: (n: number) => InitPlan = () => ({ kind: 'ready' })) {
  const clients: FakeWhatsAppWebClient[] = [];
  return {
    clients,
    create(options: WhatsAppWebClientFactoryOptions): FakeWhatsAppWebClient {
      const client = new FakeWhatsAppWebClient(options, plan(clients.length));
      clients.push(client);
      return client;
    },
    latest(): FakeWhatsAppWebClient | undefined {
      return clients[clients.length - 1];
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Harness: the real pieces around the channel (Redis queues + intake, a MongoDB database, a
// metrics registry, a log capture), unique per test file, and channels that are stopped at the end.

export interface WhatsAppWebHarness {
  prefix: string;
  redis: RedisClient;
  queues: Queues;
  intake: Intake;
  mongo: MongoHandle;
  registry: Registry;
  /** Every log line written, to check that nothing secret is logged. */
  logs: string[];
  log: Logger;
  /** A channel on these pieces; stopped by `close()`. */
  channel(options: Partial<WhatsAppWebChannelOptions>): WhatsAppWebChannel;
  close(): Promise<void>;
}

/** A debug logger whose lines are kept in `lines`, to check what is (not) logged. */
export function capturedLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    }),
  });
  return { log, lines };
}

export async function createWhatsAppWebHarness(label: string): Promise<WhatsAppWebHarness> {
  const name = uniqueName(label);
  const prefix = `rapport-${name}`;
  const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  const redis = createRedisConnection(redisUrl, 'producer');
  if (redis.status !== 'ready') await once(redis, 'ready');
  const queues = createQueues(redis, { prefix });
  const intake = createIntake({ queue: queues.inbound, redis, prefix });
  const { log, lines: logs } = capturedLog();
  const mongo = connectMongo(
    `${process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017'}/rapport_${name}`,
    log,
  );
  await mongo.ready;
  const registry = new Registry();
  const channels: WhatsAppWebChannel[] = [];
  return {
    prefix,
    redis,
    queues,
    intake,
    mongo,
    registry,
    logs,
    log,
    channel(options) {
      const channel = createWhatsAppWebChannel({
        chromiumPath: '/usr/bin/chromium',
        redis,
        redisUrl,
        queuePrefix: prefix,
        intake,
        mongoConnection: mongo.connection,
        log,
        registry,
        qrTerminal: null,
        catchUp: false,
        ...options,
      });
      channels.push(channel);
      return channel;
    },
    async close() {
      await Promise.all(channels.map((c) => c.stop()));
      await mongo.connection.dropDatabase().catch(() => undefined);
      await mongo.close();
      await closeQueues(queues);
      await deletePrefixedKeys(redis, prefix);
      await redis.quit();
    },
  };
}

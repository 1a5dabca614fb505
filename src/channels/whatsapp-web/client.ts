/**
 * The real whatsapp-web.js `Client` behind `WhatsAppWebClientLike`: RemoteAuth over our MongoDB
 * store, puppeteer driving the system Chromium (never a downloaded browser).
 *
 * Two guards against the library's unawaited promises: RemoteAuth's first backup runs inside
 * `afterAuthReady()` (the client does not await it) and later backups run from a `setInterval`, so
 * a MongoDB hiccup during a backup would surface as an unhandled rejection. The store handed to
 * RemoteAuth here logs and counts a failed backup instead (the next interval tries again), and
 * `afterAuthReady` is wrapped to catch. Restoring (`extract`) still throws: `initialize()` awaits it
 * and a session that cannot be restored must fail the start, not silently ask for a new QR.
 *
 * Puppeteer's own SIGINT/SIGTERM/SIGHUP handlers are off: they would kill Chromium (SIGINT even
 * exits the process) before Rapport's graceful shutdown ran. Puppeteer still kills Chromium when
 * the Node process exits.
 */
import path from 'node:path';
import type { MessageMedia } from 'whatsapp-web.js';
import type { Logger } from '../../logger';
import type { RemoteAuthStore } from './store';
import type { WhatsAppWebClientLike, WwebChat, WwebMedia } from './wire';

/**
 * whatsapp-web.js (and puppeteer under it) is loaded on first use, not at start-up: it is the
 * heaviest module Rapport has, and most processes (sandbox, api, worker) never open a session.
 */
function wweb(): typeof import('whatsapp-web.js') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- deliberate lazy load (see above)
  return require('whatsapp-web.js') as typeof import('whatsapp-web.js');
}

export interface WhatsAppWebClientFactoryOptions {
  clientId: string;
  chromiumPath: string;
  /** The complete Chromium command line (`config.ts` `chromiumArgs`). */
  chromiumArgs: string[];
  /** RemoteAuth's working directory; also holds the WhatsApp Web version cache. */
  dataPath: string;
  store: RemoteAuthStore;
  backupSyncIntervalMs: number;
  log: Logger;
  /** Called after each RemoteAuth backup attempt. */
  onBackup?: (outcome: 'saved' | 'failed') => void;
}

function toMessageMedia(content: WwebMedia): MessageMedia {
  const { MessageMedia } = wweb();
  return content instanceof MessageMedia
    ? content
    : new MessageMedia(content.mimetype, content.data, content.filename ?? null, content.filesize ?? null);
}

export function createRealWhatsAppWebClient(o: WhatsAppWebClientFactoryOptions): WhatsAppWebClientLike {
  const { Client, RemoteAuth } = wweb();
  const guardedStore: RemoteAuthStore = {
    sessionExists: (args) => o.store.sessionExists(args),
    extract: (args) => o.store.extract(args),
    delete: (args) => o.store.delete(args),
    async save(args) {
      try {
        await o.store.save(args);
        o.onBackup?.('saved');
      } catch (err) {
        o.onBackup?.('failed');
        o.log.warn({ err }, 'whatsapp web session backup to mongodb failed; retrying at the next interval');
      }
    },
  };
  const auth = new RemoteAuth({
    store: guardedStore,
    clientId: o.clientId,
    dataPath: o.dataPath,
    backupSyncIntervalMs: o.backupSyncIntervalMs,
  });
  const afterAuthReady = auth.afterAuthReady.bind(auth);
  auth.afterAuthReady = async () => {
    try {
      await afterAuthReady();
    } catch (err) {
      o.onBackup?.('failed');
      o.log.warn({ err }, 'whatsapp web session backup setup failed');
    }
  };

  const client = new Client({
    authStrategy: auth,
    puppeteer: {
      executablePath: o.chromiumPath,
      headless: true,
      args: o.chromiumArgs,
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    },
    webVersionCache: { type: 'local', path: path.join(o.dataPath, 'web-version-cache') },
    // Two sessions of one number are prevented by the lock; a conflict means something is wrong,
    // so do not fight over it (see README "The lock").
    takeoverOnConflict: false,
    qrMaxRetries: 0,
  });

  return {
    on(event, listener) {
      client.on(event, listener);
      return this;
    },
    once(event, listener) {
      client.once(event, listener);
      return this;
    },
    initialize: () => client.initialize(),
    destroy: () => client.destroy(),
    async sendMessage(chatId, content, options) {
      const body = typeof content === 'string' ? content : toMessageMedia(content);
      const sent: unknown = await client.sendMessage(chatId, body, options ?? {});
      const id: unknown =
        typeof sent === 'object' && sent !== null
          ? (sent as { id?: { _serialized?: unknown } }).id?._serialized
          : undefined;
      if (typeof id !== 'string') throw new Error('whatsapp-web.js returned no message for the send');
      return { id: { _serialized: id } };
    },
    async getState() {
      const state: unknown = await client.getState();
      return typeof state === 'string' ? state : null;
    },
    get info() {
      // Undefined until `ready`, whatever index.d.ts says.
      const info: unknown = client.info;
      if (typeof info !== 'object' || info === null) return undefined;
      const wid: unknown = (info as { wid?: unknown }).wid;
      if (typeof wid !== 'object' || wid === null) return undefined;
      const serialized: unknown = (wid as { _serialized?: unknown })._serialized;
      const user: unknown = (wid as { user?: unknown }).user;
      return typeof serialized === 'string' && typeof user === 'string'
        ? { wid: { _serialized: serialized, user } }
        : undefined;
    },
    async getNumberId(number) {
      const wid: unknown = await client.getNumberId(number);
      if (typeof wid !== 'object' || wid === null) return null;
      const serialized: unknown = (wid as { _serialized?: unknown })._serialized;
      return typeof serialized === 'string' ? { _serialized: serialized } : null;
    },
    async getChats(): Promise<WwebChat[]> {
      return client.getChats();
    },
    getContactLidAndPhone: (userIds) => client.getContactLidAndPhone(userIds),
  };
}

/** Fetches an outbound media URL into a `MessageMedia` (the real class: `sendMessage` checks `instanceof`). */
export async function fetchOutboundMedia(url: string, filename?: string): Promise<WwebMedia> {
  return wweb().MessageMedia.fromUrl(url, { unsafeMime: true, ...(filename ? { filename } : {}) });
}

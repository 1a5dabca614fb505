/**
 * Inbound media of the WhatsApp Web channel, kept in MongoDB instead of in the event.
 *
 * whatsapp-web.js hands a file over as one base64 string (`downloadMedia()`); putting that in the
 * inbound event would push megabytes through Redis and every job after it. So the file is stored
 * once (chunked, `store.ts`) under an id derived from the message id — a redelivered or caught-up
 * message overwrites the same file instead of adding one — and the event carries only that id
 * (`MessagePart.providerMediaId`), the content type and the file name. Files above `maxBytes` are
 * not downloaded at all; the event still says a file of that type and size was sent.
 *
 * Unlike Twilio or Meta URLs, WhatsApp Web media cannot be fetched again later without the live
 * session, which is why the bytes are copied at receive time.
 */
import type { OutboundMedia } from '../sender';
import type { BlobStore } from './store';
import type { InboundMediaRef } from './normalize';
import type { WwebMedia, WwebMessage } from './wire';

/** WhatsApp's own limit for documents is far higher; 16 MiB covers photos, voice notes and short videos. */
export const DEFAULT_MAX_MEDIA_BYTES = 16 * 1024 * 1024;

/** `providerMediaId` prefix of media kept by this channel. */
export const MEDIA_ID_PREFIX = 'whatsapp-web-media:';

export interface StoredMedia {
  data: Buffer;
  contentType?: string;
  filename?: string;
}

export interface WhatsAppWebMediaStore {
  /**
   * Downloads a message's file (unless too large) and stores it. A failed download is reported in
   * the result; a failed write to MongoDB throws, so the caller retries instead of losing the file.
   */
  keep(message: WwebMessage, options?: { timeoutMs?: number }): Promise<InboundMediaRef>;
  /** A kept file by its `providerMediaId`. */
  get(providerMediaId: string): Promise<StoredMedia | undefined>;
}

function declaredSize(message: WwebMessage): number | undefined {
  const size = message._data?.size;
  return typeof size === 'number' && Number.isFinite(size) && size >= 0 ? size : undefined;
}

function stringOf(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`media download timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export function createMediaStore({
  blobs,
  maxBytes = DEFAULT_MAX_MEDIA_BYTES,
}: {
  blobs: BlobStore;
  maxBytes?: number;
}): WhatsAppWebMediaStore {
  return {
    async keep(message, { timeoutMs = 60_000 } = {}) {
      const contentType = stringOf(message._data?.mimetype);
      const filename = stringOf(message._data?.filename);
      const described = {
        ...(contentType ? { contentType } : {}),
        ...(filename ? { filename } : {}),
      };
      const size = declaredSize(message);
      if (size !== undefined && size > maxBytes) {
        return { stored: false, reason: 'too_large', ...described, bytes: size };
      }
      let media: Awaited<ReturnType<WwebMessage['downloadMedia']>>;
      try {
        media = await withTimeout(message.downloadMedia(), timeoutMs);
      } catch {
        return { stored: false, reason: 'unavailable', ...described };
      }
      if (!media || typeof media.data !== 'string')
        return { stored: false, reason: 'unavailable', ...described };
      const type = stringOf(media.mimetype) ?? contentType ?? 'application/octet-stream';
      const name = stringOf(media.filename) ?? filename;
      const named = name ? { filename: name } : {};
      // base64: 4 characters per 3 bytes; checked before decoding.
      const estimated = Math.floor((media.data.length * 3) / 4);
      if (estimated > maxBytes) {
        return { stored: false, reason: 'too_large', contentType: type, ...named, bytes: estimated };
      }
      const data = Buffer.from(media.data, 'base64');
      const id = `${MEDIA_ID_PREFIX}${message.id._serialized}`;
      await blobs.put(id, data, { contentType: type, ...named });
      return { stored: true, id, contentType: type, ...named, bytes: data.length };
    },
    async get(providerMediaId) {
      if (!providerMediaId.startsWith(MEDIA_ID_PREFIX)) return undefined;
      const [info, data] = await Promise.all([blobs.info(providerMediaId), blobs.get(providerMediaId)]);
      if (!data) return undefined;
      return {
        data,
        ...(info?.contentType ? { contentType: info.contentType } : {}),
        ...(info?.filename ? { filename: info.filename } : {}),
      };
    },
  };
}

/** Reads a file from Rapport's media store by id (an agent's file). */
export type StoredMediaReader = (
  id: string,
) => Promise<{ data: Buffer; contentType?: string; filename?: string } | undefined>;

/**
 * Loads an outbound file as whatsapp-web.js's `MessageMedia` fields: an agent's file from Rapport's
 * media store (the session holder reads MongoDB directly instead of fetching its own public URL),
 * anything else from its URL.
 */
export function outboundMediaLoader(
  readStored: StoredMediaReader | undefined,
  fetchUrl: (url: string, filename?: string) => Promise<WwebMedia>,
): (media: OutboundMedia) => Promise<WwebMedia> {
  return async (m) => {
    if (!m.storedId || !readStored) return fetchUrl(m.url, m.filename);
    const stored = await readStored(m.storedId);
    if (!stored) throw new Error(`stored media ${m.storedId} not found`);
    return {
      mimetype: m.contentType ?? stored.contentType ?? 'application/octet-stream',
      data: stored.data.toString('base64'),
      filename: m.filename ?? stored.filename ?? null,
      filesize: stored.data.length,
    };
  };
}

/**
 * A customer's files, from the provider into GridFS, before the message is posted in Slack.
 *
 * Runs in the `inbound` worker for one message at a time, so the files are stored before the
 * message joins the customer's Slack outbox (and are uploaded with it, in order). Each file is
 * streamed through the `MEDIA_MAX_BYTES` cap; a file over it, or one that cannot be fetched, is kept
 * as a description (type, size, why) so the agent knows something was sent. A retried job finds
 * the stored files under their deterministic ids and fetches nothing again.
 */
import type { Types } from 'mongoose';
import type { InboundMessage, MessagePart } from '../canonical';
import type { Logger } from '../logger';
import { fetchMedia, MediaFetchError, type MediaFetchOptions } from './fetch';
import { MediaTooLargeError, mediaId, type MediaStore } from './store';

type MediaPart = Extract<MessagePart, { kind: 'media' }>;

/** What became of one media part of an inbound message (in part order). */
export type InboundFile =
  | { kind: 'stored'; id: string; filename: string; contentType: string; bytes: number }
  | { kind: 'failed'; filename?: string; contentType?: string; bytes?: number; why: string };

export interface InboundMediaOptions {
  store: MediaStore;
  fetch: MediaFetchOptions;
  /** MEDIA_MAX_BYTES */
  maxBytes: number;
  log: Logger;
}

const EXTENSIONS: Record<string, string> = {
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/gif': 'gif',
  'image/webp': 'webp',
  'audio/ogg': 'ogg',
  'audio/mpeg': 'mp3',
  'audio/mp4': 'm4a',
  'audio/aac': 'aac',
  'audio/amr': 'amr',
  'video/mp4': 'mp4',
  'video/3gpp': '3gp',
  'application/pdf': 'pdf',
  'text/plain': 'txt',
  'text/vcard': 'vcf',
};

/** A file name for a file the sender did not name: `image-1.jpg`, `audio-2.ogg`, `file-3`. */
export function defaultFilename(contentType: string | undefined, index: number): string {
  const kind = contentType?.split('/')[0];
  const base = kind && ['image', 'audio', 'video'].includes(kind) ? kind : 'file';
  const ext = contentType ? EXTENSIONS[contentType.split(';')[0]!.trim().toLowerCase()] : undefined;
  return `${base}-${index + 1}${ext ? `.${ext}` : ''}`;
}

/** `1.2 MB`, `830 KB`, `512 bytes` (decimal units, as the providers state their limits). */
export function formatBytes(bytes: number): string {
  if (bytes >= 1_000_000) return `${(bytes / 1_000_000).toFixed(1)} MB`;
  if (bytes >= 1_000) return `${Math.round(bytes / 1_000)} KB`;
  return `${bytes} bytes`;
}

function explainFetchFailure(err: MediaFetchError): string {
  switch (err.reason) {
    case 'expired':
      return "the provider's link to it had expired and a fresh one failed too";
    case 'refused':
      return `the provider refused the download (${err.message})`;
    case 'not_configured':
      return 'that channel is not configured for downloads';
    case 'untrusted_host':
      return `Rapport fetches files only from the provider's own servers (${err.message})`;
    case 'unavailable':
      return 'the provider did not deliver it (unreachable or timed out)';
  }
}

export function createInboundMedia(o: InboundMediaOptions) {
  async function keepOne(
    message: InboundMessage,
    customerId: string,
    part: MediaPart,
    index: number,
  ): Promise<InboundFile> {
    const id = mediaId('in', message.key, index);
    const done = await o.store.info(id);
    if (done) return { kind: 'stored', id, ...pick(done.metadata), bytes: done.bytes };
    const described = {
      ...(part.contentType ? { contentType: part.contentType } : {}),
      ...(part.filename ? { filename: part.filename } : {}),
      ...(part.bytes !== undefined ? { bytes: part.bytes } : {}),
    };
    try {
      // Declared too large before any download (WhatsApp Web did not fetch it): the same line as for a stream.
      if (part.bytes !== undefined && part.bytes > o.maxBytes)
        throw new MediaTooLargeError(o.maxBytes, part.bytes, true);
      const fetched = await fetchMedia(message.provider, part, o.fetch);
      // Messenger says only `image/*`: the file's own Content-Type is better then.
      const declared = part.contentType?.includes('*') ? undefined : part.contentType;
      const contentType = declared ?? fetched.contentType ?? part.contentType ?? 'application/octet-stream';
      if (fetched.declaredBytes !== undefined && fetched.declaredBytes > o.maxBytes) {
        fetched.stream.destroy();
        throw new MediaTooLargeError(o.maxBytes, fetched.declaredBytes, true);
      }
      const filename = part.filename ?? defaultFilename(contentType, index);
      const metadata = { customerId, key: message.key, direction: 'in' as const, contentType, filename };
      const stored = await o.store.put(id, fetched.stream, metadata, o.maxBytes);
      return { kind: 'stored', id, filename, contentType, bytes: stored.bytes };
    } catch (err) {
      if (err instanceof MediaTooLargeError) {
        const limit = `the ${formatBytes(o.maxBytes)} limit (MEDIA_MAX_BYTES)`;
        return {
          kind: 'failed',
          ...described,
          ...(err.exact ? { bytes: err.seen } : {}),
          why: err.exact ? `over ${limit}` : `larger than ${limit}`,
        };
      }
      if (err instanceof MediaFetchError) {
        o.log.warn({ key: message.key, index, reason: err.reason }, 'inbound media not fetched');
        return { kind: 'failed', ...described, why: explainFetchFailure(err) };
      }
      throw err;
    }
  }

  return {
    /** Stores every media part of `message` (sequentially: order and memory stay bounded). */
    async keep(message: InboundMessage, customerId: Types.ObjectId): Promise<InboundFile[]> {
      const out: InboundFile[] = [];
      const media = message.parts.filter((p): p is MediaPart => p.kind === 'media');
      for (const [index, part] of media.entries())
        out.push(await keepOne(message, String(customerId), part, index));
      return out;
    },
  };
}

function pick(m: { filename: string; contentType: string }) {
  return { filename: m.filename, contentType: m.contentType };
}

export type InboundMedia = ReturnType<typeof createInboundMedia>;

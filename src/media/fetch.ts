/**
 * Fetching a customer's file from the provider that carried it, with that provider's authentication,
 * as a stream (the caller stores it through a byte cap):
 * - WhatsApp Cloud: `GET /{media-id}` with the access token answers a short-lived URL; that URL is
 *   fetched with the same token. An expired URL (401/403/404/410) is asked for again.
 * - Twilio: `MediaUrlN` with HTTP basic AccountSid:AuthToken, following the redirect to the file
 *   store. The credentials go only to the Twilio API's own origin.
 * - Messenger: the attachment's `payload.url` (signed by Meta, no token).
 * - WhatsApp Web: the session already ran `downloadMedia()` and kept the bytes
 *   (src/channels/whatsapp-web/media.ts); they are read from there.
 * Failures are `MediaFetchError`s whose `reason` the agent is told.
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { MessagePart, Provider } from '../canonical';
import { AppError } from '../errors';

type MediaPart = Extract<MessagePart, { kind: 'media' }>;

export type MediaFetchReason = 'expired' | 'refused' | 'unavailable' | 'not_configured' | 'untrusted_host';

export class MediaFetchError extends AppError {
  constructor(
    readonly reason: MediaFetchReason,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(detail, `media_${reason}`, 502, reason === 'unavailable', options);
  }
}

export interface FetchedMedia {
  stream: Readable;
  contentType?: string;
  /** From Content-Length or the provider's metadata, when known. */
  declaredBytes?: number;
}

export interface MediaFetchOptions {
  /**
   * `baseUrl` is META_GRAPH_BASE_URL. Messenger files are fetched only from Meta's CDN hosts when it
   * is Graph itself, and only from its origin when it points elsewhere (an emulator or a proxy).
   */
  graph?: { baseUrl: string; version: string; whatsappToken?: string };
  twilio?: { accountSid: string; authToken: string; apiBaseUrl: string };
  /** The bytes WhatsApp Web's session kept for a `providerMediaId`. */
  whatsappWeb?: (providerMediaId: string) => Promise<{ data: Buffer; contentType?: string } | undefined>;
  /** Per request (headers and body). @defaultValue 60000 */
  timeoutMs?: number;
}

const EXPIRED = new Set([401, 403, 404, 410]);

function reasonOf(status: number): MediaFetchReason {
  if (status === 429 || status >= 500) return 'unavailable';
  return EXPIRED.has(status) ? 'expired' : 'refused';
}

function lengthOf(res: Response): number | undefined {
  const value = Number(res.headers.get('content-length'));
  return Number.isFinite(value) && value > 0 ? value : undefined;
}

async function get(url: string, headers: Record<string, string>, timeoutMs: number): Promise<Response> {
  try {
    return await fetch(url, { headers, redirect: 'follow', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new MediaFetchError('unavailable', 'the provider did not answer', { cause: err });
  }
}

function streamOf(res: Response, contentType?: string): FetchedMedia {
  if (!res.body) throw new MediaFetchError('unavailable', 'the provider sent no body');
  const type = contentType ?? res.headers.get('content-type')?.split(';')[0]?.trim();
  const declared = lengthOf(res);
  return {
    stream: Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
    ...(type ? { contentType: type } : {}),
    ...(declared !== undefined ? { declaredBytes: declared } : {}),
  };
}

async function fromCloud(part: MediaPart, o: MediaFetchOptions, timeoutMs: number): Promise<FetchedMedia> {
  const graph = o.graph;
  if (!graph?.whatsappToken || !part.providerMediaId)
    throw new MediaFetchError('not_configured', 'WhatsApp Cloud is not configured');
  const auth = { authorization: `Bearer ${graph.whatsappToken}` };
  const metaUrl = `${graph.baseUrl}/${graph.version}/${encodeURIComponent(part.providerMediaId)}`;
  let last: MediaFetchReason = 'unavailable';
  // One fresh URL per try: Meta's URLs last about five minutes.
  for (let attempt = 0; attempt < 2; attempt++) {
    const meta = await get(metaUrl, auth, timeoutMs);
    if (!meta.ok) {
      await meta.body?.cancel();
      // The lookup itself: any 4xx is a refusal (a bad id or token), not an expired link.
      const reason = meta.status === 429 || meta.status >= 500 ? 'unavailable' : 'refused';
      throw new MediaFetchError(reason, `media id lookup answered ${meta.status}`);
    }
    const info = (await meta.json().catch(() => ({}))) as {
      url?: unknown;
      mime_type?: unknown;
      file_size?: unknown;
    };
    if (typeof info.url !== 'string') throw new MediaFetchError('refused', 'media id lookup gave no URL');
    const file = await get(info.url, auth, timeoutMs);
    if (file.ok) {
      const fetched = streamOf(file, typeof info.mime_type === 'string' ? info.mime_type : undefined);
      if (typeof info.file_size === 'number') fetched.declaredBytes = info.file_size;
      return fetched;
    }
    await file.body?.cancel();
    last = reasonOf(file.status);
    if (last !== 'expired') break;
  }
  throw new MediaFetchError(
    last,
    last === 'expired' ? 'the media URL expired twice' : 'the media URL failed',
  );
}

function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

const META_CDN = /(^|\.)(fbcdn\.net|fbsbx\.com|facebook\.com)$/;

/** Whether a Messenger attachment URL is one Meta serves (never an arbitrary host: no SSRF). */
function isMetaFileUrl(url: string, graphBaseUrl: string | undefined): boolean {
  const graph = graphBaseUrl ? originOf(graphBaseUrl) : undefined;
  if (graph && graph !== 'https://graph.facebook.com') return originOf(url) === graph;
  try {
    const u = new URL(url);
    return u.protocol === 'https:' && META_CDN.test(u.hostname);
  } catch {
    return false;
  }
}

async function fromTwilio(part: MediaPart, o: MediaFetchOptions, timeoutMs: number): Promise<FetchedMedia> {
  if (!part.url) throw new MediaFetchError('refused', 'no media URL');
  const twilio = o.twilio;
  // Only Twilio's own API serves MediaUrls: the credentials never go elsewhere, nothing else is fetched.
  if (!twilio || originOf(part.url) !== originOf(twilio.apiBaseUrl))
    throw new MediaFetchError('untrusted_host', 'the link is not on the Twilio API');
  const headers = {
    authorization: `Basic ${Buffer.from(`${twilio.accountSid}:${twilio.authToken}`).toString('base64')}`,
  };
  const res = await get(part.url, headers, timeoutMs);
  if (!res.ok) {
    await res.body?.cancel();
    throw new MediaFetchError(reasonOf(res.status), `the media URL answered ${res.status}`);
  }
  return streamOf(res);
}

async function fromUrl(part: MediaPart, o: MediaFetchOptions, timeoutMs: number): Promise<FetchedMedia> {
  if (!part.url) throw new MediaFetchError('refused', 'no media URL');
  if (!isMetaFileUrl(part.url, o.graph?.baseUrl)) {
    const graph = o.graph?.baseUrl ? originOf(o.graph.baseUrl) : undefined;
    const allowed =
      graph && graph !== 'https://graph.facebook.com' ? "META_GRAPH_BASE_URL's host" : "Meta's file servers";
    throw new MediaFetchError('untrusted_host', `the link is not on ${allowed}`);
  }
  const res = await get(part.url, {}, timeoutMs);
  if (!res.ok) {
    await res.body?.cancel();
    throw new MediaFetchError(reasonOf(res.status), `the media URL answered ${res.status}`);
  }
  return streamOf(res);
}

async function fromWhatsAppWeb(part: MediaPart, o: MediaFetchOptions): Promise<FetchedMedia> {
  const kept = part.providerMediaId ? await o.whatsappWeb?.(part.providerMediaId) : undefined;
  if (!kept && !part.providerMediaId && part.bytes !== undefined) {
    throw new MediaFetchError('refused', 'the WhatsApp Web session does not download files this large');
  }
  if (!kept) throw new MediaFetchError('unavailable', 'the WhatsApp Web session did not keep the file');
  const contentType = kept.contentType ?? part.contentType;
  return {
    stream: Readable.from([kept.data]),
    declaredBytes: kept.data.length,
    ...(contentType ? { contentType } : {}),
  };
}

/** Opens the file of a media part as the provider that carried it serves it. */
export function fetchMedia(provider: Provider, part: MediaPart, o: MediaFetchOptions): Promise<FetchedMedia> {
  const timeoutMs = o.timeoutMs ?? 60_000;
  switch (provider) {
    case 'whatsapp-cloud':
      return fromCloud(part, o, timeoutMs);
    case 'twilio':
      return fromTwilio(part, o, timeoutMs);
    case 'messenger':
      return fromUrl(part, o, timeoutMs);
    case 'whatsapp-web':
      return fromWhatsAppWeb(part, o);
  }
}

/**
 * An agent's Slack file on its way to the customer: checked against what the customer's channel
 * can carry (limits.ts), downloaded from Slack with the bot token (`files:read`) into GridFS, and
 * handed to the sender as bytes (`load`, for the Cloud API's media upload) and as a signed,
 * expiring Rapport URL under PUBLIC_URL (Twilio's `MediaUrl`, Messenger's attachment URL).
 *
 * The URL is `${PUBLIC_URL}/media/<id>?exp=<unix seconds>&sig=<HMAC-SHA256(key, "<id>.<exp>")>`:
 * unguessable, minutes long (MEDIA_URL_TTL_SECONDS), and it serves only that one file
 * (src/http/media.ts). A file the channel cannot carry is refused with an explanation for the
 * agent; nothing is sent then, never half of it silently.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Channel, Provider } from '../canonical';
import type { SlackClient } from '../channels/slack/client';
import type { OutboundMedia } from '../channels/sender';
import type { CustomerSend, SendMedia } from '../router/models';
import { channelLabel } from '../router/texts';
import { formatBytes } from './inbound';
import { checkMedia } from './limits';
import { MediaTooLargeError, mediaId, type MediaStore } from './store';
import { escapeSlackText } from '../channels/slack/escape';

export interface OutboundMediaOptions {
  store: MediaStore;
  slack?: Pick<SlackClient, 'downloadFile'>;
  /** PUBLIC_URL, without a trailing slash. */
  publicUrl: string;
  urlSecret: string;
  urlTtlMs: number;
  /** MEDIA_MAX_BYTES */
  maxBytes: number;
}

export type PreparedMedia = { media: OutboundMedia[] } | { refused: string };

function signature(secret: string, id: string, exp: number): string {
  return createHmac('sha256', secret).update(`${id}.${exp}`).digest('base64url');
}

/** The signed URL of stored file `id`, valid for `ttlMs` from `now`. */
export function signMediaUrl(
  o: Pick<OutboundMediaOptions, 'publicUrl' | 'urlSecret' | 'urlTtlMs'>,
  id: string,
  now = Date.now(),
): string {
  const exp = Math.floor((now + o.urlTtlMs) / 1000);
  return `${o.publicUrl}/media/${encodeURIComponent(id)}?exp=${exp}&sig=${signature(o.urlSecret, id, exp)}`;
}

/** Checks a signed media URL's parts (constant-time). */
export function verifyMediaUrl(
  secret: string,
  id: string,
  exp: string | undefined,
  sig: string | undefined,
  now = Date.now(),
): 'ok' | 'expired' | 'invalid' {
  if (!exp || !/^\d{1,12}$/.test(exp) || !sig) return 'invalid';
  const expected = Buffer.from(signature(secret, id, Number(exp)));
  const given = Buffer.from(sig);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid';
  return Number(exp) * 1000 < now ? 'expired' : 'ok';
}

function alternatives(channel: Channel): string {
  const link = 'share a link to the file in your reply instead';
  if (channel === 'sms')
    return `${link}, or reply starting with \`whatsapp:\` or \`messenger:\` if the customer uses those apps (they carry documents).`;
  return `${link}, or send a smaller file or a common format (JPEG/PNG, MP4, PDF).`;
}

function refusal(channel: Channel, filename: string | undefined, why: string): string {
  const name = filename ? `"${escapeSlackText(filename)}"` : 'your file';
  return `:x: Not sent: ${channelLabel(channel)} cannot take ${name}: ${why}. Nothing of this reply was sent. You can ${alternatives(channel)}`;
}

export function createOutboundMedia(o: OutboundMediaOptions) {
  /** Downloads one Slack file into the store; a string is the refusal reason. */
  async function download(
    m: SendMedia,
    id: string,
    key: string,
    customerId: string,
    cap: number,
  ): Promise<string | undefined> {
    if (await o.store.info(id)) return undefined;
    if (!o.slack) return 'Slack is not configured, so the file cannot be downloaded';
    const res = await o.slack.downloadFile(m.url);
    const type = res.headers.get('content-type') ?? '';
    if (!res.ok || !res.body || type.startsWith('text/html')) {
      await res.body?.cancel();
      // Without `files:read` Slack answers its sign-in page (HTML) instead of the file.
      return res.ok
        ? 'Slack served a sign-in page instead of the file (is the files:read scope granted?)'
        : `Slack answered ${res.status} when downloading it; attach it again`;
    }
    const metadata = {
      customerId,
      key,
      direction: 'out' as const,
      contentType: m.contentType ?? (type.split(';')[0] || 'application/octet-stream'),
      filename: m.filename ?? 'file',
    };
    try {
      await o.store.put(id, Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), metadata, cap);
      return undefined;
    } catch (err) {
      if (err instanceof MediaTooLargeError) return `it is larger than the ${formatBytes(cap)} allowed there`;
      throw err;
    }
  }

  return {
    /** The send's media, ready for `route`'s sender, or why the channel cannot carry it. */
    async prepare(
      send: CustomerSend,
      route: { channel: Channel; provider: Provider },
    ): Promise<PreparedMedia> {
      const out: OutboundMedia[] = [];
      for (const [i, m] of (send.media ?? []).entries()) {
        if (!m.slackFileId) {
          out.push({
            url: m.url,
            ...(m.contentType ? { contentType: m.contentType } : {}),
            ...(m.filename ? { filename: m.filename } : {}),
          });
          continue;
        }
        const check = checkMedia(route.channel, route.provider, {
          contentType: m.contentType,
          bytes: m.bytes,
        });
        if (!check.ok) return { refused: refusal(route.channel, m.filename, check.why) };
        const id = mediaId('out', send.key, i);
        const cap = Math.min(check.maxBytes, o.maxBytes);
        const failed = await download(m, id, send.key, String(send.customerId), cap);
        if (failed) return { refused: refusal(route.channel, m.filename, failed) };
        const stored = await o.store.info(id);
        out.push({
          url: signMediaUrl(o, id),
          contentType: stored?.metadata.contentType ?? m.contentType ?? 'application/octet-stream',
          ...(m.filename ? { filename: m.filename } : {}),
          load: () => o.store.read(id),
          storedId: id,
        });
      }
      return { media: out };
    },
  };
}

export type OutboundMediaPreparer = ReturnType<typeof createOutboundMedia>;

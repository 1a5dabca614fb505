/**
 * Sends agent replies to customers over the WhatsApp Cloud API: plain `fetch` to
 * `POST {graphBaseUrl}/{graphVersion}/{phoneNumberId}/messages` with a Bearer token.
 *
 * One outbound message may take several calls (one per media item); the id of the first is
 * returned. `to` always carries `+` and the country code: without the `+`, Meta prepends the
 * business number's own country code.
 *
 * A lost answer (timeout, reset, a 5xx without a documented code) is `uncertain`: the Cloud API has
 * no way to list what was sent, so the caller does not resend and tells the agent.
 */
import type { Channel } from '../../canonical';
import { isRecord } from '../../values';
import type { ChannelSender, OutboundMedia, OutboundMessage, SendProgress, SendResult } from '../sender';
import { OutboundError, sendInParts } from '../sender';
import {
  classifyWhatsAppCloudFailure,
  contentError,
  graphFailureFromBody,
  outboundErrorFrom,
  transportKind,
  type ProviderFailure,
} from '../send-errors';

export interface WhatsAppCloudSenderOptions {
  accessToken: string;
  /** The business number replies come from (`WHATSAPP_CLOUD_PHONE_NUMBER_ID`). */
  phoneNumberId: string;
  /** `META_GRAPH_BASE_URL`. @defaultValue `'https://graph.facebook.com'` */
  graphBaseUrl?: string;
  /** `META_GRAPH_VERSION`, e.g. `'v21.0'`. */
  graphVersion: string;
  /** Per-request timeout. @defaultValue `10_000` */
  timeoutMs?: number;
}

type CloudMediaType = 'image' | 'video' | 'audio' | 'document';

/** The Cloud API body of one `/messages` call. */
export type CloudMessageBody = {
  messaging_product: 'whatsapp';
  recipient_type: 'individual';
  to: string;
} & (
  | { type: 'text'; text: { body: string; preview_url: boolean } }
  | { type: 'template'; template: CloudTemplate }
  | { type: CloudMediaType; [key: string]: unknown }
);

interface CloudTemplate {
  name: string;
  language: { code: string };
  components?: { type: 'body'; parameters: { type: 'text'; text: string }[] }[];
}

const EXTENSIONS: Record<string, CloudMediaType> = {
  jpg: 'image',
  jpeg: 'image',
  png: 'image',
  webp: 'image',
  mp4: 'video',
  '3gp': 'video',
  mp3: 'audio',
  ogg: 'audio',
  opus: 'audio',
  amr: 'audio',
  aac: 'audio',
  m4a: 'audio',
};

/** The Cloud message type for a media item: by content type, else by the URL's extension. */
export function cloudMediaType(media: OutboundMedia): CloudMediaType {
  const ct = media.contentType?.toLowerCase();
  if (ct !== undefined) {
    if (ct.startsWith('image/')) return 'image';
    if (ct.startsWith('video/')) return 'video';
    if (ct.startsWith('audio/')) return 'audio';
    return 'document';
  }
  let ext: string | undefined;
  try {
    ext = new URL(media.url).pathname.split('.').pop()?.toLowerCase();
  } catch {
    ext = undefined;
  }
  return (ext !== undefined ? EXTENSIONS[ext] : undefined) ?? 'document';
}

/** `+14155550100` whatever the input's prefix (`whatsapp:`, bare digits). */
export function cloudRecipient(to: string): string {
  const digits = to.replace(/^whatsapp:/, '').replace(/[^\d]/g, '');
  return `+${digits}`;
}

/** Template body parameters in the order of their keys `"1"`, `"2"`, … */
function templateParameters(variables: Record<string, string>): { type: 'text'; text: string }[] {
  return Object.keys(variables)
    .sort((a, b) => Number(a) - Number(b) || a.localeCompare(b))
    .map((k) => ({ type: 'text' as const, text: variables[k] as string }));
}

/**
 * The `/messages` bodies one outbound message becomes, in order (pure).
 * - template: one `template` message (text and media are not sent);
 * - text only: one `text` message (`preview_url: false`);
 * - media: one message per item; the text becomes the caption of the first item that can carry
 *   one (image, video, document). When none can (audio only), the text goes first on its own.
 */
export function cloudMessageBodies(message: OutboundMessage): CloudMessageBody[] {
  if (message.channel !== 'whatsapp') {
    throw contentError(
      'whatsapp-cloud',
      'unsupported',
      `channel ${message.channel} is not carried by WhatsApp Cloud`,
    );
  }
  const head = {
    messaging_product: 'whatsapp',
    recipient_type: 'individual',
    to: cloudRecipient(message.to),
  } as const;
  if (message.template) {
    const variables = message.template.variables ?? {};
    const parameters = templateParameters(variables);
    return [
      {
        ...head,
        type: 'template',
        template: {
          name: message.template.id,
          language: { code: message.template.language ?? 'en' },
          ...(parameters.length > 0 ? { components: [{ type: 'body', parameters }] } : {}),
        },
      },
    ];
  }
  const text = message.text !== undefined && message.text.length > 0 ? message.text : undefined;
  const media = message.media ?? [];
  if (text === undefined && media.length === 0) {
    throw contentError('whatsapp-cloud', 'unsupported', 'nothing to send: no text, media or template');
  }
  const textBody = (body: string): CloudMessageBody => ({
    ...head,
    type: 'text',
    text: { body, preview_url: false },
  });
  if (media.length === 0) return [textBody(text as string)];

  const types = media.map(cloudMediaType);
  const captionAt = text === undefined ? -1 : types.findIndex((t) => t !== 'audio');
  const bodies: CloudMessageBody[] = text !== undefined && captionAt === -1 ? [textBody(text)] : [];
  media.forEach((m, i) => {
    const type = types[i] as CloudMediaType;
    const object: Record<string, string> = { link: m.url };
    if (i === captionAt && text !== undefined) object.caption = text;
    if (type === 'document' && m.filename !== undefined) object.filename = m.filename;
    bodies.push({ ...head, type, [type]: object });
  });
  return bodies;
}

/** A `ChannelSender` for WhatsApp through the Cloud API. */
export function createWhatsAppCloudSender(o: WhatsAppCloudSenderOptions): ChannelSender {
  const base = (o.graphBaseUrl ?? 'https://graph.facebook.com').replace(/\/+$/, '');
  const endpoint = `${base}/${o.graphVersion}/${encodeURIComponent(o.phoneNumberId)}/messages`;
  const mediaEndpoint = `${base}/${o.graphVersion}/${encodeURIComponent(o.phoneNumberId)}/media`;
  const timeoutMs = o.timeoutMs ?? 10_000;
  const secrets = [o.accessToken];
  const channels: readonly Channel[] = ['whatsapp'];

  function fail(failure: ProviderFailure): OutboundError {
    return outboundErrorFrom('whatsapp-cloud', failure, classifyWhatsAppCloudFailure(failure), secrets);
  }

  async function post(body: CloudMessageBody): Promise<string> {
    let response: Response;
    let text: string;
    try {
      response = await fetch(endpoint, {
        method: 'POST',
        headers: { authorization: `Bearer ${o.accessToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await response.text();
    } catch (err) {
      throw fail({ transport: transportKind(err) });
    }
    let json: unknown;
    try {
      json = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!response.ok) {
      throw fail(
        graphFailureFromBody(response.status, json, response.headers.get('retry-after') ?? undefined),
      );
    }
    const id =
      isRecord(json) && Array.isArray(json.messages) && isRecord(json.messages[0])
        ? json.messages[0].id
        : undefined;
    if (typeof id !== 'string' || id.length === 0) {
      throw contentError('whatsapp-cloud', 'rejected', 'WhatsApp Cloud answered without a message id');
    }
    return id;
  }

  /** POST /{phone-number-id}/media (multipart): the Cloud API's own copy, sent by id. */
  async function upload(media: OutboundMedia, data: Buffer): Promise<string> {
    const form = new FormData();
    form.append('messaging_product', 'whatsapp');
    form.append('type', media.contentType ?? 'application/octet-stream');
    const blob = new Blob([new Uint8Array(data)], { type: media.contentType ?? 'application/octet-stream' });
    form.append('file', blob, media.filename ?? 'file');
    let response: Response;
    let json: unknown;
    try {
      response = await fetch(mediaEndpoint, {
        method: 'POST',
        headers: { authorization: `Bearer ${o.accessToken}` },
        body: form,
        signal: AbortSignal.timeout(Math.max(timeoutMs, 60_000)),
      });
      json = await response.json().catch(() => undefined);
    } catch (err) {
      throw fail({ transport: transportKind(err) });
    }
    if (!response.ok)
      throw fail(
        graphFailureFromBody(response.status, json, response.headers.get('retry-after') ?? undefined),
      );
    const id = isRecord(json) ? json.id : undefined;
    if (typeof id !== 'string') throw contentError('whatsapp-cloud', 'rejected', 'media upload gave no id');
    return id;
  }

  /** A media body whose file Rapport holds is sent by uploaded id instead of by link. */
  async function byUploadedId(body: CloudMessageBody, message: OutboundMessage): Promise<CloudMessageBody> {
    const type = typeof body.type === 'string' ? body.type : '';
    const object = (body as Record<string, unknown>)[type];
    if (!isRecord(object) || typeof object.link !== 'string') return body;
    const media = (message.media ?? []).find((m) => m.url === object.link && m.load);
    if (!media?.load) return body;
    const { link: _link, ...rest } = object;
    return { ...body, [type]: { ...rest, id: await upload(media, await media.load()) } };
  }

  return {
    provider: 'whatsapp-cloud',
    channels,
    async send(message: OutboundMessage, progress?: SendProgress): Promise<SendResult> {
      return sendInParts('whatsapp-cloud', cloudMessageBodies(message), progress, async (body) =>
        post(await byUploadedId(body, message)),
      );
    },
  };
}

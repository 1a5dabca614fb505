/**
 * What each customer channel can carry, by media kind: the content types and sizes the providers
 * document (README "Media" has the same table). Checked before an agent's file is sent, so a file
 * the channel cannot carry gets the agent an explanation instead of a provider error or silence.
 *
 * Sources: WhatsApp Cloud API "Supported media types" (image 5 MB, video/audio 16 MB, document
 * 100 MB, sticker 500 KB); Twilio "Accepted content types for media" (WhatsApp 16 MB per item;
 * MMS 5 MB per message, images carried everywhere, other types not reliably); Messenger Send API
 * attachments (25 MB).
 */
import type { Channel, Provider } from '../canonical';
import { formatBytes } from './inbound';

export type MediaKind = 'image' | 'video' | 'audio' | 'document' | 'sticker';

interface Rule {
  kind: MediaKind;
  /** Content types (lowercase, no parameters); `*` = any. */
  types: string[] | '*';
  maxBytes: number;
}

const MB = 1_000_000;
const WHATSAPP_IMAGE = ['image/jpeg', 'image/png'];
const WHATSAPP_VIDEO = ['video/mp4', 'video/3gpp'];
const WHATSAPP_AUDIO = ['audio/aac', 'audio/amr', 'audio/mpeg', 'audio/mp4', 'audio/ogg'];

const CLOUD: Rule[] = [
  { kind: 'image', types: WHATSAPP_IMAGE, maxBytes: 5 * MB },
  { kind: 'video', types: WHATSAPP_VIDEO, maxBytes: 16 * MB },
  { kind: 'audio', types: WHATSAPP_AUDIO, maxBytes: 16 * MB },
  { kind: 'sticker', types: ['image/webp'], maxBytes: 500_000 },
  { kind: 'document', types: '*', maxBytes: 100 * MB },
];

const TWILIO_WHATSAPP: Rule[] = [
  { kind: 'image', types: WHATSAPP_IMAGE, maxBytes: 5 * MB },
  { kind: 'video', types: WHATSAPP_VIDEO, maxBytes: 16 * MB },
  { kind: 'audio', types: WHATSAPP_AUDIO, maxBytes: 16 * MB },
  { kind: 'document', types: '*', maxBytes: 16 * MB },
];

const MMS: Rule[] = [{ kind: 'image', types: ['image/jpeg', 'image/png', 'image/gif'], maxBytes: 5 * MB }];

const MESSENGER: Rule[] = [
  { kind: 'image', types: ['image/jpeg', 'image/png', 'image/gif', 'image/webp'], maxBytes: 25 * MB },
  { kind: 'video', types: ['video/mp4', 'video/quicktime', 'video/webm'], maxBytes: 25 * MB },
  {
    kind: 'audio',
    types: ['audio/mpeg', 'audio/mp4', 'audio/ogg', 'audio/wav', 'audio/aac'],
    maxBytes: 25 * MB,
  },
  { kind: 'document', types: '*', maxBytes: 25 * MB },
];

function rulesFor(channel: Channel, provider: Provider): Rule[] {
  if (channel === 'sms') return MMS;
  if (channel === 'messenger') return MESSENGER;
  return provider === 'twilio' ? TWILIO_WHATSAPP : CLOUD;
}

export type MediaCheck = { ok: true; kind: MediaKind; maxBytes: number } | { ok: false; why: string };

/** Whether `channel` (through `provider`) can carry a file of this type and size. */
export function checkMedia(
  channel: Channel,
  provider: Provider,
  file: { contentType?: string; bytes?: number },
): MediaCheck {
  const type = (file.contentType ?? 'application/octet-stream').split(';')[0]!.trim().toLowerCase();
  const rule = rulesFor(channel, provider).find((r) => r.types === '*' || r.types.includes(type));
  if (!rule) {
    const carried = rulesFor(channel, provider)
      .map((r) => (r.types === '*' ? 'documents' : r.types.join(', ')))
      .join('; ');
    return { ok: false, why: `it cannot carry ${type} files (only ${carried})` };
  }
  if (file.bytes !== undefined && file.bytes > rule.maxBytes) {
    return {
      ok: false,
      why: `${rule.kind === 'document' ? 'files' : `${rule.kind}s`} there can be at most ${formatBytes(rule.maxBytes)} and this one is ${formatBytes(file.bytes)}`,
    };
  }
  return { ok: true, kind: rule.kind, maxBytes: rule.maxBytes };
}

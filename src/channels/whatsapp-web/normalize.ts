/**
 * Pure: whatsapp-web.js messages and acks → canonical events.
 *
 * No I/O happens here. What needs the live session (downloading media, resolving a LID sender to
 * a phone number) is done by the session first and passed in as `NormalizeContext`, so every rule
 * about which chats are customers and how each message type reads is testable on plain objects.
 */
import {
  textOf,
  type DeliveryState,
  type DeliveryStatus,
  type InboundMessage,
  type MessagePart,
  type SharedContact,
} from '../../canonical';
import { WWEB_ACK, type WwebMessageFields } from './wire';

export const PROVIDER = 'whatsapp-web' as const;

/** What kind of chat a jid names. */
export type JidKind = 'phone' | 'lid' | 'group' | 'status' | 'broadcast' | 'newsletter' | 'unknown';

export function jidKind(jid: string): JidKind {
  const j = jid.trim().toLowerCase();
  if (j === 'status@broadcast') return 'status';
  if (/^\d+(?::\d+)?@(?:c\.us|s\.whatsapp\.net)$/.test(j)) return 'phone';
  if (/^[\d:]+@lid$/.test(j)) return 'lid';
  if (j.endsWith('@g.us')) return 'group';
  if (j.endsWith('@broadcast')) return 'broadcast';
  if (j.endsWith('@newsletter')) return 'newsletter';
  return 'unknown';
}

/** `14155550123@c.us` → `14155550123` (device suffix dropped); undefined for non-phone jids. */
export function digitsOfJid(jid: string): string | undefined {
  const m = /^(\d+)(?::\d+)?@(?:c\.us|s\.whatsapp\.net)$/i.exec(jid.trim());
  return m?.[1];
}

/** Message types that carry no customer content (system notices, not-yet-decrypted, revoked). */
const NON_CONTENT_TYPES = new Set([
  'e2e_notification',
  'notification',
  'notification_template',
  'gp2',
  'group_notification',
  'call_log',
  'protocol',
  'revoked',
  'ciphertext',
  'debug',
  'broadcast_notification',
  'pinned_message',
]);

/** Types whose payload is a file (`downloadMedia`). */
export const MEDIA_TYPES = new Set(['image', 'video', 'audio', 'ptt', 'document', 'sticker', 'album']);

export type IgnoreReason =
  'from_me' | 'group' | 'status' | 'broadcast' | 'newsletter' | 'unknown_address' | 'non_content';

/**
 * Whether a `message` event is a customer writing to us. `lid` senders are customers whose phone
 * number WhatsApp hides; the session tries to resolve them before normalising.
 */
export function classifyInbound(
  msg: Pick<WwebMessageFields, 'from' | 'fromMe' | 'id' | 'isStatus' | 'broadcast' | 'type'>,
): { customer: true; from: 'phone' | 'lid' } | { customer: false; reason: IgnoreReason } {
  if (msg.fromMe || msg.id.fromMe) return { customer: false, reason: 'from_me' };
  const kind = jidKind(msg.from);
  if (msg.isStatus || kind === 'status') return { customer: false, reason: 'status' };
  if (kind === 'group') return { customer: false, reason: 'group' };
  if (kind === 'broadcast') return { customer: false, reason: 'broadcast' };
  if (kind === 'newsletter') return { customer: false, reason: 'newsletter' };
  if (kind !== 'phone' && kind !== 'lid') return { customer: false, reason: 'unknown_address' };
  if (NON_CONTENT_TYPES.has(msg.type)) return { customer: false, reason: 'non_content' };
  return { customer: true, from: kind };
}

/**
 * What became of a message's file. Bytes never travel in the event: a stored file is referenced by
 * id (see `media.ts`), a file we could not keep is described so the agent knows it existed.
 */
export type InboundMediaRef =
  | { stored: true; id: string; contentType: string; filename?: string; bytes: number }
  | {
      stored: false;
      reason: 'too_large' | 'unavailable';
      contentType?: string;
      filename?: string;
      bytes?: number;
    };

export interface NormalizeContext {
  receivedAt: Date;
  /** Our own jid (`client.info.wid._serialized`); falls back to the message's `to`. */
  ownJid?: string;
  /** For a `@lid` sender: the phone jid WhatsApp gave for it, if any. */
  senderPhoneJid?: string;
  media?: InboundMediaRef;
}

function stringOf(v: unknown): string | undefined {
  return typeof v === 'string' && v.trim() !== '' ? v : undefined;
}

function numberOf(v: number | string): number | undefined {
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function isoFromUnixSeconds(seconds: number, fallback: Date): string {
  return Number.isFinite(seconds) && seconds > 0
    ? new Date(seconds * 1000).toISOString()
    : fallback.toISOString();
}

/** Name (`FN`) and numbers (`TEL`) of one vCard; the rest of the card is not shown. */
export function contactOfVCard(vcard: string): SharedContact {
  const lines = vcard.split(/\r?\n/);
  const valueOf = (line: string) => line.slice(line.indexOf(':') + 1).trim();
  const name = lines.find((l) => /^FN[:;]/i.test(l));
  const phones = lines
    .filter((l) => /^(item\d+\.)?TEL[:;]/i.test(l))
    .map(valueOf)
    .filter(Boolean);
  const emails = lines
    .filter((l) => /^(item\d+\.)?EMAIL[:;]/i.test(l))
    .map(valueOf)
    .filter(Boolean);
  return { ...(name ? { name: valueOf(name) } : {}), phones, ...(emails.length ? { emails } : {}) };
}

function partsOf(msg: WwebMessageFields, media: InboundMediaRef | undefined): MessagePart[] {
  if (msg.type === 'location' && msg.location) {
    const latitude = numberOf(msg.location.latitude);
    const longitude = numberOf(msg.location.longitude);
    // `body` of a location message is a base64 JPEG thumbnail, never text.
    if (latitude !== undefined && longitude !== undefined) {
      return [
        {
          kind: 'location',
          latitude,
          longitude,
          ...(msg.location.name ? { name: msg.location.name } : {}),
          ...(msg.location.address ? { address: msg.location.address } : {}),
        },
      ];
    }
    return [{ kind: 'unsupported', providerType: 'location' }];
  }
  if (msg.hasMedia || MEDIA_TYPES.has(msg.type)) {
    const caption = msg.body.trim() === '' ? undefined : msg.body;
    const contentType = media?.contentType ?? stringOf(msg._data?.mimetype);
    const filename = media?.filename ?? stringOf(msg._data?.filename);
    return [
      {
        kind: 'media',
        ...(media?.stored ? { providerMediaId: media.id } : {}),
        ...(contentType ? { contentType } : {}),
        ...(filename ? { filename } : {}),
        ...(caption ? { caption } : {}),
        ...(media && !media.stored && media.reason === 'too_large' && media.bytes !== undefined
          ? { bytes: media.bytes }
          : {}),
      },
    ];
  }
  if (msg.type === 'chat' || msg.type === 'text') {
    return msg.body === '' ? [] : [{ kind: 'text', text: msg.body }];
  }
  if (msg.type === 'vcard' || msg.type === 'multi_vcard') {
    const cards = msg.vCards && msg.vCards.length > 0 ? msg.vCards : [msg.body];
    return [{ kind: 'contacts', contacts: cards.map(contactOfVCard) }];
  }
  if ((msg.type === 'buttons_response' || msg.type === 'list_response') && msg.body.trim() !== '') {
    return [{ kind: 'postback', title: msg.body }];
  }
  // Polls, orders, …: kept so nothing is dropped silently.
  return [{ kind: 'unsupported', providerType: msg.type }];
}

/**
 * A customer's message as canonical. Undefined when `classifyInbound` says it is not a customer
 * message, or when a LID sender could not be resolved and no phone is known (the session decides
 * what to do with those; see README).
 */
export function normalizeWhatsAppWebMessage(
  msg: WwebMessageFields,
  ctx: NormalizeContext,
): InboundMessage | undefined {
  const verdict = classifyInbound(msg);
  if (!verdict.customer) return undefined;
  const fromJid = verdict.from === 'phone' ? msg.from : (ctx.senderPhoneJid ?? msg.from);
  const parts = partsOf(msg, ctx.media);
  const text = textOf(parts);
  const profileName = stringOf(msg._data?.notifyName);
  const replyTo = msg.hasQuotedMsg ? stringOf(msg._data?.quotedStanzaID) : undefined;
  const id = msg.id._serialized;
  return {
    key: `${PROVIDER}:${id}`,
    channel: 'whatsapp',
    provider: PROVIDER,
    providerMessageId: id,
    // Raw jid on purpose: src/identity turns `<digits>@c.us` into E.164 (and rejects a bare LID).
    from: { kind: 'phone', e164: fromJid },
    to: ctx.ownJid ?? msg.to,
    ...(text !== undefined ? { text } : {}),
    parts,
    ...(profileName ? { profileName } : {}),
    ...(replyTo ? { replyTo } : {}),
    sentAt: isoFromUnixSeconds(msg.timestamp, ctx.receivedAt),
    receivedAt: ctx.receivedAt.toISOString(),
  };
}

/** whatsapp-web.js ack → canonical state; pending (0) is not news, so it maps to nothing. */
export function deliveryStateOfAck(ack: number): DeliveryState | undefined {
  switch (ack) {
    case WWEB_ACK.error:
      return 'failed';
    case WWEB_ACK.server:
      return 'sent';
    case WWEB_ACK.device:
      return 'delivered';
    case WWEB_ACK.read:
      return 'read';
    case WWEB_ACK.played:
      return 'played';
    default:
      return undefined;
  }
}

/**
 * A `message_ack` on a message WE sent to a customer, as a status event. Acks on received
 * messages (our own read receipts) and on group/status chats are not statuses of ours.
 */
export function normalizeWhatsAppWebAck(
  msg: Pick<WwebMessageFields, 'id' | 'fromMe' | 'to'>,
  ack: number,
  receivedAt: Date,
): DeliveryStatus | undefined {
  if (!msg.fromMe && !msg.id.fromMe) return undefined;
  const kind = jidKind(msg.to);
  if (kind !== 'phone' && kind !== 'lid') return undefined;
  const state = deliveryStateOfAck(ack);
  if (!state) return undefined;
  const id = msg.id._serialized;
  return {
    key: `${PROVIDER}:${id}:${state}`,
    channel: 'whatsapp',
    provider: PROVIDER,
    providerMessageId: id,
    state,
    recipient: { kind: 'phone', e164: msg.to },
    errors:
      state === 'failed' ? [{ code: 'ack_error', title: 'WhatsApp reported the message as failed' }] : [],
    // Acks carry no time of their own.
    at: receivedAt.toISOString(),
    receivedAt: receivedAt.toISOString(),
  };
}

/** Pure: Twilio form fields → canonical events. */
import {
  textOf,
  type Channel,
  type DeliveryState,
  type DeliveryStatus,
  type InboundMessage,
  type MessagePart,
} from '../../canonical';
import { PayloadError } from '../../errors';
import { TWILIO_MESSAGE_STATUSES, type TwilioForm, type TwilioMessageStatus } from './wire';

function field(form: TwilioForm, name: string): string | undefined {
  const v = form[name];
  return Array.isArray(v) ? v[0] : v;
}

function required(form: TwilioForm, name: string): string {
  const v = field(form, name);
  if (!v) throw new PayloadError(`missing ${name}`);
  return v;
}

/** `whatsapp:+1555…` → whatsapp; `+1555…` → sms. Other Twilio address kinds are not channels of ours. */
export function splitTwilioAddress(address: string): { channel: Channel; number: string } | undefined {
  const match = /^(?:(whatsapp|sms|mms):)?(\+?[0-9][0-9\s()-]*)$/i.exec(address.trim());
  if (!match) return undefined;
  return {
    channel: match[1]?.toLowerCase() === 'whatsapp' ? 'whatsapp' : 'sms',
    number: match[2]!.replace(/[\s()-]/g, ''),
  };
}

/**
 * A reply to a WhatsApp template button. Twilio sends the button's id in `ButtonPayload`; replies to a
 * call permission request carry ACCEPTED or REJECTED there.
 */
function buttonPart(form: TwilioForm): MessagePart | undefined {
  const payload = field(form, 'ButtonPayload');
  const title = field(form, 'ButtonText');
  if (payload === undefined && title === undefined) return undefined;
  const upper = payload?.toUpperCase();
  if (upper === 'ACCEPTED' || upper === 'REJECTED')
    return { kind: 'call_permission', accepted: upper === 'ACCEPTED' };
  return { kind: 'postback', ...(title ? { title } : {}), ...(payload ? { payload } : {}) };
}

function mediaParts(form: TwilioForm): MessagePart[] {
  const count = Number(field(form, 'NumMedia') ?? '0');
  if (!Number.isInteger(count) || count < 0 || count > 20)
    return [
      {
        kind: 'unsupported',
        providerType: 'media',
        detail: `NumMedia ${field(form, 'NumMedia')} is not a count`,
      },
    ];
  return Array.from({ length: count }, (_, i): MessagePart => {
    const url = field(form, `MediaUrl${i}`);
    const contentType = field(form, `MediaContentType${i}`);
    if (!url)
      return { kind: 'unsupported', providerType: contentType ?? 'media', detail: `MediaUrl${i} is missing` };
    return { kind: 'media', url, ...(contentType ? { contentType } : {}) };
  });
}

function locationPart(form: TwilioForm): MessagePart | undefined {
  const lat = field(form, 'Latitude');
  const lng = field(form, 'Longitude');
  if (!lat || !lng || !Number.isFinite(Number(lat)) || !Number.isFinite(Number(lng))) return undefined;
  const name = field(form, 'Label');
  const address = field(form, 'Address');
  return {
    kind: 'location',
    latitude: Number(lat),
    longitude: Number(lng),
    ...(name ? { name } : {}),
    ...(address ? { address } : {}),
  };
}

/** Text, button reply, media and location, in that order; never empty (an empty message is `unsupported`). */
function partsOf(form: TwilioForm): MessagePart[] {
  const parts: MessagePart[] = [];
  const button = buttonPart(form);
  const body = field(form, 'Body');
  // A button reply's Body repeats the button's text.
  if (body && !(button && body === field(form, 'ButtonText'))) parts.push({ kind: 'text', text: body });
  if (button) parts.push(button);
  parts.push(...mediaParts(form));
  const location = locationPart(form);
  if (location) parts.push(location);
  if (parts.length === 0)
    parts.push({ kind: 'unsupported', providerType: field(form, 'MessageType') ?? 'empty' });
  return parts;
}

/**
 * Returns undefined for addresses of channels Rapport does not take through Twilio (e.g.
 * `messenger:…`): those are ignored, not errors.
 */
export function normalizeTwilioMessage(form: TwilioForm, receivedAt: Date): InboundMessage | undefined {
  const sid = field(form, 'MessageSid') ?? field(form, 'SmsSid');
  if (!sid) throw new PayloadError('missing MessageSid');
  const from = splitTwilioAddress(required(form, 'From'));
  if (!from) {
    if (/^[a-z-]+:/i.test(required(form, 'From'))) return undefined;
    throw new PayloadError('From is not a phone number or whatsapp: address');
  }
  const to = splitTwilioAddress(required(form, 'To'));

  const parts = partsOf(form);
  const at = receivedAt.toISOString();
  return {
    key: `twilio:${sid}`,
    channel: from.channel,
    provider: 'twilio',
    providerMessageId: sid,
    from: { kind: 'phone', e164: from.number },
    to: to?.number ?? required(form, 'To'),
    text: textOf(parts),
    parts,
    profileName: field(form, 'ProfileName') || undefined,
    replyTo: field(form, 'OriginalRepliedMessageSid') || undefined,
    // Twilio's inbound webhook carries no send time; the receive time is the best we have.
    sentAt: at,
    receivedAt: at,
  };
}

const STATE_OF: Record<TwilioMessageStatus, DeliveryState> = {
  queued: 'queued',
  accepted: 'queued',
  scheduled: 'queued',
  sending: 'queued',
  sent: 'sent',
  delivered: 'delivered',
  partially_delivered: 'delivered',
  read: 'read',
  failed: 'failed',
  undelivered: 'undelivered',
  canceled: 'failed',
  receiving: 'received',
  received: 'received',
};

/** Undefined for a status value Twilio added that Rapport does not know (ignored, not refused). */
export function normalizeTwilioStatus(form: TwilioForm, receivedAt: Date): DeliveryStatus | undefined {
  const sid = field(form, 'MessageSid') ?? field(form, 'SmsSid');
  if (!sid) throw new PayloadError('missing MessageSid');
  const status = (field(form, 'MessageStatus') ?? field(form, 'SmsStatus'))?.toLowerCase();
  if (!status) throw new PayloadError('missing MessageStatus');
  if (!(TWILIO_MESSAGE_STATUSES as readonly string[]).includes(status)) return undefined;
  const recipient = splitTwilioAddress(field(form, 'To') ?? '');
  const errorCode = field(form, 'ErrorCode');
  const at = receivedAt.toISOString();
  return {
    key: `twilio:${sid}:${status}`,
    channel: recipient?.channel ?? 'sms',
    provider: 'twilio',
    providerMessageId: sid,
    state: STATE_OF[status as TwilioMessageStatus],
    recipient: recipient ? { kind: 'phone', e164: recipient.number } : undefined,
    errors: errorCode ? [{ code: errorCode, detail: field(form, 'ErrorMessage') }] : [],
    at,
    receivedAt: at,
  };
}

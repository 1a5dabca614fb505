/**
 * Pure: WhatsApp Cloud API webhook payloads (`object: "whatsapp_business_account"`) → canonical
 * events. Every message and status of every change of every entry becomes an event or an ignored
 * entry; message types Rapport cannot render become an `unsupported` part, never dropped. A
 * structurally invalid message or status throws PayloadError and refuses the whole request.
 */
import type { z } from 'zod';
import {
  textOf,
  type DeliveryStatus,
  type InboundMessage,
  type MessagePart,
  type ProviderError,
} from '../../canonical';
import { PayloadError } from '../../errors';
import type { NormalizedBatch } from '../adapter';
import {
  WHATSAPP_MEDIA_TYPES,
  WHATSAPP_STATUSES,
  whatsAppBodySchema,
  whatsAppChangeSchema,
  whatsAppEntrySchema,
  whatsAppErrorSchema,
  whatsAppMessageSchema,
  whatsAppMessagesValueSchema,
  whatsAppStatusSchema,
  type WhatsAppError,
  type WhatsAppMedia,
  type WhatsAppMediaType,
  type WhatsAppMessage,
  type WhatsAppMessagesValue,
  type WhatsAppStatus,
} from './wire';

function parseWire<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const detail = issue
    ? `${issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''}${issue.message}`
    : 'invalid';
  throw new PayloadError(`whatsapp-cloud ${where}: ${detail}`, { cause: result.error });
}

const isoFromUnixSeconds = (seconds: string | number) => new Date(Number(seconds) * 1000).toISOString();

/** wa_ids and display numbers are digits without `+`; canonical phone addresses carry it. */
function plusDigits(value: string): string | undefined {
  const digits = value.replace(/\D/g, '');
  return digits.length > 0 ? `+${digits}` : undefined;
}

function isMediaType(type: string): type is WhatsAppMediaType {
  return (WHATSAPP_MEDIA_TYPES as readonly string[]).includes(type);
}

function isKnownStatus(status: string): status is WhatsAppStatus {
  return (WHATSAPP_STATUSES as readonly string[]).includes(status);
}

function mediaPart(media: WhatsAppMedia): MessagePart {
  const part: MessagePart = { kind: 'media', providerMediaId: media.id };
  if (media.url !== undefined) part.url = media.url;
  if (media.mime_type !== undefined) part.contentType = media.mime_type;
  if (media.caption !== undefined) part.caption = media.caption;
  if (media.filename !== undefined) part.filename = media.filename;
  return part;
}

function missing(where: string, type: string): PayloadError {
  return new PayloadError(`whatsapp-cloud ${where}: type is ${type} but ${type} is missing`);
}

function partOf(message: WhatsAppMessage, where: string): MessagePart {
  const { type } = message;
  if (type === 'text') {
    if (!message.text) throw missing(where, type);
    return { kind: 'text', text: message.text.body };
  }
  if (isMediaType(type)) {
    const media = message[type];
    if (!media) throw missing(where, type);
    return mediaPart(media);
  }
  if (type === 'location') {
    const { location } = message;
    if (!location) throw missing(where, type);
    const part: MessagePart = {
      kind: 'location',
      latitude: location.latitude,
      longitude: location.longitude,
    };
    if (location.name !== undefined) part.name = location.name;
    if (location.address !== undefined) part.address = location.address;
    return part;
  }
  if (type === 'button') {
    const { button } = message;
    if (!button) throw missing(where, type);
    return button.payload !== undefined
      ? { kind: 'postback', title: button.text, payload: button.payload }
      : { kind: 'postback', title: button.text };
  }
  if (type === 'interactive') {
    const { interactive } = message;
    if (!interactive) throw missing(where, type);
    const reply = interactive.button_reply ?? interactive.list_reply;
    if (reply) return { kind: 'postback', title: reply.title, payload: reply.id };
    // e.g. nfm_reply (WhatsApp Flows): a form response we cannot render yet.
    return { kind: 'unsupported', providerType: `interactive.${interactive.type}` };
  }
  return { kind: 'unsupported', providerType: type };
}

function inboundMessage(
  value: WhatsAppMessagesValue,
  message: WhatsAppMessage,
  where: string,
  receivedAt: Date,
): InboundMessage {
  const from = plusDigits(message.from);
  if (!from) throw new PayloadError(`whatsapp-cloud ${where}: from is not a wa_id`);
  const { display_phone_number: display, phone_number_id: phoneNumberId } = value.metadata;
  const parts = [partOf(message, where)];
  // wa_id and phone number "may not always match", so the name is looked up by wa_id only.
  const profileName = value.contacts?.find((c) => c.wa_id === message.from)?.profile?.name;
  return {
    key: `whatsapp-cloud:${message.id}`,
    channel: 'whatsapp',
    provider: 'whatsapp-cloud',
    providerMessageId: message.id,
    from: { kind: 'phone', e164: from },
    to: (display !== undefined ? plusDigits(display) : undefined) ?? phoneNumberId,
    text: textOf(parts),
    parts,
    profileName: profileName || undefined,
    replyTo: message.context?.id,
    sentAt: isoFromUnixSeconds(message.timestamp),
    receivedAt: receivedAt.toISOString(),
  };
}

function providerError(error: WhatsAppError): ProviderError {
  const mapped: ProviderError = { code: String(error.code) };
  if (error.title !== undefined) mapped.title = error.title;
  const detail = error.message ?? error.error_data?.details;
  if (detail !== undefined) mapped.detail = detail;
  return mapped;
}

function deliveryStatus(raw: unknown, where: string, receivedAt: Date): DeliveryStatus | { ignored: string } {
  const update = parseWire(whatsAppStatusSchema, raw, where);
  if (!isKnownStatus(update.status)) return { ignored: `whatsapp-cloud status ${update.status} not handled` };
  const recipient = plusDigits(update.recipient_id);
  const status: DeliveryStatus = {
    key: `whatsapp-cloud:${update.id}:${update.status}`,
    channel: 'whatsapp',
    provider: 'whatsapp-cloud',
    providerMessageId: update.id,
    state: update.status,
    errors: (update.errors ?? []).map(providerError),
    at: isoFromUnixSeconds(update.timestamp),
    receivedAt: receivedAt.toISOString(),
  };
  if (recipient) status.recipient = { kind: 'phone', e164: recipient };
  return status;
}

function normalizeMessagesValue(
  rawValue: unknown,
  where: string,
  receivedAt: Date,
  batch: NormalizedBatch,
): void {
  const value = parseWire(whatsAppMessagesValueSchema, rawValue, `${where}.value`);
  value.messages?.forEach((raw, i) => {
    const at = `${where}.value.messages[${i}]`;
    const message = parseWire(whatsAppMessageSchema, raw, at);
    batch.events.push({ type: 'message', message: inboundMessage(value, message, at, receivedAt) });
  });
  value.statuses?.forEach((raw, i) => {
    const status = deliveryStatus(raw, `${where}.value.statuses[${i}]`, receivedAt);
    if ('ignored' in status) batch.ignored.push({ reason: status.ignored });
    else batch.events.push({ type: 'status', status });
  });
  for (const raw of value.errors ?? []) {
    const code = whatsAppErrorSchema.safeParse(raw).data?.code;
    batch.ignored.push({
      reason: `whatsapp-cloud error notification${code !== undefined ? ` ${code}` : ''}`,
    });
  }
  if (!value.messages && !value.statuses && !value.errors) {
    batch.ignored.push({ reason: 'whatsapp-cloud messages change without messages, statuses or errors' });
  }
}

/** Every message and status of every change, in payload order. Throws PayloadError when malformed. */
export function normalizeWhatsAppCloudPayload(payload: unknown, receivedAt: Date): NormalizedBatch {
  const body = parseWire(whatsAppBodySchema, payload, 'payload');
  const batch: NormalizedBatch = { events: [], ignored: [] };
  body.entry.forEach((rawEntry, e) => {
    const entry = parseWire(whatsAppEntrySchema, rawEntry, `entry[${e}]`);
    if (!entry.changes) {
      batch.ignored.push({ reason: 'whatsapp-cloud entry without changes[]' });
      return;
    }
    entry.changes.forEach((rawChange, c) => {
      const where = `entry[${e}].changes[${c}]`;
      const change = parseWire(whatsAppChangeSchema, rawChange, where);
      if (change.field !== 'messages') {
        batch.ignored.push({ reason: `whatsapp-cloud field ${change.field} not handled` });
        return;
      }
      normalizeMessagesValue(change.value, where, receivedAt, batch);
    });
  });
  return batch;
}

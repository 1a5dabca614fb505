/**
 * Pure: WhatsApp Cloud API webhook payloads (`object: "whatsapp_business_account"`) → canonical
 * events. Every message and status of every change of every entry becomes an event or an ignored
 * entry; message types Rapport cannot render, and messages whose content has an undocumented shape
 * (Meta sends `interactive` without a body, with `errors[]` 131000), become an `unsupported` part,
 * never dropped. Meta signed the payload, so nothing in it refuses the request: a status, change or
 * entry that cannot be read is ignored (logged and counted) and the rest of the batch goes on. Only a
 * body that is not a WhatsApp webhook at all throws PayloadError (400).
 */
import { z } from 'zod';
import {
  textOf,
  type DeliveryStatus,
  type InboundMessage,
  type MessagePart,
  type ProviderError,
} from '../../canonical';
import { PayloadError } from '../../errors';
import type { NormalizedBatch } from '../adapter';
import { parseWire as parseWireAs } from '../parse-wire';
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

/** An item of the batch that cannot be read: ignored (logged and counted), the rest goes on. */
class Skip {
  constructor(readonly reason: string) {}
}

const parseWire = <S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> =>
  parseWireAs('whatsapp-cloud', schema, value, where);

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

/** The reason Meta gives in a message's `errors[]` ("Unsupported webhook payload"), if any. */
function errorDetail(message: WhatsAppMessage): string | undefined {
  const error = whatsAppErrorSchema.safeParse(message.errors?.[0]).data;
  if (!error) return undefined;
  return error.error_data?.details ?? error.message ?? error.title;
}

/** A message Rapport cannot show: kept with its raw type and Meta's reason. */
function unsupported(message: WhatsAppMessage, type: string = message.type): MessagePart {
  const detail = errorDetail(message);
  return detail !== undefined
    ? { kind: 'unsupported', providerType: type, detail }
    : { kind: 'unsupported', providerType: type };
}

function locationPart(location: NonNullable<WhatsAppMessage['location']>): MessagePart {
  const { latitude, longitude, name, address, url } = location;
  return {
    kind: 'location',
    latitude,
    longitude,
    ...(name !== undefined ? { name } : {}),
    ...(address !== undefined ? { address } : {}),
    ...(url !== undefined ? { url } : {}),
  };
}

function contactsPart(contacts: NonNullable<WhatsAppMessage['contacts']>): MessagePart {
  return {
    kind: 'contacts',
    contacts: contacts.map((c) => {
      const n = c.name;
      const name =
        n?.formatted_name ?? ([n?.first_name, n?.last_name].filter(Boolean).join(' ') || undefined);
      const phones = (c.phones ?? []).flatMap((p) =>
        (p.phone ?? p.wa_id) ? [p.phone ?? `+${p.wa_id}`] : [],
      );
      const emails = (c.emails ?? []).flatMap((e) => (e.email ? [e.email] : []));
      return { ...(name ? { name } : {}), phones, ...(emails.length ? { emails } : {}) };
    }),
  };
}

function orderPart(order: NonNullable<WhatsAppMessage['order']>): MessagePart {
  return {
    kind: 'order',
    items: (order.product_items ?? []).map((i) => ({
      id: i.product_retailer_id,
      quantity: i.quantity,
      ...(i.item_price !== undefined ? { price: i.item_price } : {}),
      ...(i.currency !== undefined ? { currency: i.currency } : {}),
    })),
    ...(order.text ? { text: order.text } : {}),
  };
}

function interactivePart(message: WhatsAppMessage): MessagePart {
  const { interactive } = message;
  // Meta sends `interactive` without a body when it cannot render it (errors[] 131000).
  if (!interactive) return unsupported(message);
  const reply = interactive.button_reply ?? interactive.list_reply;
  if (reply?.title !== undefined || reply?.id !== undefined)
    return {
      kind: 'postback',
      ...(reply.title !== undefined ? { title: reply.title } : {}),
      ...(reply.id !== undefined ? { payload: reply.id } : {}),
    };
  const response = interactive.call_permission_reply?.response;
  if (response === 'accept' || response === 'reject')
    return { kind: 'call_permission', accepted: response === 'accept' };
  // e.g. nfm_reply (WhatsApp Flows): a form response we cannot render yet.
  return unsupported(message, `interactive.${interactive.type ?? 'unknown'}`);
}

/** A quick-reply button of a template the customer pressed. */
function buttonPart(button: NonNullable<WhatsAppMessage['button']>): MessagePart {
  return {
    kind: 'postback',
    ...(button.text !== undefined ? { title: button.text } : {}),
    ...(button.payload !== undefined ? { payload: button.payload } : {}),
  };
}

function reactionPart(reaction: NonNullable<WhatsAppMessage['reaction']>): MessagePart {
  return {
    kind: 'reaction',
    targetId: reaction.message_id,
    ...(reaction.emoji ? { emoji: reaction.emoji } : {}),
  };
}

/** Parts with no content of their own: a deletion, a system notice, a type Meta cannot show. */
function noticePart(message: WhatsAppMessage): MessagePart {
  if (message.type === 'revoke')
    return {
      kind: 'revoke',
      ...(message.revoke?.original_message_id ? { targetId: message.revoke.original_message_id } : {}),
    };
  if (message.type === 'system')
    return {
      kind: 'unsupported',
      providerType: `system.${message.system?.type ?? 'unknown'}`,
      ...(message.system?.body ? { detail: message.system.body } : {}),
    };
  if (message.type === 'unsupported')
    return unsupported(
      message,
      message.unsupported?.type ? `unsupported.${message.unsupported.type}` : 'unsupported',
    );
  return unsupported(message);
}

/** The parts of one message by its `type`; never throws: what cannot be read is `unsupported`. */
function contentParts(message: WhatsAppMessage): MessagePart[] {
  const { type } = message;
  const or = <T>(value: T | undefined, part: (v: T) => MessagePart): MessagePart[] => [
    value ? part(value) : unsupported(message),
  ];
  if (isMediaType(type)) return or(message[type], mediaPart);
  switch (type) {
    case 'text':
      return or(message.text, (t) => ({ kind: 'text', text: t.body }));
    case 'location':
      return or(message.location, locationPart);
    case 'button':
      return or(message.button, buttonPart);
    case 'interactive':
      return [interactivePart(message)];
    case 'contacts':
      return or(message.contacts, contactsPart);
    case 'order':
      return or(message.order, orderPart);
    case 'reaction':
      return or(message.reaction, reactionPart);
    case 'edit':
      return editParts(message);
    default:
      return [noticePart(message)];
  }
}

/** An edit: the marker, then the new content (its inner message has no from/id/timestamp of its own). */
function editParts(message: WhatsAppMessage): MessagePart[] {
  const marker: MessagePart = {
    kind: 'edit',
    ...(message.edit?.original_message_id ? { targetId: message.edit.original_message_id } : {}),
  };
  const inner = whatsAppMessageSchema.safeParse({
    from: message.from,
    id: message.id,
    timestamp: message.timestamp,
    ...(message.edit?.message as object | undefined),
  });
  return inner.success ? [marker, ...contentParts(inner.data)] : [marker, unsupported(message)];
}

function referralPart(referral: NonNullable<WhatsAppMessage['referral']>): MessagePart {
  return {
    kind: 'referral',
    ...(referral.source_type !== undefined ? { source: referral.source_type } : {}),
    ...(referral.headline !== undefined ? { headline: referral.headline } : {}),
    ...(referral.body !== undefined ? { body: referral.body } : {}),
    ...(referral.source_url !== undefined ? { url: referral.source_url } : {}),
  };
}

function partsOf(message: WhatsAppMessage): MessagePart[] {
  const parts = contentParts(message);
  return message.referral ? [referralPart(message.referral), ...parts] : parts;
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
  const parts = partsOf(message);
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
  // `message` often repeats `title`; then the details say more.
  const detail =
    error.message !== undefined && error.message !== error.title
      ? error.message
      : (error.error_data?.details ?? error.message);
  if (detail !== undefined) mapped.detail = detail;
  return mapped;
}

function deliveryStatus(raw: unknown, where: string, receivedAt: Date): DeliveryStatus | Skip {
  const update = parseWire(whatsAppStatusSchema, raw, where);
  if (!isKnownStatus(update.status)) return new Skip(`whatsapp-cloud status ${update.status} not handled`);
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

/** Just enough of a message to keep it: who sent it and its id. */
const bareMessageSchema = z.looseObject({
  from: z.string().min(1),
  id: z.string().min(1),
  type: z.string().optional(),
});

/**
 * A message as Rapport reads it. One whose content does not have the documented shape is kept as
 * what little can be read (its sender, id and raw type) so it shows as `unsupported`; one without a
 * sender or id cannot be kept and is ignored (counted). Never throws.
 */
function readMessage(raw: unknown, where: string, receivedAt: Date): WhatsAppMessage | Skip {
  const full = whatsAppMessageSchema.safeParse(raw);
  if (full.success) return full.data;
  const bare = bareMessageSchema.safeParse(raw);
  if (!bare.success) return new Skip(`whatsapp-cloud ${where}: not a message (no from or id)`);
  const issue = full.error.issues[0];
  return {
    from: bare.data.from,
    id: bare.data.id,
    timestamp: String(Math.floor(receivedAt.getTime() / 1000)),
    type: bare.data.type ?? 'unknown',
    errors: [
      {
        code: 'unreadable',
        message: `Rapport could not read it (${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'})`,
      },
    ],
  };
}

/** Runs `read`, turning a PayloadError about one item into a Skip so the batch goes on. */
function orSkip<T>(read: () => T): T | Skip {
  try {
    return read();
  } catch (err) {
    if (err instanceof PayloadError) return new Skip(err.message);
    throw err;
  }
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
    const read = readMessage(raw, at, receivedAt);
    // Meta may put the reason for a message it could not render next to it, in the value's errors[].
    const message =
      read instanceof Skip || read.errors || !value.errors ? read : { ...read, errors: value.errors };
    const inbound =
      message instanceof Skip ? message : orSkip(() => inboundMessage(value, message, at, receivedAt));
    if (inbound instanceof Skip) batch.ignored.push({ reason: inbound.reason });
    else batch.events.push({ type: 'message', message: inbound });
  });
  value.statuses?.forEach((raw, i) => {
    const status = orSkip(() => deliveryStatus(raw, `${where}.value.statuses[${i}]`, receivedAt));
    if (status instanceof Skip) batch.ignored.push({ reason: status.reason });
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
    const entry = orSkip(() => parseWire(whatsAppEntrySchema, rawEntry, `entry[${e}]`));
    if (entry instanceof Skip) {
      batch.ignored.push({ reason: entry.reason });
      return;
    }
    if (!entry.changes) {
      batch.ignored.push({ reason: 'whatsapp-cloud entry without changes[]' });
      return;
    }
    entry.changes.forEach((rawChange, c) => {
      const where = `entry[${e}].changes[${c}]`;
      const change = orSkip(() => parseWire(whatsAppChangeSchema, rawChange, where));
      if (change instanceof Skip) {
        batch.ignored.push({ reason: change.reason });
        return;
      }
      if (change.field !== 'messages') {
        batch.ignored.push({ reason: `whatsapp-cloud field ${change.field} not handled` });
        return;
      }
      const failed = orSkip(() => normalizeMessagesValue(change.value, where, receivedAt, batch));
      if (failed instanceof Skip) batch.ignored.push({ reason: failed.reason });
    });
  });
  return batch;
}

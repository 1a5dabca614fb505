/**
 * Pure: Messenger webhook payloads (`object: "page"`) → canonical events. One POST may hold many
 * entries and each entry many events; every one becomes an event or an ignored entry. A structurally
 * invalid event throws PayloadError and refuses the whole request: Meta signed it, so a malformed one
 * means a bug (ours or Meta's) worth seeing rather than an event to drop.
 */
import { z } from 'zod';
import {
  textOf,
  type Address,
  type DeliveryStatus,
  type InboundEvent,
  type InboundMessage,
  type MessagePart,
} from '../../canonical';
import { PayloadError } from '../../errors';
import type { NormalizedBatch } from '../adapter';
import {
  messengerBodySchema,
  messengerEntrySchema,
  messengerEventSchema,
  type MessengerAttachment,
  type MessengerDelivery,
  type MessengerEvent,
  type MessengerMessage,
  type MessengerPostback,
  type MessengerRead,
} from './wire';

type Ignored = NormalizedBatch['ignored'][number];

function parseWire<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const detail = issue
    ? `${issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''}${issue.message}`
    : 'invalid';
  throw new PayloadError(`messenger ${where}: ${detail}`, { cause: result.error });
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Attachment types served from a URL, with the content-type hint Messenger implies. */
const MEDIA_TYPES = new Map<string, string | undefined>([
  ['image', 'image/*'],
  ['sticker', 'image/*'],
  ['audio', 'audio/*'],
  ['video', 'video/*'],
  ['reel', 'video/*'],
  ['ig_reel', 'video/*'],
  ['file', undefined],
]);

function attachmentPart(attachment: MessengerAttachment): MessagePart {
  const { type, payload } = attachment;
  if (MEDIA_TYPES.has(type) && payload?.url) {
    const contentType = MEDIA_TYPES.get(type);
    return contentType
      ? { kind: 'media', url: payload.url, contentType }
      : { kind: 'media', url: payload.url };
  }
  if (type === 'location' && payload?.coordinates) {
    const name = attachment.title ?? payload.title;
    const { lat, long } = payload.coordinates;
    return name
      ? { kind: 'location', latitude: lat, longitude: long, name }
      : { kind: 'location', latitude: lat, longitude: long };
  }
  if (type === 'fallback') {
    // A shared link: not a file to fetch, so the agent gets it as text.
    const url = payload?.url ?? attachment.url;
    const title = payload?.title ?? attachment.title;
    if (url) return { kind: 'text', text: title ? `${title}\n${url}` : url };
  }
  return { kind: 'unsupported', providerType: type };
}

function partsOf(message: MessengerMessage): MessagePart[] {
  const parts: MessagePart[] = [];
  if (message.text) {
    // A quick reply is a button press whose title is the text; keep its payload.
    parts.push(
      message.quick_reply
        ? { kind: 'postback', title: message.text, payload: message.quick_reply.payload }
        : { kind: 'text', text: message.text },
    );
  }
  const seenUrls = new Set<string>();
  for (const attachment of message.attachments ?? []) {
    const part = attachmentPart(attachment);
    // While Meta moves stickers to their own type, one sticker arrives as both `sticker` and `image`.
    if (part.kind === 'media' && part.url !== undefined) {
      if (seenUrls.has(part.url)) continue;
      seenUrls.add(part.url);
    }
    parts.push(part);
  }
  if (parts.length === 0) parts.push({ kind: 'unsupported', providerType: 'empty' });
  return parts;
}

interface Party {
  pageId: string;
  psid: string;
}

function customerAddress({ pageId, psid }: Party): Address {
  return { kind: 'psid', pageId, psid };
}

function requireTimestamp(event: MessengerEvent, where: string): number {
  if (event.timestamp === undefined) throw new PayloadError(`messenger ${where}: timestamp is missing`);
  return event.timestamp;
}

function inboundMessage(
  party: Party,
  providerMessageId: string,
  parts: MessagePart[],
  sentAtMs: number,
  receivedAt: Date,
  replyTo?: string,
): InboundMessage {
  return {
    key: `messenger:${providerMessageId}`,
    channel: 'messenger',
    provider: 'messenger',
    providerMessageId,
    from: customerAddress(party),
    to: party.pageId,
    text: textOf(parts),
    parts,
    replyTo,
    sentAt: iso(sentAtMs),
    receivedAt: receivedAt.toISOString(),
  };
}

function messageEvent(
  party: Party,
  event: MessengerEvent,
  message: MessengerMessage,
  where: string,
  receivedAt: Date,
) {
  const parts = partsOf(message);
  return inboundMessage(
    party,
    message.mid,
    parts,
    requireTimestamp(event, where),
    receivedAt,
    message.reply_to?.mid,
  );
}

function postbackEvent(
  party: Party,
  event: MessengerEvent,
  postback: MessengerPostback,
  where: string,
  receivedAt: Date,
) {
  const timestamp = requireTimestamp(event, where);
  // Older postbacks carry no mid; the sender and the time identify the press well enough to dedupe.
  const providerMessageId = postback.mid ?? `postback:${party.psid}:${timestamp}`;
  const part: MessagePart =
    postback.payload !== undefined
      ? { kind: 'postback', title: postback.title, payload: postback.payload }
      : { kind: 'postback', title: postback.title };
  return inboundMessage(party, providerMessageId, [part], timestamp, receivedAt);
}

function status(
  party: Party,
  fields: Pick<DeliveryStatus, 'key' | 'state' | 'providerMessageId'>,
  watermarkMs: number,
  atMs: number,
  receivedAt: Date,
): DeliveryStatus {
  const base: DeliveryStatus = {
    key: fields.key,
    channel: 'messenger',
    provider: 'messenger',
    state: fields.state,
    watermark: iso(watermarkMs),
    recipient: customerAddress(party),
    errors: [],
    at: iso(atMs),
    receivedAt: receivedAt.toISOString(),
  };
  return fields.providerMessageId === undefined
    ? base
    : { ...base, providerMessageId: fields.providerMessageId };
}

function deliveryStatuses(
  party: Party,
  event: MessengerEvent,
  delivery: MessengerDelivery,
  receivedAt: Date,
) {
  // Delivery receipts carry no timestamp; the watermark is the closest time Meta gives.
  const at = event.timestamp ?? delivery.watermark;
  if (delivery.mids && delivery.mids.length > 0) {
    return delivery.mids.map((mid) =>
      status(
        party,
        { key: `messenger:${mid}:delivered`, state: 'delivered', providerMessageId: mid },
        delivery.watermark,
        at,
        receivedAt,
      ),
    );
  }
  const key = `messenger:watermark:${party.pageId}:${party.psid}:delivered:${delivery.watermark}`;
  return [status(party, { key, state: 'delivered' }, delivery.watermark, at, receivedAt)];
}

const ENVELOPE_FIELDS = new Set(['sender', 'recipient', 'timestamp']);
const HANDLED_FIELDS = ['message', 'postback', 'delivery', 'read'];

const eventObjectSchema = z.record(z.string(), z.unknown());
const echoSchema = z.looseObject({ message: z.looseObject({ is_echo: z.literal(true) }) });

/** The events Rapport takes; exactly one is present in a handled event. */
type Handled =
  | { kind: 'message'; message: MessengerMessage }
  | { kind: 'postback'; postback: MessengerPostback }
  | { kind: 'delivery'; delivery: MessengerDelivery }
  | { kind: 'read'; read: MessengerRead };

function handledOf({ message, postback, delivery, read }: MessengerEvent): Handled | undefined {
  if (message) return { kind: 'message', message };
  if (postback) return { kind: 'postback', postback };
  if (delivery) return { kind: 'delivery', delivery };
  if (read) return { kind: 'read', read };
  return undefined;
}

function readStatus(
  party: Party,
  event: MessengerEvent,
  read: MessengerRead,
  receivedAt: Date,
): DeliveryStatus {
  const key = `messenger:watermark:${party.pageId}:${party.psid}:read:${read.watermark}`;
  return status(party, { key, state: 'read' }, read.watermark, event.timestamp ?? read.watermark, receivedAt);
}

function normalizeEvent(raw: unknown, where: string, receivedAt: Date): InboundEvent[] | Ignored {
  // Echoes and events Rapport does not take are ignored before validation: a shape we never read
  // must not refuse the request.
  const fields = Object.keys(parseWire(eventObjectSchema, raw, where));
  if (echoSchema.safeParse(raw).success) return { reason: 'echo' };
  if (!fields.some((f) => HANDLED_FIELDS.includes(f))) {
    // Names what the event carries (`reaction`, `optin`, `referral`, …).
    const type = fields.find((f) => !ENVELOPE_FIELDS.has(f)) ?? 'empty';
    return { reason: `messenger ${type} event not handled` };
  }
  const event = parseWire(messengerEventSchema, raw, where);
  const handled = handledOf(event);
  if (!handled) throw new PayloadError(`messenger ${where}: no message, postback, delivery or read`);

  const psid = event.sender?.id;
  if (!psid) {
    // Checkbox-plugin users have only a user_ref until they message the Page; nothing to reply to.
    if (event.sender?.user_ref !== undefined)
      return { reason: `messenger ${handled.kind} from a user_ref without a PSID` };
    throw new PayloadError(`messenger ${where}: sender.id is missing`);
  }
  const party: Party = { pageId: event.recipient.id, psid };

  switch (handled.kind) {
    case 'message':
      return [{ type: 'message', message: messageEvent(party, event, handled.message, where, receivedAt) }];
    case 'postback':
      return [{ type: 'message', message: postbackEvent(party, event, handled.postback, where, receivedAt) }];
    case 'delivery':
      return deliveryStatuses(party, event, handled.delivery, receivedAt).map((s) => ({
        type: 'status',
        status: s,
      }));
    case 'read':
      return [{ type: 'status', status: readStatus(party, event, handled.read, receivedAt) }];
  }
}

/** Every event of every entry, in payload order. Throws PayloadError on a malformed payload. */
export function normalizeMessengerPayload(payload: unknown, receivedAt: Date): NormalizedBatch {
  const body = parseWire(messengerBodySchema, payload, 'payload');
  const batch: NormalizedBatch = { events: [], ignored: [] };
  body.entry.forEach((rawEntry, e) => {
    const entry = parseWire(messengerEntrySchema, rawEntry, `entry[${e}]`);
    // Handover protocol: another app owns these threads and answers them.
    batch.ignored.push(
      ...(entry.standby ?? []).map(() => ({
        reason: 'messenger standby event (thread owned by another app)',
      })),
    );
    if (!entry.messaging) {
      if (!entry.standby) batch.ignored.push({ reason: 'messenger entry without messaging[]' });
      return;
    }
    entry.messaging.forEach((rawEvent, m) => {
      const outcome = normalizeEvent(rawEvent, `entry[${e}].messaging[${m}]`, receivedAt);
      if (Array.isArray(outcome)) batch.events.push(...outcome);
      else batch.ignored.push(outcome);
    });
  });
  return batch;
}

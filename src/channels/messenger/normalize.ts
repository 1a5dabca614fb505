/**
 * Pure: Messenger webhook payloads (`object: "page"`) → canonical events. One POST may hold many
 * entries and each entry many events; every one becomes an event or an ignored entry. Meta signed the
 * payload, so no event's shape refuses the request (Meta would redeliver the whole batch for days):
 * a customer's event Rapport cannot read is kept as an `unsupported` message, one it cannot tie to a
 * customer is ignored (logged and counted). Only a body that is not a Messenger webhook throws.
 */
import { createHash } from 'node:crypto';
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
import { parseWire as parseWireAs } from '../parse-wire';
import {
  messengerBodySchema,
  messengerEntrySchema,
  messengerEventSchema,
  type MessengerAttachment,
  type MessengerDelivery,
  type MessengerEvent,
  type MessengerMessage,
  type MessengerPostback,
  type MessengerReaction,
  type MessengerRead,
  type MessengerReferral,
  messengerReferralSchema,
} from './wire';

type Ignored = NormalizedBatch['ignored'][number];

const parseWire = <S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> =>
  parseWireAs('messenger', schema, value, where);

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * What identifies an event that has no id of its own in its key: its timestamp, or — when Meta sent
 * none — a digest of the event itself, so a redelivery gets the same key (never the arrival time).
 */
function eventStamp(raw: unknown, timestamp: number | undefined): string {
  if (timestamp !== undefined) return String(timestamp);
  return 'h' + createHash('sha256').update(JSON.stringify(raw) ?? '').digest('hex').slice(0, 20);
}

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

/** The last path segment of a file's URL: Messenger serves files under their own name. */
function fileNameOf(url: string): string | undefined {
  try {
    const name = decodeURIComponent(new URL(url).pathname.split('/').pop() ?? '');
    return /\.[a-z0-9]{1,8}$/i.test(name) ? name : undefined;
  } catch {
    return undefined;
  }
}

function attachmentPart(attachment: MessengerAttachment): MessagePart {
  const { type, payload } = attachment;
  if (MEDIA_TYPES.has(type) && payload?.url) {
    const contentType = MEDIA_TYPES.get(type);
    const filename = type === 'file' ? fileNameOf(payload.url) : undefined;
    const caption = attachment.title ?? payload.title ?? undefined;
    return {
      kind: 'media',
      url: payload.url,
      ...(contentType ? { contentType } : {}),
      ...(filename ? { filename } : {}),
      ...(caption ? { caption } : {}),
    };
  }
  if (type === 'location' && payload?.coordinates) {
    const name = attachment.title ?? payload.title;
    const { lat, long } = payload.coordinates;
    return name
      ? { kind: 'location', latitude: lat, longitude: long, name }
      : { kind: 'location', latitude: lat, longitude: long };
  }
  if (type === 'fallback') {
    // A shared link: not a file to fetch. The documented sample has `payload: null` and `URL`.
    const url = payload?.url ?? attachment.url ?? attachment.URL ?? undefined;
    const title = payload?.title ?? attachment.title ?? undefined;
    if (url || title) return { kind: 'link', ...(url ? { url } : {}), ...(title ? { title } : {}) };
  }
  return { kind: 'unsupported', providerType: type };
}

function referralPart(raw: unknown): MessagePart | undefined {
  const referral = messengerReferralSchema.safeParse(raw).data;
  if (!referral) return undefined;
  const ads = referral.ads_context_data;
  return {
    kind: 'referral',
    ...(referral.source ? { source: referral.source } : {}),
    ...(ads?.ad_title ? { headline: ads.ad_title } : {}),
    ...(ads?.photo_url ? { url: ads.photo_url } : referral.referer_uri ? { url: referral.referer_uri } : {}),
    ...(referral.ref ? { ref: referral.ref } : {}),
  };
}

function partsOf(message: MessengerMessage): MessagePart[] {
  const parts: MessagePart[] = [];
  const referral = message.referral !== undefined ? referralPart(message.referral) : undefined;
  if (referral) parts.push(referral);
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
  if (!parts.some((p) => p.kind !== 'referral')) parts.push({ kind: 'unsupported', providerType: 'empty' });
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
  const part: MessagePart = {
    kind: 'postback',
    ...(postback.title !== undefined ? { title: postback.title } : {}),
    ...(postback.payload !== undefined ? { payload: postback.payload } : {}),
  };
  const referral = postback.referral !== undefined ? referralPart(postback.referral) : undefined;
  return inboundMessage(
    party,
    providerMessageId,
    referral ? [referral, part] : [part],
    timestamp,
    receivedAt,
  );
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
const HANDLED_FIELDS = ['message', 'postback', 'delivery', 'read', 'reaction', 'referral'];
/** Events about the Page or the app, not something the customer said: ignored (logged and counted). */
const NOT_CONVERSATION = new Set([
  'account_linking',
  'app_roles',
  'pass_thread_control',
  'take_thread_control',
  'request_thread_control',
  'policy_enforcement',
  'optin',
  'messaging_handovers',
  'standby',
]);

const eventObjectSchema = z.record(z.string(), z.unknown());
const echoSchema = z.looseObject({ message: z.looseObject({ is_echo: z.literal(true) }) });
/** Just enough of an event to keep it as `unsupported`: who sent it, to which Page, when. */
const bareEventSchema = z.looseObject({
  sender: z.looseObject({ id: z.string().min(1) }),
  recipient: z.looseObject({ id: z.string().min(1) }),
  timestamp: z.number().int().nonnegative().max(8_640_000_000_000_000).optional(),
  message: z.looseObject({ mid: z.string().min(1).optional() }).optional(),
});

/** The events Rapport takes; exactly one is present in a handled event. */
type Handled =
  | { kind: 'message'; message: MessengerMessage }
  | { kind: 'postback'; postback: MessengerPostback }
  | { kind: 'delivery'; delivery: MessengerDelivery }
  | { kind: 'read'; read: MessengerRead }
  | { kind: 'reaction'; reaction: MessengerReaction }
  | { kind: 'referral'; referral: MessengerReferral };

function handledOf({
  message,
  postback,
  delivery,
  read,
  reaction,
  referral,
}: MessengerEvent): Handled | undefined {
  if (message) return { kind: 'message', message };
  if (postback) return { kind: 'postback', postback };
  if (delivery) return { kind: 'delivery', delivery };
  if (read) return { kind: 'read', read };
  if (reaction) return { kind: 'reaction', reaction };
  if (referral) return { kind: 'referral', referral };
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

/**
 * An event Rapport cannot read or does not know, from a customer (it has a PSID): kept as one
 * `unsupported` message so the agent sees that something arrived. Its id is the message's mid when
 * it has one, else the sender, type and time (stable across redeliveries).
 */
function unsupportedEvent(
  raw: unknown,
  type: string,
  receivedAt: Date,
  detail?: string,
): InboundEvent[] | undefined {
  const bare = bareEventSchema.safeParse(raw).data;
  if (!bare) return undefined;
  const timestamp = bare.timestamp ?? receivedAt.getTime();
  const party: Party = { pageId: bare.recipient.id, psid: bare.sender.id };
  const id = bare.message?.mid ?? `${type}:${party.psid}:${eventStamp(raw, bare.timestamp)}`;
  const part: MessagePart = { kind: 'unsupported', providerType: type, ...(detail ? { detail } : {}) };
  return [{ type: 'message', message: inboundMessage(party, id, [part], timestamp, receivedAt) }];
}

function reactionMessage(party: Party, event: MessengerEvent, reaction: MessengerReaction, receivedAt: Date) {
  const timestamp = event.timestamp ?? receivedAt.getTime();
  const removed = reaction.action === 'unreact';
  const emoji = reaction.emoji ?? reaction.reaction;
  const part: MessagePart = {
    kind: 'reaction',
    targetId: reaction.mid,
    ...(!removed && emoji ? { emoji } : {}),
  };
  // A reaction has no mid of its own: the reacted message, the action and the time identify it.
  const id = `reaction:${reaction.mid}:${reaction.action ?? 'react'}:${eventStamp(event, event.timestamp)}`;
  return inboundMessage(party, id, [part], timestamp, receivedAt);
}

function referralMessage(party: Party, event: MessengerEvent, referral: MessengerReferral, receivedAt: Date) {
  const timestamp = event.timestamp ?? receivedAt.getTime();
  const part = referralPart(referral) ?? { kind: 'unsupported' as const, providerType: 'referral' };
  const id = `referral:${party.psid}:${eventStamp(event, event.timestamp)}`;
  return inboundMessage(party, id, [part], timestamp, receivedAt);
}

function eventsOf(
  party: Party,
  event: MessengerEvent,
  handled: Handled,
  where: string,
  receivedAt: Date,
): InboundEvent[] {
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
    case 'reaction':
      return [{ type: 'message', message: reactionMessage(party, event, handled.reaction, receivedAt) }];
    case 'referral':
      return [{ type: 'message', message: referralMessage(party, event, handled.referral, receivedAt) }];
  }
}

/**
 * One messaging event → events or an ignored entry. Never throws for a signed event's shape: what
 * a customer sent that cannot be read is kept as `unsupported`; what cannot be tied to a customer
 * (no PSID) or is about the Page rather than the conversation is ignored (logged and counted).
 */
function normalizeEvent(raw: unknown, where: string, receivedAt: Date): InboundEvent[] | Ignored {
  const object = eventObjectSchema.safeParse(raw);
  if (!object.success) return { reason: `messenger ${where}: not an object` };
  const fields = Object.keys(object.data);
  if (echoSchema.safeParse(raw).success) return { reason: 'echo' };
  // Names what the event carries (`message`, `reaction`, `optin`, …).
  const type = fields.find((f) => !ENVELOPE_FIELDS.has(f)) ?? 'empty';
  if (!fields.some((f) => HANDLED_FIELDS.includes(f))) {
    if (NOT_CONVERSATION.has(type)) return { reason: `messenger ${type} event not handled` };
    return unsupportedEvent(raw, type, receivedAt) ?? { reason: `messenger ${type} event not handled` };
  }
  const parsed = messengerEventSchema.safeParse(raw);
  const handled = parsed.success ? handledOf(parsed.data) : undefined;
  if (!parsed.success || !handled) {
    const issue = parsed.error?.issues[0];
    const detail = issue
      ? `Rapport could not read it (${issue.path.join('.')}: ${issue.message})`
      : undefined;
    return (
      unsupportedEvent(raw, type, receivedAt, detail) ?? {
        reason: `messenger ${where}: ${type} event without a PSID could not be read`,
      }
    );
  }
  const event = parsed.data;
  const psid = event.sender?.id;
  if (!psid) {
    // Checkbox-plugin users have only a user_ref until they message the Page; nothing to reply to.
    return {
      reason: `messenger ${handled.kind} from a ${event.sender?.user_ref !== undefined ? 'user_ref' : 'sender'} without a PSID`,
    };
  }
  const party: Party = { pageId: event.recipient.id, psid };
  try {
    return eventsOf(party, event, handled, where, receivedAt);
  } catch (err) {
    if (!(err instanceof PayloadError)) throw err;
    return unsupportedEvent(raw, type, receivedAt, err.message) ?? { reason: err.message };
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

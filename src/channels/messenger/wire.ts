/**
 * Messenger webhook payloads (`object: "page"`) as they arrive, as loose zod schemas: Meta adds
 * fields without notice, so unknown fields are allowed and only the fields Rapport reads are checked.
 * https://developers.facebook.com/docs/messenger-platform/webhooks
 * https://developers.facebook.com/docs/messenger-platform/reference/webhook-events
 */
import { z } from 'zod';

/** Milliseconds since the epoch (`timestamp`, `watermark`); bounded so `new Date()` stays valid. */
const epochMs = z.number().int().nonnegative().max(8_640_000_000_000_000);

/** `{ object: "page", entry: [...] }`; one POST may carry many entries. */
export const messengerBodySchema = z.looseObject({
  object: z.literal('page'),
  entry: z.array(z.unknown()),
});

/**
 * One entry per Page. Events sit in `messaging[]`; with the handover protocol, events of threads
 * another app controls sit in `standby[]`.
 */
export const messengerEntrySchema = z.looseObject({
  /** The Page id. */
  id: z.string().optional(),
  time: epochMs.optional(),
  messaging: z.array(z.unknown()).optional(),
  standby: z.array(z.unknown()).optional(),
});

/**
 * `{type, payload}`. `payload` is `{url}` for image|audio|video|file|sticker|reel|ig_reel,
 * `{coordinates:{lat,long}}` for location (older clients), `{url,title}` or null for fallback (shared
 * links); the title and url of a fallback may also sit next to `payload`.
 */
export const messengerAttachmentSchema = z.looseObject({
  type: z.string().min(1),
  payload: z
    .looseObject({
      url: z.string().nullish(),
      title: z.string().nullish(),
      coordinates: z.looseObject({ lat: z.number(), long: z.number() }).optional(),
    })
    .nullish(),
  title: z.string().nullish(),
  url: z.string().nullish(),
  /** The documented `fallback` sample spells the shared link's address `URL`. */
  URL: z.string().nullish(),
});

export const messengerMessageSchema = z.looseObject({
  mid: z.string().min(1),
  text: z.string().optional(),
  /** Set on echoes of the Page's own sends (`message_echoes` field); sender and recipient are swapped. */
  is_echo: z.boolean().optional(),
  /** A tapped quick reply: `text` is its title. */
  quick_reply: z.looseObject({ payload: z.string() }).optional(),
  /** The message this one replies to (Instagram story replies carry `story` instead of `mid`). */
  reply_to: z.looseObject({ mid: z.string().optional() }).optional(),
  attachments: z.array(messengerAttachmentSchema).optional(),
  /** Set on the first message after an ad click. */
  referral: z.unknown().optional(),
});

/** A button, Get Started or persistent-menu press. Older payloads carry no `mid`. */
export const messengerPostbackSchema = z.looseObject({
  mid: z.string().min(1).optional(),
  /** Absent on some presses (e.g. from a persistent menu of another app): only `payload` arrives. */
  title: z.string().optional(),
  payload: z.string().optional(),
  /** Set when the press started the thread from an m.me link or an ad. */
  referral: z.unknown().optional(),
});

/** A reaction to a message (`message_reactions` field); `action` is `react` or `unreact`. */
export const messengerReactionSchema = z.looseObject({
  mid: z.string().min(1),
  action: z.string().optional(),
  emoji: z.string().optional(),
  reaction: z.string().optional(),
});

/** Where the customer came from: an m.me link, an ad (`ads_context_data`), the chat plugin. */
export const messengerReferralSchema = z.looseObject({
  ref: z.string().nullish(),
  source: z.string().optional(),
  type: z.string().optional(),
  ads_context_data: z
    .looseObject({
      ad_title: z.string().optional(),
      photo_url: z.string().optional(),
      post_id: z.string().optional(),
    })
    .optional(),
  referer_uri: z.string().optional(),
});

/** Delivery receipt: `mids` may be absent (older clients); `watermark` is always present. */
export const messengerDeliverySchema = z.looseObject({
  mids: z.array(z.string().min(1)).optional(),
  watermark: epochMs,
});

/** Read receipt: everything sent before `watermark` was read. */
export const messengerReadSchema = z.looseObject({
  watermark: epochMs,
});

/**
 * One element of `messaging[]`. `sender.id` is the user's PSID and `recipient.id` the Page id
 * (swapped on echoes). Exactly one of `message`, `postback`, `delivery`, `read`, `reaction`,
 * `optin`, `referral`, `account_linking`, `pass_thread_control`, … is present. Delivery receipts
 * carry no `timestamp`. Checkbox-plugin users are identified by `sender.user_ref`, not a PSID.
 */
export const messengerEventSchema = z.looseObject({
  sender: z.looseObject({ id: z.string().min(1).optional(), user_ref: z.string().optional() }).optional(),
  recipient: z.looseObject({ id: z.string().min(1) }),
  timestamp: epochMs.optional(),
  message: messengerMessageSchema.optional(),
  postback: messengerPostbackSchema.optional(),
  delivery: messengerDeliverySchema.optional(),
  read: messengerReadSchema.optional(),
  reaction: messengerReactionSchema.optional(),
  referral: messengerReferralSchema.optional(),
});

export type MessengerBody = z.output<typeof messengerBodySchema>;
export type MessengerEntry = z.output<typeof messengerEntrySchema>;
export type MessengerEvent = z.output<typeof messengerEventSchema>;
export type MessengerMessage = z.output<typeof messengerMessageSchema>;
export type MessengerAttachment = z.output<typeof messengerAttachmentSchema>;
export type MessengerPostback = z.output<typeof messengerPostbackSchema>;
export type MessengerDelivery = z.output<typeof messengerDeliverySchema>;
export type MessengerRead = z.output<typeof messengerReadSchema>;
export type MessengerReaction = z.output<typeof messengerReactionSchema>;
export type MessengerReferral = z.output<typeof messengerReferralSchema>;

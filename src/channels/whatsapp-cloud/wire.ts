/**
 * WhatsApp Cloud API webhook payloads (`object: "whatsapp_business_account"`) as they arrive, as
 * loose zod schemas: Meta adds fields and message types without notice, so unknown fields are
 * allowed and only the fields Rapport reads are checked.
 * https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components
 * https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/payload-examples
 */
import { z } from 'zod';

/** Unix seconds, sent as a string (`"1718882345"`). */
const unixSeconds = z.union([
  z.string().regex(/^\d{1,12}$/, 'must be unix seconds'),
  z.number().int().nonnegative(),
]);

/** `{ object: "whatsapp_business_account", entry: [...] }`; one POST may carry many entries. */
export const whatsAppBodySchema = z.looseObject({
  object: z.literal('whatsapp_business_account'),
  entry: z.array(z.unknown()),
});

/** One entry per WhatsApp Business Account (`id`), holding `changes[]`. */
export const whatsAppEntrySchema = z.looseObject({
  id: z.string().optional(),
  changes: z.array(z.unknown()).optional(),
});

/** `field` names the subscription: `messages` carries messages and statuses; others are account events. */
export const whatsAppChangeSchema = z.looseObject({
  field: z.string(),
  value: z.unknown(),
});

/** `{profile:{name}, wa_id}` of the users whose messages are in the same value. */
export const whatsAppContactSchema = z.looseObject({
  wa_id: z.string().optional(),
  profile: z.looseObject({ name: z.string().optional() }).optional(),
});

/** The value of a `messages` change. */
export const whatsAppMessagesValueSchema = z.looseObject({
  messaging_product: z.string().optional(),
  metadata: z.looseObject({
    display_phone_number: z.string().optional(),
    phone_number_id: z.string().min(1),
  }),
  contacts: z.array(whatsAppContactSchema).optional(),
  messages: z.array(z.unknown()).optional(),
  statuses: z.array(z.unknown()).optional(),
  /** Out-of-band errors not tied to a message (e.g. rate limits). */
  errors: z.array(z.unknown()).optional(),
});

/** image|audio|video|document|sticker. Fetch with `GET /{id}`, then the returned URL, with the token. */
export const whatsAppMediaSchema = z.looseObject({
  id: z.string().min(1),
  mime_type: z.string().optional(),
  sha256: z.string().optional(),
  caption: z.string().optional(),
  filename: z.string().optional(),
  url: z.string().optional(),
});

export const WHATSAPP_MEDIA_TYPES = ['image', 'audio', 'video', 'document', 'sticker'] as const;
export type WhatsAppMediaType = (typeof WHATSAPP_MEDIA_TYPES)[number];

/**
 * One element of `messages[]`. `type` says which sibling object holds the content; types Rapport
 * does not map (reaction, contacts, order, system, unsupported, …) are kept as `unsupported`.
 */
export const whatsAppMessageSchema = z.looseObject({
  /** The sender's wa_id: digits, no `+`. */
  from: z.string().min(1),
  /** `wamid.…` */
  id: z.string().min(1),
  timestamp: unixSeconds,
  type: z.string().min(1),
  /** Set on replies (`id` of the quoted message) and on template button presses. */
  context: z.looseObject({ id: z.string().optional(), from: z.string().optional() }).optional(),
  text: z.looseObject({ body: z.string() }).optional(),
  image: whatsAppMediaSchema.optional(),
  audio: whatsAppMediaSchema.optional(),
  video: whatsAppMediaSchema.optional(),
  document: whatsAppMediaSchema.optional(),
  sticker: whatsAppMediaSchema.optional(),
  location: z
    .looseObject({
      latitude: z.number(),
      longitude: z.number(),
      name: z.string().optional(),
      address: z.string().optional(),
    })
    .optional(),
  /** A quick-reply button of a template. */
  button: z.looseObject({ text: z.string(), payload: z.string().optional() }).optional(),
  /** A reply button or list row of an interactive message. */
  interactive: z
    .looseObject({
      type: z.string(),
      button_reply: z.looseObject({ id: z.string(), title: z.string() }).optional(),
      list_reply: z
        .looseObject({ id: z.string(), title: z.string(), description: z.string().optional() })
        .optional(),
    })
    .optional(),
});

export const WHATSAPP_STATUSES = ['sent', 'delivered', 'read', 'failed', 'played'] as const;
export type WhatsAppStatus = (typeof WHATSAPP_STATUSES)[number];

export const whatsAppErrorSchema = z.looseObject({
  code: z.union([z.number(), z.string()]),
  title: z.string().optional(),
  message: z.string().optional(),
  error_data: z.looseObject({ details: z.string().optional() }).optional(),
});

/** One element of `statuses[]`: a report on a message we sent. `read` may arrive without `delivered`. */
export const whatsAppStatusSchema = z.looseObject({
  /** The `wamid.…` our send returned. */
  id: z.string().min(1),
  status: z.string().min(1),
  timestamp: unixSeconds,
  recipient_id: z.string().min(1),
  errors: z.array(whatsAppErrorSchema).optional(),
});

export type WhatsAppBody = z.output<typeof whatsAppBodySchema>;
export type WhatsAppMessagesValue = z.output<typeof whatsAppMessagesValueSchema>;
export type WhatsAppMessage = z.output<typeof whatsAppMessageSchema>;
export type WhatsAppMedia = z.output<typeof whatsAppMediaSchema>;
export type WhatsAppStatusUpdate = z.output<typeof whatsAppStatusSchema>;
export type WhatsAppError = z.output<typeof whatsAppErrorSchema>;

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
  /** Shared contact cards. */
  contacts: z
    .array(
      z.looseObject({
        name: z
          .looseObject({
            formatted_name: z.string().optional(),
            first_name: z.string().optional(),
            last_name: z.string().optional(),
          })
          .optional(),
        phones: z
          .array(z.looseObject({ phone: z.string().optional(), wa_id: z.string().optional() }))
          .optional(),
        emails: z.array(z.looseObject({ email: z.string().optional() })).optional(),
      }),
    )
    .optional(),
  /** A cart sent from a catalogue. */
  order: z
    .looseObject({
      text: z.string().optional(),
      product_items: z
        .array(
          z.looseObject({
            product_retailer_id: z.string(),
            quantity: z.coerce.number(),
            item_price: z.coerce.number().optional(),
            currency: z.string().optional(),
          }),
        )
        .optional(),
    })
    .optional(),
  /** `emoji` absent or empty: the reaction was removed. */
  reaction: z.looseObject({ message_id: z.string(), emoji: z.string().optional() }).optional(),
  /** An edit of an earlier message: the new message sits inside. */
  edit: z
    .looseObject({ original_message_id: z.string().optional(), message: z.unknown().optional() })
    .optional(),
  revoke: z.looseObject({ original_message_id: z.string().optional() }).optional(),
  /** The ad or post the customer came from (click-to-WhatsApp). */
  referral: z
    .looseObject({
      source_url: z.string().optional(),
      source_type: z.string().optional(),
      headline: z.string().optional(),
      body: z.string().optional(),
    })
    .optional(),
  system: z.looseObject({ body: z.string().optional(), type: z.string().optional() }).optional(),
  unsupported: z.looseObject({ type: z.string().optional() }).optional(),
  /** Why Meta could not deliver the content (`unsupported`, `interactive` without a body). */
  errors: z.array(z.unknown()).optional(),
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
      url: z.string().optional(),
    })
    .optional(),
  /** A quick-reply button of a template. */
  button: z.looseObject({ text: z.string().optional(), payload: z.string().optional() }).optional(),
  /** A reply button or list row of an interactive message; absent when Meta could not render it (`errors[]`). */
  interactive: z
    .looseObject({
      type: z.string().optional(),
      button_reply: z.looseObject({ id: z.string().optional(), title: z.string().optional() }).optional(),
      list_reply: z
        .looseObject({
          id: z.string().optional(),
          title: z.string().optional(),
          description: z.string().optional(),
        })
        .optional(),
      /** Reply to a call permission request. */
      call_permission_reply: z.looseObject({ response: z.string().optional() }).optional(),
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

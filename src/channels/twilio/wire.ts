/**
 * Twilio's webhook payloads as they arrive: `application/x-www-form-urlencoded` fields.
 * Twilio adds fields without notice, so every field is kept (and signed over).
 * https://www.twilio.com/docs/messaging/guides/webhook-request
 */

/** Form fields; a repeated field arrives as an array. */
export type TwilioForm = Record<string, string | string[]>;

/** The fields Rapport reads from an inbound message. */
export interface TwilioInboundFields {
  MessageSid: string;
  AccountSid?: string;
  From: string;
  To: string;
  Body?: string;
  NumMedia?: string;
  ProfileName?: string;
  WaId?: string;
  OriginalRepliedMessageSid?: string;
  Latitude?: string;
  Longitude?: string;
  Address?: string;
  Label?: string;
  /** `MediaUrl{N}` / `MediaContentType{N}` for N in 0..NumMedia-1. */
  [media: `MediaUrl${number}` | `MediaContentType${number}`]: string | undefined;
}

/** The status values of a status callback. */
export const TWILIO_MESSAGE_STATUSES = [
  'queued',
  'sending',
  'sent',
  'failed',
  'delivered',
  'undelivered',
  'receiving',
  'received',
  'accepted',
  'scheduled',
  'read',
  'partially_delivered',
  'canceled',
] as const;

export type TwilioMessageStatus = (typeof TWILIO_MESSAGE_STATUSES)[number];

/**
 * Canonical types: the one vocabulary every layer speaks. Adapters in src/channels/ turn provider
 * payloads into these; nothing past src/channels/ sees a provider's wire format.
 */

/** The app the customer uses. */
export type Channel = 'sms' | 'whatsapp' | 'messenger';

/** Who carries the message for us. */
export type Provider = 'twilio' | 'whatsapp-cloud' | 'whatsapp-web' | 'messenger';

export type Address =
  /** SMS and every WhatsApp provider; `e164` is normalised by src/identity, raw as received here. */
  | { kind: 'phone'; e164: string }
  /** Messenger page-scoped id. */
  | { kind: 'psid'; pageId: string; psid: string };

export type MessagePart =
  | { kind: 'text'; text: string }
  | {
      kind: 'media';
      /** Where the provider serves the file (Twilio, Messenger). */
      url?: string;
      /** Id to fetch the file with the provider's API (WhatsApp Cloud). */
      providerMediaId?: string;
      contentType?: string;
      caption?: string;
      filename?: string;
      /** The size the provider declared, for a file it did not hand over (WhatsApp Web: too large to download). */
      bytes?: number;
    }
  /** A button press (Messenger postback); treated like text by the agent side. A press may carry only a payload. */
  | { kind: 'postback'; title?: string; payload?: string }
  | { kind: 'location'; latitude: number; longitude: number; name?: string; address?: string; url?: string }
  /** A link the customer shared (Messenger `fallback`), with its title when the provider gives one. */
  | { kind: 'link'; url?: string; title?: string }
  /** Contact cards the customer shared. */
  | { kind: 'contacts'; contacts: SharedContact[] }
  /** A cart sent from a catalogue. */
  | { kind: 'order'; items: OrderItem[]; text?: string }
  /** The customer edited an earlier message; the new content follows as further parts. */
  | { kind: 'edit'; targetId?: string }
  /** The customer deleted an earlier message. */
  | { kind: 'revoke'; targetId?: string }
  /** A reaction to an earlier message; no emoji means the reaction was removed. */
  | { kind: 'reaction'; targetId: string; emoji?: string }
  /** Where the conversation came from: an ad, a post, an m.me link. */
  | { kind: 'referral'; source?: string; headline?: string; body?: string; url?: string; ref?: string }
  /** The customer's answer to a request for permission to call them. */
  | { kind: 'call_permission'; accepted: boolean }
  /**
   * Anything we cannot render yet, with the provider's raw type and, when it says why, its reason;
   * kept so nothing is dropped silently.
   */
  | { kind: 'unsupported'; providerType: string; detail?: string };

/** One shared contact card: whatever of name and numbers the provider gave. */
export interface SharedContact {
  name?: string;
  phones: string[];
  emails?: string[];
}

/** One line of an order. */
export interface OrderItem {
  id: string;
  quantity: number;
  /** Unit price, in `currency`. */
  price?: number;
  currency?: string;
}

export interface InboundMessage {
  /** `${provider}:${providerMessageId}` — the idempotency key end to end. */
  key: string;
  channel: Channel;
  provider: Provider;
  providerMessageId: string;
  from: Address;
  /** Business number (E.164 or as the provider reports it) or page id. */
  to: string;
  /** All text of the message (text parts, captions, postback titles, shared links) joined; absent if none. */
  text?: string;
  parts: MessagePart[];
  /** The customer's name as the provider reports it. */
  profileName?: string;
  /** Provider message id this message replies to, when the provider says. */
  replyTo?: string;
  sentAt: string;
  receivedAt: string;
}

export type DeliveryState =
  'queued' | 'sent' | 'delivered' | 'read' | 'failed' | 'undelivered' | 'played' | 'received';

export interface ProviderError {
  code: string;
  title?: string;
  detail?: string;
}

/** A provider's report on a message we sent (or, for Messenger reads, a watermark). */
export interface DeliveryStatus {
  /** `${provider}:${providerMessageId}:${state}` (or watermark-based); dedupes repeated reports. */
  key: string;
  channel: Channel;
  provider: Provider;
  /** The id of our outbound message; absent for watermark-only reports. */
  providerMessageId?: string;
  state: DeliveryState;
  /** Messenger delivery/read: everything sent before this time is covered. */
  watermark?: string;
  recipient?: Address;
  errors: ProviderError[];
  at: string;
  receivedAt: string;
}

export type InboundEvent =
  { type: 'message'; message: InboundMessage } | { type: 'status'; status: DeliveryStatus };

/** The idempotency key of any inbound event. */
export function eventKey(event: InboundEvent): string {
  return event.type === 'message' ? event.message.key : event.status.key;
}

/** Joins the human-readable text of a message's parts. */
export function textOf(parts: MessagePart[]): string | undefined {
  const texts = parts.flatMap((p) => {
    if (p.kind === 'text') return [p.text];
    if (p.kind === 'media' && p.caption) return [p.caption];
    if (p.kind === 'postback') return p.title ? [p.title] : [];
    if (p.kind === 'link') return [p.title, p.url].filter((t): t is string => Boolean(t));
    return [];
  });
  return texts.length > 0 ? texts.join('\n') : undefined;
}

/**
 * The configured source a message came through — channel and provider together — as named in
 * /readyz and metrics: `sms`, `twilio-whatsapp`, `whatsapp-cloud`, `whatsapp-web`, `messenger`.
 */
export function sourceOf(channel: Channel, provider: Provider): string {
  if (provider === 'twilio') return channel === 'whatsapp' ? 'twilio-whatsapp' : 'sms';
  return provider;
}

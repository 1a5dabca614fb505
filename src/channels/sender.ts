/**
 * The outbound side of a customer channel: one interface every provider's sender implements, so the
 * `to-customer` worker never sees a provider's API. A sender knows nothing of customers or agents:
 * it gets an address and content, and returns the provider's message id or throws a
 * `OutboundError` whose `reason` says what the agent should be told and whether to retry.
 */
import type { Channel, Provider } from '../canonical';
import { AppError } from '../errors';

export interface OutboundMedia {
  /** A URL the provider can fetch (Twilio MediaUrl, Graph `link`). */
  url: string;
  contentType?: string;
  filename?: string;
  /** The bytes, when Rapport holds them (an agent's file): senders that upload use this. */
  load?: () => Promise<Buffer>;
}

/** An approved template, for messages outside WhatsApp's 24-hour window. */
export interface OutboundTemplate {
  /** Twilio Content SID (`HX…`) or WhatsApp Cloud template name. */
  id: string;
  /** Cloud API template language code. @defaultValue `'en'` */
  language?: string;
  /** Twilio ContentVariables / Cloud body parameters, in order `{"1": "…", "2": "…"}`. */
  variables?: Record<string, string>;
}

export interface OutboundMessage {
  /** Our idempotency key for this outbound message (logged, never sent to the customer). */
  key: string;
  channel: Channel;
  provider: Provider;
  /**
   * The customer's address as the provider knows it: E.164 (`+1415…`) for SMS and WhatsApp
   * (each sender adds its own prefix: `whatsapp:` for Twilio, bare digits for Cloud, `@c.us` for
   * whatsapp-web), or the PSID for Messenger.
   */
  to: string;
  /** Our side, when the customer wrote to a specific business number or page. */
  from?: string;
  text?: string;
  media?: OutboundMedia[];
  template?: OutboundTemplate;
  /** Messenger only: send with this message tag (between 24 h and 7 days: `HUMAN_AGENT`). */
  messengerTag?: 'HUMAN_AGENT';
}

export interface SendResult {
  provider: Provider;
  providerMessageId: string;
}

export interface ChannelSender {
  readonly provider: Provider;
  readonly channels: readonly Channel[];
  /** Throws `OutboundError` (never a raw SDK error). */
  send(message: OutboundMessage): Promise<SendResult>;
}

/**
 * Why a send did not go through, in the agent's terms:
 * - `window_closed`: outside the messaging window (Twilio 63016, Graph 131047, Messenger 10/2018278)
 * - `opted_out`: the customer opted out (Twilio 21610)
 * - `rate_limited`: slow down (429, Twilio 20429, Graph 4/80007/130429); retryable after `retryAfterMs`
 * - `unavailable`: 5xx, network error, timeout before the provider answered; retryable
 * - `invalid_recipient`: the address cannot receive this (e.g. Twilio 21211/21614, Graph 131026)
 * - `auth`: our credentials are wrong (401/403, Twilio 20003, Graph 190)
 * - `unsupported`: the channel cannot carry this content
 * - `rejected`: any other permanent 4xx
 */
export type SendFailureReason =
  | 'window_closed'
  | 'opted_out'
  | 'rate_limited'
  | 'unavailable'
  | 'invalid_recipient'
  | 'auth'
  | 'unsupported'
  | 'rejected';

export class OutboundError extends AppError {
  constructor(
    message: string,
    readonly provider: Provider,
    readonly reason: SendFailureReason,
    /** The provider's own error code (`63016`, `131047`, `10/2018278`, HTTP status if none). */
    readonly providerCode: string | undefined,
    options: { retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, `send_${reason}`, 502, reason === 'rate_limited' || reason === 'unavailable', {
      cause: options.cause,
    });
    this.retryAfterMs = options.retryAfterMs;
  }
  readonly retryAfterMs: number | undefined;
}

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
  /**
   * The file's id in Rapport's media store (an agent's file). Unlike `load` it survives a trip
   * through Redis, so a sender in another process (the WhatsApp Web session) reads the bytes there.
   */
  storedId?: string;
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

/**
 * Part-by-part progress of a message that takes several provider calls (text + media items, one
 * call each). The caller records each accepted part before the next goes out, and a retry passes
 * what was recorded so it resumes after the last accepted part: no part is sent twice.
 */
export interface SendProgress {
  /** Provider ids of the parts an earlier attempt got accepted, in order; those are skipped. */
  done: readonly string[];
  /**
   * Called after part `index` was accepted; awaited before the next part is sent. `last`: no part
   * follows it in this call (the caller may record it with the outcome instead).
   */
  onPart(index: number, providerMessageId: string, last?: boolean): Promise<void>;
}

export interface ChannelSender {
  readonly provider: Provider;
  readonly channels: readonly Channel[];
  /** Throws `OutboundError` (never a raw SDK error). */
  send(message: OutboundMessage, progress?: SendProgress): Promise<SendResult>;
}

/**
 * Sends `parts` in order with `sendPart`, skipping those `progress.done` already has and reporting
 * each accepted one. Returns the id of the first part (earlier attempt's or this one's).
 */
export async function sendInParts<P>(
  provider: Provider,
  parts: readonly P[],
  progress: SendProgress | undefined,
  sendPart: (part: P, index: number) => Promise<string>,
): Promise<SendResult> {
  const ids = (progress?.done ?? []).slice(0, parts.length);
  for (let i = ids.length; i < parts.length; i++) {
    const id = await sendPart(parts[i] as P, i);
    ids.push(id);
    await progress?.onPart(i, id, i === parts.length - 1);
  }
  return { provider, providerMessageId: ids[0] as string };
}

/**
 * Why a send did not go through, in the agent's terms:
 * - `window_closed`: outside the messaging window (Twilio 63016, Graph 131047, Messenger 10/2018278)
 * - `opted_out`: the customer opted out (Twilio 21610)
 * - `rate_limited`: slow down (429, Twilio 20429, Graph 4/80007/130429); retryable after `retryAfterMs`
 * - `unavailable`: the provider certainly did not take it (connection refused, a 5xx or code the
 *   provider documents as "not processed"); retryable
 * - `uncertain`: the answer was lost (timeout or reset after the request was written, an unknown
 *   5xx): it may have been accepted. Never resent blindly — see README "Sending: lost answers"
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
  | 'uncertain'
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

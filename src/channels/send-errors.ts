/**
 * Pure mapping from what a provider answered (HTTP status, its error code and subcode, Retry-After)
 * to an `OutboundError` reason, shared by the Twilio, WhatsApp Cloud and Messenger senders.
 *
 * The senders first narrow their SDK's error into a `ProviderFailure` (plain data, no headers, no
 * URLs), so this module can be table-tested and no raw SDK error — which carries the Basic auth
 * header (twilio) or `?access_token=` in its URL (messaging-api-messenger) — travels past a sender.
 */
import type { Provider } from '../canonical';
import { isRecord } from '../values';
import { OutboundError, type SendFailureReason } from './sender';

/** What went wrong, as plain data read off the provider's answer (or its absence). */
export interface ProviderFailure {
  /** HTTP status; absent when no answer arrived (network error, timeout). */
  status?: number;
  /** The provider's error code (Twilio `code`, Graph `error.code`). */
  code?: number;
  /** Graph `error.error_subcode`. */
  subcode?: number;
  /** The provider's own text; redacted before it goes anywhere. */
  message?: string;
  /** The raw `Retry-After` header, seconds or an HTTP date. */
  retryAfter?: string;
  /**
   * Why no answer arrived: `refused` before anything was written (connection refused, name not
   * found: certainly not accepted); `timeout` or `network` (reset, closed) after the request may
   * have been written: the outcome is unknown.
   */
  transport?: Transport;
  /** Graph `fbtrace_id`, handy when talking to Meta support. */
  traceId?: string;
}

export type Transport = 'timeout' | 'network' | 'refused';

export interface FailureClass {
  reason: SendFailureReason;
  /** `63016`, `131047`, `10/2018278`; the HTTP status when the provider gave no code. */
  providerCode: string | undefined;
  retryAfterMs?: number;
}

/** `Retry-After` as milliseconds from `now`: delta-seconds or an HTTP date; undefined if unusable. */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

function codeString(f: ProviderFailure): string | undefined {
  if (f.code !== undefined) return f.subcode !== undefined ? `${f.code}/${f.subcode}` : String(f.code);
  return f.status !== undefined ? String(f.status) : f.transport;
}

/** No answer: certainly not accepted if the connection was refused, otherwise unknown. */
function noAnswer(f: ProviderFailure): SendFailureReason {
  return f.transport === 'refused' ? 'unavailable' : 'uncertain';
}

function withRetry(reason: SendFailureReason, f: ProviderFailure, now: number): FailureClass {
  const retryable = reason === 'rate_limited' || reason === 'unavailable';
  const retryAfterMs = retryable ? parseRetryAfter(f.retryAfter, now) : undefined;
  return {
    reason,
    providerCode: codeString(f),
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  };
}

const TWILIO_INVALID_RECIPIENT = new Set([
  21211, // invalid 'To' phone number
  21408, // permission to send to this region not enabled
  21612, // 'To' not reachable via this channel / carrier
  21614, // 'To' is not a valid mobile number
  63003, // channel could not find the To address
]);

/**
 * Twilio REST errors (`{code, message, more_info, status}`):
 * 63016 window closed, 21610 opted out, 20429/429 rate limited, 503 (Twilio's "Service
 * Unavailable", 20503: the request was not handled) and a refused connection unavailable; any other
 * 5xx, a timeout or a reset uncertain (the message may exist: the sender looks it up);
 * 21211/21408/21612/21614/63003 invalid recipient, 20003/401/403 auth, other 4xx rejected.
 */
export function classifyTwilioFailure(f: ProviderFailure, now: number = Date.now()): FailureClass {
  const reason = ((): SendFailureReason => {
    if (f.status === undefined) return noAnswer(f);
    if (f.code === 63016) return 'window_closed';
    if (f.code === 21610) return 'opted_out';
    if (f.code === 20429 || f.status === 429) return 'rate_limited';
    if (f.status === 503 || f.code === 20503) return 'unavailable';
    if (f.status >= 500) return 'uncertain';
    if (f.code !== undefined && TWILIO_INVALID_RECIPIENT.has(f.code)) return 'invalid_recipient';
    if (f.code === 20003 || f.status === 401 || f.status === 403) return 'auth';
    return 'rejected';
  })();
  return withRetry(reason, f, now);
}

/** Graph codes that mean "slow down" for either Meta channel. */
const GRAPH_RATE_LIMITED = new Set([
  4, // application request limit
  17, // user request limit
  32, // page request limit
  613, // calls exceeded the rate limit
  80006, // Messenger business-use-case rate limit
  80007, // WhatsApp business-use-case rate limit
  130429, // WhatsApp throughput reached
  131056, // WhatsApp pair rate limit (same recipient too often)
]);

/**
 * Graph codes Meta documents as "not processed, retry": the message was not sent.
 * https://developers.facebook.com/docs/graph-api/guides/error-handling,
 * https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
 */
const GRAPH_TRANSIENT = new Set([
  1, // API Unknown: "possibly a temporary issue due to downtime. Wait and retry"
  2, // API Service: "temporary issue due to downtime. Wait and retry"
  131000, // WhatsApp: "Message failed to send because of an unknown error"
  131016, // WhatsApp: "A service is temporarily unavailable"
]);

function graphCommon(f: ProviderFailure): SendFailureReason | undefined {
  if (f.status === undefined) return noAnswer(f);
  if ((f.code !== undefined && GRAPH_RATE_LIMITED.has(f.code)) || f.status === 429) return 'rate_limited';
  if (f.code === 190) return 'auth';
  if (f.code !== undefined && GRAPH_TRANSIENT.has(f.code)) return 'unavailable';
  // A 5xx without a documented code (a proxy's 502/504, an empty body) says nothing of the send.
  if (f.status === 503 && f.code === undefined) return 'unavailable';
  if (f.status >= 500) return 'uncertain';
  return undefined;
}

/**
 * WhatsApp Cloud errors (`{error:{code, error_subcode, message, type, fbtrace_id}}`):
 * 131047 window closed; 4/80007/130429/131056 and 429 rate limited; 131026/131030 invalid
 * recipient (131030: not in the test number's allowed list); 190 auth; 1/2/131000/131016, a bare
 * 503 and a refused connection unavailable; another 5xx, a timeout or a reset uncertain; 401/403
 * without a known code auth; anything else rejected.
 */
export function classifyWhatsAppCloudFailure(f: ProviderFailure, now: number = Date.now()): FailureClass {
  const reason = ((): SendFailureReason => {
    if (f.code === 131047) return 'window_closed';
    const common = graphCommon(f);
    if (common) return common;
    if (f.code === 131026 || f.code === 131030) return 'invalid_recipient';
    if (f.code === undefined && (f.status === 401 || f.status === 403)) return 'auth';
    return 'rejected';
  })();
  return withRetry(reason, f, now);
}

/**
 * Messenger Send API errors (Graph shape; the SDK camelCases them, the sender undoes that):
 * 10/2018278 window closed; 551 and 100/2018001 invalid recipient; 4/17/32/613/80006 and 429 rate
 * limited; 190 auth; 1/2, a bare 503 and a refused connection unavailable; another 5xx, a timeout
 * or a reset uncertain; anything else rejected.
 */
export function classifyMessengerFailure(f: ProviderFailure, now: number = Date.now()): FailureClass {
  const reason = ((): SendFailureReason => {
    if (f.code === 10 && f.subcode === 2018278) return 'window_closed';
    const common = graphCommon(f);
    if (common) return common;
    if (f.code === 551 || (f.code === 100 && f.subcode === 2018001)) return 'invalid_recipient';
    if (f.code === undefined && (f.status === 401 || f.status === 403)) return 'auth';
    return 'rejected';
  })();
  return withRetry(reason, f, now);
}

/**
 * Removes every configured secret from a provider's text, and masks long digit runs (phone
 * numbers, PSIDs): messages end up in logs and in what the agent is told.
 */
export function redactText(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join('[redacted]');
  }
  return out.replace(/\+?\d{8,}/g, '[number]');
}

const REASON_TEXT: Record<SendFailureReason, string> = {
  window_closed: 'the messaging window is closed',
  opted_out: 'the customer has opted out',
  rate_limited: 'rate limited',
  unavailable: 'provider unavailable',
  uncertain: 'no answer from the provider, so it may or may not have been delivered',
  invalid_recipient: 'the recipient cannot receive this message',
  auth: 'credentials rejected',
  unsupported: 'content not supported',
  rejected: 'message rejected',
};

const PROVIDER_LABEL: Record<Provider, string> = {
  twilio: 'Twilio',
  'whatsapp-cloud': 'WhatsApp Cloud',
  'whatsapp-web': 'WhatsApp Web',
  messenger: 'Messenger',
};

/**
 * The `cause` of an OutboundError: only the safe facts of the provider's answer (status, codes,
 * trace id, redacted text), never the SDK error with its request config, headers or URL.
 */
export class ProviderResponseError extends Error {
  readonly status: number | undefined;
  readonly code: number | undefined;
  readonly subcode: number | undefined;
  readonly traceId: string | undefined;
  readonly transport: Transport | undefined;
  constructor(failure: ProviderFailure, secrets: readonly string[]) {
    super(
      failure.message !== undefined
        ? redactText(failure.message, secrets)
        : (failure.transport ?? 'no message'),
    );
    this.name = 'ProviderResponseError';
    this.status = failure.status;
    this.code = failure.code;
    this.subcode = failure.subcode;
    this.traceId = failure.traceId;
    this.transport = failure.transport;
  }
}

/**
 * Builds the OutboundError for a classified failure. The message is ours (provider, reason, code,
 * HTTP status) plus the provider's redacted text, so it is safe to log and to show an agent.
 */
export function outboundErrorFrom(
  provider: Provider,
  failure: ProviderFailure,
  classified: FailureClass,
  secrets: readonly string[],
): OutboundError {
  const details = [
    classified.providerCode !== undefined && failure.code !== undefined
      ? `code ${classified.providerCode}`
      : undefined,
    failure.status !== undefined ? `HTTP ${failure.status}` : undefined,
    failure.transport,
  ].filter((d): d is string => d !== undefined);
  const providerText =
    failure.message !== undefined ? `: ${redactText(failure.message, secrets).slice(0, 300)}` : '';
  const message = `${PROVIDER_LABEL[provider]}: ${REASON_TEXT[classified.reason]}${
    details.length > 0 ? ` (${details.join(', ')})` : ''
  }${providerText}`;
  return new OutboundError(message, provider, classified.reason, classified.providerCode, {
    retryAfterMs: classified.retryAfterMs,
    cause: new ProviderResponseError(failure, secrets),
  });
}

/** An OutboundError that never reached the provider: empty content, wrong channel, no sender. */
export function contentError(
  provider: Provider,
  reason: 'unsupported' | 'rejected',
  why: string,
): OutboundError {
  return new OutboundError(`${PROVIDER_LABEL[provider]}: ${why}`, provider, reason, undefined);
}

/** Reads a Graph error body (`{error:{code, error_subcode, message, fbtrace_id}}`), snake or camel case. */
export function graphFailureFromBody(
  status: number | undefined,
  body: unknown,
  retryAfter?: string,
): ProviderFailure {
  const failure: ProviderFailure = { status, ...(retryAfter !== undefined ? { retryAfter } : {}) };
  if (!isRecord(body) || !isRecord(body.error)) return failure;
  const e = body.error;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const code = num(e.code);
  const subcode = num(e.error_subcode) ?? num(e.errorSubcode);
  const message = str(e.message);
  const traceId = str(e.fbtrace_id) ?? str(e.fbtraceId);
  return {
    ...failure,
    ...(code !== undefined ? { code } : {}),
    ...(subcode !== undefined ? { subcode } : {}),
    ...(message !== undefined ? { message } : {}),
    ...(traceId !== undefined ? { traceId } : {}),
  };
}

/** A header value from a plain or AxiosHeaders object, as a single string. */
export function headerValue(headers: unknown, name: string): string | undefined {
  if (!isRecord(headers)) return undefined;
  const lower = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== lower) continue;
    if (typeof value === 'string') return value;
    if (typeof value === 'number') return String(value);
    if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
  }
  return undefined;
}

/** Errors raised before a byte of the request left: the provider cannot have accepted it. */
const NOT_CONNECTED = /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH)\b/;

/**
 * Timeout, refused connection or other network failure of an axios or fetch call, by the error's
 * (or its cause's) code, name or message. Only `refused` proves nothing was sent.
 */
export function transportKind(err: unknown): Transport {
  for (let e: unknown = err, depth = 0; isRecord(e) && depth < 4; e = e.cause, depth++) {
    const code = typeof e.code === 'string' ? e.code : undefined;
    const name = typeof e.name === 'string' ? e.name : undefined;
    const message = typeof e.message === 'string' ? e.message : '';
    if (code === 'ECONNABORTED' || code === 'ETIMEDOUT' || name === 'TimeoutError' || name === 'AbortError')
      return 'timeout';
    if ((code !== undefined && NOT_CONNECTED.test(code)) || NOT_CONNECTED.test(message)) return 'refused';
    if (/timeout of \d+ms exceeded/i.test(message)) return 'timeout';
  }
  return 'network';
}

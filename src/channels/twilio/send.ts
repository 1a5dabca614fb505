/**
 * Sends agent replies to customers over Twilio (SMS and WhatsApp) with the real `twilio` SDK.
 *
 * The SDK has no base-URL option, so a `RequestClient` subclass rewrites every request's origin to
 * `apiBaseUrl` (a local emulator in tests, a proxy in odd deployments). The same subclass throws the
 * SDK's own exception for a non-2xx answer itself, with the answer's headers on it, so a 429's
 * `Retry-After` survives — twilio's RestException drops headers. (It was an AsyncLocalStorage probe
 * per send: that switched on promise hooks for every promise of the process, for good — three
 * extra properties and a hook call on each — to carry one header of a rare answer.)
 *
 * A lost answer (timeout, reset, an unknown 5xx) is not resent blindly: the sender lists the
 * account's latest messages to that number and from our number, and a message created since the
 * attempt with the same body and media count is the one we sent (Twilio creates the Message
 * resource before it answers 201). Found: sent. Not found after an answer or a dropped connection:
 * Twilio did not take it, so it is retryable; not found after our own timeout proves nothing (the
 * request may still be in flight), so it stays `uncertain`, as when the lookup itself fails (the
 * agent is told).
 * `DateSent` is not used as the filter: it has day granularity and a queued message has none yet.
 */
// The REST client and its request client, not the package's index: that also loads the TwiML
// builder (xmlbuilder) and the access-token classes (~63 modules, ~0.8 MB of heap) into every
// process that can send, and Rapport uses neither.
import Twilio from 'twilio/lib/rest/Twilio';
import RequestClient from 'twilio/lib/base/RequestClient';
import RestException from 'twilio/lib/base/RestException';
import TwilioServiceException from 'twilio/lib/base/TwilioServiceException';
import type { Channel } from '../../canonical';
import { isRecord } from '../../values';
import type { ChannelSender, OutboundMessage, SendProgress, SendResult } from '../sender';
import { OutboundError, sendInParts } from '../sender';
import {
  classifyTwilioFailure,
  contentError,
  headerValue,
  outboundErrorFrom,
  ProviderResponseError,
  transportKind,
  type ProviderFailure,
} from '../send-errors';

export interface TwilioSenderOptions {
  accountSid: string;
  authToken: string;
  /** The SMS number replies come from when the message names none (`TWILIO_SMS_FROM`). */
  smsFrom?: string;
  /** The WhatsApp sender, `whatsapp:+1…` (`TWILIO_WHATSAPP_FROM`); the prefix is added if missing. */
  whatsappFrom?: string;
  /** Every request's origin is rewritten to this (`TWILIO_API_BASE_URL`). @defaultValue Twilio's own hosts */
  apiBaseUrl?: string;
  /** `StatusCallback` of every send, e.g. `${PUBLIC_URL}/webhooks/twilio/status`. */
  statusCallbackUrl?: string;
  /** Per-request timeout. @defaultValue `10_000` */
  timeoutMs?: number;
  /** Wait before looking a lost answer's message up (Twilio may still be creating it). @defaultValue `1_000` */
  lookupDelayMs?: number;
}

type CreateParams = Parameters<Twilio['messages']['create']>[0];

/** Rewrites `https://api.twilio.com/2010-04-01/…` to `<apiBaseUrl>/2010-04-01/…`. */
export function rebaseUri(uri: string, apiBaseUrl: string): string {
  const original = new URL(uri);
  const base = apiBaseUrl.replace(/\/+$/, '');
  return `${base}${original.pathname}${original.search}`;
}

/**
 * The exception the SDK throws for a non-2xx answer (as its `Version.throwException` picks it: RFC 9457
 * body or legacy), with the answer's headers added.
 */
function answerException(response: { statusCode: number; body: unknown; headers: unknown }): Error {
  let body: unknown = response.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      body = null;
    }
  }
  const error = TwilioServiceException.isRFC9457Response(body)
    ? new TwilioServiceException(response)
    : new RestException(response);
  return Object.assign(error, { headers: response.headers });
}

class RebasingRequestClient extends RequestClient {
  constructor(
    private readonly apiBaseUrl: string | undefined,
    timeoutMs: number,
  ) {
    super({ timeout: timeoutMs, autoRetry: false });
  }

  override async request<TData>(opts: RequestClient.RequestOptions<TData>) {
    const uri = this.apiBaseUrl ? rebaseUri(opts.uri, this.apiBaseUrl) : opts.uri;
    const response = await super.request<TData>({ ...opts, uri });
    // Creating and listing messages (all this sender does) take 2xx only; the SDK would throw the
    // same exception a step later, without the headers.
    if (response.statusCode < 200 || response.statusCode >= 300) throw answerException(response);
    return response;
  }
}

function withPrefix(address: string): string {
  return address.startsWith('whatsapp:') ? address : `whatsapp:${address}`;
}

/**
 * The Messages API calls one outbound message becomes, in order (pure).
 * - template: one call with `ContentSid` (+ `ContentVariables`), no Body, no media;
 * - SMS/MMS: one call, Body and up to 10 `MediaUrl`s;
 * - WhatsApp: Twilio carries one media item per message, so the first call has the text (as the
 *   caption) and the first media, and each further media item goes in its own call.
 */
export function twilioMessageParams(message: OutboundMessage, o: TwilioSenderOptions): CreateParams[] {
  const channel = message.channel;
  if (channel !== 'sms' && channel !== 'whatsapp') {
    throw contentError('twilio', 'unsupported', `channel ${channel} is not carried by Twilio`);
  }
  const configuredFrom = channel === 'sms' ? o.smsFrom : o.whatsappFrom;
  const rawFrom = message.from ?? configuredFrom;
  if (rawFrom === undefined) {
    throw contentError('twilio', 'rejected', `no ${channel} sender number configured`);
  }
  const to = channel === 'whatsapp' ? withPrefix(message.to) : message.to;
  const from = channel === 'whatsapp' ? withPrefix(rawFrom) : rawFrom;
  const common = {
    to,
    from,
    ...(o.statusCallbackUrl !== undefined ? { statusCallback: o.statusCallbackUrl } : {}),
  };

  if (message.template) {
    const variables = message.template.variables;
    return [
      {
        ...common,
        contentSid: message.template.id,
        ...(variables && Object.keys(variables).length > 0
          ? { contentVariables: JSON.stringify(variables) }
          : {}),
      },
    ];
  }

  const text = message.text !== undefined && message.text.length > 0 ? message.text : undefined;
  const mediaUrls = (message.media ?? []).map((m) => m.url);
  if (text === undefined && mediaUrls.length === 0) {
    throw contentError('twilio', 'unsupported', 'nothing to send: no text, media or template');
  }
  if (channel === 'sms' || mediaUrls.length <= 1) {
    return [
      {
        ...common,
        ...(text !== undefined ? { body: text } : {}),
        ...(mediaUrls.length > 0 ? { mediaUrl: mediaUrls } : {}),
      },
    ];
  }
  const [first, ...rest] = mediaUrls;
  return [
    { ...common, ...(text !== undefined ? { body: text } : {}), mediaUrl: [first as string] },
    ...rest.map((url) => ({ ...common, mediaUrl: [url] })),
  ];
}

/** Narrows whatever the SDK threw into plain data; nothing of the request (auth header) is kept. */
function twilioFailureOf(err: unknown): ProviderFailure {
  const retryAfter = isRecord(err) ? headerValue(err.headers, 'retry-after') : undefined;
  const extra = retryAfter !== undefined ? { retryAfter } : {};
  if (isRecord(err) && err.isAxiosError === true) return { transport: transportKind(err) };
  // RestException (legacy `{code, message, more_info, status}`) or TwilioServiceException (RFC 9457).
  if (isRecord(err) && typeof err.status === 'number') {
    const code = typeof err.code === 'number' ? err.code : undefined;
    const text =
      typeof err.message === 'string' ? err.message : typeof err.detail === 'string' ? err.detail : undefined;
    return {
      status: err.status,
      ...(code !== undefined ? { code } : {}),
      ...(text !== undefined ? { message: text } : {}),
      ...extra,
    };
  }
  return { transport: 'network', ...(err instanceof Error ? { message: err.message } : {}) };
}

/** What the Messages list answers per message (the SDK's MessageInstance, the fields used here). */
interface ListedMessage {
  sid: string;
  body: string;
  numMedia: string;
  dateCreated: Date;
  direction: string;
}

/** Does a listed message look like the one `params` created at or after `since`? (pure) */
export function matchesSent(m: ListedMessage, params: CreateParams, since: number): boolean {
  // date_created has whole seconds only.
  if (m.dateCreated.getTime() < Math.floor(since / 1000) * 1000) return false;
  if (!m.direction.startsWith('outbound')) return false;
  if (params.contentSid !== undefined) return true;
  const media = Array.isArray(params.mediaUrl) ? params.mediaUrl.length : params.mediaUrl ? 1 : 0;
  return (m.body ?? '') === (params.body ?? '') && Number(m.numMedia || 0) === media;
}

/** A `ChannelSender` for SMS and WhatsApp through Twilio's Messages API. */
export function createTwilioSender(o: TwilioSenderOptions): ChannelSender {
  const httpClient = new RebasingRequestClient(o.apiBaseUrl, o.timeoutMs ?? 10_000);
  const client = new Twilio(o.accountSid, o.authToken, { httpClient, autoRetry: false });
  const secrets = [o.authToken, Buffer.from(`${o.accountSid}:${o.authToken}`).toString('base64')];
  const channels: readonly Channel[] = ['sms', 'whatsapp'];

  /** The sid of the message `params` created since `since`, if Twilio lists one; throws if it cannot tell. */
  async function lookUp(params: CreateParams, since: number): Promise<string | undefined> {
    await new Promise((resolve) => setTimeout(resolve, o.lookupDelayMs ?? 1_000));
    const listed = await client.messages.list({ to: params.to, from: params.from, limit: 20, pageSize: 20 });
    return listed.find((m) => matchesSent(m, params, since))?.sid;
  }

  /** After a lost answer: the listed message, else retryable; uncertain if the lookup fails too. */
  async function resolveLost(params: CreateParams, since: number, lost: OutboundError): Promise<string> {
    let sid: string | undefined;
    try {
      sid = await lookUp(params, since);
    } catch {
      throw lost;
    }
    if (sid !== undefined) return sid;
    // After a timeout our request may still be in flight at Twilio: not listed yet proves nothing.
    if (lost.cause instanceof ProviderResponseError && lost.cause.transport === 'timeout') throw lost;
    throw new OutboundError(
      "Twilio: no answer, and the message is not in the account's list, so it was not taken",
      'twilio',
      'unavailable',
      lost.providerCode,
      { cause: lost.cause },
    );
  }

  async function createOne(params: CreateParams): Promise<string> {
    const since = Date.now();
    try {
      const created = await client.messages.create(params);
      if (typeof created.sid !== 'string' || created.sid.length === 0) {
        throw contentError('twilio', 'rejected', 'Twilio answered without a message sid');
      }
      return created.sid;
    } catch (err) {
      if (err instanceof OutboundError) throw err;
      const failure = twilioFailureOf(err);
      const error = outboundErrorFrom('twilio', failure, classifyTwilioFailure(failure), secrets);
      if (error.reason === 'uncertain') return resolveLost(params, since, error);
      throw error;
    }
  }

  return {
    provider: 'twilio',
    channels,
    async send(message: OutboundMessage, progress?: SendProgress): Promise<SendResult> {
      return sendInParts('twilio', twilioMessageParams(message, o), progress, (params) => createOne(params));
    },
  };
}

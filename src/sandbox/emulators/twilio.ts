/**
 * A local emulator of the parts of Twilio's REST API Rapport uses, for pointing the real `twilio`
 * SDK at (`TWILIO_API_BASE_URL`) in tests and in sandbox mode. A real node:http server on
 * 127.0.0.1, answering in Twilio's wire format: form-encoded requests, HTTP Basic auth with
 * `sid:token`, Message resource JSON and error JSON `{code, message, more_info, status}`. It records every request and every accepted message,
 * and can be told to fail (`failNext`) or to treat a number as opted out (`optOut`).
 *
 * Routes: POST /2010-04-01/Accounts/{Sid}/Messages.json, GET …/Messages.json (To, From, PageSize;
 * newest first), GET …/Messages/{MessageSid}.json, GET /2010-04-01/Accounts/{Sid}.json, and inbound
 * media as Twilio serves a `MediaUrlN`: GET …/Messages/{MessageSid}/Media/{MediaSid} (Basic auth)
 * answers 307 to a pre-signed file-store URL (/s3/…, no auth), which serves the bytes.
 * `loseNext` processes a creation and then drops the connection unanswered (a lost answer).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basicAuth, FaultQueue, listenLocally, parseForm, readBody, sendFile, sendJson } from './http';
import { recordsOf, type EmulatorJournal, type JournalRecord } from './journal';
import { LostAnswers, loseAnswer } from './lost';

export interface TwilioRecordedRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Form fields; a field sent more than once (`MediaUrl`) is an array. */
  params: Record<string, string | string[]>;
  /** The Basic auth user name (the account SID), if any. */
  authUser?: string;
  headers: Record<string, string | string[] | undefined>;
}
export type RecordedRequest = TwilioRecordedRequest;

/** A message the emulator accepted (201), as Twilio stores it. */
export interface SentTwilioMessage {
  sid: string;
  accountSid: string;
  to: string;
  from: string;
  body?: string;
  mediaUrls: string[];
  contentSid?: string;
  contentVariables?: string;
  statusCallback?: string;
  status: 'queued';
  dateCreated: string;
  /** When the emulator accepted it (ms since the epoch); `dateCreated` has only seconds. */
  at: number;
}

export interface TwilioFailure {
  status: number;
  /** Twilio error code; defaults by status (401 → 20003, 429 → 20429, 5xx → 20500, else 21000s). */
  code?: number;
  message?: string;
  /** Sent as `Retry-After` (seconds). */
  retryAfterSec?: number;
}

export interface TwilioEmulator {
  /** Origin, e.g. `http://127.0.0.1:54321`; pass as `TWILIO_API_BASE_URL`. */
  url: string;
  requests: TwilioRecordedRequest[];
  messages(): SentTwilioMessage[];
  /**
   * The next `times` (default 1) message creations — only to `to`, if given, and after letting
   * `skip` (default 0) of them through — fail like this.
   */
  failNext(failure: TwilioFailure, opts?: { times?: number; to?: string; skip?: number }): void;
  /**
   * The next `times` (default 1) message creations — only to `to`, if given — are processed and
   * stored, then the connection is dropped without an answer (a lost answer).
   */
  loseNext(opts?: { times?: number; to?: string; skip?: number }): void;
  /** Sends to this number (with or without `whatsapp:`) fail with 21610, as after a STOP. */
  optOut(number: string): void;
  /** A file a customer sent: returns its `MediaUrl` (`…/Messages/{MM…}/Media/{ME…}`). */
  addMedia(data: Buffer, contentType: string): string;
  /** Forgets requests, messages, pending failures and opt-outs. */
  reset(): void;
  /** Takes back the messages a journal kept (before any request). */
  restore(records: readonly JournalRecord[]): void;
  close(): Promise<void>;
}

const API = '/2010-04-01';

function twilioError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
) {
  sendJson(
    res,
    status,
    { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status },
    headers,
  );
}

function defaultCode(status: number): number {
  if (status === 401) return 20003;
  if (status === 404) return 20404;
  if (status === 429) return 20429;
  if (status >= 500) return 20500;
  return 21000;
}

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);
const many = (v: string | string[] | undefined): string[] =>
  v === undefined ? [] : Array.isArray(v) ? v : [v];
const bare = (address: string) => address.replace(/^whatsapp:/, '');

export async function startTwilioEmulator(opts: {
  accountSid: string;
  authToken: string;
  /** Where accepted messages are written before the 201 (sandbox mode); none in tests. */
  journal?: EmulatorJournal;
}): Promise<TwilioEmulator> {
  const requests: TwilioRecordedRequest[] = [];
  let messages: SentTwilioMessage[] = [];
  const failures = new FaultQueue<TwilioFailure, string>();
  let optedOut = new Set<string>();
  const lost = new LostAnswers<string>();
  let media = new Map<string, { data: Buffer; contentType: string; key: string }>();
  let origin = '';

  /** The file store behind the redirect: pre-signed URLs, no auth (as S3 behind Twilio). */
  function serveStored(res: ServerResponse, key: string): void {
    const file = [...media.values()].find((m) => m.key === key);
    if (!file) return sendJson(res, 404, { message: 'NoSuchKey' });
    sendFile(res, file.data, file.contentType);
  }

  function messageJson(m: SentTwilioMessage) {
    return {
      account_sid: m.accountSid,
      api_version: '2010-04-01',
      body: m.body ?? '',
      date_created: m.dateCreated,
      date_sent: null,
      date_updated: m.dateCreated,
      direction: 'outbound-api',
      error_code: null,
      error_message: null,
      from: m.from,
      messaging_service_sid: null,
      num_media: String(m.mediaUrls.length),
      num_segments: '1',
      price: null,
      price_unit: 'USD',
      sid: m.sid,
      status: m.status,
      subresource_uris: { media: `${API}/Accounts/${m.accountSid}/Messages/${m.sid}/Media.json` },
      to: m.to,
      uri: `${API}/Accounts/${m.accountSid}/Messages/${m.sid}.json`,
    };
  }

  function takeFailure(to: string | undefined): TwilioFailure | undefined {
    return failures.take((m) => m === undefined || (to !== undefined && bare(m) === bare(to)));
  }

  async function createMessage(res: ServerResponse, params: Record<string, string | string[]>) {
    const to = one(params.To);
    if (lost.take((m) => m === undefined || (to !== undefined && bare(m) === bare(to)))) loseAnswer(res);
    const from = one(params.From);
    const body = one(params.Body);
    const mediaUrls = many(params.MediaUrl);
    const contentSid = one(params.ContentSid);
    if (to === undefined || to === '')
      return twilioError(res, 400, 21604, "A 'To' phone number is required.");
    if ((from === undefined || from === '') && one(params.MessagingServiceSid) === undefined)
      return twilioError(res, 400, 21603, "A 'From' phone number is required.");
    if ((body === undefined || body === '') && mediaUrls.length === 0 && contentSid === undefined)
      return twilioError(res, 400, 21602, 'Message body is required.');
    const injected = takeFailure(to);
    if (injected) {
      const status = injected.status;
      const code = injected.code ?? defaultCode(status);
      return twilioError(
        res,
        status,
        code,
        injected.message ?? `Emulated failure ${code}`,
        injected.retryAfterSec !== undefined ? { 'retry-after': String(injected.retryAfterSec) } : {},
      );
    }
    if (from !== undefined && to.startsWith('whatsapp:') !== from.startsWith('whatsapp:'))
      return twilioError(
        res,
        400,
        21910,
        'Invalid From and To pair. From and To should be of the same channel',
      );
    if (!/^\+[1-9]\d{1,14}$/.test(bare(to)))
      return twilioError(res, 400, 21211, `Invalid 'To' Phone Number: ${to}`);
    if (body !== undefined && body.length > 1600)
      return twilioError(res, 400, 21617, 'The concatenated message body exceeds the 1600 character limit.');
    if (optedOut.has(bare(to)))
      return twilioError(res, 400, 21610, 'Attempt to send to unsubscribed recipient');
    const message: SentTwilioMessage = {
      sid: 'SM' + randomBytes(16).toString('hex'),
      accountSid: opts.accountSid,
      to,
      from: from ?? '',
      ...(body !== undefined ? { body } : {}),
      mediaUrls,
      ...(contentSid !== undefined ? { contentSid } : {}),
      ...(one(params.ContentVariables) !== undefined
        ? { contentVariables: one(params.ContentVariables) }
        : {}),
      ...(one(params.StatusCallback) !== undefined ? { statusCallback: one(params.StatusCallback) } : {}),
      status: 'queued',
      dateCreated: new Date().toUTCString().replace('GMT', '+0000'),
      at: Date.now(),
    };
    messages.push(message);
    await opts.journal?.write('twilio.message', message.sid, message);
    sendJson(res, 201, messageJson(message));
  }

  /** GET Messages.json: newest first, filtered by `To`/`From`, one page of `PageSize` (≤ 1000). */
  function listMessages(res: ServerResponse, url: URL) {
    const to = url.searchParams.get('To');
    const from = url.searchParams.get('From');
    const size = Math.max(1, Math.min(1000, Number(url.searchParams.get('PageSize') ?? 50) || 50));
    const page = messages
      .filter((m) => (to === null || m.to === to) && (from === null || m.from === from))
      .reverse()
      .slice(0, size);
    const uri = `${API}/Accounts/${opts.accountSid}/Messages.json?PageSize=${size}&Page=0`;
    sendJson(res, 200, {
      messages: page.map(messageJson),
      end: Math.max(0, page.length - 1),
      first_page_uri: uri,
      next_page_uri: null,
      page: 0,
      page_size: size,
      previous_page_uri: null,
      start: 0,
      uri,
    });
  }

  const notFound = (res: ServerResponse, path: string) =>
    twilioError(res, 404, 20404, `The requested resource ${path} was not found`);

  /** Records the request and answers the file store, media and auth failures; the params otherwise. */
  async function intake(req: IncomingMessage, res: ServerResponse, url: URL) {
    const raw = (await readBody(req)).toString('utf8');
    const params = req.method === 'POST' ? parseForm(raw) : parseForm(url.search.slice(1));
    const auth = basicAuth(req.headers.authorization);
    requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      params,
      ...(auth ? { authUser: auth.user } : {}),
      headers: { ...req.headers },
    });
    const stored = /^\/s3\/([\w-]+)$/.exec(url.pathname);
    if (stored && req.method === 'GET') {
      serveStored(res, stored[1]!);
      return undefined;
    }
    if (!auth || auth.user !== opts.accountSid || auth.password !== opts.authToken) {
      twilioError(res, 401, 20003, 'Authenticate');
      return undefined;
    }
    const mediaRoute = new RegExp(`^${API}/Accounts/${opts.accountSid}/Messages/MM\\w+/Media/(ME\\w+)$`).exec(
      url.pathname,
    );
    if (mediaRoute && req.method === 'GET') {
      const file = media.get(mediaRoute[1]!);
      if (!file) notFound(res, url.pathname);
      else res.writeHead(307, { location: `${origin}/s3/${file.key}` }).end();
      return undefined;
    }
    return params;
  }

  function accountJson() {
    return {
      sid: opts.accountSid,
      owner_account_sid: opts.accountSid,
      friendly_name: 'Rapport emulated account',
      status: 'active',
      type: 'Full',
      date_created: 'Mon, 01 Jan 2024 00:00:00 +0000',
      date_updated: 'Mon, 01 Jan 2024 00:00:00 +0000',
      uri: `${API}/Accounts/${opts.accountSid}.json`,
      subresource_uris: { messages: `${API}/Accounts/${opts.accountSid}/Messages.json` },
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const params = await intake(req, res, url);
    if (!params) return;
    const route = new RegExp(`^${API}/Accounts/([^/]+?)(/Messages(?:/([^/]+?))?)?\\.json$`).exec(
      url.pathname,
    );
    if (!route || route[1] !== opts.accountSid) return notFound(res, url.pathname);
    const [, , messagesPart, messageSid] = route;
    const method = req.method;
    if (messagesPart === undefined && method === 'GET') return sendJson(res, 200, accountJson());
    if (messagesPart !== undefined && messageSid === undefined) {
      if (method === 'POST') return createMessage(res, params);
      if (method === 'GET') return listMessages(res, url);
    }
    if (messageSid !== undefined && method === 'GET') {
      const found = messages.find((m) => m.sid === messageSid);
      if (!found) return notFound(res, url.pathname);
      return sendJson(res, 200, messageJson(found));
    }
    return twilioError(res, 405, 20004, 'Method not allowed');
  }

  const server = await listenLocally(handle, (res, err) =>
    twilioError(res, 500, 20500, err instanceof Error ? err.message : 'emulator error'),
  );
  origin = server.origin;

  return {
    url: origin,
    addMedia(data, contentType) {
      const mediaSid = `ME${randomBytes(16).toString('hex')}`;
      const messageSid = `MM${randomBytes(16).toString('hex')}`;
      media.set(mediaSid, { data, contentType, key: randomBytes(16).toString('hex') });
      return `${origin}${API}/Accounts/${opts.accountSid}/Messages/${messageSid}/Media/${mediaSid}`;
    },
    requests,
    messages: () => [...messages],
    failNext(failure, o = {}) {
      failures.add(failure, o.times, o.to, o.skip);
    },
    loseNext(o = {}) {
      lost.add(o.times ?? 1, o.to, o.skip);
    },
    optOut(number) {
      optedOut.add(bare(number));
    },
    reset() {
      requests.length = 0;
      messages = [];
      failures.clear();
      lost.clear();
      optedOut = new Set();
      media = new Map();
    },
    restore(records) {
      messages.push(...recordsOf<SentTwilioMessage>(records, 'twilio.message'));
    },
    close: server.close,
  };
}

/**
 * A local emulator of the parts of Twilio's REST API Rapport uses, for pointing the real `twilio`
 * SDK at (`TWILIO_API_BASE_URL`) in tests and in sandbox mode. A real node:http server on
 * 127.0.0.1, answering in Twilio's wire format: form-encoded requests, HTTP Basic auth with
 * `sid:token`, Message resource JSON and error JSON `{code, message, more_info, status}`. It records every request and every accepted message,
 * and can be told to fail (`failNext`) or to treat a number as opted out (`optOut`).
 *
 * Routes: POST /2010-04-01/Accounts/{Sid}/Messages.json, GET …/Messages/{MessageSid}.json,
 * GET /2010-04-01/Accounts/{Sid}.json.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { recordsOf, type EmulatorJournal, type JournalRecord } from './journal';

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
  /** The next `times` (default 1) message creations — only to `to`, if given — fail like this. */
  failNext(failure: TwilioFailure, opts?: { times?: number; to?: string }): void;
  /** Sends to this number (with or without `whatsapp:`) fail with 21610, as after a STOP. */
  optOut(number: string): void;
  /** Forgets requests, messages, pending failures and opt-outs. */
  reset(): void;
  /** Takes back the messages a journal kept (before any request). */
  restore(records: readonly JournalRecord[]): void;
  close(): Promise<void>;
}

interface PendingFailure {
  failure: TwilioFailure;
  remaining: number;
  to?: string;
}

const API = '/2010-04-01';

function twilioError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
) {
  send(
    res,
    status,
    { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status },
    headers,
  );
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(text);
}

function defaultCode(status: number): number {
  if (status === 401) return 20003;
  if (status === 404) return 20404;
  if (status === 429) return 20429;
  if (status >= 500) return 20500;
  return 21000;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseForm(text: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of new URLSearchParams(text)) {
    const existing = out[name];
    out[name] =
      existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return out;
}

function basicAuth(header: string | undefined): { user: string; password: string } | undefined {
  const match = /^Basic\s+(.+)$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
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
  let failures: PendingFailure[] = [];
  let optedOut = new Set<string>();

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
    const index = failures.findIndex(
      (f) => f.to === undefined || (to !== undefined && bare(f.to) === bare(to)),
    );
    if (index < 0) return undefined;
    const pending = failures[index] as PendingFailure;
    pending.remaining -= 1;
    if (pending.remaining <= 0) failures.splice(index, 1);
    return pending.failure;
  }

  async function createMessage(res: ServerResponse, params: Record<string, string | string[]>) {
    const to = one(params.To);
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
    send(res, 201, messageJson(message));
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const raw = await readBody(req);
    const params = req.method === 'POST' ? parseForm(raw) : parseForm(url.search.slice(1));
    const auth = basicAuth(req.headers.authorization);
    requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      params,
      ...(auth ? { authUser: auth.user } : {}),
      headers: { ...req.headers },
    });

    if (!auth || auth.user !== opts.accountSid || auth.password !== opts.authToken) {
      return twilioError(res, 401, 20003, 'Authenticate');
    }
    const route = new RegExp(`^${API}/Accounts/([^/]+?)(/Messages(?:/([^/]+?))?)?\\.json$`).exec(
      url.pathname,
    );
    if (!route) return twilioError(res, 404, 20404, `The requested resource ${url.pathname} was not found`);
    const [, sid, messagesPart, messageSid] = route;
    if (sid !== opts.accountSid) {
      return twilioError(res, 404, 20404, `The requested resource ${url.pathname} was not found`);
    }
    if (messagesPart === undefined && req.method === 'GET') {
      return send(res, 200, {
        sid: opts.accountSid,
        owner_account_sid: opts.accountSid,
        friendly_name: 'Rapport emulated account',
        status: 'active',
        type: 'Full',
        date_created: 'Mon, 01 Jan 2024 00:00:00 +0000',
        date_updated: 'Mon, 01 Jan 2024 00:00:00 +0000',
        uri: `${API}/Accounts/${opts.accountSid}.json`,
        subresource_uris: { messages: `${API}/Accounts/${opts.accountSid}/Messages.json` },
      });
    }
    if (messagesPart !== undefined && messageSid === undefined && req.method === 'POST') {
      return createMessage(res, params);
    }
    if (messageSid !== undefined && req.method === 'GET') {
      const found = messages.find((m) => m.sid === messageSid);
      if (!found) return twilioError(res, 404, 20404, `The requested resource ${url.pathname} was not found`);
      return send(res, 200, messageJson(found));
    }
    return twilioError(res, 405, 20004, 'Method not allowed');
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent)
        twilioError(res, 500, 20500, err instanceof Error ? err.message : 'emulator error');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    messages: () => [...messages],
    failNext(failure, o = {}) {
      failures.push({ failure, remaining: o.times ?? 1, ...(o.to !== undefined ? { to: o.to } : {}) });
    },
    optOut(number) {
      optedOut.add(bare(number));
    },
    reset() {
      requests.length = 0;
      messages = [];
      failures = [];
      optedOut = new Set();
    },
    restore(records) {
      messages.push(...recordsOf<SentTwilioMessage>(records, 'twilio.message'));
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}

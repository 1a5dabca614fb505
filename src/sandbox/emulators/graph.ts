/**
 * A local emulator of the Meta Graph API endpoints Rapport uses, for pointing the WhatsApp Cloud
 * sender (fetch) and messaging-api-messenger at (`META_GRAPH_BASE_URL`) in tests and in sandbox
 * mode. A real node:http server on 127.0.0.1 answering in Graph's wire format: JSON bodies, errors
 * as `{error:{message, type, code, error_subcode?, error_data?, fbtrace_id}}`.
 *
 * Routes (`{version}` is any `vNN.N`):
 * - POST /{version}/{phoneNumberId}/messages — WhatsApp Cloud send; WhatsApp token (Bearer or
 *   `access_token`); answers `{messaging_product, contacts:[{input, wa_id}], messages:[{id}]}`.
 * - POST /{version}/me/messages and /{version}/{pageId}/messages — Messenger Send API; page token;
 *   answers `{recipient_id, message_id}`.
 * - GET /{version}/me — either token (for `doctor`).
 * - GET /{version}/{psid}?fields=first_name,last_name,… — Messenger user profile (page token).
 * A wrong or missing token answers 401 with code 190. `closeWindowFor` makes sends outside a
 * template (WhatsApp) or a message tag (Messenger) fail as Meta does after 24 hours.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { recordsOf, type EmulatorJournal, type JournalRecord } from './journal';

export interface GraphRecordedRequest {
  method: string;
  /** Path without the query string, e.g. `/v21.0/me/messages`. */
  path: string;
  /** Query parameters (Messenger's `access_token` and `appsecret_proof` included). */
  query: Record<string, string>;
  /** The parsed JSON body; undefined when there is none. */
  body: unknown;
  headers: Record<string, string | string[] | undefined>;
}
export type RecordedRequest = GraphRecordedRequest;

export interface WhatsAppCloudSent {
  id: string;
  /** `to` as sent (`+1415…`). */
  to: string;
  /** Its digits, as Meta reports the wa_id. */
  waId: string;
  type: string;
  /** The whole request body. */
  body: Record<string, unknown>;
  /** When the emulator accepted it (ms since the epoch). */
  at: number;
}

export interface MessengerSent {
  messageId: string;
  recipientId: string;
  messagingType: string;
  tag?: string;
  message: Record<string, unknown>;
  /** The whole request body. */
  body: Record<string, unknown>;
  /** When the emulator accepted it (ms since the epoch). */
  at: number;
}

export interface GraphFailure {
  status: number;
  /** Graph error code; defaults by status (401 → 190, 429 → 4, 5xx → 2, else 100). */
  code?: number;
  subcode?: number;
  message?: string;
  /** Sent as `Retry-After` (seconds). */
  retryAfterSec?: number;
}

export interface GraphProfile {
  first_name?: string;
  last_name?: string;
  profile_pic?: string;
}

export interface GraphEmulator {
  /** Origin, e.g. `http://127.0.0.1:54321`; pass as `META_GRAPH_BASE_URL`. */
  url: string;
  requests: GraphRecordedRequest[];
  whatsappMessages(): WhatsAppCloudSent[];
  messengerMessages(): MessengerSent[];
  /** The next `times` (default 1) POSTs — only those whose path matches `path`, if given — fail like this. */
  failNext(failure: GraphFailure, opts?: { times?: number; path?: RegExp }): void;
  /** Sends to this wa_id (digits, `+` optional) or PSID fail as outside the 24-hour window. */
  closeWindowFor(recipient: string): void;
  openWindowFor(recipient: string): void;
  /** The profile GET /{psid} answers; unknown PSIDs answer Graph's "does not exist" error. */
  setProfile(psid: string, profile: GraphProfile): void;
  /** Forgets requests, messages, failures, closed windows and profiles. */
  reset(): void;
  /** Takes back the messages and profiles a journal kept (before any request). */
  restore(records: readonly JournalRecord[]): void;
  close(): Promise<void>;
}

export interface GraphEmulatorOptions {
  whatsappToken: string;
  pageToken: string;
  phoneNumberId: string;
  /** @defaultValue `'100000000000001'` */
  pageId?: string;
  /** When set, a request carrying `appsecret_proof` must carry the right one (HMAC-SHA256 of the token). */
  appSecret?: string;
  /** Where sent messages and profiles are written before the answer (sandbox mode); none in tests. */
  journal?: EmulatorJournal;
}

interface PendingFailure {
  failure: GraphFailure;
  remaining: number;
  path?: RegExp;
}

type Json = Record<string, unknown>;

class GraphHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
    readonly extra: {
      subcode?: number;
      type?: string;
      errorData?: Json;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
  }
}

const isJson = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const digits = (s: string) => s.replace(/\D/g, '');
const traceId = () => randomBytes(9).toString('base64url');

function defaultCode(status: number): number {
  if (status === 401) return 190;
  if (status === 429) return 4;
  if (status >= 500) return 2;
  return 100;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', ...headers });
  res.end(JSON.stringify(body));
}

function sendError(res: ServerResponse, err: GraphHttpError) {
  sendJson(
    res,
    err.status,
    {
      error: {
        message: err.message,
        type: err.extra.type ?? 'OAuthException',
        code: err.code,
        ...(err.extra.subcode !== undefined ? { error_subcode: err.extra.subcode } : {}),
        ...(err.extra.errorData !== undefined ? { error_data: err.extra.errorData } : {}),
        fbtrace_id: traceId(),
      },
    },
    err.extra.headers,
  );
}

const invalid = (message: string) => new GraphHttpError(400, 100, `(#100) ${message}`);

const WA_MEDIA = ['image', 'video', 'audio', 'document', 'sticker'];

/** Checks a WhatsApp Cloud send body the way the Cloud API does (the parts Rapport uses). */
function validateWhatsApp(body: Json): { to: string; type: string } {
  if (body.messaging_product !== 'whatsapp') throw invalid('The parameter messaging_product is required.');
  const to = body.to;
  if (typeof to !== 'string' || digits(to).length === 0) throw invalid('The parameter to is required.');
  const type = typeof body.type === 'string' ? body.type : 'text';
  const object = body[type];
  if (!isJson(object)) throw invalid(`The parameter ${type} is required.`);
  if (type === 'text') {
    if (typeof object.body !== 'string' || object.body.length === 0)
      throw invalid("The parameter text['body'] is required.");
  } else if (WA_MEDIA.includes(type)) {
    if (typeof object.link !== 'string' && typeof object.id !== 'string')
      throw invalid(`Param ${type} must contain either link or id`);
    if (object.caption !== undefined && (type === 'audio' || type === 'sticker'))
      throw invalid(`Param ${type}['caption'] is not a valid parameter`);
    if (object.filename !== undefined && type !== 'document')
      throw invalid(`Param ${type}['filename'] is not a valid parameter`);
  } else if (type === 'template') {
    const language = object.language;
    if (typeof object.name !== 'string') throw invalid("The parameter template['name'] is required.");
    if (!isJson(language) || typeof language.code !== 'string')
      throw invalid("The parameter template['language']['code'] is required.");
  } else {
    throw invalid(`Unsupported message type ${type}`);
  }
  return { to, type };
}

const MESSAGING_TYPES = ['RESPONSE', 'UPDATE', 'MESSAGE_TAG'];
const TAGS = ['CONFIRMED_EVENT_UPDATE', 'POST_PURCHASE_UPDATE', 'ACCOUNT_UPDATE', 'HUMAN_AGENT'];

/** Checks a Messenger Send API body (the parts Rapport uses). */
function validateMessenger(body: Json): { psid: string; messagingType: string; tag?: string; message: Json } {
  const recipient = body.recipient;
  if (!isJson(recipient) || typeof recipient.id !== 'string')
    throw invalid('param recipient must be non-empty.');
  const messagingType = body.messaging_type;
  if (typeof messagingType !== 'string' || !MESSAGING_TYPES.includes(messagingType))
    throw invalid('param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}');
  const tag = typeof body.tag === 'string' ? body.tag : undefined;
  if (messagingType === 'MESSAGE_TAG' && (tag === undefined || !TAGS.includes(tag)))
    throw invalid('param tag must be a valid message tag when messaging_type is MESSAGE_TAG');
  const message = body.message;
  if (!isJson(message)) throw invalid('param message must be non-empty.');
  const hasText = typeof message.text === 'string' && message.text.length > 0;
  const attachment = message.attachment;
  if (!hasText && !isJson(attachment)) throw invalid('param message must contain text or attachment');
  if (isJson(attachment)) {
    const payload = attachment.payload;
    if (
      !['image', 'video', 'audio', 'file', 'template'].includes(String(attachment.type)) ||
      !isJson(payload)
    )
      throw invalid('param message[attachment] is invalid');
  }
  return { psid: recipient.id, messagingType, ...(tag !== undefined ? { tag } : {}), message };
}

export async function startGraphEmulator(opts: GraphEmulatorOptions): Promise<GraphEmulator> {
  const pageId = opts.pageId ?? '100000000000001';
  const requests: GraphRecordedRequest[] = [];
  let whatsapp: WhatsAppCloudSent[] = [];
  let messenger: MessengerSent[] = [];
  let failures: PendingFailure[] = [];
  let closedWindows = new Set<string>();
  let profiles = new Map<string, GraphProfile>();

  function tokenOf(req: IncomingMessage, query: Record<string, string>): string | undefined {
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    return bearer ? bearer[1] : query.access_token;
  }

  function requireToken(token: string | undefined, allowed: string[], query: Record<string, string>) {
    if (token === undefined)
      throw new GraphHttpError(
        401,
        190,
        'An active access token must be used to query information about the current user.',
      );
    if (!allowed.includes(token))
      throw new GraphHttpError(401, 190, 'Invalid OAuth access token - Cannot parse access token');
    const proof = query.appsecret_proof;
    if (proof !== undefined && opts.appSecret !== undefined) {
      const expected = createHmac('sha256', opts.appSecret).update(token, 'utf8').digest('hex');
      if (proof !== expected)
        throw new GraphHttpError(400, 100, 'Invalid appsecret_proof provided in the API argument', {
          type: 'GraphMethodException',
        });
    }
  }

  function takeFailure(path: string): GraphFailure | undefined {
    const index = failures.findIndex((f) => f.path === undefined || f.path.test(path));
    if (index < 0) return undefined;
    const pending = failures[index] as PendingFailure;
    pending.remaining -= 1;
    if (pending.remaining <= 0) failures.splice(index, 1);
    return pending.failure;
  }

  async function whatsappSend(res: ServerResponse, body: unknown) {
    if (!isJson(body)) throw invalid('The request body must be JSON.');
    const { to, type } = validateWhatsApp(body);
    const waId = digits(to);
    if (closedWindows.has(waId) && type !== 'template') {
      throw new GraphHttpError(400, 131047, 'Re-engagement message', {
        errorData: {
          messaging_product: 'whatsapp',
          details:
            'Message failed to send because more than 24 hours have passed since the customer last replied to this number.',
        },
      });
    }
    const id = 'wamid.' + Buffer.from(randomBytes(24)).toString('base64');
    const sent: WhatsAppCloudSent = { id, to, waId, type, body, at: Date.now() };
    whatsapp.push(sent);
    await opts.journal?.write('graph.whatsapp', id, sent);
    sendJson(res, 200, {
      messaging_product: 'whatsapp',
      contacts: [{ input: to, wa_id: waId }],
      messages: [{ id }],
    });
  }

  async function messengerSend(res: ServerResponse, body: unknown) {
    if (!isJson(body)) throw invalid('The request body must be JSON.');
    const { psid, messagingType, tag, message } = validateMessenger(body);
    if (closedWindows.has(psid) && messagingType !== 'MESSAGE_TAG') {
      throw new GraphHttpError(
        400,
        10,
        '(#10) This message is sent outside of allowed window. Learn more about the new policy here: https://developers.facebook.com/docs/messenger-platform/policy-overview',
        { subcode: 2018278 },
      );
    }
    const messageId = 'm_' + randomBytes(30).toString('base64url');
    const sent: MessengerSent = {
      messageId,
      recipientId: psid,
      messagingType,
      ...(tag !== undefined ? { tag } : {}),
      message,
      body,
      at: Date.now(),
    };
    messenger.push(sent);
    await opts.journal?.write('graph.messenger', messageId, sent);
    sendJson(res, 200, { recipient_id: psid, message_id: messageId });
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const query = Object.fromEntries(url.searchParams);
    const raw = await readBody(req);
    let body: unknown;
    let malformed = false;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        malformed = true;
      }
    }
    requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      query,
      body,
      headers: { ...req.headers },
    });

    const route = /^\/(v\d+\.\d+)\/([^/]+)(\/messages)?\/?$/.exec(url.pathname);
    if (!route) throw new GraphHttpError(400, 2500, 'Unknown path components: ' + url.pathname);
    const [, , node, edge] = route as unknown as [string, string, string, string | undefined];
    const token = tokenOf(req, query);
    const method = req.method ?? 'GET';

    if (method === 'POST' && edge !== undefined) {
      const isWhatsApp = node === opts.phoneNumberId;
      const isMessenger = node === 'me' || node === pageId;
      if (!isWhatsApp && !isMessenger)
        throw new GraphHttpError(
          400,
          100,
          `Unsupported post request. Object with ID '${node}' does not exist.`,
          {
            subcode: 33,
            type: 'GraphMethodException',
          },
        );
      requireToken(token, [isWhatsApp ? opts.whatsappToken : opts.pageToken], query);
      if (malformed) throw invalid('The request body is not valid JSON.');
      const injected = takeFailure(url.pathname);
      if (injected) {
        throw new GraphHttpError(
          injected.status,
          injected.code ?? defaultCode(injected.status),
          injected.message ?? `Emulated failure ${injected.code ?? defaultCode(injected.status)}`,
          {
            ...(injected.subcode !== undefined ? { subcode: injected.subcode } : {}),
            ...(injected.retryAfterSec !== undefined
              ? { headers: { 'retry-after': String(injected.retryAfterSec) } }
              : {}),
          },
        );
      }
      return isWhatsApp ? whatsappSend(res, body) : messengerSend(res, body);
    }

    if (method === 'GET' && edge === undefined) {
      if (node === 'me') {
        requireToken(token, [opts.whatsappToken, opts.pageToken], query);
        return sendJson(
          res,
          200,
          token === opts.pageToken
            ? { id: pageId, name: 'Rapport Test Page' }
            : { id: '100000000000099', name: 'Rapport System User' },
        );
      }
      requireToken(token, [opts.pageToken], query);
      const profile = profiles.get(node);
      if (!profile)
        throw new GraphHttpError(
          400,
          100,
          `Unsupported get request. Object with ID '${node}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.`,
          {
            subcode: 33,
            type: 'GraphMethodException',
          },
        );
      const fields = (query.fields ?? 'first_name,last_name').split(',').map((f) => f.trim());
      const answer: Json = { id: node };
      for (const field of fields) {
        const value = profile[field as keyof GraphProfile];
        if (value !== undefined) answer[field] = value;
      }
      return sendJson(res, 200, answer);
    }
    throw new GraphHttpError(400, 100, `Unsupported ${method.toLowerCase()} request.`, {
      type: 'GraphMethodException',
    });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) return;
      if (err instanceof GraphHttpError) return sendError(res, err);
      sendError(
        res,
        new GraphHttpError(500, 1, err instanceof Error ? err.message : 'An unknown error occurred'),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    whatsappMessages: () => [...whatsapp],
    messengerMessages: () => [...messenger],
    failNext(failure, o = {}) {
      failures.push({ failure, remaining: o.times ?? 1, ...(o.path !== undefined ? { path: o.path } : {}) });
    },
    closeWindowFor(recipient) {
      closedWindows.add(recipient.replace(/^\+/, ''));
    },
    openWindowFor(recipient) {
      closedWindows.delete(recipient.replace(/^\+/, ''));
    },
    setProfile(psid, profile) {
      profiles.set(psid, profile);
      void opts.journal?.write('graph.profile', psid, { psid, profile });
    },
    restore(records) {
      whatsapp.push(...recordsOf<WhatsAppCloudSent>(records, 'graph.whatsapp'));
      messenger.push(...recordsOf<MessengerSent>(records, 'graph.messenger'));
      for (const p of recordsOf<{ psid: string; profile: GraphProfile }>(records, 'graph.profile'))
        profiles.set(p.psid, p.profile);
    },
    reset() {
      requests.length = 0;
      whatsapp = [];
      messenger = [];
      failures = [];
      closedWindows = new Set();
      profiles = new Map();
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}

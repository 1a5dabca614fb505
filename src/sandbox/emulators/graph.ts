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
 * - GET /{version}/{media-id} — WhatsApp Cloud media lookup (WhatsApp token); answers
 *   `{messaging_product, url, mime_type, sha256, file_size, id}`. The `url` (here
 *   /whatsapp_business/attachments/?mid=…&ext=…) needs the same token and expires (404 after).
 * - POST /{version}/{phoneNumberId}/media — WhatsApp Cloud media upload (multipart `file`,
 *   `type`, `messaging_product`); answers `{id}`, which a send may then use as `image.id`, ….
 * - GET /messenger-cdn/{id} — a Messenger attachment's `payload.url` (no token, like Meta's CDN).
 * A wrong or missing token answers 401 with code 190. `closeWindowFor` makes sends outside a
 * template (WhatsApp) or a message tag (Messenger) fail as Meta does after 24 hours.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { bearerToken, FaultQueue, listenLocally, readBody, sendFile, sendJson } from './http';
import { recordsOf, type EmulatorJournal, type JournalRecord } from './journal';
import { LostAnswers, loseAnswer } from './lost';

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
  /**
   * The next `times` (default 1) POSTs — only those whose path matches `path`, if given, and after
   * letting `skip` (default 0) of them through — fail like this.
   */
  failNext(failure: GraphFailure, opts?: { times?: number; path?: RegExp; skip?: number }): void;
  /**
   * The next `times` (default 1) POSTs — only those whose path matches `path`, if given — are
   * processed and stored, then the connection is dropped without an answer (a lost answer).
   */
  loseNext(opts?: { times?: number; path?: RegExp; skip?: number }): void;
  /** Sends to this wa_id (digits, `+` optional) or PSID fail as outside the 24-hour window. */
  closeWindowFor(recipient: string): void;
  openWindowFor(recipient: string): void;
  /** The profile GET /{psid} answers; unknown PSIDs answer Graph's "does not exist" error. */
  setProfile(psid: string, profile: GraphProfile): void;
  /** A file a WhatsApp customer sent: returns its media id (the webhook's `image.id`, …). */
  addWhatsAppMedia(data: Buffer, mimeType: string, opts?: { id?: string }): string;
  /** A Messenger attachment: returns its `payload.url`. */
  addMessengerAttachment(data: Buffer, mimeType: string): string;
  /** The next `times` media URLs handed out are already expired when fetched. */
  expireNextMediaUrls(times?: number): void;
  /** Files uploaded to /{phoneNumberId}/media, by the id the upload answered. */
  uploadedMedia(id: string): { data: Buffer; mimeType: string; type?: string } | undefined;
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

interface EmulatedMedia {
  data: Buffer;
  mimeType: string;
  type?: string;
}

/** How long a WhatsApp media URL lives (Meta: about five minutes). */
const MEDIA_URL_TTL_MS = 5 * 60_000;

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

function tokenOf(req: IncomingMessage, query: Record<string, string>): string | undefined {
  return bearerToken(req) ?? query.access_token;
}

/** Throws Graph's answer to a missing or wrong token, or a wrong `appsecret_proof` (when checked). */
function requireToken(
  token: string | undefined,
  allowed: string[],
  query: Record<string, string>,
  appSecret: string | undefined,
) {
  if (token === undefined)
    throw new GraphHttpError(
      401,
      190,
      'An active access token must be used to query information about the current user.',
    );
  if (!allowed.includes(token))
    throw new GraphHttpError(401, 190, 'Invalid OAuth access token - Cannot parse access token');
  const proof = query.appsecret_proof;
  if (proof !== undefined && appSecret !== undefined) {
    const expected = createHmac('sha256', appSecret).update(token, 'utf8').digest('hex');
    if (proof !== expected)
      throw new GraphHttpError(400, 100, 'Invalid appsecret_proof provided in the API argument', {
        type: 'GraphMethodException',
      });
  }
}

/** The error a failure injected with `failNext` answers. */
function injectedError(failure: GraphFailure): GraphHttpError {
  const code = failure.code ?? defaultCode(failure.status);
  return new GraphHttpError(failure.status, code, failure.message ?? `Emulated failure ${code}`, {
    ...(failure.subcode !== undefined ? { subcode: failure.subcode } : {}),
    ...(failure.retryAfterSec !== undefined
      ? { headers: { 'retry-after': String(failure.retryAfterSec) } }
      : {}),
  });
}

const noSuchObject = (kind: 'post' | 'get', node: string, detail: string) =>
  new GraphHttpError(
    400,
    100,
    `Unsupported ${kind} request. Object with ID '${node}' does not exist${detail}.`,
    {
      subcode: 33,
      type: 'GraphMethodException',
    },
  );

/** GET /{psid}: the profile's asked-for `fields`. */
function profileAnswer(node: string, profile: GraphProfile | undefined, query: Record<string, string>): Json {
  if (!profile)
    throw noSuchObject(
      'get',
      node,
      ', cannot be loaded due to missing permissions, or does not support this operation',
    );
  const fields = (query.fields ?? 'first_name,last_name').split(',').map((f) => f.trim());
  const answer: Json = { id: node };
  for (const field of fields) {
    const value = profile[field as keyof GraphProfile];
    if (value !== undefined) answer[field] = value;
  }
  return answer;
}

/** The request as the emulator records it; `malformed` when a JSON body does not parse. */
function recordOf(
  req: IncomingMessage,
  url: URL,
  raw: Buffer,
): GraphRecordedRequest & { malformed: boolean } {
  let body: unknown;
  let malformed = false;
  const isMultipart = (req.headers['content-type'] ?? '').startsWith('multipart/form-data');
  if (raw.length > 0 && !isMultipart) {
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      malformed = true;
    }
  }
  const query = Object.fromEntries(url.searchParams);
  return {
    method: req.method ?? 'GET',
    path: url.pathname,
    query,
    body,
    headers: { ...req.headers },
    malformed,
  };
}

export async function startGraphEmulator(opts: GraphEmulatorOptions): Promise<GraphEmulator> {
  const pageId = opts.pageId ?? '100000000000001';
  const requests: GraphRecordedRequest[] = [];
  let whatsapp: WhatsAppCloudSent[] = [];
  let messenger: MessengerSent[] = [];
  const failures = new FaultQueue<GraphFailure, RegExp>();
  let closedWindows = new Set<string>();
  let profiles = new Map<string, GraphProfile>();
  const lost = new LostAnswers<RegExp>();
  let media = new Map<string, EmulatedMedia>();
  let cdn = new Map<string, EmulatedMedia>();
  let expireUrls = 0;
  let origin = '';

  const takeFailure = (path: string) => failures.take((m) => m === undefined || m.test(path));
  const checkToken = (token: string | undefined, allowed: string[], query: Record<string, string>) =>
    requireToken(token, allowed, query, opts.appSecret);

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

  function mediaLookup(res: ServerResponse, id: string, file: EmulatedMedia) {
    const expiresAt = expireUrls > 0 ? (expireUrls--, Date.now() - 1_000) : Date.now() + MEDIA_URL_TTL_MS;
    const sha256 = createHash('sha256').update(file.data).digest('hex');
    sendJson(res, 200, {
      messaging_product: 'whatsapp',
      url: `${origin}/whatsapp_business/attachments/?mid=${id}&ext=${Math.floor(expiresAt / 1000)}&hash=${sha256.slice(0, 16)}`,
      mime_type: file.mimeType,
      sha256,
      file_size: file.data.length,
      id,
    });
  }

  const serveFile = (res: ServerResponse, file: EmulatedMedia) => sendFile(res, file.data, file.mimeType);

  /** The CDN side: attachments (token, expiry) and Messenger files (open). */
  function serveDownload(req: IncomingMessage, res: ServerResponse, url: URL): boolean {
    if (url.pathname === '/whatsapp_business/attachments/') {
      checkToken(tokenOf(req, {}), [opts.whatsappToken], {});
      const file = media.get(url.searchParams.get('mid') ?? '');
      const ext = Number(url.searchParams.get('ext'));
      if (!file || !(ext * 1000 > Date.now())) throw new GraphHttpError(404, 100, 'URL expired or not found');
      serveFile(res, file);
      return true;
    }
    const messengerFile = /^\/messenger-cdn\/([\w-]+)$/.exec(url.pathname);
    if (messengerFile) {
      const file = cdn.get(messengerFile[1]!);
      if (!file) throw new GraphHttpError(404, 100, 'Not found');
      serveFile(res, file);
      return true;
    }
    return false;
  }

  async function mediaUpload(req: IncomingMessage, res: ServerResponse, raw: Buffer) {
    const form = await new Response(raw, {
      headers: { 'content-type': req.headers['content-type'] ?? '' },
    })
      .formData()
      .catch(() => undefined);
    const file = form?.get('file');
    if (!form || form.get('messaging_product') !== 'whatsapp' || !file || typeof file === 'string')
      throw invalid('The parameter file is required.');
    const id = String(Math.floor(1e15 + Math.random() * 8e15));
    const type = form.get('type');
    media.set(id, {
      data: Buffer.from(await file.arrayBuffer()),
      mimeType: file.type || 'application/octet-stream',
      ...(typeof type === 'string' ? { type } : {}),
    });
    sendJson(res, 200, { id });
  }

  /** POST /{node}/messages or /{node}/media: a WhatsApp Cloud or Messenger send, or a media upload. */
  function post(
    req: IncomingMessage,
    res: ServerResponse,
    r: GraphRecordedRequest & { malformed: boolean },
    raw: Buffer,
    node: string,
    edge: string,
  ) {
    const isWhatsApp = node === opts.phoneNumberId;
    if (!isWhatsApp && node !== 'me' && node !== pageId) throw noSuchObject('post', node, '');
    checkToken(tokenOf(req, r.query), [isWhatsApp ? opts.whatsappToken : opts.pageToken], r.query);
    if (r.malformed) throw invalid('The request body is not valid JSON.');
    if (lost.take((m) => m === undefined || m.test(r.path))) loseAnswer(res);
    const injected = takeFailure(r.path);
    if (injected) throw injectedError(injected);
    if (edge === '/media') {
      if (!isWhatsApp) throw invalid('Media upload is for WhatsApp phone numbers.');
      return mediaUpload(req, res, raw);
    }
    return isWhatsApp ? whatsappSend(res, r.body) : messengerSend(res, r.body);
  }

  /** GET /{node}: a media lookup, `me`, or a Messenger profile. */
  function get(req: IncomingMessage, res: ServerResponse, r: GraphRecordedRequest, node: string) {
    const token = tokenOf(req, r.query);
    const file = media.get(node);
    if (file) {
      checkToken(token, [opts.whatsappToken], r.query);
      const injected = takeFailure(r.path);
      if (injected)
        throw new GraphHttpError(
          injected.status,
          injected.code ?? defaultCode(injected.status),
          'Emulated failure',
        );
      return mediaLookup(res, node, file);
    }
    if (node === 'me') {
      checkToken(token, [opts.whatsappToken, opts.pageToken], r.query);
      const me =
        token === opts.pageToken
          ? { id: pageId, name: 'Rapport Test Page' }
          : { id: '100000000000099', name: 'Rapport System User' };
      return sendJson(res, 200, me);
    }
    checkToken(token, [opts.pageToken], r.query);
    return sendJson(res, 200, profileAnswer(node, profiles.get(node), r.query));
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const raw = await readBody(req);
    const record = recordOf(req, url, raw);
    const { malformed: _malformed, ...recorded } = record;
    requests.push(recorded);
    if (req.method === 'GET' && serveDownload(req, res, url)) return;
    const route = /^\/(v\d+\.\d+)\/([^/]+)(\/messages|\/media)?\/?$/.exec(url.pathname);
    if (!route) throw new GraphHttpError(400, 2500, 'Unknown path components: ' + url.pathname);
    const [, , node, edge] = route as unknown as [string, string, string, string | undefined];
    const method = req.method ?? 'GET';
    if (method === 'POST' && edge !== undefined) return post(req, res, record, raw, node, edge);
    if (method === 'GET' && edge === undefined) return get(req, res, record, node);
    throw new GraphHttpError(400, 100, `Unsupported ${method.toLowerCase()} request.`, {
      type: 'GraphMethodException',
    });
  }

  const server = await listenLocally(handle, (res, err) =>
    sendError(
      res,
      err instanceof GraphHttpError
        ? err
        : new GraphHttpError(500, 1, err instanceof Error ? err.message : 'An unknown error occurred'),
    ),
  );
  origin = server.origin;

  return {
    url: origin,
    addWhatsAppMedia(data, mimeType, o = {}) {
      const id = o.id ?? String(Math.floor(1e15 + Math.random() * 8e15));
      media.set(id, { data, mimeType });
      return id;
    },
    addMessengerAttachment(data, mimeType) {
      const id = randomBytes(12).toString('hex');
      cdn.set(id, { data, mimeType });
      return `${origin}/messenger-cdn/${id}`;
    },
    expireNextMediaUrls(times = 1) {
      expireUrls += times;
    },
    uploadedMedia: (id) => media.get(id),
    requests,
    whatsappMessages: () => [...whatsapp],
    messengerMessages: () => [...messenger],
    failNext(failure, o = {}) {
      failures.add(failure, o.times, o.path, o.skip);
    },
    loseNext(o = {}) {
      lost.add(o.times ?? 1, o.path, o.skip);
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
      failures.clear();
      lost.clear();
      closedWindows = new Set();
      profiles = new Map();
      media = new Map();
      cdn = new Map();
      expireUrls = 0;
    },
    close: server.close,
  };
}

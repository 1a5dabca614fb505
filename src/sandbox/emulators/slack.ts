/**
 * A local Slack Web API for tests and sandbox mode: a real HTTP server on 127.0.0.1 that answers
 * the methods Rapport calls with Slack's documented response shapes, keeps channels, threads,
 * reactions and files in memory, records every call, and fails on demand (429 with Retry-After,
 * HTTP 500, or any `ok:false` error). Point the real `@slack/web-api` WebClient at `url` (SLACK_API_URL).
 *
 * Like Slack: arguments arrive form-encoded (what WebClient sends), as JSON, or in the query string;
 * the token as `Authorization: Bearer` or a `token` argument; errors are HTTP 200 with
 * `{ ok: false, error }`; only rate limits (429) and outages (5xx) use other statuses.
 * https://docs.slack.dev/reference/methods
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { bearerToken, listenLocally, readBody, sendFile, sendJson } from './http';
import type { EmulatorJournal, JournalRecord } from './journal';
import { loseAnswer } from './lost';
import { slackMethods } from './slack-methods';
import {
  fileObject,
  isRecord,
  SlackMethodError,
  SlackWorkspace,
  str,
  type EmulatedFile,
  type EmulatedMessage,
  type PostingLimit,
  type SlackFailure,
} from './slack-workspace';

export type { EmulatedFile, EmulatedMessage, PostingLimit, SlackFailure } from './slack-workspace';

export interface SlackCall {
  method: string;
  /** Arguments as received; JSON-valued ones (`blocks`, `metadata`, `files`, …) parsed. */
  args: Record<string, unknown>;
  at: number;
  token?: string;
  /** Refused with 429 by the per-channel posting limit (`limitPosting`); nothing was posted. */
  rateLimited?: boolean;
}

export interface SlackEmulator {
  /** e.g. `http://127.0.0.1:PORT/api/`; pass as SLACK_API_URL. */
  url: string;
  /** The one valid bot token. */
  token: string;
  botUserId: string;
  botId: string;
  teamId: string;
  calls: SlackCall[];
  callsTo(method: string): SlackCall[];
  /** Messages currently in a channel (after updates and deletes), oldest first. */
  messages(channel: string): EmulatedMessage[];
  /** The parent and its replies, in order. */
  thread(channel: string, threadTs: string): EmulatedMessage[];
  /**
   * The next `times` (default 1) calls to `method` (only those for `channel`, if given) fail.
   * `url_private_download` stands for file downloads: a `status` failure answers that status.
   */
  failNext(method: string, failure: SlackFailure, opts?: { times?: number; channel?: string }): void;
  /** A person writes in the channel (or a thread), as if from the Slack app; returns the stored message. */
  postAsUser(channel: string, message: { user: string; text: string; threadTs?: string }): EmulatedMessage;
  /** A person edits their own message, as in the Slack app; returns it as it was before, if found. */
  editAsUser(channel: string, ts: string, text: string): EmulatedMessage | undefined;
  /** A person deletes their own message, as in the Slack app; returns what was deleted, if found. */
  deleteAsUser(channel: string, ts: string): EmulatedMessage | undefined;
  /** A person shares a file (with optional text) in the channel or a thread, as from the Slack app. */
  uploadAsUser(
    channel: string,
    message: {
      user: string;
      text: string;
      threadTs?: string;
      file: { name: string; mimetype: string; data: Buffer };
    },
  ): EmulatedMessage;
  /** users.info answers with these details for `id` (any other `U…`/`W…` id gets made-up ones). */
  addUser(user: { id: string; name?: string; realName?: string; tz?: string }): void;
  /** The bytes uploaded for a file id, once its upload URL received them. */
  fileContent(fileId: string): Buffer | undefined;
  /** Enforce Slack's per-channel chat.postMessage rate (429 + Retry-After), or stop enforcing it. */
  limitPosting(limit: PostingLimit | undefined): void;
  /** Every Web API call is answered `ms` later (a slow Slack, for benchmarks); 0: at once. */
  delayAnswers(ms: number): void;
  /** Forgets calls, messages, files, users and pending failures; keeps token and ids. */
  reset(): void;
  /** Resolves once every message and user changed so far is in the journal (if there is one). */
  persisted(): Promise<void>;
  /** Takes back messages and users a journal kept (before any call); later `ts` values sort after them. */
  restore(records: readonly JournalRecord[]): void;
  close(): Promise<void>;
}

/** Fields WebClient JSON-encodes into a form field; parsed back so tests can assert on them. */
const JSON_FIELDS = new Set(['blocks', 'attachments', 'metadata', 'files']);

function parseJsonFields(args: Record<string, unknown>): Record<string, unknown> {
  for (const key of JSON_FIELDS) {
    const value = args[key];
    if (typeof value !== 'string') continue;
    try {
      args[key] = JSON.parse(value);
    } catch {
      throw new SlackMethodError(`invalid_${key === 'files' ? 'arguments' : key}`);
    }
  }
  return args;
}

function argsOf(req: IncomingMessage, url: URL, body: Buffer): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  for (const [k, v] of url.searchParams) args[k] = v;
  const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (body.length === 0) return args;
  if (contentType === 'application/json') {
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      throw new SlackMethodError('invalid_json');
    }
    if (!isRecord(json)) throw new SlackMethodError('invalid_json');
    return Object.assign(args, json);
  }
  for (const [k, v] of new URLSearchParams(body.toString('utf8'))) args[k] = v;
  return args;
}

/** WebClient posts the bytes as multipart (`body` field); curl-style clients post them raw. */
async function uploadedBytes(req: IncomingMessage, body: Buffer): Promise<Buffer> {
  const contentType = req.headers['content-type'] ?? '';
  if (!contentType.toLowerCase().startsWith('multipart/form-data')) return body;
  const form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
  for (const [, value] of form) {
    if (typeof value !== 'string') return Buffer.from(await value.arrayBuffer());
  }
  throw new SlackMethodError('invalid_upload');
}

export interface SlackEmulatorOptions {
  /** @defaultValue `'xoxb-test-token'` */
  token?: string;
  /** Where messages and users are written before the emulator answers (sandbox mode); none in tests. */
  journal?: EmulatorJournal;
}

export async function startSlackEmulator(opts: SlackEmulatorOptions = {}): Promise<SlackEmulator> {
  const token = opts.token ?? 'xoxb-test-token';
  const ws = new SlackWorkspace(opts.journal);
  const methods = slackMethods(ws);
  const calls: SlackCall[] = [];
  let answerDelayMs = 0;

  /** GET url_private(_download): the bytes with the bot token, Slack's sign-in page without. */
  function handleFileDownload(req: IncomingMessage, res: ServerResponse, fileId: string): void {
    const file = ws.files.get(fileId);
    if (bearerToken(req) !== token) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>');
      return;
    }
    const failure = ws.takeFailure('url_private_download', {});
    if (failure && 'status' in failure) return sendJson(res, failure.status, 'Internal Server Error');
    if (!file?.data) return sendJson(res, 404, 'Not Found');
    sendFile(res, file.data, file.mimetype);
  }

  async function handleUpload(req: IncomingMessage, res: ServerResponse, fileId: string): Promise<void> {
    const file = ws.files.get(fileId);
    const body = await readBody(req);
    if (!file || req.method !== 'POST') return sendJson(res, 404, 'Not Found');
    file.data = await uploadedBytes(req, body);
    file.size = file.data.length;
    sendJson(res, 200, `OK - ${file.data.length}`);
  }

  type Refusal = { status: number; body: Record<string, unknown>; headers?: Record<string, string> };
  const ratelimited = (retryAfterSec: number): Refusal => ({
    status: 429,
    body: { ok: false, error: 'ratelimited' },
    headers: { 'retry-after': String(retryAfterSec) },
  });

  /**
   * How the call is answered instead of carried out (a posting limit, a pending failure, a bad
   * token), or whether it is carried out and then answered 500 (`after`).
   */
  function refusal(res: ServerResponse, method: string, args: Record<string, unknown>, presented?: string) {
    const wait = ws.postingWait(method, args);
    calls.push({
      method,
      args,
      at: Date.now(),
      ...(presented ? { token: presented } : {}),
      ...(wait ? { rateLimited: true } : {}),
    });
    if (wait) return ratelimited(wait);
    const failure = ws.takeFailure(method, args);
    if (failure && 'lost' in failure) loseAnswer(res);
    if (failure && 'retryAfterSec' in failure) return ratelimited(failure.retryAfterSec);
    const after = failure !== undefined && 'after' in failure && failure.after === true;
    if (failure && 'status' in failure && !after)
      return { status: failure.status, body: { ok: false, error: 'internal_error' } };
    if (failure && 'error' in failure) return { status: 200, body: { ok: false, error: failure.error } };
    if (!presented) return { status: 200, body: { ok: false, error: 'not_authed' } };
    if (presented !== token) return { status: 200, body: { ok: false, error: 'invalid_auth' } };
    return after ? 'after' : undefined;
  }

  async function handleApi(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    method: string,
  ): Promise<void> {
    const body = await readBody(req);
    if (answerDelayMs > 0) await new Promise((r) => setTimeout(r, answerDelayMs));
    let args: Record<string, unknown>;
    try {
      args = parseJsonFields(argsOf(req, url, body));
    } catch (err) {
      const error = err instanceof SlackMethodError ? err.error : 'invalid_form_data';
      return sendJson(res, 200, { ok: false, error });
    }
    const presented = bearerToken(req) ?? str(args, 'token');
    delete args.token;
    const refused = refusal(res, method, args, presented);
    if (typeof refused === 'object') return sendJson(res, refused.status, refused.body, refused.headers);
    const handler = methods[method];
    if (!handler) return sendJson(res, 200, { ok: false, error: 'unknown_method', req_method: method });
    let answer: Record<string, unknown>;
    try {
      answer = handler(args);
    } catch (err) {
      if (err instanceof SlackMethodError) return sendJson(res, 200, { ok: false, error: err.error });
      throw err;
    }
    await ws.persist();
    if (refused === 'after') return sendJson(res, 500, { ok: false, error: 'internal_error' });
    return sendJson(res, 200, { ok: true, ...answer });
  }

  function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const api = /^\/api\/([A-Za-z0-9_.]+)$/.exec(url.pathname);
    const upload = /^\/upload\/v1\/([A-Z0-9]+)$/.exec(url.pathname);
    const download = /^\/files-pri\/[A-Z0-9]+-([A-Z0-9]+)\//.exec(url.pathname);
    if (api?.[1]) return handleApi(req, res, url, api[1]);
    if (upload?.[1]) return handleUpload(req, res, upload[1]);
    if (download?.[1] && req.method === 'GET') handleFileDownload(req, res, download[1]);
    else sendJson(res, 404, 'Not Found');
    return Promise.resolve();
  }

  /** A person's message, as if from the Slack app. */
  const storeAsUser = (
    channel: string,
    m: { user: string; text: string; threadTs?: string },
    files?: EmulatedFile[],
  ) =>
    ws.store({
      channel,
      ts: ws.nextTs(),
      user: m.user,
      text: m.text,
      ...(m.threadTs ? { thread_ts: m.threadTs } : {}),
      ...(files ? { files } : {}),
    });

  const server = await listenLocally(handle, (res, err) =>
    sendJson(res, 500, { ok: false, error: 'emulator_error', detail: String(err) }),
  );
  ws.baseUrl = `${server.origin}/`;

  return {
    url: `${ws.baseUrl}api/`,
    token,
    botUserId: ws.botUserId,
    botId: ws.botId,
    teamId: ws.teamId,
    calls,
    callsTo: (method) => calls.filter((c) => c.method === method),
    messages: (channel) => [...(ws.channels.get(channel) ?? [])],
    thread: (channel, threadTs) => ws.threadOf(channel, threadTs),
    failNext(method, failure, options = {}) {
      ws.failures.add(failure, options.times, {
        method,
        ...(options.channel ? { channel: options.channel } : {}),
      });
    },
    postAsUser: (channel, message) => storeAsUser(channel, message),
    editAsUser(channel, ts, text) {
      const message = ws.find(channel, ts);
      if (!message || message.bot_id) return undefined;
      const before = { ...message };
      message.text = text;
      message.edited = { user: message.user, ts: ws.nextTs() };
      ws.touched.add(message);
      return before;
    },
    deleteAsUser(channel, ts) {
      const list = ws.channels.get(channel) ?? [];
      const index = list.findIndex((m) => m.ts === ts && !m.bot_id);
      const [message] = index >= 0 ? list.splice(index, 1) : [];
      if (message) {
        ws.touched.delete(message);
        ws.removed.push({ channel, ts });
      }
      return message;
    },
    uploadAsUser(channel, message) {
      const { name, mimetype, data } = message.file;
      const stored = ws.addFile(
        { name, title: name, mimetype, size: data.length, data, byPerson: true },
        true,
      );
      return storeAsUser(channel, message, [fileObject(stored)]);
    },
    addUser(user) {
      ws.users.set(user.id, user);
      ws.touchedUsers.add(user);
    },
    fileContent: (fileId) => ws.files.get(fileId)?.data,
    limitPosting: (limit) => ws.limitPosting(limit),
    delayAnswers(ms) {
      answerDelayMs = ms;
    },
    reset() {
      calls.length = 0;
      ws.reset();
    },
    persisted: () => ws.persist(),
    restore: (records) => ws.restore(records),
    close: server.close,
  };
}

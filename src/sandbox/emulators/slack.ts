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
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { recordsOf, type EmulatorJournal, type JournalRecord } from './journal';
import { loseAnswer } from './lost';

export interface SlackCall {
  method: string;
  /** Arguments as received; JSON-valued ones (`blocks`, `metadata`, `files`, …) parsed. */
  args: Record<string, unknown>;
  at: number;
  token?: string;
  /** Refused with 429 by the per-channel posting limit (`limitPosting`); nothing was posted. */
  rateLimited?: boolean;
}

/**
 * Slack's chat.postMessage limit: "1 message per second per channel, short bursts allowed"
 * (https://docs.slack.dev/reference/methods/chat.postMessage#rate_limiting). A token bucket per
 * channel: `perSecond` tokens a second, at most `burst` saved up.
 */
export interface PostingLimit {
  perSecond: number;
  burst: number;
}

export interface EmulatedFile {
  id: string;
  name: string;
  title: string;
  mimetype: string;
  size: number;
  url_private: string;
  /** Needs the bot token, like Slack's (without it Slack answers its HTML sign-in page). */
  url_private_download?: string;
}

export interface EmulatedMessage {
  type: 'message';
  channel: string;
  ts: string;
  /** Set on replies; on a parent once it has replies (then equal to `ts`). */
  thread_ts?: string;
  user: string;
  /** Present on messages the bot posted. */
  bot_id?: string;
  text: string;
  blocks?: unknown[];
  username?: string;
  icon_emoji?: string;
  metadata?: { event_type: string; event_payload: Record<string, unknown> };
  /** Reaction names (without colons) the bot added. */
  reactions: string[];
  files?: EmulatedFile[];
  reply_broadcast?: boolean;
  edited?: { user: string; ts: string };
}

/**
 * 429 with Retry-After, HTTP 500, an `ok:false` error, or `{ lost: true }`: the call is carried out
 * (the message posted), then the connection is dropped without an answer; `{ status: 500, after: true }`:
 * the call takes effect, then answers 500 (a response lost on the way back).
 */
export type SlackFailure =
  { status: 429; retryAfterSec: number } | { status: 500; after?: boolean } | { error: string } | { lost: true };

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
  /** Forgets calls, messages, files, users and pending failures; keeps token and ids. */
  reset(): void;
  /** Resolves once every message and user changed so far is in the journal (if there is one). */
  persisted(): Promise<void>;
  /** Takes back messages and users a journal kept (before any call); later `ts` values sort after them. */
  restore(records: readonly JournalRecord[]): void;
  close(): Promise<void>;
}

interface PendingFailure {
  failure: SlackFailure;
  remaining: number;
  channel?: string;
}

interface StoredFile extends EmulatedFile {
  data?: Buffer;
  /** Uploaded by a person (not the bot): the bot may not delete it (`cant_delete_file`). */
  byPerson?: boolean;
}

class SlackMethodError extends Error {
  constructor(readonly error: string) {
    super(error);
  }
}

const TEAM_NAME = 'Rapport Test';
const TEAM_DOMAIN = 'rapport-test';
/** Fields WebClient JSON-encodes into a form field; parsed back so tests can assert on them. */
const JSON_FIELDS = new Set(['blocks', 'attachments', 'metadata', 'files']);

const MIME_TYPES: Record<string, string> = {
  txt: 'text/plain',
  csv: 'text/csv',
  json: 'application/json',
  pdf: 'application/pdf',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  mp3: 'audio/mpeg',
  ogg: 'audio/ogg',
  mp4: 'video/mp4',
};

function mimeTypeOf(filename: string): string {
  const ext = filename.includes('.') ? filename.split('.').pop()?.toLowerCase() : undefined;
  return (ext && MIME_TYPES[ext]) || 'application/octet-stream';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(args: Record<string, unknown>, key: string): string | undefined {
  const value = args[key];
  if (typeof value === 'string') return value.length > 0 ? value : undefined;
  if (typeof value === 'number') return String(value);
  return undefined;
}

function bool(args: Record<string, unknown>, key: string): boolean {
  const value = args[key];
  return value === true || value === 'true' || value === '1' || value === 1;
}

function requireStr(args: Record<string, unknown>, key: string, error = 'invalid_arguments'): string {
  const value = str(args, key);
  if (value === undefined) throw new SlackMethodError(error);
  return value;
}

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

/** Is `ts` within Slack's `oldest`/`latest` bounds (exclusive unless `inclusive`)? */
function inRange(
  ts: string,
  oldest: string | undefined,
  latest: string | undefined,
  inclusive: boolean,
): boolean {
  const t = Number(ts);
  if (oldest !== undefined && (inclusive ? t < Number(oldest) : t <= Number(oldest))) return false;
  if (latest !== undefined && (inclusive ? t > Number(latest) : t >= Number(latest))) return false;
  return true;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function bearer(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  return header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : undefined;
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain' : 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
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

type SlackUser = { id: string; name?: string; realName?: string; tz?: string };

/** Slack's `ts` shape, `seconds.microseconds`, from microseconds since the epoch. */
function tsOf(micros: number): string {
  return `${Math.floor(micros / 1_000_000)}.${String(micros % 1_000_000).padStart(6, '0')}`;
}

function microsOf(ts: string): number {
  const [seconds = '0', fraction = '0'] = ts.split('.');
  return Number(seconds) * 1_000_000 + Number(fraction.padEnd(6, '0').slice(0, 6));
}

export async function startSlackEmulator(opts: SlackEmulatorOptions = {}): Promise<SlackEmulator> {
  const token = opts.token ?? 'xoxb-test-token';
  const suffix = randomBytes(3).toString('hex').toUpperCase();
  const teamId = `T0RAPPORT${suffix}`;
  const botUserId = `U0BOT${suffix}`;
  const botId = `B0BOT${suffix}`;
  const appId = `A0APP${suffix}`;

  const calls: SlackCall[] = [];
  const channels = new Map<string, EmulatedMessage[]>();
  const files = new Map<string, StoredFile>();
  const users = new Map<string, SlackUser>();
  let failures = new Map<string, PendingFailure[]>();
  let lastMicros = 0;
  let postingLimit: PostingLimit | undefined;
  let buckets = new Map<string, { tokens: number; at: number }>();

  /** Seconds to wait before `channel` may be posted to again, or 0 (a token was taken). */
  function postingWait(method: string, args: Record<string, unknown>): number {
    const channel = str(args, 'channel');
    if (!postingLimit || method !== 'chat.postMessage' || !channel) return 0;
    const now = Date.now();
    const b = buckets.get(channel) ?? { tokens: postingLimit.burst, at: now };
    b.tokens = Math.min(postingLimit.burst, b.tokens + ((now - b.at) / 1000) * postingLimit.perSecond);
    b.at = now;
    buckets.set(channel, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / postingLimit.perSecond));
  }
  let baseUrl = '';
  /** Changed since the last `persist`: written to the journal before the answer goes out. */
  const touched = new Set<EmulatedMessage>();
  const touchedUsers = new Set<SlackUser>();
  const removed: { channel: string; ts: string }[] = [];

  /**
   * From the clock, as Slack's are (`1712345678.000100`): unique and increasing across restarts
   * too, so a thread Rapport recorded before a restart never shares its `ts` with a new message.
   */
  function nextTs(): string {
    lastMicros = Math.max(Date.now() * 1000, lastMicros + 1);
    return tsOf(lastMicros);
  }

  async function persist(): Promise<void> {
    const messages = [...touched];
    const people = [...touchedUsers];
    const gone = removed.splice(0);
    touched.clear();
    touchedUsers.clear();
    if (!opts.journal) return;
    for (const m of messages) await opts.journal.write('slack.message', `${m.channel}:${m.ts}`, m);
    for (const u of people) await opts.journal.write('slack.user', u.id, u);
    for (const r of gone) await opts.journal.remove('slack.message', `${r.channel}:${r.ts}`);
  }

  function restore(records: readonly JournalRecord[]): void {
    const kept = recordsOf<EmulatedMessage>(records, 'slack.message');
    for (const m of kept.sort((a, b) => microsOf(a.ts) - microsOf(b.ts))) {
      channelMessages(m.channel).push(m);
      lastMicros = Math.max(lastMicros, microsOf(m.ts));
    }
    for (const u of recordsOf<SlackUser>(records, 'slack.user')) users.set(u.id, u);
  }
  function nextId(prefix: string): string {
    return `${prefix}0${randomBytes(5).toString('hex').toUpperCase()}`;
  }

  function channelMessages(channel: string): EmulatedMessage[] {
    let list = channels.get(channel);
    if (!list) channels.set(channel, (list = []));
    return list;
  }
  function find(channel: string, ts: string): EmulatedMessage | undefined {
    return channels.get(channel)?.find((m) => m.ts === ts);
  }
  function threadOf(channel: string, threadTs: string): EmulatedMessage[] {
    return (channels.get(channel) ?? []).filter((m) => m.ts === threadTs || m.thread_ts === threadTs);
  }
  /** Replies go under the thread's parent, even when given a reply's ts (as Slack does). */
  function store(message: Omit<EmulatedMessage, 'type' | 'reactions'>): EmulatedMessage {
    const stored: EmulatedMessage = { type: 'message', reactions: [], ...message };
    if (stored.thread_ts !== undefined) {
      const parent = find(stored.channel, stored.thread_ts);
      if (parent?.thread_ts && parent.thread_ts !== parent.ts) stored.thread_ts = parent.thread_ts;
      const root = find(stored.channel, stored.thread_ts);
      if (root && root.thread_ts === undefined) {
        root.thread_ts = root.ts;
        touched.add(root);
      }
    }
    channelMessages(stored.channel).push(stored);
    touched.add(stored);
    return stored;
  }

  function takeFailure(method: string, args: Record<string, unknown>): SlackFailure | undefined {
    const pending = failures.get(method);
    if (!pending) return undefined;
    const channel = str(args, 'channel') ?? str(args, 'channel_id');
    const index = pending.findIndex((p) => p.channel === undefined || p.channel === channel);
    const hit = pending[index];
    if (!hit) return undefined;
    hit.remaining -= 1;
    if (hit.remaining <= 0) pending.splice(index, 1);
    return hit.failure;
  }

  /** A message as Slack's API returns it. */
  function wire(message: EmulatedMessage, includeMetadata: boolean): Record<string, unknown> {
    const out: Record<string, unknown> = {
      type: 'message',
      user: message.user,
      text: message.text,
      ts: message.ts,
      team: teamId,
    };
    if (message.bot_id) {
      out.bot_id = message.bot_id;
      out.app_id = appId;
      out.bot_profile = {
        id: message.bot_id,
        app_id: appId,
        name: 'Rapport',
        team_id: teamId,
        deleted: false,
      };
    }
    if (message.username) out.username = message.username;
    if (message.icon_emoji) out.icons = { emoji: message.icon_emoji };
    if (message.blocks) out.blocks = message.blocks;
    if (message.edited) out.edited = message.edited;
    if (message.files) {
      out.files = message.files;
      out.upload = true;
      out.display_as_bot = false;
    }
    if (message.reactions.length > 0) {
      out.reactions = message.reactions.map((name) => ({ name, users: [botUserId], count: 1 }));
    }
    if (message.thread_ts) {
      out.thread_ts = message.thread_ts;
      if (message.thread_ts === message.ts) {
        const replies = threadOf(message.channel, message.ts).filter((m) => m.ts !== message.ts);
        out.reply_count = replies.length;
        out.reply_users_count = new Set(replies.map((m) => m.user)).size;
        out.reply_users = [...new Set(replies.map((m) => m.user))];
        out.latest_reply = replies.at(-1)?.ts ?? message.ts;
        out.is_locked = false;
        out.subscribed = message.user === botUserId;
      } else {
        out.parent_user_id = find(message.channel, message.thread_ts)?.user ?? botUserId;
        if (message.reply_broadcast) out.subtype = 'thread_broadcast';
      }
    }
    if (includeMetadata && message.metadata) out.metadata = message.metadata;
    return out;
  }

  /** One page of `all` by `limit` and `cursor`, in Slack's shape (metadata if asked for). */
  function pageOf(all: EmulatedMessage[], args: Record<string, unknown>): Record<string, unknown> {
    const limit = Math.max(1, Math.min(1000, Number(str(args, 'limit') ?? 1000) || 1000));
    const cursor = str(args, 'cursor');
    let offset = 0;
    if (cursor) {
      const decoded = /^offset:(\d+)$/.exec(Buffer.from(cursor, 'base64').toString('utf8'));
      if (!decoded?.[1]) throw new SlackMethodError('invalid_cursor');
      offset = Number(decoded[1]);
    }
    const includeMetadata = bool(args, 'include_all_metadata');
    const page = all.slice(offset, offset + limit).map((m) => wire(m, includeMetadata));
    const hasMore = offset + limit < all.length;
    return {
      messages: page,
      has_more: hasMore,
      ...(hasMore
        ? { response_metadata: { next_cursor: Buffer.from(`offset:${offset + limit}`).toString('base64') } }
        : {}),
    };
  }

  function fileObject(file: StoredFile): EmulatedFile {
    const { data: _data, byPerson: _byPerson, ...rest } = file;
    return rest;
  }

  const methods: Record<string, (args: Record<string, unknown>) => Record<string, unknown>> = {
    'auth.test': () => ({
      url: `https://${TEAM_DOMAIN}.slack.com/`,
      team: TEAM_NAME,
      user: 'rapport',
      team_id: teamId,
      user_id: botUserId,
      bot_id: botId,
      is_enterprise_install: false,
    }),

    'chat.postMessage': (args) => {
      const channel = requireStr(args, 'channel', 'channel_not_found');
      const text = str(args, 'text') ?? '';
      const blocks = Array.isArray(args.blocks) ? (args.blocks as unknown[]) : undefined;
      if (text === '' && !blocks && !Array.isArray(args.attachments)) throw new SlackMethodError('no_text');
      const metadata = args.metadata;
      const message = store({
        channel,
        ts: nextTs(),
        user: botUserId,
        bot_id: botId,
        text,
        ...(str(args, 'thread_ts') ? { thread_ts: str(args, 'thread_ts') } : {}),
        ...(blocks ? { blocks } : {}),
        ...(str(args, 'username') ? { username: str(args, 'username') } : {}),
        ...(str(args, 'icon_emoji') ? { icon_emoji: str(args, 'icon_emoji') } : {}),
        ...(bool(args, 'reply_broadcast') ? { reply_broadcast: true } : {}),
        ...(isRecord(metadata) && typeof metadata.event_type === 'string' && isRecord(metadata.event_payload)
          ? { metadata: { event_type: metadata.event_type, event_payload: metadata.event_payload } }
          : {}),
      });
      return { channel, ts: message.ts, message: wire(message, true) };
    },

    'chat.update': (args) => {
      const channel = requireStr(args, 'channel', 'channel_not_found');
      const ts = requireStr(args, 'ts', 'message_not_found');
      const message = find(channel, ts);
      if (!message) throw new SlackMethodError('message_not_found');
      if (message.user !== botUserId) throw new SlackMethodError('cant_update_message');
      const text = str(args, 'text');
      if (text !== undefined) message.text = text;
      if (Array.isArray(args.blocks)) message.blocks = args.blocks as unknown[];
      message.edited = { user: botUserId, ts: nextTs() };
      touched.add(message);
      return { channel, ts, text: message.text, message: wire(message, true) };
    },

    'chat.delete': (args) => {
      const channel = requireStr(args, 'channel', 'channel_not_found');
      const ts = requireStr(args, 'ts', 'message_not_found');
      const list = channels.get(channel) ?? [];
      const index = list.findIndex((m) => m.ts === ts);
      const message = list[index];
      if (!message) throw new SlackMethodError('message_not_found');
      if (message.user !== botUserId) throw new SlackMethodError('cant_delete_message');
      list.splice(index, 1);
      touched.delete(message);
      removed.push({ channel, ts });
      return { channel, ts };
    },

    'chat.postEphemeral': (args) => {
      requireStr(args, 'channel', 'channel_not_found');
      requireStr(args, 'user', 'user_not_found');
      if (!str(args, 'text') && !Array.isArray(args.blocks)) throw new SlackMethodError('no_text');
      return { message_ts: nextTs() };
    },

    'reactions.add': (args) => {
      const message = find(
        requireStr(args, 'channel', 'channel_not_found'),
        requireStr(args, 'timestamp', 'message_not_found'),
      );
      if (!message) throw new SlackMethodError('message_not_found');
      const name = requireStr(args, 'name', 'invalid_name').replace(/^:|:$/g, '');
      if (message.reactions.includes(name)) throw new SlackMethodError('already_reacted');
      message.reactions.push(name);
      touched.add(message);
      return {};
    },

    'reactions.remove': (args) => {
      const message = find(
        requireStr(args, 'channel', 'channel_not_found'),
        requireStr(args, 'timestamp', 'message_not_found'),
      );
      if (!message) throw new SlackMethodError('message_not_found');
      const name = requireStr(args, 'name', 'invalid_name').replace(/^:|:$/g, '');
      if (!message.reactions.includes(name)) throw new SlackMethodError('no_reaction');
      message.reactions = message.reactions.filter((r) => r !== name);
      touched.add(message);
      return {};
    },

    'conversations.replies': (args) => {
      const channel = requireStr(args, 'channel', 'channel_not_found');
      const ts = requireStr(args, 'ts', 'thread_not_found');
      const anchor = find(channel, ts);
      if (!anchor) throw new SlackMethodError('thread_not_found');
      return pageOf(threadOf(channel, anchor.thread_ts ?? anchor.ts), args);
    },

    'conversations.history': (args) => {
      const channel = requireStr(args, 'channel', 'channel_not_found');
      // Top-level messages only (thread replies are not in history unless broadcast), newest first.
      const all = (channels.get(channel) ?? [])
        .filter((m) => m.thread_ts === undefined || m.thread_ts === m.ts || m.reply_broadcast)
        .filter((m) => inRange(m.ts, str(args, 'oldest'), str(args, 'latest'), bool(args, 'inclusive')))
        .reverse();
      return pageOf(all, args);
    },

    'users.info': (args) => {
      const id = requireStr(args, 'user', 'user_not_found');
      const known = users.get(id);
      if (!known && !/^[UW][A-Z0-9]+$/.test(id)) throw new SlackMethodError('user_not_found');
      const isBot = id === botUserId;
      const name = known?.name ?? (isBot ? 'rapport' : `user.${id.toLowerCase()}`);
      const realName = known?.realName ?? (isBot ? 'Rapport' : `User ${id}`);
      const tz = known?.tz ?? 'America/New_York';
      return {
        user: {
          id,
          team_id: teamId,
          name,
          deleted: false,
          real_name: realName,
          tz,
          tz_label: tz === 'America/New_York' ? 'Eastern Standard Time' : tz,
          tz_offset: tz === 'America/New_York' ? -18000 : 0,
          profile: { real_name: realName, display_name: name, team: teamId },
          is_bot: isBot,
          is_app_user: false,
          updated: 1_700_000_000,
        },
      };
    },

    'files.getUploadURLExternal': (args) => {
      const filename = requireStr(args, 'filename');
      const length = Number(requireStr(args, 'length'));
      if (!Number.isInteger(length) || length < 0) throw new SlackMethodError('invalid_arguments');
      const id = nextId('F');
      files.set(id, {
        id,
        name: filename,
        title: filename,
        mimetype: mimeTypeOf(filename),
        size: length,
        url_private: `${baseUrl}files-pri/${teamId}-${id}/${encodeURIComponent(filename)}`,
      });
      return { upload_url: `${baseUrl}upload/v1/${id}`, file_id: id };
    },

    // Deleting a file removes it from the messages that show it (Slack shows a "deleted" tombstone).
    'files.delete': (args) => {
      const id = requireStr(args, 'file', 'file_not_found');
      const file = files.get(id);
      if (!file) throw new SlackMethodError('file_not_found');
      if (file.byPerson) throw new SlackMethodError('cant_delete_file');
      files.delete(id);
      for (const list of channels.values())
        for (const m of list) if (m.files) m.files = m.files.filter((f) => f.id !== id);
      return {};
    },

    'files.completeUploadExternal': (args) => {
      const list = args.files;
      if (!Array.isArray(list) || list.length === 0) throw new SlackMethodError('invalid_arguments');
      const completed = list.map((entry: unknown) => {
        const id = isRecord(entry) ? str(entry, 'id') : undefined;
        const file = id ? files.get(id) : undefined;
        if (!file?.data) throw new SlackMethodError('file_not_found');
        const title = isRecord(entry) ? str(entry, 'title') : undefined;
        if (title) file.title = title;
        return file;
      });
      const channel = str(args, 'channel_id') ?? str(args, 'channels');
      if (channel) {
        store({
          channel,
          ts: nextTs(),
          user: botUserId,
          bot_id: botId,
          text: str(args, 'initial_comment') ?? '',
          ...(str(args, 'thread_ts') ? { thread_ts: str(args, 'thread_ts') } : {}),
          files: completed.map(fileObject),
        });
      }
      return { files: completed.map((f) => ({ ...fileObject(f), channels: channel ? [channel] : [] })) };
    },
  };

  /** GET url_private(_download): the bytes with the bot token, Slack's sign-in page without. */
  function handleFileDownload(req: IncomingMessage, res: ServerResponse, fileId: string): void {
    const file = files.get(fileId);
    if (bearer(req) !== token) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>');
      return;
    }
    const failure = takeFailure('url_private_download', {});
    if (failure && 'status' in failure) return send(res, failure.status, 'Internal Server Error');
    if (!file?.data) return send(res, 404, 'Not Found');
    res.writeHead(200, { 'content-type': file.mimetype, 'content-length': String(file.data.length) });
    res.end(file.data);
  }

  async function handleUpload(req: IncomingMessage, res: ServerResponse, fileId: string): Promise<void> {
    const file = files.get(fileId);
    const body = await readBody(req);
    if (!file || req.method !== 'POST') return send(res, 404, 'Not Found');
    file.data = await uploadedBytes(req, body);
    file.size = file.data.length;
    send(res, 200, `OK - ${file.data.length}`);
  }

  async function handleApi(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    method: string,
  ): Promise<void> {
    const body = await readBody(req);
    let args: Record<string, unknown>;
    try {
      args = parseJsonFields(argsOf(req, url, body));
    } catch (err) {
      const error = err instanceof SlackMethodError ? err.error : 'invalid_form_data';
      return send(res, 200, { ok: false, error });
    }
    const presented = bearer(req) ?? str(args, 'token');
    delete args.token;
    const wait = postingWait(method, args);
    calls.push({ method, args, at: Date.now(), ...(presented ? { token: presented } : {}), ...(wait ? { rateLimited: true } : {}) });
    if (wait) return send(res, 429, { ok: false, error: 'ratelimited' }, { 'retry-after': String(wait) });

    let failure = takeFailure(method, args);
    if (failure && 'lost' in failure) {
      loseAnswer(res);
      failure = undefined;
    }
    if (failure && 'status' in failure && failure.status === 429) {
      return send(
        res,
        429,
        { ok: false, error: 'ratelimited' },
        { 'retry-after': String(failure.retryAfterSec) },
      );
    }
    const lostAnswer = failure !== undefined && 'after' in failure && failure.after === true;
    if (failure && 'status' in failure && !lostAnswer)
      return send(res, failure.status, { ok: false, error: 'internal_error' });
    if (failure && 'error' in failure) return send(res, 200, { ok: false, error: failure.error });

    if (!presented) return send(res, 200, { ok: false, error: 'not_authed' });
    if (presented !== token) return send(res, 200, { ok: false, error: 'invalid_auth' });
    const handler = methods[method];
    if (!handler) return send(res, 200, { ok: false, error: 'unknown_method', req_method: method });
    let answer: Record<string, unknown>;
    try {
      answer = handler(args);
    } catch (err) {
      if (err instanceof SlackMethodError) return send(res, 200, { ok: false, error: err.error });
      throw err;
    }
    await persist();
    if (lostAnswer) return send(res, 500, { ok: false, error: 'internal_error' });
    return send(res, 200, { ok: true, ...answer });
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const api = /^\/api\/([A-Za-z0-9_.]+)$/.exec(url.pathname);
    const upload = /^\/upload\/v1\/([A-Z0-9]+)$/.exec(url.pathname);
    const download = /^\/files-pri\/[A-Z0-9]+-([A-Z0-9]+)\//.exec(url.pathname);
    const handled = api?.[1]
      ? handleApi(req, res, url, api[1])
      : upload?.[1]
        ? handleUpload(req, res, upload[1])
        : download?.[1] && req.method === 'GET'
          ? Promise.resolve(handleFileDownload(req, res, download[1]))
          : Promise.resolve(send(res, 404, 'Not Found'));
    handled.catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { ok: false, error: 'emulator_error', detail: String(err) });
    });
  });

  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  baseUrl = `http://127.0.0.1:${port}/`;

  return {
    url: `${baseUrl}api/`,
    token,
    botUserId,
    botId,
    teamId,
    calls,
    callsTo: (method) => calls.filter((c) => c.method === method),
    messages: (channel) => [...(channels.get(channel) ?? [])],
    thread: (channel, threadTs) => threadOf(channel, threadTs),
    failNext(method, failure, options = {}) {
      const list = failures.get(method) ?? [];
      list.push({
        failure,
        remaining: options.times ?? 1,
        ...(options.channel ? { channel: options.channel } : {}),
      });
      failures.set(method, list);
    },
    postAsUser(channel, message) {
      return store({
        channel,
        ts: nextTs(),
        user: message.user,
        text: message.text,
        ...(message.threadTs ? { thread_ts: message.threadTs } : {}),
      });
    },
    editAsUser(channel, ts, text) {
      const message = find(channel, ts);
      if (!message || message.bot_id) return undefined;
      const before = { ...message };
      message.text = text;
      message.edited = { user: message.user, ts: nextTs() };
      touched.add(message);
      return before;
    },
    deleteAsUser(channel, ts) {
      const list = channels.get(channel) ?? [];
      const index = list.findIndex((m) => m.ts === ts && !m.bot_id);
      const [message] = index >= 0 ? list.splice(index, 1) : [];
      if (message) {
        touched.delete(message);
        removed.push({ channel, ts });
      }
      return message;
    },
    uploadAsUser(channel, message) {
      const id = nextId('F');
      const name = message.file.name;
      const stored: StoredFile = {
        id,
        name,
        title: name,
        mimetype: message.file.mimetype,
        size: message.file.data.length,
        url_private: `${baseUrl}files-pri/${teamId}-${id}/${encodeURIComponent(name)}`,
        url_private_download: `${baseUrl}files-pri/${teamId}-${id}/download/${encodeURIComponent(name)}`,
        data: message.file.data,
        byPerson: true,
      };
      files.set(id, stored);
      return store({
        channel,
        ts: nextTs(),
        user: message.user,
        text: message.text,
        ...(message.threadTs ? { thread_ts: message.threadTs } : {}),
        files: [fileObject(stored)],
      });
    },
    addUser(user) {
      users.set(user.id, user);
      touchedUsers.add(user);
    },
    fileContent: (fileId) => files.get(fileId)?.data,
    limitPosting(limit) {
      postingLimit = limit;
      buckets = new Map();
    },
    reset() {
      calls.length = 0;
      buckets = new Map();
      channels.clear();
      files.clear();
      users.clear();
      failures = new Map();
    },
    persisted: persist,
    restore,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

/**
 * What the Slack emulator keeps: channels and their messages, files, users, pending failures and
 * the posting limit, with the operations both the Web API methods and the test-side helpers
 * (`postAsUser`, …) use. Changed records are collected for the journal (`persist`).
 */
import { randomBytes } from 'node:crypto';
import { FaultQueue } from './http';
import { recordsOf, type EmulatorJournal, type JournalRecord } from './journal';
import { isRecord } from '../../values';

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
  | { status: 429; retryAfterSec: number }
  | { status: 500; after?: boolean }
  | { error: string }
  | { lost: true };

export interface StoredFile extends EmulatedFile {
  data?: Buffer;
  /** Uploaded by a person (not the bot): the bot may not delete it (`cant_delete_file`). */
  byPerson?: boolean;
}

export type SlackUser = { id: string; name?: string; realName?: string; tz?: string };

/** A method call Slack refuses with `{ ok: false, error }`. */
export class SlackMethodError extends Error {
  constructor(readonly error: string) {
    super(error);
  }
}

export { isRecord };

export function str(args: Record<string, unknown>, key: string): string | undefined {
  const value = args[key];
  if (typeof value === 'string') return value.length > 0 ? value : undefined;
  if (typeof value === 'number') return String(value);
  return undefined;
}

export function bool(args: Record<string, unknown>, key: string): boolean {
  const value = args[key];
  return value === true || value === 'true' || value === '1' || value === 1;
}

export function requireStr(args: Record<string, unknown>, key: string, error = 'invalid_arguments'): string {
  const value = str(args, key);
  if (value === undefined) throw new SlackMethodError(error);
  return value;
}

/** Slack's `ts` shape, `seconds.microseconds`, from microseconds since the epoch. */
function tsOf(micros: number): string {
  return `${Math.floor(micros / 1_000_000)}.${String(micros % 1_000_000).padStart(6, '0')}`;
}

function microsOf(ts: string): number {
  const [seconds = '0', fraction = '0'] = ts.split('.');
  return Number(seconds) * 1_000_000 + Number(fraction.padEnd(6, '0').slice(0, 6));
}

export class SlackWorkspace {
  readonly teamId: string;
  readonly botUserId: string;
  readonly botId: string;
  readonly appId: string;
  /** The server's origin with a trailing `/`, once it listens. */
  baseUrl = '';
  readonly channels = new Map<string, EmulatedMessage[]>();
  readonly files = new Map<string, StoredFile>();
  readonly users = new Map<string, SlackUser>();
  readonly failures = new FaultQueue<SlackFailure, { method: string; channel?: string }>();
  /** Changed since the last `persist`: written to the journal before the answer goes out. */
  readonly touched = new Set<EmulatedMessage>();
  readonly touchedUsers = new Set<SlackUser>();
  readonly removed: { channel: string; ts: string }[] = [];
  private lastMicros = 0;
  private postingLimit: PostingLimit | undefined;
  private buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly journal: EmulatorJournal | undefined) {
    const suffix = randomBytes(3).toString('hex').toUpperCase();
    this.teamId = `T0RAPPORT${suffix}`;
    this.botUserId = `U0BOT${suffix}`;
    this.botId = `B0BOT${suffix}`;
    this.appId = `A0APP${suffix}`;
  }

  /**
   * From the clock, as Slack's are (`1712345678.000100`): unique and increasing across restarts
   * too, so a thread Rapport recorded before a restart never shares its `ts` with a new message.
   */
  nextTs(): string {
    this.lastMicros = Math.max(Date.now() * 1000, this.lastMicros + 1);
    return tsOf(this.lastMicros);
  }

  nextId(prefix: string): string {
    return `${prefix}0${randomBytes(5).toString('hex').toUpperCase()}`;
  }

  async persist(): Promise<void> {
    const messages = [...this.touched];
    const people = [...this.touchedUsers];
    const gone = this.removed.splice(0);
    this.touched.clear();
    this.touchedUsers.clear();
    if (!this.journal) return;
    for (const m of messages) await this.journal.write('slack.message', `${m.channel}:${m.ts}`, m);
    for (const u of people) await this.journal.write('slack.user', u.id, u);
    for (const r of gone) await this.journal.remove('slack.message', `${r.channel}:${r.ts}`);
  }

  restore(records: readonly JournalRecord[]): void {
    const kept = recordsOf<EmulatedMessage>(records, 'slack.message');
    for (const m of kept.sort((a, b) => microsOf(a.ts) - microsOf(b.ts))) {
      this.channelMessages(m.channel).push(m);
      this.lastMicros = Math.max(this.lastMicros, microsOf(m.ts));
    }
    for (const u of recordsOf<SlackUser>(records, 'slack.user')) this.users.set(u.id, u);
  }

  /** Forgets messages, files, users, pending failures and the posting buckets. */
  reset(): void {
    this.buckets = new Map();
    this.channels.clear();
    this.files.clear();
    this.users.clear();
    this.failures.clear();
  }

  limitPosting(limit: PostingLimit | undefined): void {
    this.postingLimit = limit;
    this.buckets = new Map();
  }

  /** Seconds to wait before `channel` may be posted to again, or 0 (a token was taken). */
  postingWait(method: string, args: Record<string, unknown>): number {
    const channel = str(args, 'channel');
    const limit = this.postingLimit;
    if (!limit || method !== 'chat.postMessage' || !channel) return 0;
    const now = Date.now();
    const b = this.buckets.get(channel) ?? { tokens: limit.burst, at: now };
    b.tokens = Math.min(limit.burst, b.tokens + ((now - b.at) / 1000) * limit.perSecond);
    b.at = now;
    this.buckets.set(channel, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / limit.perSecond));
  }

  takeFailure(method: string, args: Record<string, unknown>): SlackFailure | undefined {
    const channel = str(args, 'channel') ?? str(args, 'channel_id');
    return this.failures.take(
      (m) => m?.method === method && (m.channel === undefined || m.channel === channel),
    );
  }

  channelMessages(channel: string): EmulatedMessage[] {
    let list = this.channels.get(channel);
    if (!list) this.channels.set(channel, (list = []));
    return list;
  }

  find(channel: string, ts: string): EmulatedMessage | undefined {
    return this.channels.get(channel)?.find((m) => m.ts === ts);
  }

  threadOf(channel: string, threadTs: string): EmulatedMessage[] {
    return (this.channels.get(channel) ?? []).filter((m) => m.ts === threadTs || m.thread_ts === threadTs);
  }

  /** Replies go under the thread's parent, even when given a reply's ts (as Slack does). */
  store(message: Omit<EmulatedMessage, 'type' | 'reactions'>): EmulatedMessage {
    const stored: EmulatedMessage = { type: 'message', reactions: [], ...message };
    if (stored.thread_ts !== undefined) {
      const parent = this.find(stored.channel, stored.thread_ts);
      if (parent?.thread_ts && parent.thread_ts !== parent.ts) stored.thread_ts = parent.thread_ts;
      const root = this.find(stored.channel, stored.thread_ts);
      if (root && root.thread_ts === undefined) {
        root.thread_ts = root.ts;
        this.touched.add(root);
      }
    }
    this.channelMessages(stored.channel).push(stored);
    this.touched.add(stored);
    return stored;
  }

  /** A file's record, with the private URLs this server serves it at. */
  addFile(file: Omit<StoredFile, 'id' | 'url_private'>, withDownload: boolean): StoredFile {
    const id = this.nextId('F');
    const at = `${this.baseUrl}files-pri/${this.teamId}-${id}/`;
    const stored: StoredFile = {
      id,
      ...file,
      url_private: `${at}${encodeURIComponent(file.name)}`,
      ...(withDownload ? { url_private_download: `${at}download/${encodeURIComponent(file.name)}` } : {}),
    };
    this.files.set(id, stored);
    return stored;
  }

  /** A message as Slack's API returns it. */
  wire(message: EmulatedMessage, includeMetadata: boolean): Record<string, unknown> {
    const out: Record<string, unknown> = {
      type: 'message',
      user: message.user,
      text: message.text,
      ts: message.ts,
      team: this.teamId,
    };
    if (message.bot_id) {
      out.bot_id = message.bot_id;
      out.app_id = this.appId;
      out.bot_profile = {
        id: message.bot_id,
        app_id: this.appId,
        name: 'Rapport',
        team_id: this.teamId,
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
      out.reactions = message.reactions.map((name) => ({ name, users: [this.botUserId], count: 1 }));
    }
    if (message.thread_ts) {
      out.thread_ts = message.thread_ts;
      if (message.thread_ts === message.ts) {
        const replies = this.threadOf(message.channel, message.ts).filter((m) => m.ts !== message.ts);
        out.reply_count = replies.length;
        out.reply_users_count = new Set(replies.map((m) => m.user)).size;
        out.reply_users = [...new Set(replies.map((m) => m.user))];
        out.latest_reply = replies.at(-1)?.ts ?? message.ts;
        out.is_locked = false;
        out.subscribed = message.user === this.botUserId;
      } else {
        out.parent_user_id = this.find(message.channel, message.thread_ts)?.user ?? this.botUserId;
        if (message.reply_broadcast) out.subtype = 'thread_broadcast';
      }
    }
    if (includeMetadata && message.metadata) out.metadata = message.metadata;
    return out;
  }

  /** One page of `all` by `limit` and `cursor`, in Slack's shape (metadata if asked for). */
  pageOf(all: EmulatedMessage[], args: Record<string, unknown>): Record<string, unknown> {
    const limit = Math.max(1, Math.min(1000, Number(str(args, 'limit') ?? 1000) || 1000));
    const cursor = str(args, 'cursor');
    let offset = 0;
    if (cursor) {
      const decoded = /^offset:(\d+)$/.exec(Buffer.from(cursor, 'base64').toString('utf8'));
      if (!decoded?.[1]) throw new SlackMethodError('invalid_cursor');
      offset = Number(decoded[1]);
    }
    const includeMetadata = bool(args, 'include_all_metadata');
    const page = all.slice(offset, offset + limit).map((m) => this.wire(m, includeMetadata));
    const hasMore = offset + limit < all.length;
    return {
      messages: page,
      has_more: hasMore,
      ...(hasMore
        ? { response_metadata: { next_cursor: Buffer.from(`offset:${offset + limit}`).toString('base64') } }
        : {}),
    };
  }
}

export function fileObject(file: StoredFile): EmulatedFile {
  const { data: _data, byPerson: _byPerson, ...rest } = file;
  return rest;
}

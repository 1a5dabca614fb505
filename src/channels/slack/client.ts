/**
 * The Slack Web API as the router needs it, over the official `@slack/web-api` WebClient. Transport
 * only: channels, threads, messages and files, never customers or agents.
 *
 * Retrying is the caller's job (its queue waits per channel), so the WebClient is built to fail fast:
 * no retries, and a 429 rejects at once (`rejectRateLimitedCalls`) instead of pausing every call of
 * the client for `Retry-After`. Every failure surfaces as a SlackApiError whose `retryable` flag says
 * whether trying again can help and, for 429, `retryAfterMs` says when.
 */
import {
  ErrorCode,
  LogLevel,
  WebClient,
  type ChatPostMessageArguments,
  type FilesUploadV2Arguments,
} from '@slack/web-api';
import { Readable } from 'node:stream';
import { AppError } from '../../errors';
import { isRecord } from '../../values';

export interface SlackClientOptions {
  /** SLACK_BOT_TOKEN (`xoxb-…`). Sent only as `Authorization: Bearer`; never logged. */
  token: string;
  /**
   * SLACK_API_URL: the Web API base, e.g. `http://127.0.0.1:1234/api/` for an emulator.
   * @defaultValue `https://slack.com/api/`
   */
  apiUrl?: string;
  /**
   * Per-request timeout; a timed-out call fails as a retryable `slack_timeout`.
   * @defaultValue 10000
   */
  timeoutMs?: number;
}

/** `ok: false` errors that are Slack's trouble, not ours: trying again later can succeed. */
const TRANSIENT_PLATFORM_ERRORS = new Set([
  'ratelimited',
  'internal_error',
  'fatal_error',
  'service_unavailable',
  'request_timeout',
]);

/**
 * A failed Web API call. `code` is `slack_<error>` (`slack_not_in_channel`, `slack_ratelimited`,
 * `slack_http_503`, `slack_timeout`, …), `slackError` the bare error. Retryable for rate limits, 5xx,
 * network failures and timeouts; not for `ok: false` answers such as `not_in_channel`,
 * `channel_not_found` or `invalid_auth`, which fail the same way every time.
 */
export class SlackApiError extends AppError {
  constructor(
    /** The Web API method, e.g. `chat.postMessage`. */
    readonly method: string,
    readonly slackError: string,
    retryable: boolean,
    /** From `Retry-After` on a 429. */
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(`slack ${method} failed: ${slackError}`, `slack_${slackError}`, 502, retryable, options);
  }
}

export interface SlackClient {
  authTest(): Promise<{ userId: string; botId?: string; teamId: string; team?: string; url?: string }>;
  /** `username`/`iconEmoji` need the `chat:write.customize` scope. */
  postMessage(args: {
    channel: string;
    threadTs?: string;
    text: string;
    blocks?: unknown[];
    username?: string;
    iconEmoji?: string;
    replyBroadcast?: boolean;
    /** `payload.parts`: the items a post carries when it carries several (see findInThread). */
    metadata?: { eventType: string; payload: MetadataPayload };
  }): Promise<{ ts: string; channel: string }>;
  /**
   * The ts of the first message in the thread (parent included) whose `metadata.event_type` is
   * `eventType` and `metadata.event_payload[field]` is `value`, or one of whose `event_payload.parts`
   * has it (a post that carries several items); undefined if none (or no such thread).
   * Pages through `conversations.replies` with `include_all_metadata=true`.
   */
  findInThread(
    channel: string,
    threadTs: string,
    eventType: string,
    field: string,
    value: string,
  ): Promise<string | undefined>;
  /**
   * As findInThread for several values in one read of the thread: value → ts of the first message
   * that carries it (values no message carries are absent).
   */
  findAllInThread(
    channel: string,
    threadTs: string,
    eventType: string,
    field: string,
    values: string[],
  ): Promise<Map<string, string>>;
  /**
   * As findInThread, for a top-level message of `channel` posted at or after `oldest` (a Slack ts):
   * pages through `conversations.history` with `include_all_metadata=true`.
   */
  findInChannel(
    channel: string,
    oldest: string,
    eventType: string,
    field: string,
    value: string,
  ): Promise<string | undefined>;
  /** The metadata of the top-level message at `ts` (`conversations.history`), if it has any. */
  metadataAt(
    channel: string,
    ts: string,
  ): Promise<{ eventType: string; payload: Record<string, unknown> } | undefined>;
  updateMessage(channel: string, ts: string, args: { text: string; blocks?: unknown[] }): Promise<void>;
  /** A message already gone (`message_not_found`) counts as deleted. */
  deleteMessage(channel: string, ts: string): Promise<void>;
  /** A file Rapport uploaded (`files.delete`); one already gone (`file_not_found`, `file_deleted`) counts as deleted. */
  deleteFile(fileId: string): Promise<void>;
  /** `already_reacted` counts as success. */
  addReaction(channel: string, ts: string, name: string): Promise<void>;
  /** `no_reaction` counts as success. */
  removeReaction(channel: string, ts: string, name: string): Promise<void>;
  postEphemeral(channel: string, user: string, text: string, threadTs?: string): Promise<void>;
  /** files.uploadV2: getUploadURLExternal → POST the bytes → completeUploadExternal (shares it). */
  uploadFile(args: {
    channel: string;
    threadTs?: string;
    filename: string;
    data: Buffer;
    title?: string;
    initialComment?: string;
  }): Promise<void>;
  userInfo(userId: string): Promise<{ id: string; name?: string; realName?: string; tz?: string }>;
  /** files.getUploadURLExternal: reserves a file id and a one-time upload URL (step 1 of 3). */
  getUploadUrl(filename: string, length: number): Promise<{ uploadUrl: string; fileId: string }>;
  /** Step 2: POSTs the bytes to the upload URL (the URL is the credential: no token is sent). */
  putUpload(uploadUrl: string, body: Readable, length: number): Promise<void>;
  /** Step 3, files.completeUploadExternal: shares the uploaded file in the channel (or thread). */
  completeUpload(args: {
    fileId: string;
    title: string;
    channel: string;
    threadTs?: string;
    initialComment?: string;
  }): Promise<void>;
  /** True when a message of the thread carries file `fileId` (a completed upload, seen again). */
  fileInThread(channel: string, threadTs: string, fileId: string): Promise<boolean>;
  /**
   * GETs a file's `url_private_download` with the bot token (`files:read`). The token goes only to
   * Slack's file host (`files.slack.com`) or, with SLACK_API_URL, to that origin.
   */
  downloadFile(url: string, timeoutMs?: number): Promise<Response>;
}

/** The block type WebClient's argument types expect; blocks are validated by Slack, not here. */
type SlackBlocks = NonNullable<Extract<ChatPostMessageArguments, { blocks?: unknown }>['blocks']>;

function stringField(value: unknown, key: string): string | undefined {
  if (!isRecord(value)) return undefined;
  const field = value[key];
  return typeof field === 'string' && field.length > 0 ? field : undefined;
}

/**
 * Read by shape, not `instanceof`: fetch's DOMException (timeouts) comes from Node's own realm, which
 * is not this module's under Jest's sandbox.
 */
function fieldOf(err: unknown, key: string): unknown {
  return isRecord(err) ? err[key] : undefined;
}

/** WebClient's coded errors → SlackApiError. Anything else is our bug and is rethrown as is. */
export function toSlackApiError(method: string, err: unknown): unknown {
  if (err instanceof SlackApiError) return err;
  const code = fieldOf(err, 'code');
  const cause = { cause: err };
  switch (code) {
    case ErrorCode.RateLimitedError: {
      const retryAfter = fieldOf(err, 'retryAfter');
      const retryAfterMs = typeof retryAfter === 'number' ? retryAfter * 1000 : undefined;
      return new SlackApiError(method, 'ratelimited', true, retryAfterMs, cause);
    }
    case ErrorCode.PlatformError: {
      const slackError = stringField(fieldOf(err, 'data'), 'error') ?? 'unknown_error';
      return new SlackApiError(
        method,
        slackError,
        TRANSIENT_PLATFORM_ERRORS.has(slackError),
        undefined,
        cause,
      );
    }
    case ErrorCode.HTTPError: {
      const status = fieldOf(err, 'statusCode');
      const retryable = typeof status === 'number' && (status >= 500 || status === 408);
      return new SlackApiError(method, `http_${String(status)}`, retryable, undefined, cause);
    }
    case ErrorCode.RequestError: {
      const original = fieldOf(err, 'original');
      const name = fieldOf(original, 'name');
      const message = fieldOf(original, 'message');
      // Where fetch's DOMException is not `instanceof Error` (another realm), the SDK wraps it as
      // `new Error(String(e))`, so the name survives only at the start of the message.
      const timedOut =
        name === 'TimeoutError' ||
        name === 'AbortError' ||
        (typeof message === 'string' && /^(TimeoutError|AbortError)\b/.test(message));
      return new SlackApiError(method, timedOut ? 'timeout' : 'request_failed', true, undefined, cause);
    }
    case ErrorCode.FileUploadInvalidArgumentsError:
    case ErrorCode.FileUploadReadFileDataError:
      return new SlackApiError(method, 'file_upload_invalid', false, undefined, cause);
    default: {
      // A 429 without a usable Retry-After comes out of the SDK as a plain Error.
      const message = fieldOf(err, 'message');
      if (typeof message === 'string' && /rate limit|Retry header/i.test(message)) {
        return new SlackApiError(method, 'ratelimited', true, undefined, cause);
      }
      return err;
    }
  }
}

async function call<T>(method: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toSlackApiError(method, err);
  }
}

/** Runs `fn`, treating the listed `ok: false` errors as success (idempotent operations). */
async function callTolerating(
  method: string,
  tolerated: string[],
  fn: () => Promise<unknown>,
): Promise<void> {
  try {
    await call(method, fn);
  } catch (err) {
    if (err instanceof SlackApiError && tolerated.includes(err.slackError)) return;
    throw err;
  }
}

function required(method: string, value: unknown, key: string): string {
  const field = stringField(value, key);
  if (field === undefined) throw new SlackApiError(method, `invalid_response_missing_${key}`, false);
  return field;
}

/**
 * Slack message metadata's payload as Rapport writes it: strings, and `parts`, a list of objects for
 * a post that carries several items (Slack takes arrays of objects in `event_payload`).
 */
export type MetadataPayload = Record<string, string | Record<string, string>[]>;

/** The values of `field` a metadata payload carries: its own, then those of its `parts`, in order. */
export function payloadValues(payload: unknown, field: string): string[] {
  if (!isRecord(payload)) return [];
  const own = stringField(payload, field);
  const parts: unknown = payload.parts;
  const more = Array.isArray(parts) ? parts.map((p) => stringField(p, field)) : [];
  return [...new Set([own, ...more].filter((v): v is string => v !== undefined))];
}

/**
 * value → ts of the first paged message whose metadata is `eventType` and carries `value` in `field`
 * (payloadValues), for each of `values`; stops paging once every value is found.
 */
async function allWithMetadata(
  pages: AsyncIterable<unknown>,
  eventType: string,
  field: string,
  values: string[],
): Promise<Map<string, string>> {
  const wanted = new Set(values);
  const found = new Map<string, string>();
  for await (const page of pages) {
    const messages: unknown = isRecord(page) ? page.messages : undefined;
    const list: unknown[] = Array.isArray(messages) ? messages : [];
    for (const message of list) {
      if (!isRecord(message)) continue;
      const metadata = message.metadata;
      const ts = stringField(message, 'ts');
      if (!ts || !isRecord(metadata) || metadata.event_type !== eventType) continue;
      for (const v of payloadValues(metadata.event_payload, field))
        if (wanted.has(v) && !found.has(v)) found.set(v, ts);
    }
    if (found.size === wanted.size) break;
  }
  return found;
}

/** The ts of the first paged message whose metadata is `eventType` and carries `value` in `field`. */
async function firstWithMetadata(
  pages: AsyncIterable<unknown>,
  eventType: string,
  field: string,
  value: string,
): Promise<string | undefined> {
  return (await allWithMetadata(pages, eventType, field, [value])).get(value);
}

export function createSlackClient(options: SlackClientOptions): SlackClient {
  if (options.token.length === 0) throw new Error('createSlackClient: token is empty');
  const web = new WebClient(options.token, {
    ...(options.apiUrl ? { slackApiUrl: options.apiUrl } : {}),
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    timeout: options.timeoutMs ?? 10_000,
    // Only method names are called, so the token is never sent to an absolute URL by mistake.
    allowAbsoluteUrls: false,
    // Failures are thrown to the caller, who logs them with context; the SDK's own INFO/WARN lines
    // (e.g. "http request failed") would only duplicate them.
    logLevel: LogLevel.ERROR,
  });

  const findAllInThread: SlackClient['findAllInThread'] = async (
    channel,
    threadTs,
    eventType,
    field,
    values,
  ) => {
    const method = 'conversations.replies';
    try {
      const pages = web.paginate(method, { channel, ts: threadTs, include_all_metadata: true, limit: 200 });
      return await allWithMetadata(pages, eventType, field, values);
    } catch (err) {
      const mapped = toSlackApiError(method, err);
      if (mapped instanceof SlackApiError && mapped.slackError === 'thread_not_found') return new Map();
      throw mapped;
    }
  };

  return {
    async authTest() {
      const res = await call('auth.test', () => web.auth.test());
      const out: Awaited<ReturnType<SlackClient['authTest']>> = {
        userId: required('auth.test', res, 'user_id'),
        teamId: required('auth.test', res, 'team_id'),
      };
      if (res.bot_id) out.botId = res.bot_id;
      if (res.team) out.team = res.team;
      if (res.url) out.url = res.url;
      return out;
    },

    async postMessage(args) {
      const thread =
        args.threadTs === undefined
          ? {}
          : args.replyBroadcast
            ? { thread_ts: args.threadTs, reply_broadcast: true }
            : { thread_ts: args.threadTs };
      const request: ChatPostMessageArguments = {
        channel: args.channel,
        text: args.text,
        ...thread,
        ...(args.blocks ? { blocks: args.blocks as SlackBlocks } : {}),
        ...(args.username ? { username: args.username } : {}),
        ...(args.iconEmoji ? { icon_emoji: args.iconEmoji } : {}),
        ...(args.metadata
          ? { metadata: { event_type: args.metadata.eventType, event_payload: args.metadata.payload } }
          : {}),
      };
      const res = await call('chat.postMessage', () => web.chat.postMessage(request));
      return {
        ts: required('chat.postMessage', res, 'ts'),
        channel: stringField(res, 'channel') ?? args.channel,
      };
    },

    async findInThread(channel, threadTs, eventType, field, value) {
      return (await findAllInThread(channel, threadTs, eventType, field, [value])).get(value);
    },

    findAllInThread,

    async findInChannel(channel, oldest, eventType, field, value) {
      const method = 'conversations.history';
      return call(method, () =>
        firstWithMetadata(
          web.paginate(method, { channel, oldest, inclusive: true, include_all_metadata: true, limit: 200 }),
          eventType,
          field,
          value,
        ),
      );
    },

    async metadataAt(channel, ts) {
      const res = await call('conversations.history', () =>
        web.conversations.history({
          channel,
          latest: ts,
          oldest: ts,
          inclusive: true,
          limit: 1,
          include_all_metadata: true,
        }),
      );
      const message = (res.messages ?? []).find((m) => m.ts === ts);
      const metadata: unknown = message?.metadata;
      if (!isRecord(metadata) || typeof metadata.event_type !== 'string') return undefined;
      const payload = isRecord(metadata.event_payload) ? metadata.event_payload : {};
      return { eventType: metadata.event_type, payload };
    },

    async updateMessage(channel, ts, args) {
      await call('chat.update', () =>
        web.chat.update({
          channel,
          ts,
          text: args.text,
          ...(args.blocks ? { blocks: args.blocks as SlackBlocks } : {}),
        }),
      );
    },

    async deleteMessage(channel, ts) {
      await callTolerating('chat.delete', ['message_not_found'], () => web.chat.delete({ channel, ts }));
    },

    async deleteFile(fileId) {
      await callTolerating('files.delete', ['file_not_found', 'file_deleted'], () =>
        web.files.delete({ file: fileId }),
      );
    },

    async addReaction(channel, ts, name) {
      await callTolerating('reactions.add', ['already_reacted'], () =>
        web.reactions.add({ channel, timestamp: ts, name }),
      );
    },

    async removeReaction(channel, ts, name) {
      await callTolerating('reactions.remove', ['no_reaction'], () =>
        web.reactions.remove({ channel, timestamp: ts, name }),
      );
    },

    async postEphemeral(channel, user, text, threadTs) {
      await call('chat.postEphemeral', () =>
        web.chat.postEphemeral({ channel, user, text, ...(threadTs ? { thread_ts: threadTs } : {}) }),
      );
    },

    async uploadFile(args) {
      const common = {
        file: args.data,
        filename: args.filename,
        ...(args.title ? { title: args.title } : {}),
        ...(args.initialComment ? { initial_comment: args.initialComment } : {}),
      };
      const request: FilesUploadV2Arguments = args.threadTs
        ? { ...common, channel_id: args.channel, thread_ts: args.threadTs }
        : { ...common, channel_id: args.channel };
      try {
        await call('files.uploadV2', () => web.files.uploadV2(request));
      } catch (err) {
        // The bytes-upload step rejects with a plain Error when the upload URL answers oddly.
        if (!(err instanceof SlackApiError) && typeof fieldOf(err, 'message') === 'string') {
          throw new SlackApiError('files.uploadV2', 'upload_failed', true, undefined, { cause: err });
        }
        throw err;
      }
    },

    async getUploadUrl(filename, length) {
      const method = 'files.getUploadURLExternal';
      const res = await call(method, () => web.files.getUploadURLExternal({ filename, length }));
      return { uploadUrl: required(method, res, 'upload_url'), fileId: required(method, res, 'file_id') };
    },

    async putUpload(uploadUrl, body, length) {
      let res: Response;
      try {
        res = await fetch(uploadUrl, {
          method: 'POST',
          body: Readable.toWeb(body) as ReadableStream<Uint8Array>,
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(length) },
          duplex: 'half',
          signal: AbortSignal.timeout(Math.max(options.timeoutMs ?? 10_000, 120_000)),
        } as RequestInit);
      } catch (err) {
        throw new SlackApiError('files.upload', 'upload_failed', true, undefined, { cause: err });
      }
      await res.body?.cancel();
      if (!res.ok) throw new SlackApiError('files.upload', `http_${res.status}`, res.status >= 500);
    },

    async completeUpload(args) {
      await call('files.completeUploadExternal', () =>
        web.files.completeUploadExternal({
          files: [{ id: args.fileId, title: args.title }],
          channel_id: args.channel,
          ...(args.threadTs ? { thread_ts: args.threadTs } : {}),
          ...(args.initialComment ? { initial_comment: args.initialComment } : {}),
        }),
      );
    },

    async fileInThread(channel, threadTs, fileId) {
      const method = 'conversations.replies';
      try {
        for await (const page of web.paginate(method, { channel, ts: threadTs, limit: 200 })) {
          const messages: unknown = isRecord(page) ? page.messages : undefined;
          for (const message of Array.isArray(messages) ? (messages as unknown[]) : []) {
            const files: unknown = isRecord(message) ? message.files : undefined;
            if (Array.isArray(files) && files.some((f) => stringField(f, 'id') === fileId)) return true;
          }
        }
        return false;
      } catch (err) {
        const mapped = toSlackApiError(method, err);
        if (mapped instanceof SlackApiError && mapped.slackError === 'thread_not_found') return false;
        throw mapped;
      }
    },

    async downloadFile(url, timeoutMs = 60_000) {
      const origin = new URL(url).origin;
      const allowed = options.apiUrl ? new URL(options.apiUrl).origin : 'https://files.slack.com';
      if (origin !== allowed) throw new SlackApiError('files.download', 'foreign_file_host', false);
      try {
        return await fetch(url, {
          headers: { authorization: `Bearer ${options.token}` },
          redirect: 'manual',
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        throw new SlackApiError('files.download', 'request_failed', true, undefined, { cause: err });
      }
    },

    async userInfo(userId) {
      const res = await call('users.info', () => web.users.info({ user: userId }));
      const user = res.user;
      const out: Awaited<ReturnType<SlackClient['userInfo']>> = { id: required('users.info', user, 'id') };
      const realName = user?.real_name || user?.profile?.real_name;
      if (user?.name) out.name = user.name;
      if (realName) out.realName = realName;
      if (user?.tz) out.tz = user.tz;
      return out;
    },
  };
}

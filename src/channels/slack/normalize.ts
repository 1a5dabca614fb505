/**
 * Pure: Slack's inbound payloads (Events API JSON, slash-command forms, interactivity forms) → the
 * agent-side events the router acts on. Transport only: nothing here knows customers or agents.
 *
 * Loop prevention lives here: anything a bot wrote (`bot_id`, subtype `bot_message`) is ignored,
 * including our own posts echoed back by the Events API. Only replies inside a thread count as agent
 * messages; top-level channel chatter is ignored. A structurally invalid body throws PayloadError:
 * Slack signed it, so a malformed one is a bug worth seeing rather than an event to drop.
 */
import { z } from 'zod';
import { PayloadError } from '../../errors';
import { hasNul } from '../../values';
import { parseWire as parseWireAs } from '../parse-wire';
import {
  slackBlockActionsSchema,
  slackEnvelopeSchema,
  slackEventCallbackSchema,
  slackInteractionEnvelopeSchema,
  slackMessageEventSchema,
  slackSlashCommandSchema,
  slackUrlVerificationSchema,
  type SlackMessageEventWire,
  type SlackWireFile,
  type SlackWireMessage,
} from './wire';

export interface SlackFile {
  id: string;
  name?: string;
  mimetype?: string;
  /** Needs the bot token (`Authorization: Bearer`) and the `files:read` scope to download. */
  urlPrivate?: string;
  /** The download form of `urlPrivate` (same auth); preferred for fetching the bytes. */
  urlPrivateDownload?: string;
  size?: number;
}

export type AgentEvent =
  | { type: 'url_verification'; challenge: string }
  | {
      type: 'thread_reply';
      eventId: string;
      teamId: string;
      channel: string;
      threadTs: string;
      ts: string;
      user: string;
      /** Entities (`&amp; &lt; &gt;`) decoded; Slack's `<…>` markup (mentions, links) kept. */
      text: string;
      /** The text exactly as Slack sent it, for mentionsSomeone and markup-aware rendering. */
      rawText: string;
      files: SlackFile[];
      /** `thread_broadcast`: the reply was also sent to the channel. */
      broadcast?: boolean;
    }
  | {
      type: 'message_changed';
      eventId: string;
      channel: string;
      ts: string;
      threadTs?: string;
      user?: string;
      text: string;
      rawText: string;
    }
  | { type: 'message_deleted'; eventId: string; channel: string; ts: string; threadTs?: string }
  | { type: 'ignored'; eventId?: string; reason: string };

type ThreadReply = Extract<AgentEvent, { type: 'thread_reply' }>;
type MessageChanged = Extract<AgentEvent, { type: 'message_changed' }>;
type MessageDeleted = Extract<AgentEvent, { type: 'message_deleted' }>;

export interface SlashCommand {
  /** As typed, e.g. `/rapport`. */
  command: string;
  /** Everything after the command, trimmed; `''` when nothing was typed. */
  text: string;
  userId: string;
  userName?: string;
  channelId: string;
  /** `''` if Slack left it out (it always sends it). */
  teamId: string;
  /** Up to 5 responses within 30 minutes; `''` if Slack left it out (it always sends it). */
  responseUrl: string;
  triggerId?: string;
  /** Present only when Slack says the command was run inside a thread. */
  threadTs?: string;
}

export interface InteractionAction {
  actionId: string;
  /** Button `value`, or the value of the option chosen in a static select. */
  value?: string;
  /** `users_select`: the user chosen. */
  selectedUser?: string;
}

export type Interaction =
  | {
      type: 'block_actions';
      userId: string;
      teamId?: string;
      channelId: string;
      /** The message holding the clicked element. */
      messageTs: string;
      /** The thread that message belongs to (equal to messageTs on a parent with replies). */
      threadTs?: string;
      actions: InteractionAction[];
      responseUrl?: string;
      triggerId?: string;
    }
  | { type: 'ignored'; reason: string };

type BlockActions = Extract<Interaction, { type: 'block_actions' }>;

function parseWire<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  // Slack never sends NUL characters; PostgreSQL-backed stores (FerretDB) cannot hold or even query
  // them, so a request carrying one is malformed here rather than a database error later.
  if (hasNul(value)) throw new PayloadError(`slack ${where}: contains a NUL character`);
  return parseWireAs('slack', schema, value, where);
}

function parseJson(raw: string, where: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (err) {
    throw new PayloadError(`slack ${where} is not JSON`, { cause: err });
  }
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>' };

/**
 * Slack escapes exactly three characters in message text: `&` → `&amp;`, `<` → `&lt;`, `>` → `&gt;`
 * (so `<…>` is always markup). One pass, so `&amp;lt;` becomes `&lt;`, not `<`.
 */
export function decodeSlackText(text: string): string {
  return text.replace(/&(amp|lt|gt);/g, (_, name: string) => ENTITIES[name] ?? _);
}

/**
 * Slack markup that notifies someone: a user (`<@U…>`, `<@W…>` on Enterprise Grid), a channel
 * (`<#C…>`, private `<#G…>`), a user group (`<!subteam^S…>`) or `<!here>` / `<!channel>` /
 * `<!everyone>`, each optionally with a `|label`. Run it on the raw text: after decoding, a user who
 * typed `&lt;@U1&gt;` literally would look like a mention.
 */
const MENTION =
  /<(?:@[UW][A-Z0-9]+|#[CG][A-Z0-9]+|!subteam\^[A-Z0-9]+|!here|!channel|!everyone)(?:\|[^>]*)?>/;

export function mentionsSomeone(text: string): boolean {
  return MENTION.test(text);
}

function fileOf(file: SlackWireFile): SlackFile {
  const out: SlackFile = { id: file.id };
  if (file.name) out.name = file.name;
  if (file.mimetype) out.mimetype = file.mimetype;
  if (file.url_private) out.urlPrivate = file.url_private;
  if (file.url_private_download) out.urlPrivateDownload = file.url_private_download;
  if (typeof file.size === 'number') out.size = file.size;
  return out;
}

function isFromBot(message: SlackWireMessage): boolean {
  return Boolean(message.bot_id) || message.subtype === 'bot_message';
}

/** Subtypes that are a person writing in the thread (a file with or without a comment included). */
const HUMAN_SUBTYPES = new Set([undefined, 'file_share', 'thread_broadcast']);

function normalizeMessageEvent(eventId: string, teamId: string, event: SlackMessageEventWire): AgentEvent {
  const { subtype, channel } = event;

  if (subtype === 'message_changed') {
    const after = event.message;
    if (!after) throw new PayloadError('slack message_changed without message');
    if (isFromBot(after)) return { type: 'ignored', eventId, reason: 'edit of a bot message' };
    const rawText = after.text ?? '';
    // Slack also sends message_changed for unfurls and reply-count updates; only a new text is an edit.
    const before = event.previous_message;
    if (before && (before.text ?? '') === rawText) {
      return { type: 'ignored', eventId, reason: 'message_changed without a text change' };
    }
    const changed: MessageChanged = {
      type: 'message_changed',
      eventId,
      channel,
      ts: after.ts,
      text: decodeSlackText(rawText),
      rawText,
    };
    if (after.thread_ts) changed.threadTs = after.thread_ts;
    if (after.user) changed.user = after.user;
    return changed;
  }

  if (subtype === 'message_deleted') {
    const before = event.previous_message;
    const ts = event.deleted_ts ?? before?.ts;
    if (!ts) throw new PayloadError('slack message_deleted without deleted_ts or previous_message.ts');
    if (before && isFromBot(before)) return { type: 'ignored', eventId, reason: 'deletion of a bot message' };
    const deleted: MessageDeleted = { type: 'message_deleted', eventId, channel, ts };
    if (before?.thread_ts) deleted.threadTs = before.thread_ts;
    return deleted;
  }

  if (isFromBot(event)) return { type: 'ignored', eventId, reason: 'bot message' };
  if (!HUMAN_SUBTYPES.has(subtype)) return { type: 'ignored', eventId, reason: `message subtype ${subtype}` };
  if (!event.thread_ts || event.thread_ts === event.ts) {
    return { type: 'ignored', eventId, reason: 'top-level channel message (not in a thread)' };
  }
  if (!event.user) return { type: 'ignored', eventId, reason: 'thread message without a user' };

  const rawText = event.text ?? '';
  const reply: ThreadReply = {
    type: 'thread_reply',
    eventId,
    teamId,
    channel,
    threadTs: event.thread_ts,
    ts: event.ts,
    user: event.user,
    text: decodeSlackText(rawText),
    rawText,
    files: (event.files ?? []).map(fileOf),
  };
  if (subtype === 'thread_broadcast') reply.broadcast = true;
  return reply;
}

/** An Events API body (JSON) → one agent event. Throws PayloadError on non-JSON or a malformed body. */
export function parseSlackEvent(rawBody: Buffer): AgentEvent {
  const json = parseJson(rawBody.toString('utf8'), 'event body');
  const envelope = parseWire(slackEnvelopeSchema, json, 'event body');

  if (envelope.type === 'url_verification') {
    const { challenge } = parseWire(slackUrlVerificationSchema, json, 'url_verification');
    return { type: 'url_verification', challenge };
  }
  if (envelope.type !== 'event_callback') {
    // e.g. app_rate_limited: Slack telling us it dropped events; nothing to route.
    return { type: 'ignored', reason: `envelope type ${envelope.type}` };
  }

  const callback = parseWire(slackEventCallbackSchema, json, 'event_callback');
  const eventId = callback.event_id;
  if (callback.event.type !== 'message') {
    return { type: 'ignored', eventId, reason: `event type ${callback.event.type}` };
  }
  // Bot posts (ours included) are never routed, so a shape we would not read must not refuse them:
  // Slack's documented bot_message sample has no `channel`.
  const raw = callback.event as { subtype?: unknown; bot_id?: unknown };
  if (raw.subtype === 'bot_message' || (typeof raw.bot_id === 'string' && raw.subtype === undefined))
    return { type: 'ignored', eventId, reason: 'bot message' };
  const event = parseWire(slackMessageEventSchema, callback.event, 'message event');
  return normalizeMessageEvent(eventId, callback.team_id, event);
}

function formOf(rawBody: Buffer): Record<string, string> {
  // A repeated field keeps its first value; Slack sends each field once.
  const form: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(rawBody.toString('utf8'))) {
    if (!(key in form)) form[key] = value;
  }
  return form;
}

/**
 * Slack checks the certificate of a slash-command URL now and then with a form holding `ssl_check=1`
 * and no command; answer it 200 without running anything.
 */
export function isSlackSslCheck(rawBody: Buffer): boolean {
  return formOf(rawBody).ssl_check === '1';
}

/** A slash command's form body → SlashCommand. Throws PayloadError if command, user_id or channel_id is missing. */
export function parseSlashCommand(rawBody: Buffer): SlashCommand {
  const form = parseWire(slackSlashCommandSchema, formOf(rawBody), 'slash command');
  const command: SlashCommand = {
    command: form.command,
    text: (form.text ?? '').trim(),
    userId: form.user_id,
    channelId: form.channel_id,
    teamId: form.team_id ?? '',
    responseUrl: form.response_url ?? '',
  };
  if (form.user_name) command.userName = form.user_name;
  if (form.trigger_id) command.triggerId = form.trigger_id;
  if (form.thread_ts) command.threadTs = form.thread_ts;
  return command;
}

/**
 * An interactivity form body (`payload=<JSON>`) → Interaction. `block_actions` on a message is
 * supported; other payload types, and block actions from modals or the Home tab, are ignored.
 * Throws PayloadError when `payload` is missing or not JSON, or a block_actions payload is malformed.
 */
export function parseInteraction(rawBody: Buffer): Interaction {
  const raw = formOf(rawBody).payload;
  if (!raw) throw new PayloadError('slack interaction without a payload field');
  const json = parseJson(raw, 'interaction payload');
  const { type } = parseWire(slackInteractionEnvelopeSchema, json, 'interaction payload');
  if (type !== 'block_actions') return { type: 'ignored', reason: `interaction type ${type}` };

  const payload = parseWire(slackBlockActionsSchema, json, 'block_actions');
  const channelId = payload.channel?.id ?? payload.container?.channel_id;
  const messageTs = payload.container?.message_ts ?? payload.message?.ts;
  if (!channelId || !messageTs) {
    return {
      type: 'ignored',
      reason: `block_actions from a ${payload.container?.type ?? 'non-message'} surface`,
    };
  }
  const interaction: BlockActions = {
    type: 'block_actions',
    userId: payload.user.id,
    channelId,
    messageTs,
    actions: payload.actions.map((a) => {
      const action: InteractionAction = { actionId: a.action_id };
      const value = a.value ?? a.selected_option?.value;
      if (value) action.value = value;
      if (a.selected_user) action.selectedUser = a.selected_user;
      return action;
    }),
  };
  const teamId = payload.team?.id ?? payload.user.team_id;
  if (teamId) interaction.teamId = teamId;
  const threadTs = payload.message?.thread_ts ?? payload.container?.thread_ts;
  if (threadTs) interaction.threadTs = threadTs;
  if (payload.response_url) interaction.responseUrl = payload.response_url;
  if (payload.trigger_id) interaction.triggerId = payload.trigger_id;
  return interaction;
}

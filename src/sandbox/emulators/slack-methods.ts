/**
 * The Slack Web API methods the emulator answers, over a `SlackWorkspace`: each takes the call's
 * arguments and returns the body of an `ok: true` answer, or throws `SlackMethodError`.
 */
import {
  bool,
  fileObject,
  isRecord,
  requireStr,
  SlackMethodError,
  str,
  type SlackWorkspace,
} from './slack-workspace';

const TEAM_NAME = 'Rapport Test';
const TEAM_DOMAIN = 'rapport-test';
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

/** The message a reactions.* call names, and the reaction (without colons). */
function reactionOn(ws: SlackWorkspace, args: Record<string, unknown>) {
  const message = ws.find(
    requireStr(args, 'channel', 'channel_not_found'),
    requireStr(args, 'timestamp', 'message_not_found'),
  );
  if (!message) throw new SlackMethodError('message_not_found');
  return { message, name: requireStr(args, 'name', 'invalid_name').replace(/^:|:$/g, '') };
}

export type SlackMethod = (args: Record<string, unknown>) => Record<string, unknown>;

export function slackMethods(ws: SlackWorkspace): Record<string, SlackMethod> {
  return {
    'auth.test': () => ({
      url: `https://${TEAM_DOMAIN}.slack.com/`,
      team: TEAM_NAME,
      user: 'rapport',
      team_id: ws.teamId,
      user_id: ws.botUserId,
      bot_id: ws.botId,
      is_enterprise_install: false,
    }),

    'chat.postMessage': (args) => {
      const channel = requireStr(args, 'channel', 'channel_not_found');
      const text = str(args, 'text') ?? '';
      const blocks = Array.isArray(args.blocks) ? (args.blocks as unknown[]) : undefined;
      if (text === '' && !blocks && !Array.isArray(args.attachments)) throw new SlackMethodError('no_text');
      const metadata = args.metadata;
      const message = ws.store({
        channel,
        ts: ws.nextTs(),
        user: ws.botUserId,
        bot_id: ws.botId,
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
      return { channel, ts: message.ts, message: ws.wire(message, true) };
    },

    'chat.update': (args) => {
      const channel = requireStr(args, 'channel', 'channel_not_found');
      const ts = requireStr(args, 'ts', 'message_not_found');
      const message = ws.find(channel, ts);
      if (!message) throw new SlackMethodError('message_not_found');
      if (message.user !== ws.botUserId) throw new SlackMethodError('cant_update_message');
      const text = str(args, 'text');
      if (text !== undefined) message.text = text;
      if (Array.isArray(args.blocks)) message.blocks = args.blocks as unknown[];
      message.edited = { user: ws.botUserId, ts: ws.nextTs() };
      ws.touched.add(message);
      return { channel, ts, text: message.text, message: ws.wire(message, true) };
    },

    'chat.delete': (args) => {
      const channel = requireStr(args, 'channel', 'channel_not_found');
      const ts = requireStr(args, 'ts', 'message_not_found');
      const list = ws.channels.get(channel) ?? [];
      const index = list.findIndex((m) => m.ts === ts);
      const message = list[index];
      if (!message) throw new SlackMethodError('message_not_found');
      if (message.user !== ws.botUserId) throw new SlackMethodError('cant_delete_message');
      list.splice(index, 1);
      ws.touched.delete(message);
      ws.removed.push({ channel, ts });
      return { channel, ts };
    },

    'chat.postEphemeral': (args) => {
      requireStr(args, 'channel', 'channel_not_found');
      requireStr(args, 'user', 'user_not_found');
      if (!str(args, 'text') && !Array.isArray(args.blocks)) throw new SlackMethodError('no_text');
      return { message_ts: ws.nextTs() };
    },

    'reactions.add': (args) => {
      const { message, name } = reactionOn(ws, args);
      if (message.reactions.includes(name)) throw new SlackMethodError('already_reacted');
      message.reactions.push(name);
      ws.touched.add(message);
      return {};
    },

    'reactions.remove': (args) => {
      const { message, name } = reactionOn(ws, args);
      if (!message.reactions.includes(name)) throw new SlackMethodError('no_reaction');
      message.reactions = message.reactions.filter((r) => r !== name);
      ws.touched.add(message);
      return {};
    },

    'conversations.replies': (args) => {
      const channel = requireStr(args, 'channel', 'channel_not_found');
      const ts = requireStr(args, 'ts', 'thread_not_found');
      const anchor = ws.find(channel, ts);
      if (!anchor) throw new SlackMethodError('thread_not_found');
      return ws.pageOf(ws.threadOf(channel, anchor.thread_ts ?? anchor.ts), args);
    },

    'conversations.history': (args) => {
      const channel = requireStr(args, 'channel', 'channel_not_found');
      // Top-level messages only (thread replies are not in history unless broadcast), newest first.
      const all = (ws.channels.get(channel) ?? [])
        .filter((m) => m.thread_ts === undefined || m.thread_ts === m.ts || m.reply_broadcast)
        .filter((m) => inRange(m.ts, str(args, 'oldest'), str(args, 'latest'), bool(args, 'inclusive')))
        .reverse();
      return ws.pageOf(all, args);
    },

    'users.info': (args) => {
      const id = requireStr(args, 'user', 'user_not_found');
      const known = ws.users.get(id);
      if (!known && !/^[UW][A-Z0-9]+$/.test(id)) throw new SlackMethodError('user_not_found');
      const isBot = id === ws.botUserId;
      const name = known?.name ?? (isBot ? 'rapport' : `user.${id.toLowerCase()}`);
      const realName = known?.realName ?? (isBot ? 'Rapport' : `User ${id}`);
      const tz = known?.tz ?? 'America/New_York';
      return {
        user: {
          id,
          team_id: ws.teamId,
          name,
          deleted: false,
          real_name: realName,
          tz,
          tz_label: tz === 'America/New_York' ? 'Eastern Standard Time' : tz,
          tz_offset: tz === 'America/New_York' ? -18000 : 0,
          profile: { real_name: realName, display_name: name, team: ws.teamId },
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
      const file = ws.addFile(
        { name: filename, title: filename, mimetype: mimeTypeOf(filename), size: length },
        false,
      );
      return { upload_url: `${ws.baseUrl}upload/v1/${file.id}`, file_id: file.id };
    },

    // Deleting a file removes it from the messages that show it (Slack shows a "deleted" tombstone).
    'files.delete': (args) => {
      const id = requireStr(args, 'file', 'file_not_found');
      const file = ws.files.get(id);
      if (!file) throw new SlackMethodError('file_not_found');
      if (file.byPerson) throw new SlackMethodError('cant_delete_file');
      ws.files.delete(id);
      for (const list of ws.channels.values())
        for (const m of list) if (m.files) m.files = m.files.filter((f) => f.id !== id);
      return {};
    },

    'files.completeUploadExternal': (args) => {
      const list = args.files;
      if (!Array.isArray(list) || list.length === 0) throw new SlackMethodError('invalid_arguments');
      const completed = list.map((entry: unknown) => {
        const id = isRecord(entry) ? str(entry, 'id') : undefined;
        const file = id ? ws.files.get(id) : undefined;
        if (!file?.data) throw new SlackMethodError('file_not_found');
        const title = isRecord(entry) ? str(entry, 'title') : undefined;
        if (title) file.title = title;
        return file;
      });
      const channel = str(args, 'channel_id') ?? str(args, 'channels');
      if (channel) {
        ws.store({
          channel,
          ts: ws.nextTs(),
          user: ws.botUserId,
          bot_id: ws.botId,
          text: str(args, 'initial_comment') ?? '',
          ...(str(args, 'thread_ts') ? { thread_ts: str(args, 'thread_ts') } : {}),
          files: completed.map(fileObject),
        });
      }
      return { files: completed.map((f) => ({ ...fileObject(f), channels: channel ? [channel] : [] })) };
    },
  };
}

/**
 * Slack's inbound payloads as they arrive, as loose zod schemas: Slack adds fields without notice, so
 * unknown fields are allowed and only the fields Rapport reads are checked.
 * - Events API: JSON, `url_verification` or an `event_callback` envelope around one event.
 *   https://docs.slack.dev/apis/events-api/ · https://docs.slack.dev/reference/events/message
 * - Slash commands: `application/x-www-form-urlencoded` fields.
 *   https://docs.slack.dev/interactivity/implementing-slash-commands
 * - Interactivity: form-encoded with one `payload` field holding JSON.
 *   https://docs.slack.dev/reference/interaction-payloads/block_actions-payload
 */
import { z } from 'zod';

/** Every Events API body has a string `type`; the rest depends on it. */
export const slackEnvelopeSchema = z.looseObject({
  type: z.string().min(1),
});

/** Sent once when the Request URL is saved in the app settings; answer with `challenge`. */
export const slackUrlVerificationSchema = z.looseObject({
  type: z.literal('url_verification'),
  challenge: z.string().min(1),
});

/** One event per delivery; `event_id` is the deduplication key across Slack's retries. */
export const slackEventCallbackSchema = z.looseObject({
  type: z.literal('event_callback'),
  event_id: z.string().min(1),
  team_id: z.string().min(1),
  api_app_id: z.string().optional(),
  event_time: z.number().optional(),
  event: z.looseObject({ type: z.string().min(1) }),
});

/** A file as shared in a message (`files[]`). Slack Connect files may lack `url_private`. */
export const slackWireFileSchema = z.looseObject({
  id: z.string().min(1),
  name: z.string().nullish(),
  title: z.string().nullish(),
  mimetype: z.string().nullish(),
  size: z.number().nullish(),
  url_private: z.string().nullish(),
  url_private_download: z.string().nullish(),
  mode: z.string().nullish(),
});

export type SlackWireFile = z.output<typeof slackWireFileSchema>;

/**
 * A message as it appears in an event or inside `message_changed.message` /
 * `previous_message`. `thread_ts` equals `ts` on a thread's parent and differs on a reply.
 */
export const slackWireMessageSchema = z.looseObject({
  type: z.string().optional(),
  subtype: z.string().optional(),
  ts: z.string().min(1),
  thread_ts: z.string().optional(),
  user: z.string().optional(),
  bot_id: z.string().nullish(),
  text: z.string().nullish(),
  files: z.array(slackWireFileSchema).optional(),
});

export type SlackWireMessage = z.output<typeof slackWireMessageSchema>;

/** The `message` event (any subtype): channel messages, replies, edits, deletions, bot posts. */
export const slackMessageEventSchema = slackWireMessageSchema.extend({
  type: z.literal('message'),
  channel: z.string().min(1),
  channel_type: z.string().optional(),
  event_ts: z.string().optional(),
  /** `message_changed`: the message after the edit. */
  message: slackWireMessageSchema.optional(),
  /** `message_changed` and `message_deleted`: the message before. */
  previous_message: slackWireMessageSchema.optional(),
  /** `message_deleted`: the ts of the deleted message. */
  deleted_ts: z.string().optional(),
  hidden: z.boolean().optional(),
});

export type SlackMessageEventWire = z.output<typeof slackMessageEventSchema>;

/** A slash command's form fields (all strings). `ssl_check=1` requests carry no command. */
export const slackSlashCommandSchema = z.looseObject({
  command: z.string().min(1),
  text: z.string().optional(),
  user_id: z.string().min(1),
  user_name: z.string().optional(),
  channel_id: z.string().min(1),
  channel_name: z.string().optional(),
  team_id: z.string().optional(),
  team_domain: z.string().optional(),
  enterprise_id: z.string().optional(),
  api_app_id: z.string().optional(),
  response_url: z.string().optional(),
  trigger_id: z.string().optional(),
  thread_ts: z.string().optional(),
});

/** The JSON inside an interaction's `payload` field; `type` says which kind. */
export const slackInteractionEnvelopeSchema = z.looseObject({
  type: z.string().min(1),
});

/** One element of `block_actions.actions[]`: buttons carry `value`, selects `selected_*`. */
export const slackBlockActionSchema = z.looseObject({
  action_id: z.string().min(1),
  block_id: z.string().optional(),
  type: z.string().optional(),
  value: z.string().nullish(),
  selected_user: z.string().nullish(),
  selected_option: z.looseObject({ value: z.string() }).nullish(),
  action_ts: z.string().optional(),
});

/**
 * `block_actions` from a message (`container.type === "message"`). From a modal or the Home tab
 * there is no channel or message, only `view`.
 */
export const slackBlockActionsSchema = z.looseObject({
  type: z.literal('block_actions'),
  user: z.looseObject({
    id: z.string().min(1),
    username: z.string().optional(),
    team_id: z.string().optional(),
  }),
  team: z.looseObject({ id: z.string() }).nullish(),
  api_app_id: z.string().optional(),
  trigger_id: z.string().optional(),
  response_url: z.string().optional(),
  container: z
    .looseObject({
      type: z.string(),
      message_ts: z.string().optional(),
      channel_id: z.string().optional(),
      thread_ts: z.string().optional(),
    })
    .optional(),
  channel: z.looseObject({ id: z.string().min(1) }).nullish(),
  message: z.looseObject({ ts: z.string().min(1), thread_ts: z.string().optional() }).nullish(),
  actions: z.array(slackBlockActionSchema),
});

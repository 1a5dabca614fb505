/**
 * One way to build what the providers send Rapport, for the sandbox (at runtime), the tests and
 * the benchmarks: Twilio's form fields, Meta's webhook envelopes, Slack's Events API envelope and
 * slash-command form, each signed the way its provider signs it (Twilio over PUBLIC_URL + path and
 * the fields, Meta over the raw JSON, Slack v0 over timestamp and body). Pure: no I/O.
 */
import { randomBytes } from 'node:crypto';
import { signMetaPayload } from '../channels/meta/signature';
import { signSlackRequest } from '../channels/slack/signature';
import { signTwilioRequest } from '../channels/twilio/signature';
import type { TwilioForm } from '../channels/twilio/wire';

/** A request ready to POST to Rapport at `path`. */
export interface SignedRequest {
  path: string;
  body: string;
  headers: Record<string, string>;
}

const digits = (s: string) => s.replace(/\D/g, '');

/** Form-encodes Twilio fields; a field with several values (`MediaUrl`) is repeated. */
export function formBody(form: TwilioForm): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(form))
    for (const value of Array.isArray(v) ? v : [v]) params.append(k, value);
  return params.toString();
}

/** The headers Twilio sends with `form` to `url` (PUBLIC_URL + path). */
export function twilioHeaders(authToken: string, url: string, form: TwilioForm): Record<string, string> {
  return {
    'content-type': 'application/x-www-form-urlencoded',
    'x-twilio-signature': signTwilioRequest(authToken, url, form),
  };
}

export function signedTwilio(
  authToken: string,
  publicUrl: string,
  path: string,
  form: TwilioForm,
): SignedRequest {
  return { path, body: formBody(form), headers: twilioHeaders(authToken, `${publicUrl}${path}`, form) };
}

/** A Meta webhook (`payload` as JSON, or raw text), signed with the app secret. */
export function signedMeta(appSecret: string, payload: unknown): SignedRequest {
  const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
  return {
    path: '/webhooks/meta',
    body,
    headers: { 'content-type': 'application/json', 'x-hub-signature-256': signMetaPayload(appSecret, body) },
  };
}

/** A Slack request to `path` (JSON for events, a form for commands and interactions). */
export function signedSlack(
  signingSecret: string,
  path: '/slack/events' | '/slack/commands' | '/slack/interactions',
  body: string,
): SignedRequest {
  const type = path === '/slack/events' ? 'application/json' : 'application/x-www-form-urlencoded';
  return { path, body, headers: { 'content-type': type, ...signSlackRequest(signingSecret, body) } };
}

/** An interaction (`block_actions`, …) as Slack posts it: the JSON `payload` in a form. */
export function signedInteraction(signingSecret: string, payload: unknown): SignedRequest {
  const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
  return signedSlack(signingSecret, '/slack/interactions', body);
}

/** A customer's message as Twilio posts it (SMS, or WhatsApp when `whatsapp` names the profile). */
export function twilioMessageForm(m: {
  sid: string;
  accountSid: string;
  /** As Twilio sends them: `+1…` for SMS, `whatsapp:+1…` for WhatsApp. */
  from: string;
  to: string;
  body: string;
  whatsapp?: { profileName: string };
  media?: { url: string; contentType: string };
}): Record<string, string> {
  return {
    ...(m.whatsapp ? {} : { ToCountry: 'US' }),
    SmsMessageSid: m.sid,
    NumMedia: m.media ? '1' : '0',
    ...(m.media ? { MediaUrl0: m.media.url, MediaContentType0: m.media.contentType } : {}),
    ...(m.whatsapp ? { ProfileName: m.whatsapp.profileName, WaId: digits(m.from) } : {}),
    SmsSid: m.sid,
    SmsStatus: 'received',
    Body: m.body,
    To: m.to,
    NumSegments: '1',
    MessageSid: m.sid,
    AccountSid: m.accountSid,
    From: m.from,
    ApiVersion: '2010-04-01',
  };
}

/** Twilio's status callback for a message Rapport sent (`from` is Rapport's number). */
export function twilioStatusForm(s: {
  sid: string;
  status: string;
  accountSid: string;
  to: string;
  from: string;
  errorCode?: string;
}): Record<string, string> {
  return {
    MessageSid: s.sid,
    SmsSid: s.sid,
    MessageStatus: s.status,
    SmsStatus: s.status,
    AccountSid: s.accountSid,
    To: s.to,
    From: s.from,
    ApiVersion: '2010-04-01',
    ...(s.errorCode ? { ErrorCode: s.errorCode } : {}),
  };
}

/** The WhatsApp Business number a Cloud webhook is about. */
export interface CloudAccount {
  wabaId: string;
  phoneNumberId: string;
  displayPhoneNumber: string;
}

/** A WhatsApp Cloud `messages` change; `value` adds `contacts`, `messages` or `statuses`. */
export function cloudChange(account: CloudAccount, value: Record<string, unknown>) {
  return {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: account.wabaId,
        changes: [
          {
            field: 'messages',
            value: {
              messaging_product: 'whatsapp',
              metadata: {
                display_phone_number: account.displayPhoneNumber,
                phone_number_id: account.phoneNumberId,
              },
              ...value,
            },
          },
        ],
      },
    ],
  };
}

/** A text from `waId` (with its profile name), as one Cloud `messages` change. */
export function cloudText(
  account: CloudAccount,
  m: { waId: string; name: string; text: string; id?: string; timestamp?: number },
) {
  return cloudChange(account, {
    contacts: [{ profile: { name: m.name }, wa_id: m.waId }],
    messages: [
      {
        from: m.waId,
        id: m.id ?? `wamid.${randomBytes(12).toString('hex')}`,
        timestamp: String(m.timestamp ?? Math.floor(Date.now() / 1000)),
        type: 'text',
        text: { body: m.text },
      },
    ],
  });
}

/** A Messenger webhook for page `pageId`: one entry whose `messaging` events come from `psid`. */
export function messengerEntry(
  pageId: string,
  psid: string,
  events: Record<string, unknown>[],
  time = Date.now(),
) {
  return {
    object: 'page',
    entry: [
      {
        id: pageId,
        time,
        messaging: events.map((e) => ({ sender: { id: psid }, recipient: { id: pageId }, ...e })),
      },
    ],
  };
}

/** A Slack Events API `event_id`. */
export function newEventId(): string {
  return `Ev${randomBytes(6).toString('hex').toUpperCase()}`;
}

/** The Events API envelope around `event` (sent from a channel), as Slack delivers it. */
export function slackEventCallback(
  e: { teamId: string; apiAppId: string; eventId?: string },
  event: Record<string, unknown>,
): string {
  return JSON.stringify({
    token: 'legacy',
    team_id: e.teamId,
    api_app_id: e.apiAppId,
    type: 'event_callback',
    event_id: e.eventId ?? newEventId(),
    event_time: Math.floor(Date.now() / 1000),
    event: { ...event, channel_type: 'channel' },
  });
}

/** An agent's message (a thread reply when `threadTs` is set; with `files`, a `file_share`). */
export function slackMessage(m: {
  channel: string;
  user: string;
  text: string;
  ts: string;
  threadTs?: string;
  files?: unknown[];
}): Record<string, unknown> {
  return {
    type: 'message',
    ...(m.files?.length ? { subtype: 'file_share', files: m.files, upload: false } : {}),
    channel: m.channel,
    user: m.user,
    text: m.text,
    ts: m.ts,
    ...(m.threadTs ? { thread_ts: m.threadTs } : {}),
    event_ts: m.ts,
  };
}

/** A message as Slack describes it inside a change or deletion event. */
export type SlackWireMessage = { user: string; text: string; ts: string; thread_ts?: string };

/** An agent edited (`after` set) or deleted their message, as Slack reports it. */
export function slackChange(c: {
  channel: string;
  before: SlackWireMessage;
  after?: SlackWireMessage & { edited?: { user: string; ts: string } };
  ts?: string;
}): Record<string, unknown> {
  const ts = c.ts ?? `${Math.floor(Date.now() / 1000)}.${randomBytes(3).toString('hex')}`;
  const previous = { type: 'message', ...c.before };
  const common = { type: 'message', channel: c.channel, hidden: true, ts, event_ts: ts };
  return c.after
    ? {
        ...common,
        subtype: 'message_changed',
        message: { type: 'message', ...c.after },
        previous_message: previous,
      }
    : { ...common, subtype: 'message_deleted', deleted_ts: c.before.ts, previous_message: previous };
}

/** `/rapport <text>` run by `user` in `channel` (inside a thread when `threadTs` is set). */
export function slashCommandForm(c: {
  teamId: string;
  channel: string;
  user: string;
  userName: string;
  text: string;
  responseUrl: string;
  threadTs?: string;
  apiAppId?: string;
}): string {
  return new URLSearchParams({
    token: 'legacy',
    team_id: c.teamId,
    channel_id: c.channel,
    user_id: c.user,
    user_name: c.userName,
    command: '/rapport',
    text: c.text,
    ...(c.apiAppId ? { api_app_id: c.apiAppId } : {}),
    response_url: c.responseUrl,
    trigger_id: `${Date.now()}.${randomBytes(4).toString('hex')}`,
    ...(c.threadTs ? { thread_ts: c.threadTs } : {}),
  }).toString();
}

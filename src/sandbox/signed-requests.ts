/**
 * The requests the providers would send Rapport, built and signed exactly as they sign them (Twilio's
 * X-Twilio-Signature over PUBLIC_URL + path and the fields, Meta's X-Hub-Signature-256 over the raw
 * JSON, Slack's v0 signature over timestamp and body). The sandbox posts them to Rapport's real
 * routes, so nothing about verification is bypassed. Pure: no I/O.
 */
import { randomBytes } from 'node:crypto';
import { signMetaPayload } from '../channels/meta/signature';
import { signSlackRequest } from '../channels/slack/signature';
import { signTwilioRequest } from '../channels/twilio/signature';

/** How a customer can write: the four provider routes Rapport has. */
export const APPS = ['sms', 'twilio-whatsapp', 'whatsapp-cloud', 'messenger'] as const;
export type App = (typeof APPS)[number];

export type DeliveryState = 'delivered' | 'read';

export interface SignedRequest {
  path: string;
  body: string;
  headers: Record<string, string>;
}

export interface ProviderSecrets {
  publicUrl: string;
  twilio: { accountSid: string; authToken: string; smsFrom: string; whatsappFrom: string };
  meta: {
    appSecret: string;
    pageId: string;
    phoneNumberId: string;
    wabaId: string;
    displayPhoneNumber: string;
  };
  slack: { signingSecret: string; teamId: string; apiUrl: string };
}

export interface Customer {
  name: string;
  /** E.164. */
  phone: string;
  psid: string;
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const digits = (s: string) => s.replace(/\D/g, '');

function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

function twilio(s: ProviderSecrets, path: string, fields: Record<string, string>): SignedRequest {
  return {
    path,
    body: form(fields),
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': signTwilioRequest(s.twilio.authToken, `${s.publicUrl}${path}`, fields),
    },
  };
}

function meta(s: ProviderSecrets, payload: unknown): SignedRequest {
  const body = JSON.stringify(payload);
  return {
    path: '/webhooks/meta',
    body,
    headers: {
      'content-type': 'application/json',
      'x-hub-signature-256': signMetaPayload(s.meta.appSecret, body),
    },
  };
}

/** A customer's message, as the provider of `app` delivers it; `ref` is the provider message id. */
/** A file the customer attaches, as its provider refers to it (registered on the emulator). */
export interface CustomerFile {
  /** Twilio `MediaUrl0`, Messenger `payload.url`. */
  url?: string;
  /** WhatsApp Cloud media id. */
  mediaId?: string;
  contentType: string;
  filename: string;
}

/** The WhatsApp Cloud message type for a file. */
function cloudType(contentType: string): 'image' | 'video' | 'audio' | 'document' {
  const kind = contentType.split('/')[0];
  return kind === 'image' || kind === 'video' || kind === 'audio' ? kind : 'document';
}

export function customerMessage(
  s: ProviderSecrets,
  app: App,
  customer: Customer,
  text: string,
  file?: CustomerFile,
): { request: SignedRequest; ref: string } {
  const now = Date.now();
  if (app === 'sms' || app === 'twilio-whatsapp') {
    const sid = `SM${hex(16)}`;
    const whatsapp = app === 'twilio-whatsapp';
    const fields: Record<string, string> = {
      ToCountry: 'US',
      SmsMessageSid: sid,
      NumMedia: file?.url ? '1' : '0',
      ...(file?.url ? { MediaUrl0: file.url, MediaContentType0: file.contentType } : {}),
      SmsSid: sid,
      SmsStatus: 'received',
      Body: text,
      To: whatsapp ? s.twilio.whatsappFrom : s.twilio.smsFrom,
      NumSegments: '1',
      MessageSid: sid,
      AccountSid: s.twilio.accountSid,
      From: whatsapp ? `whatsapp:${customer.phone}` : customer.phone,
      ApiVersion: '2010-04-01',
      ...(whatsapp ? { ProfileName: customer.name, WaId: digits(customer.phone) } : {}),
    };
    return { request: twilio(s, '/webhooks/twilio', fields), ref: sid };
  }
  if (app === 'whatsapp-cloud') {
    const id = `wamid.${Buffer.from(randomBytes(24)).toString('base64')}`;
    const waId = digits(customer.phone);
    const payload = {
      object: 'whatsapp_business_account',
      entry: [
        {
          id: s.meta.wabaId,
          changes: [
            {
              field: 'messages',
              value: {
                messaging_product: 'whatsapp',
                metadata: {
                  display_phone_number: s.meta.displayPhoneNumber,
                  phone_number_id: s.meta.phoneNumberId,
                },
                contacts: [{ profile: { name: customer.name }, wa_id: waId }],
                messages: [
                  {
                    from: waId,
                    id,
                    timestamp: String(Math.floor(now / 1000)),
                    ...(file?.mediaId
                      ? {
                          type: cloudType(file.contentType),
                          [cloudType(file.contentType)]: {
                            id: file.mediaId,
                            mime_type: file.contentType,
                            ...(text ? { caption: text } : {}),
                            ...(cloudType(file.contentType) === 'document'
                              ? { filename: file.filename }
                              : {}),
                          },
                        }
                      : { type: 'text', text: { body: text } }),
                  },
                ],
              },
            },
          ],
        },
      ],
    };
    return { request: meta(s, payload), ref: id };
  }
  const mid = `m_${randomBytes(30).toString('base64url')}`;
  const payload = {
    object: 'page',
    entry: [
      {
        id: s.meta.pageId,
        time: now,
        messaging: [
          {
            sender: { id: customer.psid },
            recipient: { id: s.meta.pageId },
            timestamp: now,
            message: {
              mid,
              ...(text ? { text } : {}),
              ...(file?.url
                ? {
                    attachments: [
                      {
                        type: file.contentType.startsWith('image/') ? 'image' : 'file',
                        payload: { url: file.url },
                      },
                    ],
                  }
                : {}),
            },
          },
        ],
      },
    ],
  };
  return { request: meta(s, payload), ref: mid };
}

/** The provider's report that a message Rapport sent reached (or was read on) the customer's phone. */
export function deliveryReport(
  s: ProviderSecrets,
  app: App,
  customer: Customer,
  ref: string,
  state: DeliveryState,
): SignedRequest {
  const now = Date.now();
  if (app === 'sms' || app === 'twilio-whatsapp') {
    const whatsapp = app === 'twilio-whatsapp';
    return twilio(s, '/webhooks/twilio/status', {
      MessageSid: ref,
      SmsSid: ref,
      MessageStatus: state,
      SmsStatus: state,
      AccountSid: s.twilio.accountSid,
      To: whatsapp ? `whatsapp:${customer.phone}` : customer.phone,
      From: whatsapp ? s.twilio.whatsappFrom : s.twilio.smsFrom,
      ApiVersion: '2010-04-01',
    });
  }
  if (app === 'whatsapp-cloud') {
    return meta(s, {
      object: 'whatsapp_business_account',
      entry: [
        {
          id: s.meta.wabaId,
          changes: [
            {
              field: 'messages',
              value: {
                messaging_product: 'whatsapp',
                metadata: {
                  display_phone_number: s.meta.displayPhoneNumber,
                  phone_number_id: s.meta.phoneNumberId,
                },
                statuses: [
                  {
                    id: ref,
                    status: state,
                    timestamp: String(Math.floor(now / 1000)),
                    recipient_id: digits(customer.phone),
                  },
                ],
              },
            },
          ],
        },
      ],
    });
  }
  // Messenger names the message in a delivery receipt; a read receipt carries only a watermark.
  const event =
    state === 'delivered'
      ? { delivery: { mids: [ref], watermark: now } }
      : { timestamp: now, read: { watermark: now } };
  return meta(s, {
    object: 'page',
    entry: [
      {
        id: s.meta.pageId,
        time: now,
        messaging: [{ sender: { id: customer.psid }, recipient: { id: s.meta.pageId }, ...event }],
      },
    ],
  });
}

/** A Slack Events API delivery of `event` (in a channel), signed as Slack signs it. */
function signedSlackEvent(s: ProviderSecrets, event: Record<string, unknown>): SignedRequest {
  const body = JSON.stringify({
    token: 'legacy',
    team_id: s.slack.teamId,
    api_app_id: 'A0SANDBOX',
    type: 'event_callback',
    event_id: `Ev${hex(8).toUpperCase()}`,
    event_time: Math.floor(Date.now() / 1000),
    event: { ...event, channel_type: 'channel' },
  });
  return {
    path: '/slack/events',
    body,
    headers: { 'content-type': 'application/json', ...signSlackRequest(s.slack.signingSecret, body) },
  };
}

/** An agent's message in Slack (a thread reply when `threadTs` is set), as the Events API delivers it. */
export function slackMessageEvent(
  s: ProviderSecrets,
  m: { channel: string; user: string; text: string; ts: string; threadTs?: string; files?: unknown[] },
): SignedRequest {
  return signedSlackEvent(s, {
    type: 'message',
    ...(m.files?.length ? { subtype: 'file_share', files: m.files, upload: false } : {}),
    channel: m.channel,
    user: m.user,
    text: m.text,
    ts: m.ts,
    ...(m.threadTs ? { thread_ts: m.threadTs } : {}),
    event_ts: m.ts,
  });
}

type WireMessage = { user: string; text: string; ts: string; thread_ts?: string };

/** An agent edited (`after` set) or deleted their message in a thread, as Slack reports it. */
export function slackChangeEvent(
  s: ProviderSecrets,
  c: { channel: string; before: WireMessage; after?: WireMessage },
): SignedRequest {
  const ts = `${Math.floor(Date.now() / 1000)}.${hex(3)}`;
  const event = c.after
    ? {
        type: 'message',
        subtype: 'message_changed',
        channel: c.channel,
        hidden: true,
        message: c.after,
        previous_message: c.before,
        ts,
        event_ts: ts,
      }
    : {
        type: 'message',
        subtype: 'message_deleted',
        channel: c.channel,
        hidden: true,
        deleted_ts: c.before.ts,
        previous_message: c.before,
        ts,
        event_ts: ts,
      };
  return signedSlackEvent(s, event);
}

/** An agent pressed a button (or picked a user) on a card in `channel`, as Slack reports it. */
export function blockAction(
  s: ProviderSecrets,
  a: {
    channel: string;
    user: string;
    cardTs: string;
    actionId: string;
    value?: string;
    selectedUser?: string;
    responseUrl: string;
  },
): SignedRequest {
  const payload = {
    type: 'block_actions',
    user: { id: a.user, team_id: s.slack.teamId },
    team: { id: s.slack.teamId },
    api_app_id: 'A0SANDBOX',
    trigger_id: `${Date.now()}.${hex(6)}`,
    response_url: a.responseUrl,
    container: { type: 'message', message_ts: a.cardTs, channel_id: a.channel },
    channel: { id: a.channel },
    message: { ts: a.cardTs },
    actions: [
      {
        action_id: a.actionId,
        type: a.selectedUser ? 'users_select' : 'button',
        ...(a.value ? { value: a.value } : {}),
        ...(a.selectedUser ? { selected_user: a.selectedUser } : {}),
        action_ts: `${Math.floor(Date.now() / 1000)}.${hex(3)}`,
      },
    ],
  };
  const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
  return {
    path: '/slack/interactions',
    body,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...signSlackRequest(s.slack.signingSecret, body),
    },
  };
}

/** `/rapport <text>` run by `user` in `channel` (inside a thread when `threadTs` is set). */
export function slashCommand(
  s: ProviderSecrets,
  c: { channel: string; user: string; userName: string; text: string; threadTs?: string },
): SignedRequest {
  const body = new URLSearchParams({
    token: 'legacy',
    team_id: s.slack.teamId,
    team_domain: 'rapport-sandbox',
    channel_id: c.channel,
    user_id: c.user,
    user_name: c.userName,
    command: '/rapport',
    text: c.text,
    api_app_id: 'A0SANDBOX',
    response_url: `${s.slack.apiUrl}commands.respond`,
    trigger_id: `${Date.now()}.${hex(4)}`,
    ...(c.threadTs ? { thread_ts: c.threadTs } : {}),
  }).toString();
  return {
    path: '/slack/commands',
    body,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...signSlackRequest(s.slack.signingSecret, body),
    },
  };
}

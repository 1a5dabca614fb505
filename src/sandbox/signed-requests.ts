/**
 * What a sandbox customer or agent does, as the signed request its provider would send Rapport
 * (built with `wire-builders`). The sandbox posts them to Rapport's real routes, so nothing about
 * verification is bypassed. Pure: no I/O.
 */
import { randomBytes } from 'node:crypto';
import {
  cloudChange,
  messengerEntry,
  signedMeta,
  signedInteraction,
  signedSlack,
  signedTwilio,
  slackChange,
  slackEventCallback,
  slackMessage,
  slashCommandForm,
  twilioMessageForm,
  twilioStatusForm,
  type SignedRequest,
  type SlackWireMessage,
} from './wire-builders';

export type { SignedRequest } from './wire-builders';

/** How a customer can write: the four provider routes Rapport has. */
export const APPS = ['sms', 'twilio-whatsapp', 'whatsapp-cloud', 'messenger'] as const;
export type App = (typeof APPS)[number];

export type DeliveryState = 'delivered' | 'read';

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
const isTwilio = (app: App): app is 'sms' | 'twilio-whatsapp' => app === 'sms' || app === 'twilio-whatsapp';

const twilio = (s: ProviderSecrets, path: string, form: Record<string, string>) =>
  signedTwilio(s.twilio.authToken, s.publicUrl, path, form);
const meta = (s: ProviderSecrets, payload: unknown) => signedMeta(s.meta.appSecret, payload);

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

function twilioMessage(
  s: ProviderSecrets,
  app: 'sms' | 'twilio-whatsapp',
  customer: Customer,
  text: string,
  file?: CustomerFile,
) {
  const sid = `SM${hex(16)}`;
  const whatsapp = app === 'twilio-whatsapp';
  const form = twilioMessageForm({
    sid,
    accountSid: s.twilio.accountSid,
    from: whatsapp ? `whatsapp:${customer.phone}` : customer.phone,
    to: whatsapp ? s.twilio.whatsappFrom : s.twilio.smsFrom,
    body: text,
    ...(whatsapp ? { whatsapp: { profileName: customer.name } } : {}),
    ...(file?.url ? { media: { url: file.url, contentType: file.contentType } } : {}),
  });
  return { request: twilio(s, '/webhooks/twilio', form), ref: sid };
}

/** The `messages[]` entry for a Cloud text, or a file with its caption. */
function cloudContent(text: string, file?: CustomerFile): Record<string, unknown> {
  if (!file?.mediaId) return { type: 'text', text: { body: text } };
  const type = cloudType(file.contentType);
  return {
    type,
    [type]: {
      id: file.mediaId,
      mime_type: file.contentType,
      ...(text ? { caption: text } : {}),
      ...(type === 'document' ? { filename: file.filename } : {}),
    },
  };
}

function cloudMessage(s: ProviderSecrets, customer: Customer, text: string, file?: CustomerFile) {
  const id = `wamid.${Buffer.from(randomBytes(24)).toString('base64')}`;
  const waId = digits(customer.phone);
  const payload = cloudChange(s.meta, {
    contacts: [{ profile: { name: customer.name }, wa_id: waId }],
    messages: [
      { from: waId, id, timestamp: String(Math.floor(Date.now() / 1000)), ...cloudContent(text, file) },
    ],
  });
  return { request: meta(s, payload), ref: id };
}

function messengerMessage(s: ProviderSecrets, customer: Customer, text: string, file?: CustomerFile) {
  const mid = `m_${randomBytes(30).toString('base64url')}`;
  const attachment = file?.url
    ? { type: file.contentType.startsWith('image/') ? 'image' : 'file', payload: { url: file.url } }
    : undefined;
  const message = { mid, ...(text ? { text } : {}), ...(attachment ? { attachments: [attachment] } : {}) };
  const payload = messengerEntry(s.meta.pageId, customer.psid, [{ timestamp: Date.now(), message }]);
  return { request: meta(s, payload), ref: mid };
}

/** A customer's message, as the provider of `app` delivers it; `ref` is the provider message id. */
export function customerMessage(
  s: ProviderSecrets,
  app: App,
  customer: Customer,
  text: string,
  file?: CustomerFile,
): { request: SignedRequest; ref: string } {
  if (isTwilio(app)) return twilioMessage(s, app, customer, text, file);
  if (app === 'whatsapp-cloud') return cloudMessage(s, customer, text, file);
  return messengerMessage(s, customer, text, file);
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
  if (isTwilio(app)) {
    const whatsapp = app === 'twilio-whatsapp';
    const form = twilioStatusForm({
      sid: ref,
      status: state,
      accountSid: s.twilio.accountSid,
      to: whatsapp ? `whatsapp:${customer.phone}` : customer.phone,
      from: whatsapp ? s.twilio.whatsappFrom : s.twilio.smsFrom,
    });
    return twilio(s, '/webhooks/twilio/status', form);
  }
  if (app === 'whatsapp-cloud') {
    const status = {
      id: ref,
      status: state,
      timestamp: String(Math.floor(now / 1000)),
      recipient_id: digits(customer.phone),
    };
    return meta(s, cloudChange(s.meta, { statuses: [status] }));
  }
  // Messenger names the message in a delivery receipt; a read receipt carries only a watermark.
  const event =
    state === 'delivered'
      ? { delivery: { mids: [ref], watermark: now } }
      : { timestamp: now, read: { watermark: now } };
  return meta(s, messengerEntry(s.meta.pageId, customer.psid, [event], now));
}

/** A Slack Events API delivery of `event` (in a channel), signed as Slack signs it. */
function signedSlackEvent(s: ProviderSecrets, event: Record<string, unknown>): SignedRequest {
  const body = slackEventCallback({ teamId: s.slack.teamId, apiAppId: 'A0SANDBOX' }, event);
  return signedSlack(s.slack.signingSecret, '/slack/events', body);
}

/** An agent's message in Slack (a thread reply when `threadTs` is set), as the Events API delivers it. */
export function slackMessageEvent(
  s: ProviderSecrets,
  m: { channel: string; user: string; text: string; ts: string; threadTs?: string; files?: unknown[] },
): SignedRequest {
  return signedSlackEvent(s, slackMessage(m));
}

/** An agent edited (`after` set) or deleted their message in a thread, as Slack reports it. */
export function slackChangeEvent(
  s: ProviderSecrets,
  c: { channel: string; before: SlackWireMessage; after?: SlackWireMessage },
): SignedRequest {
  return signedSlackEvent(s, slackChange(c));
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
  return signedInteraction(s.slack.signingSecret, payload);
}

/** `/rapport <text>` run by `user` in `channel` (inside a thread when `threadTs` is set). */
export function slashCommand(
  s: ProviderSecrets,
  c: { channel: string; user: string; userName: string; text: string; threadTs?: string },
): SignedRequest {
  const body = slashCommandForm({
    ...c,
    teamId: s.slack.teamId,
    apiAppId: 'A0SANDBOX',
    responseUrl: `${s.slack.apiUrl}commands.respond`,
  });
  return signedSlack(s.slack.signingSecret, '/slack/commands', body);
}

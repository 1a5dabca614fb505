/**
 * A whole Rapport world for end-to-end tests: the app (real Redis, real MongoDB-protocol server,
 * real HTTP) with the real SDKs pointed at local emulators of Slack, Twilio and the Graph API, plus
 * helpers that act as customers (signed webhooks) and as agents (signed Slack events and commands).
 */
import { randomBytes } from 'node:crypto';
import { signMetaPayload } from '../../src/channels/meta/signature';
import { signSlackRequest } from '../../src/channels/slack/signature';
import { startGraphEmulator, type GraphEmulator } from '../emulators/graph';
import { startSlackEmulator, type SlackEmulator } from '../emulators/slack';
import { startTwilioEmulator, type TwilioEmulator } from '../emulators/twilio';
import type { AppOptions } from '../../src/app';
import { startTestApp, type TestApp } from './app';
import { TEST_ADMIN_TOKEN, TEST_META, TEST_TWILIO } from './env';
import { formBody, twilioHeaders } from './signing';

export const PUBLIC_URL = 'https://rapport.example.test';
export const SLACK_SECRET = 'test-slack-signing-secret';
export const ESCALATION = 'C0ESCALATE';
export const PAGE_ID = '100000000000001';
export const CLOUD_PHONE_ID = '106540352242922';

export interface World {
  t: TestApp;
  slack: SlackEmulator;
  twilio: TwilioEmulator;
  graph: GraphEmulator;
  stop(): Promise<void>;
  /** The admin API's JSON answer; tests assert on its shape. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed JSON, checked by each test's expectations
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  addAgent(a: {
    slackUserId: string;
    name: string;
    inboxChannelId: string;
    capacity?: number;
    backupAgentId?: string;
  }): Promise<{ id: string }>;
  sms(from: string, text: string, sid?: string): Promise<Response>;
  twilioWhatsApp(from: string, text: string, sid?: string): Promise<Response>;
  cloudWhatsApp(
    waId: string,
    text: string,
    opts?: { id?: string; name?: string; timestamp?: number },
  ): Promise<Response>;
  messenger(psid: string, text: string, opts?: { mid?: string }): Promise<Response>;
  twilioStatus(sid: string, status: string, errorCode?: string): Promise<Response>;
  /** Any Twilio webhook form, signed, to `POST /webhooks/twilio`. */
  twilioWebhook(form: Record<string, string>): Promise<Response>;
  /** Any Meta webhook payload (WhatsApp Cloud or Messenger), signed, to `POST /webhooks/meta`. */
  metaWebhook(payload: unknown): Promise<Response>;
  /** A person replies in a Slack thread: the emulator stores it and Rapport receives the signed event. */
  agentReply(
    channel: string,
    threadTs: string,
    user: string,
    text: string,
    opts?: { eventId?: string },
  ): Promise<{ ts: string; res: Response; body: string }>;
  /** A person replies in a thread with a file attached (`file_share`), as Slack sends it. */
  agentFileReply(
    channel: string,
    threadTs: string,
    user: string,
    text: string,
    file: { name: string; mimetype: string; data: Buffer },
  ): Promise<{ ts: string; res: Response }>;
  slackEvent(body: string, headers?: Record<string, string>): Promise<Response>;
  command(
    user: string,
    channel: string,
    text: string,
    threadTs?: string,
  ): Promise<{ status: number; text: string }>;
}

let seq = 0;
const sid = (prefix: string) => `${prefix}${randomBytes(16).toString('hex')}`;

/** `whatsappWebClient`: with WHATSAPP_WEB_ENABLED, the (fake) clients the session builds. */
export async function startWorld(
  env: Record<string, string | undefined> = {},
  options: Pick<AppOptions, 'whatsappWebClient'> = {},
): Promise<World> {
  const slack = await startSlackEmulator({ token: 'xoxb-test-token' });
  const twilio = await startTwilioEmulator(TEST_TWILIO);
  const graph = await startGraphEmulator({
    whatsappToken: 'test-cloud-token',
    pageToken: 'test-page-token',
    phoneNumberId: CLOUD_PHONE_ID,
    pageId: PAGE_ID,
  });
  const t = await startTestApp(
    {
      PUBLIC_URL,
      SLACK_BOT_TOKEN: slack.token,
      SLACK_SIGNING_SECRET: SLACK_SECRET,
      SLACK_API_URL: slack.url,
      SLACK_ESCALATION_CHANNEL: ESCALATION,
      TWILIO_API_BASE_URL: twilio.url,
      META_GRAPH_BASE_URL: graph.url,
      REPLY_UNDO_SECONDS: '0',
      INBOUND_PARTITIONS: '4',
      LOG_LEVEL: 'debug',
      ...env,
    },
    options,
  );

  const postTwilio = (path: string, form: Record<string, string>) =>
    fetch(`${t.baseUrl}${path}`, {
      method: 'POST',
      body: formBody(form),
      headers: twilioHeaders(`${PUBLIC_URL}${path}`, form),
    });
  const postMeta = (payload: unknown) => {
    const body = Buffer.from(JSON.stringify(payload));
    return fetch(`${t.baseUrl}/webhooks/meta`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'x-hub-signature-256': signMetaPayload(TEST_META.appSecret, body),
      },
    });
  };
  const slackEvent = (body: string, headers?: Record<string, string>) =>
    fetch(`${t.baseUrl}/slack/events`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', ...(headers ?? signSlackRequest(SLACK_SECRET, body)) },
    });

  const world: World = {
    t,
    slack,
    twilio,
    graph,
    async stop() {
      await t.stop();
      await Promise.all([slack.close(), twilio.close(), graph.close()]);
    },
    async admin(method, path, body) {
      const res = await fetch(`${t.baseUrl}/api${path}`, {
        method,
        headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    async addAgent(a) {
      const res = await world.admin('POST', '/agents', a);
      if (res.status !== 201) throw new Error(`agent not created: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body as { id: string };
    },
    sms(from, text, messageSid = sid('SM')) {
      return postTwilio('/webhooks/twilio', {
        ToCountry: 'US',
        SmsMessageSid: messageSid,
        NumMedia: '0',
        SmsSid: messageSid,
        SmsStatus: 'received',
        Body: text,
        To: '+15550001111',
        NumSegments: '1',
        MessageSid: messageSid,
        AccountSid: TEST_TWILIO.accountSid,
        From: from,
        ApiVersion: '2010-04-01',
      });
    },
    twilioWhatsApp(from, text, messageSid = sid('SM')) {
      return postTwilio('/webhooks/twilio', {
        SmsMessageSid: messageSid,
        NumMedia: '0',
        ProfileName: 'Dana',
        SmsSid: messageSid,
        WaId: from.replace(/\D/g, ''),
        SmsStatus: 'received',
        Body: text,
        To: 'whatsapp:+15550002222',
        NumSegments: '1',
        MessageSid: messageSid,
        AccountSid: TEST_TWILIO.accountSid,
        From: `whatsapp:${from}`,
        ApiVersion: '2010-04-01',
      });
    },
    cloudWhatsApp(waId, text, opts = {}) {
      return postMeta({
        object: 'whatsapp_business_account',
        entry: [
          {
            id: '118273645509182',
            changes: [
              {
                field: 'messages',
                value: {
                  messaging_product: 'whatsapp',
                  metadata: { display_phone_number: '15550003333', phone_number_id: CLOUD_PHONE_ID },
                  contacts: [{ profile: { name: opts.name ?? 'Cloud Customer' }, wa_id: waId }],
                  messages: [
                    {
                      from: waId,
                      id: opts.id ?? `wamid.${randomBytes(12).toString('hex')}`,
                      timestamp: String(opts.timestamp ?? Math.floor(Date.now() / 1000)),
                      type: 'text',
                      text: { body: text },
                    },
                  ],
                },
              },
            ],
          },
        ],
      });
    },
    messenger(psid, text, opts = {}) {
      return postMeta({
        object: 'page',
        entry: [
          {
            id: PAGE_ID,
            time: Date.now(),
            messaging: [
              {
                sender: { id: psid },
                recipient: { id: PAGE_ID },
                timestamp: Date.now(),
                message: { mid: opts.mid ?? `m_${randomBytes(12).toString('hex')}`, text },
              },
            ],
          },
        ],
      });
    },
    twilioWebhook: (form) => postTwilio('/webhooks/twilio', form),
    metaWebhook: postMeta,
    twilioStatus(messageSid, status, errorCode) {
      return postTwilio('/webhooks/twilio/status', {
        MessageSid: messageSid,
        SmsSid: messageSid,
        MessageStatus: status,
        SmsStatus: status,
        AccountSid: TEST_TWILIO.accountSid,
        To: '+14155550100',
        From: '+15550001111',
        ApiVersion: '2010-04-01',
        ...(errorCode ? { ErrorCode: errorCode } : {}),
      });
    },
    async agentReply(channel, threadTs, user, text, opts = {}) {
      const stored = slack.postAsUser(channel, { user, text, threadTs });
      const body = JSON.stringify({
        token: 'legacy',
        team_id: slack.teamId,
        api_app_id: 'A0RAPPORT',
        type: 'event_callback',
        event_id:
          opts.eventId ??
          `Ev${String(++seq).padStart(8, '0')}${randomBytes(3).toString('hex').toUpperCase()}`,
        event_time: Math.floor(Date.now() / 1000),
        event: {
          type: 'message',
          channel,
          user,
          text,
          ts: stored.ts,
          thread_ts: threadTs,
          event_ts: stored.ts,
          channel_type: 'channel',
        },
      });
      const res = await slackEvent(body);
      return { ts: stored.ts, res, body };
    },
    async agentFileReply(channel, threadTs, user, text, file) {
      const stored = slack.uploadAsUser(channel, { user, text, threadTs, file });
      const body = JSON.stringify({
        token: 'legacy',
        team_id: slack.teamId,
        api_app_id: 'A0RAPPORT',
        type: 'event_callback',
        event_id: `Ev${String(++seq).padStart(8, '0')}${randomBytes(3).toString('hex').toUpperCase()}`,
        event_time: Math.floor(Date.now() / 1000),
        event: {
          type: 'message',
          subtype: 'file_share',
          channel,
          user,
          text,
          files: stored.files,
          upload: false,
          ts: stored.ts,
          thread_ts: threadTs,
          event_ts: stored.ts,
          channel_type: 'channel',
        },
      });
      return { ts: stored.ts, res: await slackEvent(body) };
    },
    slackEvent,
    async command(user, channel, text, threadTs) {
      const params = new URLSearchParams({
        token: 'legacy',
        team_id: slack.teamId,
        channel_id: channel,
        user_id: user,
        user_name: user.toLowerCase(),
        command: '/rapport',
        text,
        response_url: `${slack.url}commands/respond`,
        trigger_id: '1.2.3',
        ...(threadTs ? { thread_ts: threadTs } : {}),
      }).toString();
      const res = await fetch(`${t.baseUrl}/slack/commands`, {
        method: 'POST',
        body: params,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          ...signSlackRequest(SLACK_SECRET, params),
        },
      });
      const json = (await res.json().catch(() => ({}))) as { text?: string };
      return { status: res.status, text: json.text ?? '' };
    },
  };
  return world;
}

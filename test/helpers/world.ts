/**
 * A whole Rapport world for end-to-end tests: the app (real Redis, real MongoDB-protocol server,
 * real HTTP) with the real SDKs pointed at local emulators of Slack, Twilio and the Graph API, plus
 * helpers that act as customers (signed webhooks) and as agents (signed Slack events and commands).
 */
import { randomBytes } from 'node:crypto';
import {
  cloudText,
  messengerEntry,
  signedInteraction,
  signedMeta,
  signedSlack,
  signedTwilio,
  slackEventCallback,
  slackMessage,
  slashCommandForm,
  twilioMessageForm,
  twilioStatusForm,
  type CloudAccount,
  type SignedRequest,
} from '../../src/sandbox/wire-builders';
import type { GraphEmulator } from '../emulators/graph';
import type { SlackEmulator } from '../emulators/slack';
import type { TwilioEmulator } from '../emulators/twilio';
import { startEmulators } from './emulators';
import type { Types } from 'mongoose';
import { DeferError } from '../../src/errors';
import type { AppOptions } from '../../src/app';
import { startTestApp, type TestApp } from './app';
import { TEST_ADMIN_TOKEN, TEST_META, TEST_TWILIO } from './env';

export const PUBLIC_URL = 'https://rapport.example.test';
export const SLACK_SECRET = 'test-slack-signing-secret';
export const ESCALATION = 'C0ESCALATE';
export const PAGE_ID = '100000000000001';
export const CLOUD_PHONE_ID = '106540352242922';
/** The WhatsApp Cloud number the test world's webhooks are about. */
export const CLOUD_ACCOUNT: CloudAccount = {
  wabaId: '118273645509182',
  phoneNumberId: CLOUD_PHONE_ID,
  displayPhoneNumber: '15550003333',
};

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
  /** A Slack Events API envelope around `event`, from this world's workspace (not sent). */
  eventBody(event: Record<string, unknown>, eventId?: string): string;
  /** A signed interaction (`block_actions`, …) to `POST /slack/interactions`. */
  interaction(payload: unknown): Promise<Response>;
  /** Any signed request, to its path. */
  post(request: SignedRequest): Promise<Response>;
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
  const emulators = await startEmulators({
    name: 'test',
    twilio: TEST_TWILIO,
    phoneNumberId: CLOUD_PHONE_ID,
    pageId: PAGE_ID,
  });
  const { slack, twilio, graph } = emulators;
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

  const post = (r: SignedRequest) =>
    fetch(`${t.baseUrl}${r.path}`, { method: 'POST', body: r.body, headers: r.headers });
  const postTwilio = (path: string, form: Record<string, string>) =>
    post(signedTwilio(TEST_TWILIO.authToken, PUBLIC_URL, path, form));
  const postMeta = (payload: unknown) => post(signedMeta(TEST_META.appSecret, payload));
  const slackEvent = (body: string, headers?: Record<string, string>) =>
    headers
      ? fetch(`${t.baseUrl}/slack/events`, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json', ...headers },
        })
      : post(signedSlack(SLACK_SECRET, '/slack/events', body));
  const eventBody = (event: Record<string, unknown>, eventId?: string) =>
    slackEventCallback(
      {
        teamId: slack.teamId,
        apiAppId: 'A0RAPPORT',
        eventId:
          eventId ?? `Ev${String(++seq).padStart(8, '0')}${randomBytes(3).toString('hex').toUpperCase()}`,
      },
      event,
    );
  const inbound = (m: Omit<Parameters<typeof twilioMessageForm>[0], 'accountSid'>) =>
    postTwilio('/webhooks/twilio', twilioMessageForm({ ...m, accountSid: TEST_TWILIO.accountSid }));

  const world: World = {
    t,
    slack,
    twilio,
    graph,
    async stop() {
      await t.stop();
      await emulators.close();
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
    sms: (from, text, messageSid = sid('SM')) =>
      inbound({ sid: messageSid, from, to: '+15550001111', body: text }),
    twilioWhatsApp: (from, text, messageSid = sid('SM')) =>
      inbound({
        sid: messageSid,
        from: `whatsapp:${from}`,
        to: 'whatsapp:+15550002222',
        body: text,
        whatsapp: { profileName: 'Dana' },
      }),
    cloudWhatsApp: (waId, text, opts = {}) =>
      postMeta(cloudText(CLOUD_ACCOUNT, { waId, text, ...opts, name: opts.name ?? 'Cloud Customer' })),
    messenger(psid, text, opts = {}) {
      const mid = opts.mid ?? `m_${randomBytes(12).toString('hex')}`;
      return postMeta(messengerEntry(PAGE_ID, psid, [{ timestamp: Date.now(), message: { mid, text } }]));
    },
    twilioWebhook: (form) => postTwilio('/webhooks/twilio', form),
    metaWebhook: postMeta,
    twilioStatus: (messageSid, status, errorCode) =>
      postTwilio(
        '/webhooks/twilio/status',
        twilioStatusForm({
          sid: messageSid,
          status,
          accountSid: TEST_TWILIO.accountSid,
          to: '+14155550100',
          from: '+15550001111',
          ...(errorCode ? { errorCode } : {}),
        }),
      ),
    async agentReply(channel, threadTs, user, text, opts = {}) {
      const stored = slack.postAsUser(channel, { user, text, threadTs });
      const body = eventBody(slackMessage({ channel, user, text, ts: stored.ts, threadTs }), opts.eventId);
      const res = await slackEvent(body);
      return { ts: stored.ts, res, body };
    },
    async agentFileReply(channel, threadTs, user, text, file) {
      const stored = slack.uploadAsUser(channel, { user, text, threadTs, file });
      const event = slackMessage({ channel, user, text, ts: stored.ts, threadTs, files: stored.files });
      return { ts: stored.ts, res: await slackEvent(eventBody(event)) };
    },
    slackEvent,
    eventBody,
    post,
    interaction: (payload) => post(signedInteraction(SLACK_SECRET, payload)),
    async command(user, channel, text, threadTs) {
      const body = slashCommandForm({
        teamId: slack.teamId,
        channel,
        user,
        userName: user.toLowerCase(),
        text,
        responseUrl: `${slack.url}commands/respond`,
        ...(threadTs ? { threadTs } : {}),
      });
      const res = await post(signedSlack(SLACK_SECRET, '/slack/commands', body));
      const json = (await res.json().catch(() => ({}))) as { text?: string };
      return { status: res.status, text: json.text ?? '' };
    },
  };
  return world;
}

/**
 * Runs the customer's Slack outbox flush in this process now, waiting (and trying again) while it is
 * deferred — a channel's 429, or the lock held by a flush job.
 */
export async function flushSlackNow(
  w: World,
  customerId: Types.ObjectId,
  triedBefore = false,
): Promise<void> {
  for (;;) {
    try {
      return await w.t.app.router.slackDelivery!.flush(customerId, triedBefore);
    } catch (err) {
      if (!(err instanceof DeferError)) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * What the sandbox page shows, from the emulators' records and the page's own memory: a
 * customer's phone (what they wrote and what Rapport sent them, per app) and the Slack channels
 * with their threads. Pure reads: nothing here changes state.
 */
import type { SandboxEmulators } from './credentials';
import type { EmulatedMessage, SlackEmulator } from './emulators/slack';
import { APPS, type App, type DeliveryState } from './signed-requests';
import { isRecord } from '../values';

export interface Person {
  id: string;
  name: string;
  /** E.164. */
  phone: string;
  /** The person's Messenger id for the sandbox page. */
  psid: string;
}

export interface WrittenByCustomer {
  /** The page's URL of the customer's own attached file. */
  image?: string;
  personId: string;
  app: App;
  text: string;
  at: number;
  /** Provider message id. */
  ref: string;
  /** Rapport's HTTP answer to the webhook. */
  status: number;
}

export interface AgentView {
  id: string;
  name: string;
  slackUserId: string;
  inboxChannelId: string;
  status: string;
  openCustomers?: number;
}

/** A message Rapport sent, as the customer's phone shows it. */
export interface Received {
  text: string;
  at: number;
  ref: string;
  image?: string | undefined;
}

/** The page's URL of an image Rapport sent (its /media URL, or a Cloud upload), if it is one. */
export type SentImage = (
  url: string | undefined,
  cloudId: string | undefined,
  type?: string,
) => string | undefined;

const digits = (s: string) => s.replace(/\D/g, '');

/** What a provider record says, as the customer's phone would show it. */
function describeTwilio(m: { body?: string; mediaUrls: string[]; contentSid?: string }): string {
  const parts = [m.body ?? '', ...m.mediaUrls.map((u) => `[media] ${u}`)];
  if (m.contentSid) parts.push(`[template ${m.contentSid}]`);
  return parts.filter(Boolean).join('\n');
}

function describeCloud(body: Record<string, unknown>, type: string): string {
  const part = body[type];
  if (!isRecord(part)) return `[${type}]`;
  if (type === 'text') return String(part.body ?? '');
  if (type === 'template') return `[template ${String(part.name ?? '')}]`;
  return [
    `[${type}] ${String(part.link ?? part.id ?? '')}`,
    typeof part.caption === 'string' ? part.caption : '',
  ]
    .filter(Boolean)
    .join('\n');
}

function describeMessenger(message: Record<string, unknown>): string {
  if (typeof message.text === 'string') return message.text;
  const attachment = message.attachment;
  if (!isRecord(attachment)) return '[message]';
  const payload = isRecord(attachment.payload) ? attachment.payload : {};
  return `[${String(attachment.type)}] ${String(payload.url ?? '')}`.trim();
}

export function receivedBy(
  emulators: SandboxEmulators,
  person: Person,
  app: App,
  sentImage: SentImage,
): Received[] {
  const { twilio, graph } = emulators;
  if (app === 'sms' || app === 'twilio-whatsapp') {
    const to = app === 'sms' ? person.phone : `whatsapp:${person.phone}`;
    return twilio
      .messages()
      .filter((m) => m.to === to)
      .map((m) => ({
        text: describeTwilio(m),
        at: m.at,
        ref: m.sid,
        image: sentImage(m.mediaUrls[0], undefined),
      }));
  }
  if (app === 'whatsapp-cloud') {
    const waId = digits(person.phone);
    return graph
      .whatsappMessages()
      .filter((m) => m.waId === waId)
      .map((m) => {
        const part = m.body[m.type];
        const id = m.type === 'image' && isRecord(part) && typeof part.id === 'string' ? part.id : undefined;
        return {
          text: describeCloud(m.body, m.type),
          at: m.at,
          ref: m.id,
          image: sentImage(undefined, id),
        };
      });
  }
  return graph
    .messengerMessages()
    .filter((m) => m.recipientId === person.psid)
    .map((m) => {
      const a = isRecord(m.message.attachment) ? m.message.attachment : undefined;
      const url = a && isRecord(a.payload) && typeof a.payload.url === 'string' ? a.payload.url : undefined;
      return {
        text: describeMessenger(m.message),
        at: m.at,
        ref: m.messageId,
        image: sentImage(url, undefined, typeof a?.type === 'string' ? a.type : undefined),
      };
    });
}

export function phoneView(
  person: Person,
  app: App,
  page: { written: readonly WrittenByCustomer[]; reported: ReadonlyMap<string, DeliveryState> },
  received: (app: App) => Received[],
) {
  const mine = page.written
    .filter((w) => w.personId === person.id && w.app === app)
    .map((w) => ({
      from: 'customer' as const,
      text: w.text,
      at: w.at,
      ref: w.ref,
      status: w.status,
      image: w.image,
    }));
  const theirs = received(app).map((r) => ({
    from: 'business' as const,
    ...r,
    state: page.reported.get(r.ref) ?? null,
  }));
  const counts = Object.fromEntries(APPS.map((a) => [a, received(a).length]));
  return { person, app, counts, messages: [...mine, ...theirs].sort((a, b) => a.at - b.at) };
}

export function slackView(slack: SlackEmulator, list: AgentView[], escalationChannel: string | undefined) {
  const byUser = new Map(list.map((a) => [a.slackUserId, a.name]));
  const view = (m: EmulatedMessage) => ({
    ts: m.ts,
    author: m.bot_id ? (m.username ?? 'Rapport') : (byUser.get(m.user) ?? m.user),
    bot: Boolean(m.bot_id),
    text: m.text,
    reactions: m.reactions,
    kind: m.metadata?.event_type ?? null,
    customerId:
      typeof m.metadata?.event_payload.customerId === 'string' ? m.metadata.event_payload.customerId : null,
    files: (m.files ?? []).map((f) => ({
      name: f.name,
      image: f.mimetype.startsWith('image/'),
      src: `/sandbox/api/slack-file/${encodeURIComponent(f.id)}?channel=${encodeURIComponent(m.channel)}`,
    })),
  });
  const channels = [
    ...list.map((a) => ({
      id: a.inboxChannelId,
      name: `inbox-${a.name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`,
      agent: a.slackUserId,
    })),
    ...(escalationChannel ? [{ id: escalationChannel, name: 'rapport-escalations', agent: null }] : []),
  ].filter((c, i, all) => all.findIndex((d) => d.id === c.id) === i);
  return channels.map((c) => ({
    ...c,
    threads: slack
      .messages(c.id)
      .filter((m) => m.thread_ts === undefined || m.thread_ts === m.ts)
      .map((m) => ({ ...view(m), replies: slack.thread(c.id, m.ts).slice(1).map(view) })),
  }));
}

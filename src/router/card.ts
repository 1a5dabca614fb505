/**
 * The customer card: the first post of every customer thread, saying who the customer is (name,
 * id, identities and channels), who owns them, when they were first seen, the messaging-window
 * state and their recent history, with buttons and a name field.
 *
 * Rendering only (pure functions plus the reads they need). Posting the card is slack-delivery.ts's
 * job; keeping it true afterwards (chat.update when what it shows changes) is card-updates.ts's.
 * `cardFacts` is what a refresh compares: the parts of the card that change with events (name,
 * owner, identities, open/closed windows), not the ones that change with the clock or every message.
 * `cardSeen` is the part of those facts a customer's message can change, as the last refresh saw
 * them, so that a message that changes none of them costs no refresh at all (`inboundChangesCard`).
 */
import { createHash } from 'node:crypto';
import type { Customer, Identity, IdentityModels, Message } from '../identity/models';
import { escapeSlackText } from '../channels/slack/escape';
import { ago, channelLabel } from './texts';

/** WhatsApp's and Messenger's customer-service window. */
export const WINDOW_MS = 24 * 3600_000;

const WINDOW_CHANNELS = ['whatsapp', 'messenger'] as const;

/** The latest inbound time on each windowed channel, over all of a customer's identities. */
function lastInboundByChannel(identities: Identity[]): { channel: string; last: number }[] {
  const out: { channel: string; last: number }[] = [];
  for (const channel of WINDOW_CHANNELS) {
    const last = identities
      .map((i) => i.lastInboundAt?.[channel]?.getTime())
      .filter((t): t is number => t !== undefined)
      .sort((a, b) => b - a)[0];
    if (last !== undefined) out.push({ channel, last });
  }
  return out;
}

export function windowState(identities: Identity[], now = Date.now()): string {
  const parts = lastInboundByChannel(identities).map(({ channel, last }) => {
    const left = last + WINDOW_MS - now;
    return left > 0
      ? `${channelLabel(channel)} window open (${ago(left)} left)`
      : `${channelLabel(channel)} window closed (last message ${ago(now - last)} ago)`;
  });
  return parts.length > 0 ? parts.join('; ') : 'no messaging window applies (SMS)';
}

/** When the next open window closes (ms since epoch), if any is open. */
export function nextWindowClose(identities: Identity[], now = Date.now()): number | undefined {
  const closes = lastInboundByChannel(identities)
    .map(({ last }) => last + WINDOW_MS)
    .filter((t) => t > now)
    .sort((a, b) => a - b);
  return closes[0];
}

function describeIdentity(identity: Identity): string {
  const channels = Object.keys(identity.lastInboundAt ?? {}).map(channelLabel);
  const value =
    identity.kind === 'psid' ? `Messenger user ${identity.value.split(':')[1] ?? ''}` : identity.value;
  return `${escapeSlackText(value)}${channels.length ? ` (${channels.join(', ')})` : ''}${identity.verified ? '' : ' — unverified'}`;
}

/** The card's name line: the customer's name, or "New customer" until one is known. */
export function cardName(customer: Pick<Customer, 'displayName'>): string {
  return customer.displayName ? escapeSlackText(customer.displayName) : 'New customer';
}

/** Where the digest of what a card (one thread's) last showed is kept. */
export function cardFactsKey(prefix: string, thread: { channel: string; ts: string }): string {
  return `${prefix}:card-facts:${thread.channel}:${thread.ts}`;
}

/** How long a card's digest is kept (a card untouched for longer is edited once more, harmlessly). */
export const CARD_FACTS_TTL_S = 30 * 24 * 3600;

/**
 * What a refresh compares: a digest of the event-driven parts of the card. `variant`: `live` for
 * the customer's current thread, `moved` for one left behind by a handoff.
 */
export function cardFacts(
  variant: 'live' | 'moved' | 'merged',
  customer: Customer,
  ownerName: string | undefined,
  identities: Identity[],
  now = Date.now(),
): string {
  const windows = lastInboundByChannel(identities).map(
    ({ channel, last }) => `${channel}:${last + WINDOW_MS > now ? 'open' : 'closed'}`,
  );
  const facts = {
    variant,
    name: customer.displayName ?? null,
    owner: ownerName ?? null,
    identities: identities.map(describeIdentity).sort(),
    windows,
    lastChannel: customer.lastChannel ?? null,
  };
  return createHash('sha256').update(JSON.stringify(facts)).digest('base64url');
}

/**
 * What the last refresh saw of the facts a customer's own message can change (card-updates.ts keeps
 * it in Redis per customer). Everything else on the card changes only through a write that replaces
 * one of `tokens` or requests a refresh itself (naming, handoff, merge, link).
 */
export interface CardSeen {
  /**
   * The change tokens read before the refresh read the database (src/identity/cache.ts scheme):
   * identity epoch (merge, undo, link, erase), customer gen (owner, name), current-thread gen, owner
   * agent gen (their name). A token that differs now means the card may be out of date.
   */
  tokens: (string | null)[];
  owner: string | null;
  /** Digest of the name and last channel shown. */
  who: string;
  /** Per identity (a digest of its key: no phone number in Redis values): the channels it wrote on. */
  ids: Record<string, string[]>;
  /** Per windowed channel: when its window closes (ms since epoch), open or not. */
  closes: Record<string, number>;
}

/**
 * What a customer's first card shows, as its poster read it (slack-delivery.ts `ensureThread`), and
 * the change tokens read before that: epoch, customer gen, and the new thread's gen.
 */
export interface FirstCard {
  customer: Customer;
  identities: Identity[];
  ownerName?: string;
  tokens: string[];
}

/**
 * How close to its end a window counts as closing: the refresh scheduled for the close (card-updates.ts
 * `scheduleWindowClose`) may be about to read, or clocks of two processes may differ.
 */
export const WINDOW_CLOSING_MS = 60_000;

const digestOf = (value: unknown) =>
  createHash('sha256').update(JSON.stringify(value)).digest('base64url').slice(0, 16);
const whoOf = (customer: Pick<Customer, 'displayName' | 'lastChannel'>) =>
  digestOf([customer.displayName ?? null, customer.lastChannel ?? null]);

export function cardSeen(customer: Customer, identities: Identity[], tokens: (string | null)[]): CardSeen {
  const ids: CardSeen['ids'] = {};
  for (const i of identities) ids[digestOf(i.key)] = Object.keys(i.lastInboundAt ?? {}).sort();
  const closes: CardSeen['closes'] = {};
  for (const { channel, last } of lastInboundByChannel(identities)) closes[channel] = last + WINDOW_MS;
  return { tokens, owner: customer.ownerAgentId ?? null, who: whoOf(customer), ids, closes };
}

/**
 * Whether a message from `identityKey` on `channel`, after resolution left `customer` as it is,
 * may change what the card shows compared with `seen`: a name, a last channel, an owner, an
 * identity or a channel not seen before, or a window that was closed (or about to close) reopening.
 * The caller compares the tokens.
 */
export function inboundChangesCard(
  seen: CardSeen,
  message: {
    customer: Pick<Customer, 'displayName' | 'lastChannel' | 'ownerAgentId'>;
    identityKey: string;
    channel: string;
  },
  now = Date.now(),
): boolean {
  const { customer, identityKey, channel } = message;
  if (seen.who !== whoOf(customer) || seen.owner !== (customer.ownerAgentId ?? null)) return true;
  if (!seen.ids[digestOf(identityKey)]?.includes(channel)) return true;
  const windowed = (WINDOW_CHANNELS as readonly string[]).includes(channel);
  return windowed && !((seen.closes[channel] ?? 0) - WINDOW_CLOSING_MS > now);
}

/**
 * Whether the card would show no history worth a read: the customer's first thread, and one message
 * seen (first seen = last seen) — that message follows the card in the thread it opens. Not for a
 * customer with more behind them (a merge survivor takes the merged one's first and last seen).
 */
export function brandNew(customer: Pick<Customer, 'firstSeenAt' | 'lastSeenAt'>, hadThread: boolean): boolean {
  return !hadThread && customer.firstSeenAt.getTime() === customer.lastSeenAt.getTime();
}

/**
 * The card's text and the digest of its facts, for a new card (slack-delivery.ts). `history: false`
 * leaves out the recent messages without reading them (a brand-new customer's, see `brandNew`);
 * `identities`: the customer's, when the caller knows them (a first contact's, hot-state.ts).
 */
export async function renderCard(
  models: IdentityModels,
  customer: Customer,
  ownerName: string | undefined,
  opts: { history?: boolean; identities?: Identity[] } = {},
): Promise<{ text: string; facts: string; identities: Identity[] }> {
  const identities =
    opts.identities ?? (await models.Identity.find({ customerId: customer._id }).lean<Identity[]>());
  const text = await cardText(models, customer, ownerName, identities, opts);
  return { text, facts: cardFacts('live', customer, ownerName, identities), identities };
}

/** The card's text (also Slack's notification fallback). */
export async function cardText(
  models: IdentityModels,
  customer: Customer,
  ownerName: string | undefined,
  identities?: Identity[],
  opts: { history?: boolean } = {},
): Promise<string> {
  const ids = identities ?? (await models.Identity.find({ customerId: customer._id }).lean<Identity[]>());
  const recent =
    opts.history === false
      ? []
      : await models.Message.find({ customerId: customer._id }).sort({ sentAt: -1 }).limit(5).lean<Message[]>();
  const history = recent
    .reverse()
    .map(
      (m) =>
        `> ${m.direction === 'in' ? '←' : '→'} _${channelLabel(m.channel)}_ ${escapeSlackText((m.text ?? '[attachment]').slice(0, 120)).replace(/\n/g, '\n> ')}`,
    )
    .join('\n');
  return [
    `:bust_in_silhouette: *${cardName(customer)}*  ·  id \`${String(customer._id)}\``,
    `*Owner:* ${ownerName ?? 'unassigned'}   *First seen:* ${customer.firstSeenAt.toISOString().slice(0, 16).replace('T', ' ')} UTC   *Last channel:* ${channelLabel(customer.lastChannel)}`,
    `*Identities:* ${ids.map(describeIdentity).join('; ') || 'none'}`,
    `*Window:* ${windowState(ids)}`,
    history ? `*Recent:*\n${history}` : '',
    '_Reply in this thread to answer (it is sent after a short undo delay — delete your message to cancel). Start with `note:` or mention someone for an internal note. Name the customer with `/rapport name <name>` or the field below._',
  ]
    .filter(Boolean)
    .join('\n');
}

/** The card's blocks: the text, the actions (hand off, template, close) and the name field. */
export function cardBlocks(text: string, customerId: string): unknown[] {
  return [
    { type: 'section', text: { type: 'mrkdwn', text } },
    {
      type: 'actions',
      block_id: `rapport_card_${customerId}`,
      elements: [
        {
          type: 'users_select',
          action_id: 'rapport_handoff',
          placeholder: { type: 'plain_text', text: 'Hand off to…' },
        },
        {
          type: 'button',
          action_id: 'rapport_template',
          text: { type: 'plain_text', text: 'Send template' },
          value: customerId,
        },
        {
          type: 'button',
          action_id: 'rapport_close',
          text: { type: 'plain_text', text: 'Close' },
          value: customerId,
        },
      ],
    },
    {
      // An input in a message with `dispatch_action`: pressing Enter sends block_actions with the
      // typed value (no modal needed).
      type: 'input',
      block_id: `rapport_name_${customerId}`,
      dispatch_action: true,
      label: { type: 'plain_text', text: 'Name or correct the customer’s name' },
      element: {
        type: 'plain_text_input',
        action_id: 'rapport_name',
        max_length: 80,
        placeholder: { type: 'plain_text', text: 'e.g. Dana Smith' },
        dispatch_action_config: { trigger_actions_on: ['on_enter_pressed'] },
      },
    },
  ];
}

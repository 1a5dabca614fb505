/**
 * Keeps the customer card true: when what it shows changes (a name that arrives later or is set by
 * an agent, a new identity after a claim or link, a new owner, a messaging window opening or
 * closing), the card in the customer's current thread is edited in place with `chat.update`.
 * Also posts notices into a specific (older) thread, which the outbox cannot do: the outbox always
 * posts into the customer's current thread.
 *
 * Rate-limit aware, and never inline:
 * - `requestRefresh` only queues a `to-agent` job, coalesced per customer: a Redis marker (SET NX)
 *   lets one job wait at a time; the job clears the marker before it reads, so a change made while
 *   it runs queues another one and nothing is missed.
 * - The job compares a digest of the card's facts (card.ts `cardFacts`) with the last one it wrote
 *   and calls Slack only when they differ; a burst of messages costs no Slack call.
 * - A channel's 429 is recorded and respected as for every post (slack-delivery.ts), and the job is
 *   deferred, not failed. It runs under the customer's to-agent lock, so it never races the card's
 *   first post.
 * - An open window schedules one refresh for the moment it closes.
 */
import type { Job, Queue } from 'bullmq';
import type { Types } from 'mongoose';
import { SlackApiError, type SlackClient } from '../channels/slack/client';
import type { Customer, Identity, IdentityModels } from '../identity/models';
import type { Logger } from '../logger';
import type { RedisClient } from '../queue/connection';
import { toAgentLockKey, withLock } from '../queue/lock';
import { followToLive } from '../identity/tombstones';
import {
  brandNew,
  CARD_FACTS_TTL_S,
  cardBlocks,
  cardFacts,
  cardFactsKey,
  cardName,
  cardSeen,
  cardText,
  inboundChangesCard,
  nextWindowClose,
  type CardSeen,
  type FirstCard,
} from './card';
import type { Agent, CurrentThread, RouterModels, SlackThread } from './models';
import type { Ownership } from './ownership';
import { noteRateLimit, respectChannelLimit } from './slack-delivery';
import { currentToken, customerChanged, customerGenKey, epochKey } from '../identity/cache';
import { agentGenKey, firstIdentitiesKey, threadKeys } from './hot-state';

export const NOTICE_EVENT_TYPE = 'rapport_notice';

/** A note for one thread (not necessarily the customer's current one). */
export interface ThreadNotice {
  /** Idempotency key: one post per key, even when the job is retried. */
  key: string;
  channel: string;
  threadTs: string;
  text: string;
  /** Show it to this Slack user only (chat.postEphemeral) instead of posting it. */
  user?: string;
}

/**
 * `askName`: the Messenger identity (key `psid:<page>:<psid>`) of a customer who wrote nameless: its
 * name is asked for before the cards are read, so they are read and edited once. `first`: the first
 * card of that customer as posted (what it shows and its tokens, `recordFirstCard`), recorded as is
 * when no name came and nothing it depends on changed since; otherwise the cards are read.
 */
export type CardJob =
  | { card: { customerId: string; askName?: string; first?: { seen: CardSeen; closeAt?: number } } }
  | { notice: ThreadNotice };

export interface CardUpdatesOptions {
  models: RouterModels & IdentityModels;
  slack?: SlackClient;
  redis: RedisClient;
  prefix: string;
  /** The `to-agent` queue (Slack writes share its workers and per-channel limits). */
  queue: Queue;
  ownership: Ownership;
  log: Logger;
  /** Messenger's User Profile API (webhooks carry no name): asked once per nameless Messenger customer. */
  messengerProfiles?: { name(psid: string): Promise<string | undefined> };
  /**
   * How long a refresh waits for more changes before it runs.
   * @defaultValue 1000
   */
  coalesceMs?: number;
}

function liveCard(text: string, id: string, owner: Agent | undefined) {
  const shown = owner ? text : `:warning: No agent is available to own this customer.\n${text}`;
  return { text: shown, blocks: cardBlocks(shown, id) };
}

/** A card in a thread left behind by a handoff: where the customer is now; no buttons. */
function movedCard(text: string, owner: Agent | undefined) {
  const banner = owner
    ? `:arrow_right: *Now with ${owner.name}* — the conversation continues in <#${owner.inboxChannelId}>. Replies typed in this thread are not sent.`
    : ':arrow_right: *This conversation moved* — replies typed in this thread are not sent.';
  const shown = `${banner}\n${text}`;
  return { text: shown, blocks: [{ type: 'section', text: { type: 'mrkdwn', text: shown } }] };
}

/** How long what a refresh saw is kept (its tokens expire sooner: then the next message refreshes). */
const CARD_SEEN_TTL_S = 2 * 24 * 3600;

/** The Redis keys card refreshes keep per customer (erasure removes them). */
export function cardKeysOf(prefix: string, customerId: string): string[] {
  return [
    `${prefix}:card-pending:${customerId}`,
    `${prefix}:card-window:${customerId}`,
    // In the customer's `{c:<id>}` slot: read in one MGET with the customer's tokens.
    `${prefix}:card-seen:{c:${customerId}}`,
    // A refresh ran before the first thread opened (it found none): that card is refreshed.
    `${prefix}:card-early:${customerId}`,
    // A first contact's identity for their card (hot-state.ts `fileFirstContact`).
    firstIdentitiesKey(prefix, customerId),
  ];
}

/** What a refresh recorded; anything unreadable counts as nothing recorded (a refresh then runs). */
function parseSeen(text: string | null | undefined): CardSeen | undefined {
  try {
    const seen = text ? (JSON.parse(text) as CardSeen) : undefined;
    return Array.isArray(seen?.tokens) && seen.ids && seen.closes ? seen : undefined;
  } catch {
    return undefined;
  }
}

/** The tokens a first card depends on besides its thread's (card.ts `FirstCard`), read before it. */
export function firstCardTokens(redis: RedisClient, prefix: string, id: string): Promise<string[]> {
  return Promise.all([
    currentToken(redis, epochKey(prefix)),
    currentToken(redis, customerGenKey(prefix, id)),
  ]);
}

/**
 * The change tokens a card's `seen` was built under, as they are now (CardSeen order: epoch,
 * customer gen, current-thread gen, the owner's agent gen), read without creating any; `also`:
 * more keys of the customer's slot ({c:<id>}), read in the same MGET.
 */
async function cardTokensNow(
  redis: RedisClient,
  prefix: string,
  id: string,
  owner: string | null,
  also: string[] = [],
): Promise<{ now: (string | null)[]; also: (string | null)[] }> {
  const [values, epoch, agentGen] = await Promise.all([
    redis.mget(...also, customerGenKey(prefix, id), threadKeys(prefix, id).gen),
    redis.get(epochKey(prefix)),
    owner ? redis.get(agentGenKey(prefix, owner)) : Promise.resolve(null),
  ]);
  const [gen, threadGen] = values.slice(also.length);
  return { now: [epoch, gen ?? null, threadGen ?? null, agentGen], also: values.slice(0, also.length) };
}

/** Whether every change token `seen` was built under is still the same (`now`, in CardSeen order). */
function sameTokens(seen: CardSeen, now: (string | null)[]): boolean {
  return seen.tokens.length === now.length && now.every((t, i) => t === seen.tokens[i]);
}

export function isCardJob(data: unknown): data is CardJob {
  return typeof data === 'object' && data !== null && ('card' in data || 'notice' in data);
}

/**
 * One pending refresh per customer at the next window close: a later message moves the close, and
 * the earlier refresh, finding the window still open, schedules the next one then.
 */
async function scheduleWindowClose(
  o: Pick<CardUpdatesOptions, 'redis' | 'prefix' | 'queue'>,
  id: string,
  closeAt: number | undefined,
): Promise<void> {
  const { redis, prefix, queue } = o;
  if (closeAt === undefined) return;
  const key = cardKeysOf(prefix, id)[1]!;
  const scheduled = Number(await redis.get(key));
  if (scheduled > Date.now() && scheduled <= closeAt) return;
  await redis.set(key, String(closeAt), 'PX', closeAt - Date.now() + 60_000);
  await queue.add(
    'card',
    { card: { customerId: id } },
    { jobId: `cardw~${id}~${closeAt}`, delay: Math.max(0, closeAt - Date.now()) + 1_000 },
  );
}

/**
 * The change tokens a card's facts depend on besides the documents a refresh reads: read (created
 * when missing) before those reads, so a change made meanwhile leaves a different token behind.
 */
async function tokensNow(redis: RedisClient, prefix: string, id: string): Promise<string[]> {
  const [card, thread] = await Promise.all([
    firstCardTokens(redis, prefix, id),
    currentToken(redis, threadKeys(prefix, id).gen),
  ]);
  return [...card, thread];
}

/** Edits a card in place, within the channel's rate limit; a card gone from Slack is left. */
async function editCard(
  o: Pick<CardUpdatesOptions, 'redis' | 'prefix' | 'log'>,
  slack: SlackClient,
  thread: { channel: string; ts: string },
  card: { text: string; blocks: unknown[] },
): Promise<void> {
  const { redis, prefix, log } = o;
  await respectChannelLimit(redis, prefix, thread.channel);
  try {
    await slack.updateMessage(thread.channel, thread.ts, card);
  } catch (err) {
    await noteRateLimit(redis, prefix, thread.channel, err);
    if (!(err instanceof SlackApiError && err.slackError === 'message_not_found')) throw err;
    log.warn({ channel: thread.channel }, 'customer card is gone from Slack; not updated');
  }
}

export function createCardUpdates(o: CardUpdatesOptions) {
  const { models, redis, prefix, queue, log } = o;
  const { CurrentThread, Customer, Identity, SlackThread } = models;
  const coalesceMs = o.coalesceMs ?? 1_000;
  const pendingKey = (id: string) => cardKeysOf(prefix, id)[0]!;
  const factsKey = (t: { channel: string; ts: string }) => cardFactsKey(prefix, t);
  const seenKey = (id: string) => cardKeysOf(prefix, id)[2]!;
  const earlyKey = (id: string) => cardKeysOf(prefix, id)[3]!;
  const profileAskedKey = (identityKey: string) => `${prefix}:profile-asked:${identityKey}`;

  async function requestRefresh(
    customerId: Types.ObjectId | string,
    delayMs = coalesceMs,
    askName?: string,
  ): Promise<void> {
    if (!o.slack) return;
    const id = String(customerId);
    if ((await redis.set(pendingKey(id), '1', 'PX', 60_000, 'NX')) !== 'OK') return;
    await queue.add(
      'card',
      { card: { customerId: id, ...(askName ? { askName } : {}) } },
      { jobId: `card~${id}~${Date.now().toString(36)}`, delay: delayMs },
    );
  }

  /**
   * Edits the cards of the customer's threads whose facts changed since their last edit: the
   * current thread's card in full; a card left behind by a handoff says where the customer went.
   * A nameless Messenger customer's name is asked for first (outside the lock), then the cards edited
   * once: named in the job by the message that found them nameless, else found by the reads (then
   * read twice, once per customer).
   */
  async function refresh(slack: SlackClient, id: string, askName?: string): Promise<void> {
    await redis.del(pendingKey(id));
    const locked = (ask: boolean) =>
      withLock(redis, toAgentLockKey(prefix, id), 60_000, () => updateCards(slack, id, ask), {
        waitMs: 2_000,
      });
    if (askName?.startsWith('psid:')) await fillMessengerName(id, askName);
    const nameless = await locked(Boolean(o.messengerProfiles));
    if (nameless) {
      await fillMessengerName(id, nameless.key);
      await locked(false);
    }
  }

  /**
   * The locked part of a refresh. Returns (without editing) the Messenger identity of a nameless
   * customer whose name was never asked for, when `askName`.
   */
  async function updateCards(
    slack: SlackClient,
    id: string,
    askName: boolean,
  ): Promise<Identity | undefined> {
    const tokens: (string | null)[] = await tokensNow(redis, prefix, id);
    const [current, customer] = await Promise.all([
      CurrentThread.findById(id).lean<CurrentThread>(),
      Customer.findById(id).lean<Customer>(),
    ]);
    if (customer?.mergedInto) return void (await markMergedAway(slack, customer));
    // No thread yet: its card will be posted fresh, and refreshed once its thread opens (this refresh
    // was asked for a change that card may have missed: it may read a copy that is behind).
    if (!current || !customer) {
      if (customer) await redis.set(earlyKey(id), '1', 'EX', CARD_SEEN_TTL_S);
      return undefined;
    }
    tokens.push(
      customer.ownerAgentId ? await currentToken(redis, agentGenKey(prefix, customer.ownerAgentId)) : null,
    );
    const owner = await o.ownership.agentById(customer.ownerAgentId);
    const ownerId = owner ? String(owner._id) : 'unassigned';
    const [identities, threads] = await Promise.all([
      Identity.find({ customerId: customer._id }).lean<Identity[]>(),
      SlackThread.find({ customerId: customer._id }).lean<SlackThread[]>(),
    ]);
    const psid = identities.find((i) => i.kind === 'psid');
    if (askName && customer.displayName == null && psid && !(await redis.exists(profileAskedKey(psid.key))))
      return psid;
    let text: string | undefined;
    for (const thread of threads) {
      const live = thread.ts === current.ts && current.agentId === ownerId;
      const facts = cardFacts(live ? 'live' : 'moved', customer, owner?.name, identities);
      if ((await redis.get(factsKey(thread))) === facts) continue;
      // A brand-new customer's card shows no history (their one message follows it), as when posted.
      const history = !brandNew(customer, threads.length > 1);
      text ??= await cardText(models, customer, owner?.name, identities, { history });
      await editCard(o, slack, thread, live ? liveCard(text, id, owner) : movedCard(text, owner));
      await redis.set(factsKey(thread), facts, 'EX', CARD_FACTS_TTL_S);
      log.info({ customerId: id, live }, 'customer card updated');
    }
    await scheduleWindowClose(o, id, nextWindowClose(identities));
    // Last: what the cards now show, and a scheduled refresh for the next window close.
    const seen = cardSeen(customer, identities, tokens);
    await redis.set(seenKey(id), JSON.stringify(seen), 'EX', CARD_SEEN_TTL_S);
    return undefined;
  }

  /**
   * A customer's first card was just posted from what `first` says, read after `first.tokens`:
   * recorded as a refresh would record it (what it shows, its window's close), without reading it
   * all again. Refreshed instead when a refresh ran before the thread opened (card-early) or when the
   * owner's name is not the one shown. A nameless Messenger customer's name is asked for first, in a
   * job (outside this lock: it calls Messenger), which records the card as posted when no name came.
   */
  async function recordFirstCard(customerId: Types.ObjectId | string, first: FirstCard): Promise<void> {
    const id = String(customerId);
    const owner = first.customer.ownerAgentId;
    // The owner's gen before the owner is read again (the card's copy of them was read before it).
    const agentGen = owner ? await currentToken(redis, agentGenKey(prefix, owner)) : null;
    const agent = await o.ownership.agentById(owner);
    const early = await redis.getdel(earlyKey(id));
    // Messenger webhooks carry no name: it is asked for from Messenger's User Profile API.
    const askName =
      o.messengerProfiles !== undefined && first.customer.displayName == null
        ? first.identities.find((i) => i.kind === 'psid')?.key
        : undefined;
    if (early !== null || agent?.name !== first.ownerName) return requestRefresh(id, coalesceMs, askName);
    const seen = cardSeen(first.customer, first.identities, [...first.tokens, agentGen]);
    const closeAt = nextWindowClose(first.identities);
    if (askName) {
      if (!o.slack) return;
      // Its own job, not a coalesced refresh: a refresh asked for meanwhile still runs on its own.
      await queue.add(
        'card',
        { card: { customerId: id, askName, first: { seen, closeAt } } },
        { jobId: `card~${id}~first` },
      );
      return;
    }
    await recordSeen(id, seen, closeAt);
  }

  /** What a card shows (`seen`) as the last refresh's record, and a refresh at its window's close. */
  async function recordSeen(id: string, seen: CardSeen, closeAt: number | undefined): Promise<void> {
    await scheduleWindowClose(o, id, closeAt);
    await redis.set(seenKey(id), JSON.stringify(seen), 'EX', CARD_SEEN_TTL_S);
  }

  /**
   * A nameless Messenger customer's first card: their name asked for, then the card recorded as
   * posted if every token it was built under is still current — no name was written (that replaces
   * the customer's gen), and nothing else it shows changed (a retried job included); else refreshed.
   */
  async function firstCardNamed(
    slack: SlackClient,
    id: string,
    askName: string,
    first: { seen: CardSeen; closeAt?: number },
  ): Promise<void> {
    await fillMessengerName(id, askName);
    const { now } = await cardTokensNow(redis, prefix, id, first.seen.owner);
    if (sameTokens(first.seen, now)) return recordSeen(id, first.seen, first.closeAt);
    return refresh(slack, id);
  }

  /**
   * After a customer's message: a refresh only when the message may have changed what the card
   * shows (see card.ts `inboundChangesCard`), judged from Redis alone — an ordinary message of a
   * returning customer costs the card no database command. A window the message extends needs no
   * refresh now: the one scheduled for its old close finds it open and schedules the next.
   */
  async function afterInbound(
    customerId: string,
    message: { customer: Customer; identityKey: string; channel: string; created?: boolean },
  ): Promise<void> {
    if (!o.slack) return;
    // A first contact has no thread yet: its card is posted with what it knows now, and the thread's
    // opening asks for the refresh that records it and schedules its window's close
    // (slack-delivery.ts `onThreadOpened`). A refresh now would find no thread and record nothing.
    if (message.created) return;
    const owner = message.customer.ownerAgentId ?? null;
    const { now, also } = await cardTokensNow(redis, prefix, customerId, owner, [seenKey(customerId)]);
    const seen = parseSeen(also[0]);
    // The refresh's tokens are never null but the agent's of an ownerless customer.
    const same = seen !== undefined && sameTokens(seen, now);
    if (same && !inboundChangesCard(seen, message)) return;
    const nameless = message.customer.displayName == null && message.identityKey.startsWith('psid:');
    await requestRefresh(customerId, coalesceMs, nameless ? message.identityKey : undefined);
  }

  /** The cards of a customer merged into another say where their conversation continues. */
  async function markMergedAway(slack: SlackClient, customer: Customer): Promise<void> {
    const survivor = await followToLive(Customer, customer);
    const owner = await o.ownership.agentById(survivor.ownerAgentId);
    const facts = cardFacts('merged', survivor, owner?.name, []);
    const text = `:twisted_rightwards_arrows: *Merged into ${cardName(survivor)}* (id \`${String(survivor._id)}\`)${owner ? `, owned by ${owner.name} (<#${owner.inboxChannelId}>)` : ''}. Their identities and history are there now; replies typed in this thread still reach them.`;
    for (const thread of await SlackThread.find({ customerId: customer._id }).lean<SlackThread[]>()) {
      if ((await redis.get(factsKey(thread))) === facts) continue;
      await editCard(o, slack, thread, {
        text,
        blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }],
      });
      await redis.set(factsKey(thread), facts, 'EX', CARD_FACTS_TTL_S);
    }
  }

  /**
   * A nameless customer's name from Messenger's User Profile API (webhooks carry no name), asked once
   * per identity (a Redis marker), outside the to-agent lock, and set only if nobody named them meanwhile.
   */
  async function fillMessengerName(id: string, identityKey: string): Promise<void> {
    const psid = identityKey.split(':')[2];
    if (!o.messengerProfiles || !psid) return;
    if ((await redis.set(profileAskedKey(identityKey), '1', 'EX', 7 * 24 * 3600, 'NX')) !== 'OK') return;
    let name: string | undefined;
    try {
      name = (await o.messengerProfiles.name(psid))?.slice(0, 80);
    } catch {
      log.warn({ customerId: id }, 'messenger profile lookup failed; the card stays without a name');
      return;
    }
    if (!name) return;
    await Customer.updateOne(
      { _id: id, displayName: null, mergedInto: null },
      { $set: { displayName: name, 'profile.name': { value: name, source: 'messenger', at: new Date() } } },
    );
    await customerChanged(redis, prefix, id);
  }

  /** Posts (or shows one user) a notice in a given thread, once per key. */
  async function postNotice(slack: SlackClient, n: ThreadNotice, retried: boolean): Promise<void> {
    await respectChannelLimit(redis, prefix, n.channel);
    try {
      if (n.user) {
        await slack.postEphemeral(n.channel, n.user, n.text, n.threadTs);
        return;
      }
      if (retried && (await slack.findInThread(n.channel, n.threadTs, NOTICE_EVENT_TYPE, 'key', n.key)))
        return;
      await slack.postMessage({
        channel: n.channel,
        threadTs: n.threadTs,
        text: n.text,
        username: 'Rapport',
        iconEmoji: ':memo:',
        metadata: { eventType: NOTICE_EVENT_TYPE, payload: { key: n.key } },
      });
    } catch (err) {
      await noteRateLimit(redis, prefix, n.channel, err);
      throw err;
    }
  }

  return {
    requestRefresh,
    recordFirstCard,
    afterInbound,
    /** Queues a notice for one thread (see ThreadNotice). */
    async notify(notice: ThreadNotice): Promise<void> {
      if (!o.slack) return;
      await queue.add('notice', { notice }, { jobId: `notice~${notice.key.replaceAll(':', '~')}` });
    },
    async handle(job: Job<CardJob>): Promise<void> {
      if (!o.slack) return;
      if ('card' in job.data) {
        const { customerId, askName, first } = job.data.card;
        if (first && askName) return firstCardNamed(o.slack, customerId, askName, first);
        return refresh(o.slack, customerId, askName);
      }
      return postNotice(o.slack, job.data.notice, job.attemptsMade > 0);
    },
  };
}

export type CardUpdates = ReturnType<typeof createCardUpdates>;

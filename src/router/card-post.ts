/**
 * The customer card's Slack side: whether a thread's card names a customer (replies route only
 * then), and posting the card exactly once per thread opening — the attempt (a per-attempt key
 * carried as the card's metadata) is recorded in Redis before the call, and a retry looks the key up
 * in the channel (`conversations.history`) before posting again; a card an earlier attempt for
 * another owner did post gets its thread record, so replies in it are routed.
 */
import type { Types } from 'mongoose';
import type { SlackClient } from '../channels/slack/client';
import type { Customer, Identity, IdentityModels } from '../identity/models';
import type { Logger } from '../logger';
import type { RedisClient } from '../queue/connection';
import { brandNew, CARD_FACTS_TTL_S, cardBlocks, cardFactsKey, renderCard } from './card';
import type { RouterModels } from './models';
import { firstIdentities } from './hot-state';

export const CARD_EVENT_TYPE = 'rapport_card';

/** Where a checked thread remembers whose card it is (erase removes it with the thread). */
export function cardCheckKey(prefix: string, ref: { channel: string; ts: string }): string {
  return `${prefix}:card:${ref.channel}:${ref.ts}`;
}

/**
 * Whether the thread at `ref` is a card that names `customerId`, asked of Slack once per thread and
 * remembered in Redis for a week when it does. A thread record whose message is gone (a workspace or
 * an emulator that lost it) or whose card names someone else must not route replies.
 */
export function createCardCheck(slack: SlackClient, redis: RedisClient, prefix: string) {
  return async (ref: { channel: string; ts: string }, customerId: string): Promise<boolean> => {
    const key = cardCheckKey(prefix, ref);
    if ((await redis.get(key)) === customerId) return true;
    const found = await slack.findInThread(ref.channel, ref.ts, CARD_EVENT_TYPE, 'customerId', customerId);
    if (found !== ref.ts) return false;
    await redis.set(key, customerId, 'EX', 7 * 24 * 3600);
    return true;
  };
}

export interface CardPosterOptions {
  models: RouterModels & IdentityModels;
  slack: SlackClient;
  redis: RedisClient;
  prefix: string;
  log: Logger;
  /** Records a 429's wait for the channel (and throws its DeferError); returns for other errors. */
  noteRateLimit: (channel: string, err: unknown) => Promise<void>;
}

export function createCardPoster(o: CardPosterOptions) {
  const { models, slack, redis, prefix, log } = o;
  const { SlackThread, Customer } = models;

  interface CardAttempt {
    channel: string;
    agentId: string;
    key: string;
    /** Slack-style seconds of the attempt, for `conversations.history`'s `oldest`. */
    oldest: string;
  }
  const cardAttemptKey = (customerId: Types.ObjectId) => `${prefix}:card-attempt:${String(customerId)}`;

  /**
   * The card this opening already posted (a lost answer to an earlier attempt), or the attempt to
   * make now, recorded before the call. Returns the found ts, if any, with the attempt; `orphan`:
   * an earlier attempt for another owner or channel was looked up (its card may now have a thread).
   */
  async function cardAttempt(
    customerId: Types.ObjectId,
    channel: string,
    agentId: string,
  ): Promise<{ attempt: CardAttempt; found?: string; orphan?: boolean }> {
    const stored = await redis.get(cardAttemptKey(customerId));
    const earlier = stored ? (JSON.parse(stored) as CardAttempt) : undefined;
    if (earlier && earlier.channel === channel && earlier.agentId === agentId) {
      const found = await slack.findInChannel(channel, earlier.oldest, CARD_EVENT_TYPE, 'key', earlier.key);
      return { attempt: earlier, ...(found ? { found } : {}) };
    }
    if (earlier) await recordOrphanCard(customerId, earlier);
    const attempt: CardAttempt = {
      channel,
      agentId,
      key: `${String(customerId)}:${Date.now().toString(36)}:${Math.random().toString(36).slice(2, 8)}`,
      // A minute of slack for clock skew between us and Slack.
      oldest: String(Math.floor(Date.now() / 1000) - 60),
    };
    await redis.set(cardAttemptKey(customerId), JSON.stringify(attempt), 'EX', 7 * 24 * 3600);
    return { attempt, ...(earlier ? { orphan: true } : {}) };
  }

  /**
   * An earlier attempt for another owner or channel whose answer was lost may still have posted its
   * card: if so, its thread is recorded too, so a reply in it reaches the customer.
   */
  async function recordOrphanCard(customerId: Types.ObjectId, earlier: CardAttempt): Promise<void> {
    const ts = await slack.findInChannel(
      earlier.channel,
      earlier.oldest,
      CARD_EVENT_TYPE,
      'key',
      earlier.key,
    );
    if (!ts) return;
    await SlackThread.updateOne(
      { channel: earlier.channel, ts },
      { $setOnInsert: { channel: earlier.channel, ts, customerId, agentId: earlier.agentId } },
      { upsert: true },
    );
    log.info(
      { customerId: String(customerId), agentId: earlier.agentId },
      'card of an earlier owner recorded',
    );
  }

  /**
   * Posts the card (or finds the one an earlier attempt posted); returns its ts. `known.customer`:
   * the customer as the caller just read it (not read again); `known.hadThread`: the customer had
   * a thread before this one (a brand-new customer's card is posted without a history read).
   * `shown`: what the card shows, when it is the customer's only card and this call posted it (no
   * earlier card to mark as moved, nothing unknown on it): the card refresh can record that instead
   * of reading it all again (card-updates.ts `recordFirstCard`).
   */
  async function postCard(
    customerId: Types.ObjectId,
    channel: string,
    agent: { _id: unknown; name?: string } | undefined,
    known: { customer?: Customer; hadThread?: boolean } = {},
  ): Promise<{ ts: string; shown?: { customer: Customer; identities: Identity[] } }> {
    const agentId = agent ? String(agent._id) : 'unassigned';
    const { attempt, found, orphan } = await cardAttempt(customerId, channel, agentId);
    if (found) {
      log.info(
        { customerId: String(customerId), agentId },
        'card of an earlier attempt found; not posted again',
      );
      return { ts: found };
    }
    const customer = known.customer ?? (await Customer.findById(customerId).lean<Customer>());
    if (!customer) throw new Error(`customer ${String(customerId)} not found`);
    const history = !brandNew(customer, known.hadThread ?? true);
    // A first contact's one identity, as the router left it (hot-state.ts `fileFirstContact`).
    const first = history ? undefined : await firstIdentities(redis, prefix, String(customerId));
    const { text, facts, identities } = await renderCard(models, customer, agent?.name, {
      history,
      ...(first ? { identities: first } : {}),
    });
    let ts: string;
    try {
      ({ ts } = await slack.postMessage({
        channel,
        text: agent ? text : `:warning: No agent is available to own this customer.\n${text}`,
        blocks: cardBlocks(text, String(customerId)),
        metadata: {
          eventType: CARD_EVENT_TYPE,
          payload: { customerId: String(customerId), key: attempt.key },
        },
      }));
    } catch (err) {
      await o.noteRateLimit(channel, err);
      throw err;
    }
    // What the card shows, so a refresh edits it only when that changes (card-updates.ts).
    await redis.set(cardFactsKey(prefix, { channel, ts }), facts, 'EX', CARD_FACTS_TTL_S);
    const only = known.hadThread === false && !orphan;
    return { ts, ...(only ? { shown: { customer, identities } } : {}) };
  }

  return {
    postCard,
    /** The opening is recorded (its thread written): the attempt is forgotten. */
    async attemptDone(customerId: Types.ObjectId): Promise<void> {
      await redis.del(cardAttemptKey(customerId));
    },
  };
}

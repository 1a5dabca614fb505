/**
 * The router's hot state in Redis: agents by id (name, status, away, backup, active), read on every
 * message to know the owner and their cover; customers by id (the Slack flush's owner check); and
 * each customer's current Slack thread (invalidated when it is re-created or its channel note moves);
 * and each customer's conversation as the inbound router decides with it (open, owner, awaitingSince,
 * last message, last ack), so a returning customer's message reads and writes no conversation
 * command unless something it decides with changes (src/router/inbound.ts). Shared by every
 * process; MongoDB stays the record.
 *
 * Same scheme as src/identity/cache.ts: an entry counts only while the agent's gen token is the one
 * it was filled under; the reader reads the token before the database, and every agent write
 * replaces the token after writing (`agentChanged`), so a stale read never becomes a valid entry.
 * Both keys of an agent share the `{a:<id>}` hash slot (one MGET, safe on Redis Cluster); a
 * customer's share `{c:<id>}` with its gen, and the identity epoch is read beside them.
 */
import { mongo } from 'mongoose';
import type { RedisClient } from '../queue/connection';
import {
  currentToken,
  customerDocKey,
  customerGenKey,
  decodeHotCopy,
  encodeHotCopy,
  epochKey,
  HOT_COPY_TTL_S,
  replaceToken,
} from '../identity/cache';
import type { Customer, Identity } from '../identity/models';
import type { Agent, Conversation, CurrentThread } from './models';

const genKey = (prefix: string, id: string) => `${prefix}:hot:{a:${id}}:gen`;
/** An agent's gen token (what the card refresh records, src/router/card-updates.ts). */
export const agentGenKey = genKey;

/** The team's token: the active agents' list (the owner pick's candidates) is filed under it. */
const teamGenKey = (prefix: string) => `${prefix}:hot:{agents}:gen`;

/**
 * An agent's record changed (status, away, backup, name, active) or an agent was created: call
 * after the database write. Replaces the agent's token and the team's (two slots, two commands).
 */
export async function agentChanged(redis: RedisClient, prefix: string, id: string | { toString(): string }) {
  await Promise.all([replaceToken(redis, genKey(prefix, String(id))), replaceToken(redis, teamGenKey(prefix))]);
}

export interface HotRecords<T> {
  /** The record, from Redis when its entry is current, else from `load` (then cached). */
  get(id: string): Promise<T | undefined>;
}

/**
 * Records by id under a gen token in the same hash slot (`gen` and `doc` keys from `keys`), and,
 * when given, a second token that must also be unchanged (`alsoKey`: the identity epoch).
 */
export function createHotRecords<T>(
  redis: RedisClient,
  keys: (id: string) => { gen: string; doc: string },
  load: (id: string) => Promise<T | undefined>,
  alsoKey?: string,
): HotRecords<T> {
  return {
    async get(id) {
      const k = keys(id);
      const [[gen, text], also] = await Promise.all([
        redis.mget(k.gen, k.doc),
        alsoKey ? redis.get(alsoKey) : Promise.resolve(null),
      ]);
      if (gen && text) {
        const entry = decodeHotCopy<T>(text);
        if (entry.gen === gen && entry.also === also) return entry.doc ?? undefined;
      }
      // Tokens first, then the database (see src/identity/cache.ts).
      const genBefore = gen ?? (await currentToken(redis, k.gen));
      const alsoBefore = alsoKey ? (also ?? (await currentToken(redis, alsoKey))) : null;
      const doc = await load(id);
      await redis.set(k.doc, encodeHotCopy({ gen: genBefore, also: alsoBefore, doc: doc ?? null }), 'EX', HOT_COPY_TTL_S);
      return doc;
    },
  };
}

/** The keys of a customer's current-thread copy: in the customer's `{c:<id>}` slot. */
export const threadKeys = (prefix: string, id: string) => ({
  gen: `${prefix}:hot:{c:${id}}:tgen`,
  doc: `${prefix}:hot:{c:${id}}:thread`,
});

export interface HotThreads extends HotRecords<CurrentThread> {
  /**
   * The thread as its writer just wrote it to the database, so the next flush reads no thread.
   * `recreated` (a new thread: its card, a new owner): a new token first, so copies filled before
   * stop counting, and the card refresh sees a new thread (card-updates.ts). Otherwise (only the last
   * posted channel moved) the token stays: the card does not show it, and the copy is replaced
   * in place. Only for writers holding the customer's `to-agent` lock, which every reader and writer
   * of current threads holds (slack-delivery.ts; erasure deletes the keys), so no reader can be
   * filing an older read meanwhile. Returns the token it is filed under.
   */
  put(doc: CurrentThread, opts: { recreated: boolean }): Promise<string>;
}

/** Current threads by customer id (the Slack flush reads it per flush, under the customer's lock). */
export function createHotThreads(
  redis: RedisClient,
  prefix: string,
  load: (id: string) => Promise<CurrentThread | undefined>,
): HotThreads {
  return {
    ...createHotRecords(redis, (id) => threadKeys(prefix, id), load),
    async put(doc, { recreated }) {
      const k = threadKeys(prefix, String(doc._id));
      const gen = recreated ? await replaceToken(redis, k.gen) : await currentToken(redis, k.gen);
      await redis.set(k.doc, encodeHotCopy({ gen, also: null, doc }), 'EX', HOT_COPY_TTL_S);
      return gen;
    },
  };
}

/** A first contact's identity as their first card shows it (filed under the identity epoch). */
export const firstIdentitiesKey = (prefix: string, id: string) => `${prefix}:hot:{c:${id}}:first-ids`;
/** How long a first contact's identity waits for their card (a card posted later reads them). */
const FIRST_IDENTITIES_TTL_S = 3600;

/**
 * A customer created a moment ago has no Slack thread: their copy says so, so the first flush reads
 * no thread; and their one identity, as resolution just left it, is what their card shows, so the
 * card reads none (card-post.ts; valid while the identity epoch is: a merge, link, undo or erasure
 * replaces it). Only before anything of theirs is appended (src/router/inbound.ts, first contact):
 * no flush, and so no reader or writer of their current thread, can exist yet. Filed under the
 * thread gen like any copy; the thread's opening replaces the gen (`put`).
 */
export async function fileFirstContact(
  redis: RedisClient,
  prefix: string,
  customerId: string,
  identity?: Identity,
): Promise<void> {
  const k = threadKeys(prefix, customerId);
  const [gen, epoch] = await Promise.all([currentToken(redis, k.gen), currentToken(redis, epochKey(prefix))]);
  await redis.set(k.doc, encodeHotCopy({ gen, also: null, doc: null }), 'EX', HOT_COPY_TTL_S);
  if (!identity || String(identity.customerId) !== customerId) return;
  const { _id, key, kind, value, verified, lastInboundAt } = identity;
  const doc = [{ _id, key, kind, value, customerId: identity.customerId, verified, lastInboundAt }];
  await redis.set(firstIdentitiesKey(prefix, customerId), encodeHotCopy({ gen: '', also: epoch, doc }), 'EX', FIRST_IDENTITIES_TTL_S);
}

/** The first contact's identities `fileFirstContact` left, while the identity epoch is unchanged. */
export async function firstIdentities(
  redis: RedisClient,
  prefix: string,
  customerId: string,
): Promise<Identity[] | undefined> {
  const [text, epoch] = await Promise.all([redis.get(firstIdentitiesKey(prefix, customerId)), redis.get(epochKey(prefix))]);
  if (!text || !epoch) return undefined;
  const copy = decodeHotCopy<Identity[]>(text);
  return copy.also === epoch && copy.doc ? copy.doc : undefined;
}

/** Agents by id; `agentChanged` invalidates one. */
export function createHotAgents(
  redis: RedisClient,
  prefix: string,
  load: (id: string) => Promise<Agent | undefined>,
): HotRecords<Agent> {
  return createHotRecords(redis, (id) => ({ gen: genKey(prefix, id), doc: `${prefix}:hot:{a:${id}}:doc` }), load);
}

/**
 * The active agents (the owner pick's candidates, with status and capacity), one entry for the team:
 * `agentChanged` invalidates it, so a deactivated or away agent is out of it once their write is.
 */
export function createHotTeam(redis: RedisClient, prefix: string, load: () => Promise<Agent[]>): HotRecords<Agent[]> {
  return createHotRecords(redis, () => ({ gen: teamGenKey(prefix), doc: `${prefix}:hot:{agents}:doc` }), load);
}

/**
 * Customers by id (the Slack flush's owner check): valid while the customer's gen
 * (`customerChanged`) and the identity epoch (merge, undo, link, erase) are unchanged.
 */
export function createHotCustomers(
  redis: RedisClient,
  prefix: string,
  load: (id: string) => Promise<Customer | undefined>,
): HotRecords<Customer> {
  return createHotRecords(
    redis,
    (id) => ({ gen: customerGenKey(prefix, id), doc: customerDocKey(prefix, id) }),
    load,
    epochKey(prefix),
  );
}

/**
 * The keys of a customer's conversation copy (what the inbound router decides with: open, owner,
 * awaitingSince, last customer message, last ack), in the customer's `{c:<id>}` slot.
 */
export const conversationKeys = (prefix: string, id: string) => ({
  gen: `${prefix}:hot:{c:${id}}:cgen`,
  doc: `${prefix}:hot:{c:${id}}:conv`,
});

/**
 * A customer's Conversation document changed (agent reply, close, owner sync, ...): call after the
 * write. Every writer except the inbound router, which holds the conversation lock, replaces the
 * token before its own write and files its result under the new one (`writing`, `file`).
 */
export async function conversationChanged(redis: RedisClient, prefix: string, customerId: string | { toString(): string }) {
  await replaceToken(redis, conversationKeys(prefix, String(customerId)).gen);
}

/** The conversation as the router last decided with it, and what of it the database holds. */
export interface HotConversation {
  /** As the router's last message left it (lastCustomerMessageAt exact, not lagging). */
  conversation: Conversation;
  /** lastCustomerMessageAt as stored in MongoDB (written at most once a `TOUCH_INTERVAL_MS`). */
  stored?: Date;
}

/** The tokens a conversation was read under: its copy counts only while both are unchanged. */
export interface ConversationTokens {
  gen: string;
  also: string;
}

export interface HotConversations {
  /** The keys `read` reads (the customer's `{c:<id>}` slot): to read them with the lock (lock.ts `withLockReading`). */
  keys(id: string): string[];
  /**
   * The conversation (from its copy when current, else from `load`) and the tokens read before the
   * database was. Call under the conversation lock; `values` are `keys(id)` and `epoch` the identity
   * epoch as read together (both read under the lock, the epoch after the copy). `none`: the caller
   * knows the router never wrote one (a customer created by the message being routed): nothing is read.
   */
  read(
    id: string,
    values: (string | null)[],
    epoch: string | null,
    opts?: { none?: boolean },
  ): Promise<{ hot?: HotConversation; tokens: ConversationTokens }>;
  /**
   * Before the router's own write (under the lock): the copy stops counting at once, so a crash
   * between the write and `file` leaves no copy older than the database. The tokens to file under.
   */
  writing(id: string, tokens: ConversationTokens): Promise<ConversationTokens>;
  /**
   * The router's result filed under `tokens` (from `read`, or `writing` if it wrote): the key and
   * value the lock's release writes, last, under the lock.
   */
  filed(id: string, value: HotConversation, tokens: ConversationTokens): { key: string; value: string; ttlS: number };
}

/**
 * Conversations by customer id, for the inbound router only: valid while the conversation's gen
 * (`conversationChanged`) and the identity epoch (merge, undo, link, erase) are unchanged.
 */
export function createHotConversations(
  redis: RedisClient,
  prefix: string,
  load: (id: string) => Promise<Conversation | undefined>,
): HotConversations {
  const also = epochKey(prefix);
  return {
    keys(id) {
      const k = conversationKeys(prefix, id);
      return [k.gen, k.doc];
    },
    async read(id, [gen, text], epoch, opts = {}) {
      if (gen && epoch && text) {
        const entry = mongo.BSON.EJSON.parse(text, { relaxed: false }) as ConversationTokens & { value: HotConversation };
        if (entry.gen === gen && entry.also === epoch) return { hot: entry.value, tokens: { gen, also: epoch } };
      }
      // Tokens first, then the database (see src/identity/cache.ts).
      const tokens = {
        gen: gen ?? (await currentToken(redis, conversationKeys(prefix, id).gen)),
        also: epoch ?? (await currentToken(redis, also)),
      };
      // A new customer's conversation holds at most the owner the assignment just wrote (ownership.ts),
      // which the router's own write sets again.
      const conversation = opts.none ? undefined : await load(id);
      return {
        hot: conversation && { conversation, stored: conversation.lastCustomerMessageAt },
        tokens,
      };
    },
    async writing(id, tokens) {
      const { gen } = conversationKeys(prefix, id);
      return { ...tokens, gen: await replaceToken(redis, gen) };
    },
    filed(id, value, tokens) {
      const entry = mongo.BSON.EJSON.stringify({ ...tokens, value }, { relaxed: false });
      return { key: conversationKeys(prefix, id).doc, value: entry, ttlS: HOT_COPY_TTL_S };
    },
  };
}

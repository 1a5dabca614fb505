/**
 * The hot-state cache of identity resolution, in Redis (shared by every process): channel handle
 * (identity key) → the live customer and what resolution knows of it, so a returning customer's
 * message is resolved without a database command. MongoDB stays the record; this is only a copy.
 *
 * Validity, not deletion, is what invalidates (a deleted key can be re-written by a reader that read
 * the database before the change): every entry carries the tokens it was filled under and counts
 * only while they are still current.
 * - `epoch` (one key): changed by every change of which customer an identity belongs to — merge,
 *   undo, claim link, erase — before their first write and after their identity writes (see
 *   `identityChanging`). A global token because those changes are rare and a miss costs only what
 *   resolution cost before.
 * - a customer's `gen` (`{c:<id>}` slot): changed after every write to that customer's routing facts
 *   (owner, name, profile; `customerChanged`).
 * A reader reads both tokens BEFORE it reads the database and writes the entry under them: a change
 * made meanwhile has replaced a token (its write came first, then the token), so the entry never
 * counts. A token is a random string, never a counter that could restart at a value seen before
 * (Redis wiped or the key evicted).
 *
 * Touches (last address, messaging window, last seen) are skipped while the cached values are at
 * most `TOUCH_INTERVAL_MS` old and say the same thing (same provider, address, channel): the stored
 * window may then lag by up to that long, which only ever closes it early. Anything else — a new
 * address, another provider or channel, a name to record — goes through the database as before.
 *
 * Keys (QUEUE_PREFIX first): `hot:epoch`; `hot:id:<sha256 of the identity key>` (no phone number in
 * a key name; the value holds ids and dates, the customer's name and owner); `hot:{c:<id>}:gen` and
 * `hot:{c:<id>}:ids` (the identity entries filled for that customer, so an erasure deletes them);
 * `hot:{c:<id>}:doc`, `:thread` and `:tgen`, `:conv` and `:cgen` are the router's copies of the
 * customer, its current Slack thread and its conversation (src/router/hot-state.ts).
 * Multi-key commands only ever touch one `{c:<id>}` slot: safe on Redis Cluster.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mongo, Types } from 'mongoose';
import type { InboundMessage } from '../canonical';
import type { RedisClient } from '../queue/connection';
import type { Customer, Identity } from './models';
import { identityKeyOf, sentAtOf, type IdentityStore, type ResolvedCustomer } from './resolve';
import type { CountryCode } from 'libphonenumber-js';

/** How stale the stored touches (last seen, last address, window) may be before one is written. */
export const TOUCH_INTERVAL_MS = 60_000;
/** How long an entry or token lives without use. */
const TTL_S = 6 * 3600;
/** How long a copy lives without use; a token lives twice as long, so it outlives what it guards. */
export const HOT_COPY_TTL_S = TTL_S;
export const HOT_TOKEN_TTL_S = TTL_S * 2;

/** A fresh change token. */
export const newToken = () => randomBytes(9).toString('base64url');
const token = newToken;

/**
 * A router copy as stored (src/router/hot-state.ts, and the owner assignment in ownership.ts): the
 * record, the gen it was filed under, and the second token it also depends on (the epoch), if any.
 */
export interface HotCopy<T> {
  gen: string;
  also: string | null;
  doc: T | null;
}
export const encodeHotCopy = <T>(copy: HotCopy<T>): string => mongo.BSON.EJSON.stringify(copy, { relaxed: false });
export const decodeHotCopy = <T>(text: string): HotCopy<T> =>
  mongo.BSON.EJSON.parse(text, { relaxed: false }) as HotCopy<T>;
export const epochKey = (prefix: string) => `${prefix}:hot:epoch`;
export const customerGenKey = (prefix: string, id: string) => `${prefix}:hot:{c:${id}}:gen`;
export const customerDocKey = (prefix: string, id: string) => `${prefix}:hot:{c:${id}}:doc`;
const customerIdsKey = (prefix: string, id: string) => `${prefix}:hot:{c:${id}}:ids`;
const identityEntryKey = (prefix: string, identityKey: string) =>
  `${prefix}:hot:id:${createHash('sha256').update(identityKey).digest('hex').slice(0, 40)}`;

/** The current token of `key`, creating one if there is none. */
export async function currentToken(redis: RedisClient, key: string): Promise<string> {
  const existing = await redis.get(key);
  if (existing) return existing;
  await redis.set(key, token(), 'EX', HOT_TOKEN_TTL_S, 'NX');
  return (await redis.get(key)) ?? '';
}

/** Replaces the token of `key`: everything filled under the old one stops counting. */
export async function replaceToken(redis: RedisClient, key: string): Promise<string> {
  const fresh = token();
  await redis.set(key, fresh, 'EX', HOT_TOKEN_TTL_S);
  return fresh;
}

/** A change of which customer an identity belongs to (merge, undo, link, erase) starts or ended. */
export async function identityChanging(redis: RedisClient, prefix: string): Promise<void> {
  await replaceToken(redis, epochKey(prefix));
}

/** A customer's routing facts (owner, name, profile) changed in the database: call after the write. */
export async function customerChanged(
  redis: RedisClient,
  prefix: string,
  ...ids: (Types.ObjectId | string | undefined)[]
): Promise<void> {
  for (const id of ids) if (id) await replaceToken(redis, customerGenKey(prefix, String(id)));
}

/** Erasure: every hot key of the customer goes, and the epoch changes. */
export async function forgetHotCustomer(redis: RedisClient, prefix: string, id: string): Promise<void> {
  await identityChanging(redis, prefix);
  const entries = await redis.smembers(customerIdsKey(prefix, id));
  // One key a call: the identity entries sit in other slots on a Redis Cluster.
  for (const key of entries) await redis.del(key);
  await redis.del(customerIdsKey(prefix, id));
  await redis.del(customerGenKey(prefix, id));
  await redis.del(customerDocKey(prefix, id));
  // The router's copy of the current thread (src/router/hot-state.ts `threadKeys`).
  await redis.del(`${prefix}:hot:{c:${id}}:tgen`);
  await redis.del(`${prefix}:hot:{c:${id}}:thread`);
  // And of the conversation (`conversationKeys`).
  await redis.del(`${prefix}:hot:{c:${id}}:cgen`);
  await redis.del(`${prefix}:hot:{c:${id}}:conv`);
}

interface Entry {
  epoch: string;
  customerId: string;
  /** The customer's gen when the entry was filled; null: filled without one (not yet usable). */
  gen: string | null;
  customer: Customer;
  identity: Pick<Identity, '_id' | 'key' | 'kind' | 'customerId' | 'lastInboundAt'> & {
    /** Per provider: a digest of the last address (raw + to) and when it was set. */
    last: Partial<Record<string, { digest: string; at: Date }>>;
  };
}

const digest = (raw: string, to: string | undefined) =>
  createHash('sha256').update(`${raw}\u0000${to ?? ''}`).digest('base64url').slice(0, 16);

function rawOf(message: InboundMessage): string {
  return message.from.kind === 'phone' ? message.from.e164 : message.from.psid;
}

/** Whether this message would change a stored touch (or needs the database for another reason). */
export function needsWrite(entry: Entry, message: InboundMessage, at: Date, now = Date.now()): boolean {
  const stale = (d: Date | undefined, ref: number) => !d || ref - d.getTime() > TOUCH_INTERVAL_MS;
  const { customer, identity } = entry;
  const mine = identity.last[message.provider];
  const newest = Object.values(identity.last).every((o) => !o || !mine || o.at.getTime() <= mine.at.getTime());
  const name = Boolean(message.profileName?.trim()) && customer.displayName == null;
  return (
    !mine ||
    !newest ||
    mine.digest !== digest(rawOf(message), message.to) ||
    stale(mine.at, now) ||
    stale(identity.lastInboundAt?.[message.channel], at.getTime()) ||
    customer.mergedInto != null ||
    customer.lastChannel !== message.channel ||
    customer.lastProvider !== message.provider ||
    stale(customer.lastSeenAt, at.getTime()) ||
    name
  );
}

function entryOf(resolved: ResolvedCustomer, epoch: string, gen: string | null): Entry {
  const { identity, customer } = resolved;
  const last: Entry['identity']['last'] = {};
  for (const [provider, a] of Object.entries(identity.lastAddress ?? {}))
    if (a) last[provider] = { digest: digest(a.raw, a.to), at: a.at };
  return {
    epoch,
    customerId: String(customer._id),
    gen,
    customer,
    identity: {
      _id: identity._id,
      key: identity.key,
      kind: identity.kind,
      customerId: identity.customerId,
      lastInboundAt: identity.lastInboundAt ?? {},
      last,
    },
  };
}

const encode = (entry: Entry) => mongo.BSON.EJSON.stringify(entry, { relaxed: false });
const decode = (text: string) => mongo.BSON.EJSON.parse(text, { relaxed: false }) as Entry;

/**
 * The identity store with the hot cache in front of resolution: a hit answers from Redis and lets
 * `storeInbound` prove with one Redis read (the epoch unchanged) that no merge, undo or erasure moved
 * the identity meanwhile, instead of re-reading it from the database.
 */
export function withHotIdentity(
  store: IdentityStore,
  redis: RedisClient,
  prefix: string,
  defaultRegion: CountryCode,
): IdentityStore {
  async function read(identityKey: string): Promise<{ entry?: Entry; epoch: string | null }> {
    const [text, epoch] = await Promise.all([redis.get(identityEntryKey(prefix, identityKey)), redis.get(epochKey(prefix))]);
    return { entry: text ? decode(text) : undefined, epoch };
  }

  async function fill(identityKey: string, resolved: ResolvedCustomer, epoch: string, gen: string | null) {
    const key = identityEntryKey(prefix, identityKey);
    const customerId = String(resolved.customer._id);
    await redis.set(key, encode(entryOf(resolved, epoch, gen)), 'EX', TTL_S);
    await redis.sadd(customerIdsKey(prefix, customerId), key);
    await redis.expire(customerIdsKey(prefix, customerId), TTL_S * 2);
  }

  /**
   * The router's copy of the customer (src/router/hot-state.ts, `{ gen, also, doc }` under the gen
   * and the epoch), if it was filled under `gen` and the epoch is still the one it names.
   */
  async function routerCopy(customerId: string, gen: string): Promise<Customer | undefined> {
    const [text, epoch] = await Promise.all([redis.get(customerDocKey(prefix, customerId)), redis.get(epochKey(prefix))]);
    if (!text) return undefined;
    const copy = decodeHotCopy<Customer>(text);
    return copy.gen === gen && copy.also === epoch && copy.doc ? copy.doc : undefined;
  }

  return {
    ...store,
    async resolveCustomer(message) {
      const ref = identityKeyOf(message.from, defaultRegion);
      if (!ref) return store.resolveCustomer(message); // throws the PayloadError
      const at = sentAtOf(message);
      const { entry, epoch } = await read(ref.key);
      const gen = entry ? await redis.get(customerGenKey(prefix, entry.customerId)) : null;
      if (entry && epoch && entry.epoch === epoch && entry.gen && gen === entry.gen && !needsWrite(entry, message, at)) {
        // The identity as cached: its key, kind, ids and window; the addresses only as digests.
        const identity = { ...entry.identity, lastAddress: {} } as unknown as Identity;
        const unmoved = async () => (await redis.get(epochKey(prefix))) === epoch;
        return { customer: entry.customer, identity, created: false, unmoved };
      }
      // Tokens first, then the database: a change made in between replaces a token.
      const epochNow = epoch ?? (await currentToken(redis, epochKey(prefix)));
      const genNow = entry ? (gen ?? (await currentToken(redis, customerGenKey(prefix, entry.customerId)))) : null;
      const resolved = await store.resolveCustomer(message);
      const customerId = String(resolved.customer._id);
      // The epoch was read before resolution's first command, so it proves for a miss what it proves
      // for a hit: while it is unchanged, no merge, undo or erasure can have moved the identity since
      // (a first contact's message is then stored without the database re-check).
      const unmoved = async () => (await redis.get(epochKey(prefix))) === epochNow;
      // The gen counts only if it was read for this very customer before the database was.
      if (entry?.customerId === customerId) {
        await fill(ref.key, resolved, epochNow, genNow);
        return { ...resolved, unmoved };
      }
      // A first contact (or a moved identity): filled once routing has assigned the owner, from the
      // router's copy the assignment left when it is current under the gen and epoch, else from a
      // read made after the gen (one command; the next messages then need none).
      const refill = async () => {
        const genAfter = await currentToken(redis, customerGenKey(prefix, customerId));
        const customer =
          (await routerCopy(customerId, genAfter)) ??
          (await store.models.Customer.findById(customerId).lean<Customer>());
        if (customer && !customer.mergedInto) await fill(ref.key, { ...resolved, customer }, epochNow, genAfter);
      };
      return { ...resolved, unmoved, refill };
    },
  };
}

/** For tests and tools: the customer `identityKey` resolves to from the hot cache, if its entry is current. */
export async function hotCustomerOf(
  redis: RedisClient,
  prefix: string,
  identityKey: string,
): Promise<Types.ObjectId | undefined> {
  const [text, epoch] = await Promise.all([redis.get(identityEntryKey(prefix, identityKey)), redis.get(epochKey(prefix))]);
  if (!text) return undefined;
  const entry = decode(text);
  const gen = await redis.get(customerGenKey(prefix, entry.customerId));
  const current = entry.epoch === epoch && entry.gen !== null && entry.gen === gen;
  return current ? new Types.ObjectId(entry.customerId) : undefined;
}

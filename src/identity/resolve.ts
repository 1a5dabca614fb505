/**
 * Identity resolution: inbound message → (customer, identity), and inbound message storage.
 *
 * No multi-document transactions (FerretDB v1, standalone MongoDB), so every step is a single-
 * document operation that is safe to repeat, and the order of steps makes a crash anywhere converge
 * on re-run (a job retry) to the same result:
 *
 * 1. The identity is created FIRST, by an upsert on its unique key that only sets the customer id on
 *    insert (`$setOnInsert: { customerId: <fresh ObjectId> }`). Of any number of concurrent first
 *    messages exactly one inserts; the others match it (or get E11000 from the unique index and
 *    retry, finding it). From then on `identity.customerId` is THE customer of that key. The same
 *    upsert applies this message's identity touches (last address, `$max` messaging window), so a
 *    returning identity costs one round trip, not a read and a write.
 * 2. The customer document is created with `_id = identity.customerId`, again by an upsert
 *    (`$setOnInsert`), and only when it is missing. A crash between 1 and 2 leaves an identity whose
 *    customer does not exist yet; the next message (or the retried job) creates it, with that very
 *    id. No customer is ever created before its identity, so no orphan or second customer can
 *    appear. With `createOwned` (the router's owner pick) the upsert sets the owner on insert too:
 *    the customer document is born with its owner, and no assignment write follows.
 * 3. `mergedInto` tombstones are followed (bounded) to the live customer.
 * 4. Customer touches (last seen, display name) are conditional or monotonic (`lastSeenAt < at`,
 *    `displayName == null`) so repeats and out-of-order deliveries never move anything backwards.
 *    They are skipped when the customer just read shows they would change nothing, and the update
 *    returns the document, so there is no final re-read.
 *
 * Two round trips per message, new or returning (how: identity/README.md; counted in
 * test/integration/identity-round-trips.test.ts).
 *
 * Messages are inserted under their unique idempotency key; a duplicate key means "already stored".
 * After the insert, `storeInbound` checks that the customer it filed under is still the identity's
 * live customer and re-files the message if a merge or an undo moved the identity meanwhile (see
 * README.md, "Messages in flight", for why this insert-then-check order closes the race with a
 * concurrent merge).
 */
import { Types, type mongo } from 'mongoose';
import type { CountryCode } from 'libphonenumber-js';
import type { Address, DeliveryState, DeliveryStatus, InboundMessage } from '../canonical';
import { PayloadError } from '../errors';
import { isDuplicateKeyError, retryOnDuplicate } from '../storage/duplicate-key';
import { phoneIdentityKey } from './phone';
import type { Customer, Identity, IdentityKind, IdentityModels, StatusEntry } from './models';
import { followToLive } from './tombstones';

export interface IdentityRef {
  key: string;
  kind: IdentityKind;
  value: string;
}

/** The identity key of a sender address, or undefined if it is not a usable address. */
export function identityKeyOf(address: Address, defaultRegion: CountryCode): IdentityRef | undefined {
  if (address.kind === 'phone') {
    const key = phoneIdentityKey(address.e164, defaultRegion);
    return key === undefined ? undefined : { key, kind: 'phone', value: key.slice('phone:'.length) };
  }
  const pageId = address.pageId.trim();
  const psid = address.psid.trim();
  // ':' separates the parts of the key; page ids and PSIDs are digits.
  if (pageId === '' || psid === '' || pageId.includes(':') || psid.includes(':')) return undefined;
  const value = `${pageId}:${psid}`;
  return { key: `psid:${value}`, kind: 'psid', value };
}

/** The address as the provider delivered it (what replies go to). */
function rawAddress(address: Address): string {
  return address.kind === 'phone' ? address.e164 : address.psid;
}

function toDate(iso: string | undefined): Date | undefined {
  if (iso === undefined) return undefined;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/**
 * When the customer sent the message: the provider's timestamp, else when we received it. Used for
 * last seen and the messaging window (the provider's clock is the one the window is measured on).
 */
export function sentAtOf(message: InboundMessage): Date {
  return toDate(message.sentAt) ?? toDate(message.receivedAt) ?? new Date();
}

const STATE_RANK: Record<DeliveryState, number> = {
  queued: 0,
  sent: 1,
  received: 2,
  delivered: 2,
  read: 3,
  played: 4,
  undelivered: 5,
  failed: 5,
};

/** States a report of `state` may replace as the current status (reports can arrive out of order). */
function statesBelow(state: DeliveryState): DeliveryState[] {
  const rank = STATE_RANK[state];
  return (Object.keys(STATE_RANK) as DeliveryState[]).filter((s) => STATE_RANK[s] < rank);
}

export interface ResolvedCustomer {
  /** The live customer (after following merges), after this message's updates. */
  customer: Customer;
  /** The sender's identity, after this message's updates. */
  identity: Identity;
  /** This call created the customer document. */
  created: boolean;
  /**
   * Set when the answer came from the hot cache (cache.ts): true while no merge, undo or erasure
   * can have moved the identity since — `storeInbound` then skips its database check.
   */
  unmoved?: () => Promise<boolean>;
  /** Set when the hot cache should be filled once routing is done (first contact). */
  refill?: () => Promise<void>;
}

export interface IdentityStore {
  readonly models: IdentityModels;
  /** Finds or creates the sender's identity and customer; throws PayloadError for a bad address. */
  resolveCustomer(message: InboundMessage): Promise<ResolvedCustomer>;
  /**
   * Stores an inbound message once; `stored: false` means it was already stored (redelivery).
   * `customerId` is the customer the message is filed under: normally the one passed in, but the
   * identity's live customer if a merge or undo moved the identity between resolve and store.
   */
  storeInbound(
    message: InboundMessage,
    customerId: Types.ObjectId | string,
    identityKey: string,
    unmoved?: () => Promise<boolean>,
  ): Promise<{ stored: boolean; customerId: string }>;
  /**
   * Applies a provider status report to the outbound message it is about. `updated: false` when
   * the message is unknown, the report carries no message id (watermark), or it was already applied.
   */
  applyStatus(status: DeliveryStatus): Promise<{ updated: boolean }>;
}

/**
 * Creates a new customer with its owner already in it (src/router/ownership.ts `createOwned`): picks
 * the owner, calls `create` with it (the customer's upsert sets it on insert only), and settles the
 * pick by what was stored — kept when this call created the customer with it, released otherwise.
 */
export type OwnedCreation = (
  customerId: Types.ObjectId,
  create: (ownerAgentId: string | undefined) => Promise<{ customer: Customer; created: boolean }>,
) => Promise<{ customer: Customer; created: boolean }>;

export function createIdentityStore(
  models: IdentityModels,
  options: { defaultRegion: CountryCode; createOwned?: OwnedCreation },
): IdentityStore {
  const { Customer, Identity, Message } = models;

  /**
   * Step 1: the identity, inserted with a fresh customer id if it does not exist, and touched.
   * `inserted`: this call created it (so its customer cannot exist yet).
   */
  function upsertIdentity(
    ref: IdentityRef,
    message: InboundMessage,
    at: Date,
  ): Promise<{ identity: Identity; inserted: boolean }> {
    return retryOnDuplicate(async () => {
      const result = await Identity.findOneAndUpdate(
        { key: ref.key },
        {
          $setOnInsert: {
            kind: ref.kind,
            value: ref.value,
            customerId: new Types.ObjectId(),
            // The provider delivered a message from this address: the sender controls it.
            verified: true,
            source: message.provider,
          },
          $set: {
            // When WE received it, not the provider's timestamp: providers stamp whole seconds (or
            // nothing), and "which app did they use last" must not flip within a second.
            [`lastAddress.${message.provider}`]: {
              raw: rawAddress(message.from),
              to: message.to,
              at: toDate(message.receivedAt) ?? at,
            },
          },
          $max: { [`lastInboundAt.${message.channel}`]: at },
        },
        { upsert: true, returnDocument: 'after', includeResultMetadata: true },
      ).lean<mongo.ModifyResult<Identity>>();
      const identity = result.value;
      if (!identity) throw new Error('identity upsert returned no document');
      return { identity, inserted: result.lastErrorObject?.updatedExisting === false };
    });
  }

  /** Step 2: the customer of a (new or half-created) identity, with exactly that id. */
  async function ensureCustomer(
    customerId: Types.ObjectId,
    message: InboundMessage,
    at: Date,
    opts: { knownMissing: boolean },
  ): Promise<{ customer: Customer; created: boolean }> {
    // An identity this call inserted has a fresh customer id: no read, straight to the upsert.
    const existing = opts.knownMissing ? null : await Customer.findById(customerId).lean<Customer>();
    if (existing) return { customer: existing, created: false };
    const create = (ownerAgentId: string | undefined) =>
      upsertCustomer(customerId, message, at, ownerAgentId);
    return options.createOwned ? options.createOwned(customerId, create) : create(undefined);
  }

  /**
   * The customer's creation: an upsert that sets everything on insert only, so of concurrent ones
   * exactly one inserts (with its owner, if it picked one) and the others get that customer back.
   */
  async function upsertCustomer(
    customerId: Types.ObjectId,
    message: InboundMessage,
    at: Date,
    ownerAgentId: string | undefined,
  ): Promise<{ customer: Customer; created: boolean }> {
    const profileName = message.profileName?.trim();
    const result = await retryOnDuplicate(() =>
      Customer.findOneAndUpdate(
        { _id: customerId },
        {
          $setOnInsert: {
            ...(ownerAgentId ? { ownerAgentId } : {}),
            ...(profileName
              ? {
                  displayName: profileName,
                  profile: { name: { value: profileName, source: message.provider, at } },
                }
              : { profile: {} }),
            firstSeenAt: at,
            lastSeenAt: at,
            lastChannel: message.channel,
            lastProvider: message.provider,
          },
        },
        { upsert: true, returnDocument: 'after', includeResultMetadata: true },
      ).lean<mongo.ModifyResult<Customer>>(),
    );
    const customer = result.value;
    if (!customer) throw new Error('customer upsert returned no document');
    return { customer, created: result.lastErrorObject?.updatedExisting === false };
  }

  /**
   * The returning customer's usual case in one round trip: the identity's customer is live (not a
   * tombstone) and this message is newer than its last seen — touch it and get it back. Undefined
   * when that is not the case (missing, merged away, or an older/same-time message): then the
   * general path below reads it.
   */
  async function touchIfLiveAndOlder(
    customerId: Types.ObjectId,
    message: InboundMessage,
    at: Date,
  ): Promise<Customer | undefined> {
    const touched = await Customer.findOneAndUpdate(
      { _id: customerId, mergedInto: null, lastSeenAt: { $lt: at } },
      { $set: { lastSeenAt: at, lastChannel: message.channel, lastProvider: message.provider } },
      { returnDocument: 'after' },
    ).lean<Customer>();
    return touched ?? undefined;
  }

  /** Step 4: last seen and display name, each only when it would change something. */
  async function touchCustomer(live: Customer, message: InboundMessage, at: Date): Promise<Customer> {
    const seen = live.lastSeenAt.getTime() < at.getTime();
    const profileName = message.profileName?.trim();
    const name = Boolean(profileName) && live.displayName == null;
    if (!seen && !name) return live;
    const seenSet = { lastSeenAt: at, lastChannel: message.channel, lastProvider: message.provider };
    const nameSet = {
      displayName: profileName,
      'profile.name': { value: profileName, source: message.provider, at },
    };
    const touch = (filter: Record<string, unknown>, set: Record<string, unknown>) =>
      Customer.findOneAndUpdate(
        { _id: live._id, ...filter },
        { $set: set },
        { returnDocument: 'after' },
      ).lean<Customer>();
    const seenFilter = { lastSeenAt: { $lt: at } };
    const nameFilter = { displayName: null };
    if (seen && name) {
      const both = await touch({ ...seenFilter, ...nameFilter }, { ...seenSet, ...nameSet });
      if (both) return both;
      // Lost a race on one of the two conditions: apply each on its own.
      const afterSeen = await touch(seenFilter, seenSet);
      return (await touch(nameFilter, nameSet)) ?? afterSeen ?? live;
    }
    return (await touch(seen ? seenFilter : nameFilter, seen ? seenSet : nameSet)) ?? live;
  }

  /** The live customer that `identityKey` belongs to now, if it differs from `filedUnder`. */
  async function movedTo(
    identityKey: string,
    filedUnder: Types.ObjectId,
  ): Promise<Types.ObjectId | undefined> {
    // Both reads at once: one round trip of latency. Normally the identity still points at the
    // customer and the customer is live.
    const [identity, customer] = await Promise.all([
      Identity.findOne({ key: identityKey }, { customerId: 1 }).lean<Pick<Identity, '_id' | 'customerId'>>(),
      Customer.findById(filedUnder).lean<Customer>(),
    ]);
    let start: Customer | null = customer;
    if (identity && !identity.customerId.equals(filedUnder)) {
      start = await Customer.findById(identity.customerId).lean<Customer>();
    }
    if (!start || (start._id.equals(filedUnder) && !start.mergedInto)) return undefined;
    const live = await followToLive(Customer, start);
    return live._id.equals(filedUnder) ? undefined : live._id;
  }

  return {
    models,

    async resolveCustomer(message) {
      const ref = identityKeyOf(message.from, options.defaultRegion);
      if (!ref) throw new PayloadError(`unresolvable ${message.from.kind} sender address`);
      const at = sentAtOf(message);

      const { identity, inserted } = await upsertIdentity(ref, message, at);
      const touched = inserted ? undefined : await touchIfLiveAndOlder(identity.customerId, message, at);
      // The display name, if it is still unset (a no-op otherwise: last seen is already `at`).
      if (touched) return { customer: await touchCustomer(touched, message, at), identity, created: false };
      const { customer: direct, created } = await ensureCustomer(identity.customerId, message, at, {
        knownMissing: inserted,
      });
      const live = await followToLive(Customer, direct);
      const customer = created ? live : await touchCustomer(live, message, at);
      return { customer, identity, created };
    },

    async storeInbound(message, customerId, identityKey, unmoved) {
      const filedUnder = new Types.ObjectId(String(customerId));
      let messageId: Types.ObjectId;
      try {
        const doc = await Message.create({
          key: message.key,
          customerId: filedUnder,
          direction: 'in',
          channel: message.channel,
          provider: message.provider,
          providerMessageId: message.providerMessageId,
          identityKey,
          to: message.to,
          parts: message.parts,
          text: message.text,
          replyTo: message.replyTo,
          statusHistory: [],
          sentAt: sentAtOf(message),
          receivedAt: toDate(message.receivedAt) ?? new Date(),
        });
        messageId = doc._id;
      } catch (err) {
        if (!isDuplicateKeyError(err)) throw err;
        const existing = await Message.findOne({ key: message.key }, { customerId: 1 }).lean<
          Pick<Identity, '_id' | 'customerId'>
        >();
        return { stored: false, customerId: String(existing?.customerId ?? filedUnder) };
      }
      // Insert first, then check: a merge that tombstones the customer after this check sees the
      // message in its sweep; one that did before is seen here (identity/README.md, "Messages in flight").
      // The hot cache's proof (one Redis read) stands in for the database check when it holds.
      if (unmoved && (await unmoved())) return { stored: true, customerId: String(filedUnder) };
      const target = await movedTo(identityKey, filedUnder);
      if (!target) return { stored: true, customerId: String(filedUnder) };
      await Message.updateOne({ _id: messageId, customerId: filedUnder }, { $set: { customerId: target } });
      return { stored: true, customerId: String(target) };
    },

    async applyStatus(status) {
      if (status.providerMessageId === undefined) return { updated: false };
      const entry: StatusEntry = {
        key: status.key,
        state: status.state,
        at: toDate(status.at) ?? toDate(status.receivedAt) ?? new Date(),
        providerErrors: status.errors,
      };
      const target = {
        // The key as well (outbound messages are stored under `${provider}:${providerMessageId}`):
        // on a sharded cluster it routes the update to one shard (see docs/deployment.md).
        key: `${status.provider}:${status.providerMessageId}`,
        provider: status.provider,
        providerMessageId: status.providerMessageId,
        direction: 'out' as const,
      };
      const pushed = await Message.updateOne(
        // `$nor` rather than `'statusHistory.key': { $ne }`: FerretDB v1 gets `$ne` on a path into an
        // array of documents wrong (it matches even when an element has the key).
        { ...target, $nor: [{ 'statusHistory.key': status.key }] },
        { $push: { statusHistory: entry } },
      );
      // Not skipped when the push was a no-op: a crash between the two updates converges on re-run.
      const current = await Message.updateOne(
        { ...target, $or: [{ status: null }, { 'status.state': { $in: statesBelow(status.state) } }] },
        { $set: { status: entry } },
      );
      return { updated: pushed.modifiedCount > 0 || current.modifiedCount > 0 };
    },
  };
}

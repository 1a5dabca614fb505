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
 *    retry, finding it). From then on `identity.customerId` is THE customer of that key.
 * 2. The customer document is created with `_id = identity.customerId`, again by an upsert
 *    (`$setOnInsert`), and only when it is missing. A crash between 1 and 2 leaves an identity whose
 *    customer does not exist yet; the next message (or the retried job) creates it, with that very
 *    id. No customer is ever created before its identity, so no orphan or second customer can
 *    appear.
 * 3. `mergedInto` tombstones are followed (bounded) to the live customer.
 * 4. Touches (last seen, last address, messaging window, display name) are conditional or
 *    monotonic (`$max`, `lastSeenAt < at`, `displayName == null`) so repeats and out-of-order
 *    deliveries never move anything backwards.
 *
 * Messages are inserted under their unique idempotency key; a duplicate key means "already stored".
 */
import { Types } from 'mongoose';
import type { CountryCode } from 'libphonenumber-js';
import type { Address, DeliveryState, DeliveryStatus, InboundMessage } from '../canonical';
import { PayloadError } from '../errors';
import { phoneIdentityKey } from './phone';
import type { Customer, Identity, IdentityKind, IdentityModels, StatusEntry } from './models';

export interface IdentityRef {
  key: string;
  kind: IdentityKind;
  value: string;
}

/** How many `mergedInto` hops to follow before declaring the chain broken (a cycle or corruption). */
const MAX_MERGE_HOPS = 8;
/** How many times to retry an upsert that lost a race on a unique index (E11000). */
const MAX_DUPLICATE_RETRIES = 5;

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

/** MongoDB duplicate key error (unique index violation), from the driver or a bulk write. */
export function isDuplicateKeyError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code: unknown = (err as { code?: unknown }).code;
  if (code === 11000 || code === 11001) return true;
  const writeErrors: unknown = (err as { writeErrors?: unknown }).writeErrors;
  if (Array.isArray(writeErrors)) return writeErrors.some((e: unknown) => isDuplicateKeyError(e));
  const message: unknown = (err as { message?: unknown }).message;
  return typeof message === 'string' && message.includes('E11000');
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
function sentAtOf(message: InboundMessage): Date {
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
}

export interface IdentityStore {
  readonly models: IdentityModels;
  /** Finds or creates the sender's identity and customer; throws PayloadError for a bad address. */
  resolveCustomer(message: InboundMessage): Promise<ResolvedCustomer>;
  /** Stores an inbound message once; `stored: false` means it was already stored (redelivery). */
  storeInbound(
    message: InboundMessage,
    customerId: Types.ObjectId | string,
    identityKey: string,
  ): Promise<{ stored: boolean }>;
  /**
   * Applies a provider status report to the outbound message it is about. `updated: false` when
   * the message is unknown, the report carries no message id (watermark), or it was already applied.
   */
  applyStatus(status: DeliveryStatus): Promise<{ updated: boolean }>;
}

export function createIdentityStore(
  models: IdentityModels,
  options: { defaultRegion: CountryCode },
): IdentityStore {
  const { Customer, Identity, Message } = models;

  async function retryOnDuplicate<T>(op: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (!isDuplicateKeyError(err) || attempt >= MAX_DUPLICATE_RETRIES) throw err;
      }
    }
  }

  /** Step 1: the identity, inserted with a fresh customer id if it does not exist. */
  async function ensureIdentity(ref: IdentityRef, message: InboundMessage): Promise<Identity> {
    const existing = await Identity.findOne({ key: ref.key }).lean<Identity>();
    if (existing) return existing;
    return retryOnDuplicate(async () => {
      const identity = await Identity.findOneAndUpdate(
        { key: ref.key },
        {
          $setOnInsert: {
            key: ref.key,
            kind: ref.kind,
            value: ref.value,
            customerId: new Types.ObjectId(),
            // The provider delivered a message from this address: the sender controls it.
            verified: true,
            source: message.provider,
          },
        },
        { upsert: true, returnDocument: 'after' },
      ).lean<Identity>();
      if (!identity) throw new Error('identity upsert returned no document');
      return identity;
    });
  }

  /** Step 2: the customer of a (new or half-created) identity, with exactly that id. */
  async function ensureCustomer(
    customerId: Types.ObjectId,
    message: InboundMessage,
    at: Date,
  ): Promise<{ customer: Customer; created: boolean }> {
    const existing = await Customer.findById(customerId).lean<Customer>();
    if (existing) return { customer: existing, created: false };
    const result = await retryOnDuplicate(() =>
      Customer.updateOne(
        { _id: customerId },
        {
          $setOnInsert: {
            profile: {},
            firstSeenAt: at,
            lastSeenAt: at,
            lastChannel: message.channel,
            lastProvider: message.provider,
          },
        },
        { upsert: true },
      ),
    );
    const customer = await Customer.findById(customerId).lean<Customer>();
    if (!customer) throw new Error('customer upsert returned no document');
    return { customer, created: result.upsertedCount === 1 };
  }

  /** Step 3: follows `mergedInto` tombstones to the live customer. */
  async function followMerges(start: Customer): Promise<Customer> {
    let customer = start;
    for (let hops = 0; customer.mergedInto; hops++) {
      if (hops >= MAX_MERGE_HOPS) {
        throw new Error(`merge chain from customer ${String(start._id)} is longer than ${MAX_MERGE_HOPS}`);
      }
      const next = await Customer.findById(customer.mergedInto).lean<Customer>();
      // Retryable: a merge that is still in progress (or crashed) is resumed by its own job.
      if (!next) throw new Error(`customer ${String(customer._id)} is merged into a missing customer`);
      customer = next;
    }
    return customer;
  }

  return {
    models,

    async resolveCustomer(message) {
      const ref = identityKeyOf(message.from, options.defaultRegion);
      if (!ref) throw new PayloadError(`unresolvable ${message.from.kind} sender address`);
      const at = sentAtOf(message);

      const identity = await ensureIdentity(ref, message);
      const { customer: direct, created } = await ensureCustomer(identity.customerId, message, at);
      const live = await followMerges(direct);

      // Step 4: monotonic touches.
      await Customer.updateOne(
        { _id: live._id, lastSeenAt: { $lt: at } },
        { $set: { lastSeenAt: at, lastChannel: message.channel, lastProvider: message.provider } },
      );
      const profileName = message.profileName?.trim();
      if (profileName) {
        await Customer.updateOne(
          { _id: live._id, displayName: null },
          {
            $set: {
              displayName: profileName,
              'profile.name': { value: profileName, source: message.provider, at },
            },
          },
        );
      }
      const updatedIdentity = await Identity.findOneAndUpdate(
        { _id: identity._id },
        {
          $set: {
            [`lastAddress.${message.provider}`]: { raw: rawAddress(message.from), to: message.to, at },
          },
          $max: { [`lastInboundAt.${message.channel}`]: at },
        },
        { returnDocument: 'after' },
      ).lean<Identity>();
      const customer = await Customer.findById(live._id).lean<Customer>();
      if (!updatedIdentity || !customer) throw new Error('identity or customer vanished while resolving');
      return { customer, identity: updatedIdentity, created };
    },

    async storeInbound(message, customerId, identityKey) {
      try {
        await Message.create({
          key: message.key,
          customerId: new Types.ObjectId(String(customerId)),
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
        return { stored: true };
      } catch (err) {
        if (isDuplicateKeyError(err)) return { stored: false };
        throw err;
      }
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

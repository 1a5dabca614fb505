/**
 * Customers, their identities and their messages, as mongoose models registered on the app's own
 * connection (no global models, so two apps can live side by side in one process).
 *
 * Correctness rests on unique indexes, not transactions (FerretDB v1 / standalone MongoDB have
 * none): `identities.key` makes one identity belong to one customer, `messages.key` makes a
 * redelivered message a no-op. Indexes are built by src/storage/mongo.ts when it connects (it calls
 * `createIndexes()` on every model registered on the connection), so register before connecting
 * or call `createIndexes()` yourself.
 *
 * MergeEvent and Claim carry merges (with everything needed to undo them) and one-time-code claims;
 * see merge/ and claims.ts. Claims expire by `expiresAt`, checked on read: FerretDB v1 has no TTL
 * indexes.
 */
import { Schema, Types, type Connection, type Model } from 'mongoose';
import type { Channel, DeliveryState, MessagePart, Provider, ProviderError } from '../canonical';

export const CHANNELS: readonly Channel[] = ['sms', 'whatsapp', 'messenger'];
export const PROVIDERS: readonly Provider[] = ['twilio', 'whatsapp-cloud', 'whatsapp-web', 'messenger'];

export type IdentityKind = 'phone' | 'psid' | 'email';
/** Who asserted a fact: a provider (it delivered the message), an agent, or the admin API. */
export type Source = Provider | 'agent' | 'admin' | 'claim';
/** `claim`: the customer proved control of the identity with a one-time code (src/identity/claims.ts). */
export const SOURCES: readonly Source[] = [...PROVIDERS, 'agent', 'admin', 'claim'];

/** A profile value and where it came from. */
export interface ProfileField {
  value: string;
  source: Source;
  at: Date;
}

export interface CustomerProfile {
  name?: ProfileField;
  email?: ProfileField;
}

export interface Customer extends CustomerSnapshot {
  _id: Types.ObjectId;
  /** Tombstone: this customer was merged into that one. Follow it to the live customer. */
  mergedInto?: Types.ObjectId;
  /** The MergeEvent that made this customer a tombstone (undo checks it is still that one). */
  mergedBy?: Types.ObjectId;
  createdAt: Date;
  updatedAt: Date;
}

/** The customer's address exactly as a provider delivered it; what we send replies to. */
export interface LastAddress {
  /** Phone as received (`whatsapp:+1…`, `1415…`, `…@c.us`) or the PSID. */
  raw: string;
  /** Our side of the conversation: business number or page id. */
  to: string;
  at: Date;
}

export interface Identity {
  _id: Types.ObjectId;
  /** `phone:+15551234567`, `psid:<pageId>:<psid>`, `email:a@b.c`. Unique. */
  key: string;
  kind: IdentityKind;
  /** The key without its kind prefix (E.164, `<pageId>:<psid>`, email). */
  value: string;
  customerId: Types.ObjectId;
  verified: boolean;
  source: Source;
  lastAddress: Partial<Record<Provider, LastAddress>>;
  /** Last message from the customer per channel (messaging windows, e.g. WhatsApp's 24 h). */
  lastInboundAt: Partial<Record<Channel, Date>>;
  createdAt: Date;
  updatedAt: Date;
}

export type Direction = 'in' | 'out';

export interface StatusEntry {
  /** DeliveryStatus.key; dedupes repeated reports. */
  key: string;
  state: DeliveryState;
  at: Date;
  /** DeliveryStatus.errors (named so because `errors` is reserved on mongoose documents). */
  providerErrors: ProviderError[];
}

export interface Message {
  _id: Types.ObjectId;
  /** The canonical idempotency key (`${provider}:${providerMessageId}`). Unique. */
  key: string;
  customerId: Types.ObjectId;
  direction: Direction;
  channel: Channel;
  provider: Provider;
  providerMessageId: string;
  identityKey: string;
  /** Business number or page id. */
  to?: string;
  parts: MessagePart[];
  text?: string;
  replyTo?: string;
  /** The latest provider status (outbound messages). */
  status?: StatusEntry;
  statusHistory: StatusEntry[];
  sentAt: Date;
  receivedAt?: Date;
  createdAt: Date;
  updatedAt: Date;
}

export type MergeReason = 'claim' | 'agent' | 'admin';
export const MERGE_REASONS: readonly MergeReason[] = ['claim', 'agent', 'admin'];
/**
 * `in_progress` → `done` → `undoing` → `undone`. `cancelled`: the merge stopped before it changed
 * anything (the pair was busy or no longer mergeable).
 */
export type MergeStatus = 'in_progress' | 'done' | 'undoing' | 'undone' | 'cancelled';
export const MERGE_STATUSES: readonly MergeStatus[] = [
  'in_progress',
  'done',
  'undoing',
  'undone',
  'cancelled',
];

/** The customer fields a merge may change or an undo restores. */
export interface CustomerSnapshot {
  displayName?: string;
  profile: CustomerProfile;
  ownerAgentId?: string;
  firstSeenAt: Date;
  lastSeenAt: Date;
  lastChannel?: Channel;
  lastProvider?: Provider;
}

export type ProfileKey = keyof CustomerProfile;
export const PROFILE_KEYS: readonly ProfileKey[] = ['name', 'email'];

/**
 * One merge (and possibly its undo), with everything needed to finish it after a crash and to
 * undo it. The plan (`planned: true` onwards) is written once, after the merged customer became a
 * tombstone, and never recomputed.
 */
export interface MergeEvent {
  _id: Types.ObjectId;
  survivorId: Types.ObjectId;
  mergedId: Types.ObjectId;
  reason: MergeReason;
  /** Who asked: `admin`, `agent:<slack user>`, `customer:<identity key>`. */
  actor: string;
  status: MergeStatus;
  planned: boolean;
  /** Identity keys moved from the merged customer to the survivor. */
  identityKeys: string[];
  /** Messages moved from the merged customer to the survivor. */
  messageIds: Types.ObjectId[];
  /** Messages the survivor already had on `identityKeys` before the merge (stay with it on undo). */
  survivorMessageIdsOnKeys: Types.ObjectId[];
  /** Profile fields the survivor lacked and took from the merged customer (survivor wins conflicts). */
  profileTaken: { field: ProfileKey; value: ProfileField }[];
  displayNameTaken?: string;
  ownerTaken?: string;
  /** Set when the merged customer was seen first (explicit survivor): the survivor's new firstSeenAt. */
  firstSeenAtTaken?: Date;
  /** Set when the merged customer was seen last: the survivor's new last-seen fields. */
  lastSeenTaken?: { at: Date; channel?: Channel; provider?: Provider };
  mergedSnapshot?: CustomerSnapshot;
  survivorSnapshot?: CustomerSnapshot;
  cancelReason?: string;
  completedAt?: Date;
  undoActor?: string;
  undoneAt?: Date;
  createdAt: Date;
  updatedAt: Date;
}

/**
 * A customer held by an in-progress merge or undo. `_id` IS the customer id, so the unique `_id`
 * index makes taking the lock an insert that only one event can win. (A conditional update cannot
 * be a lock on FerretDB v1: it applies updates as unsynchronised read-modify-writes; see merge/locks.ts.)
 */
export interface MergeLock {
  _id: Types.ObjectId;
  eventId: Types.ObjectId;
  createdAt: Date;
}

/** One attempt at a claim code; `_id` = `<claimId>:<n>`, n = 1…5, so at most 5 can ever exist. */
export interface ClaimAttempt {
  _id: string;
  claimId: Types.ObjectId;
  createdAt: Date;
}

export type ClaimKind = 'phone' | 'email';
export type ClaimStatus = 'pending' | 'verified' | 'expired' | 'locked' | 'superseded';

/** A customer's claim to own a phone number or email, proved by a one-time code. */
export interface Claim {
  _id: Types.ObjectId;
  /** The claiming customer (live at the time of the claim). */
  customerId: Types.ObjectId;
  /** The channel the customer wrote on; the code must come back on it. */
  identityKey: string;
  kind: ClaimKind;
  /** E.164 or lower-cased email. */
  value: string;
  /** `phone:+…` / `email:…`. */
  claimedKey: string;
  /** scrypt(code, salt), hex. The code itself is never stored. */
  codeHash: string;
  salt: string;
  expiresAt: Date;
  attempts: number;
  status: ClaimStatus;
  verifiedAt?: Date;
  /** The attempt (message key) that verified it: a retry of that message is answered `verified` again. */
  verifiedBy?: string;
  mergeEventId?: Types.ObjectId;
  createdAt: Date;
  updatedAt: Date;
}

export interface IdentityModels {
  Customer: Model<Customer>;
  Identity: Model<Identity>;
  Message: Model<Message>;
  MergeEvent: Model<MergeEvent>;
  MergeLock: Model<MergeLock>;
  Claim: Model<Claim>;
  ClaimAttempt: Model<ClaimAttempt>;
}

const DELIVERY_STATES: readonly DeliveryState[] = [
  'queued',
  'sent',
  'delivered',
  'read',
  'failed',
  'undelivered',
  'played',
  'received',
];

const profileFieldSchema = new Schema<ProfileField>(
  {
    value: { type: String, required: true },
    source: { type: String, enum: SOURCES, required: true },
    at: { type: Date, required: true },
  },
  { _id: false },
);

const lastAddressSchema = new Schema<LastAddress>(
  {
    raw: { type: String, required: true },
    to: { type: String, required: true },
    at: { type: Date, required: true },
  },
  { _id: false },
);

const providerErrorSchema = new Schema<ProviderError>(
  { code: { type: String, required: true }, title: String, detail: String },
  { _id: false },
);

const statusEntrySchema = new Schema<StatusEntry>(
  {
    key: { type: String, required: true },
    state: { type: String, enum: DELIVERY_STATES, required: true },
    at: { type: Date, required: true },
    providerErrors: { type: [providerErrorSchema], default: [] },
  },
  { _id: false },
);

function fieldsFor<K extends string, V>(keys: readonly K[], def: V): Record<K, V> {
  return Object.fromEntries(keys.map((k) => [k, def])) as Record<K, V>;
}

/**
 * The customer's own fields: the customer document, and the snapshot a merge keeps of one. A fresh
 * object each call, so the two schemas share no definition object.
 */
const customerFields = () => ({
  displayName: String,
  profile: {
    name: { type: profileFieldSchema, required: false },
    email: { type: profileFieldSchema, required: false },
  },
  ownerAgentId: String,
  firstSeenAt: { type: Date, required: true },
  lastSeenAt: { type: Date, required: true },
  lastChannel: { type: String, enum: CHANNELS },
  lastProvider: { type: String, enum: PROVIDERS },
});

const customerSchema = new Schema<Customer>(
  {
    ...customerFields(),
    mergedInto: { type: Schema.Types.ObjectId, index: true },
    mergedBy: Schema.Types.ObjectId,
  },
  { collection: 'customers', timestamps: true, minimize: true },
);
customerSchema.index({ lastSeenAt: -1 });

const identitySchema = new Schema<Identity>(
  {
    key: { type: String, required: true, unique: true },
    kind: { type: String, enum: ['phone', 'psid', 'email'], required: true },
    value: { type: String, required: true },
    customerId: { type: Schema.Types.ObjectId, required: true, index: true },
    verified: { type: Boolean, required: true, default: false },
    source: { type: String, enum: SOURCES, required: true },
    lastAddress: fieldsFor(PROVIDERS, { type: lastAddressSchema, required: false }),
    lastInboundAt: fieldsFor(CHANNELS, { type: Date, required: false }),
  },
  { collection: 'identities', timestamps: true },
);

const messageSchema = new Schema<Message>(
  {
    key: { type: String, required: true, unique: true },
    customerId: { type: Schema.Types.ObjectId, required: true },
    direction: { type: String, enum: ['in', 'out'], required: true },
    channel: { type: String, enum: CHANNELS, required: true },
    provider: { type: String, enum: PROVIDERS, required: true },
    providerMessageId: { type: String, required: true },
    identityKey: { type: String, required: true },
    to: String,
    // A discriminated union (canonical.ts), validated by the channel adapters: stored as is.
    parts: { type: Schema.Types.Mixed, default: [] },
    text: String,
    replyTo: String,
    status: { type: statusEntrySchema, required: false },
    statusHistory: { type: [statusEntrySchema], default: [] },
    sentAt: { type: Date, required: true },
    receivedAt: Date,
  },
  { collection: 'messages', timestamps: true },
);
messageSchema.index({ customerId: 1, sentAt: -1 });
// Undo finds the messages that arrived on the merged customer's identities after the merge.
messageSchema.index({ customerId: 1, identityKey: 1 });
messageSchema.index({ provider: 1, providerMessageId: 1 });

const snapshotSchema = new Schema<CustomerSnapshot>(customerFields(), { _id: false, minimize: true });

const mergeEventSchema = new Schema<MergeEvent>(
  {
    survivorId: { type: Schema.Types.ObjectId, required: true, index: true },
    mergedId: { type: Schema.Types.ObjectId, required: true, index: true },
    reason: { type: String, enum: MERGE_REASONS, required: true },
    actor: { type: String, required: true },
    status: { type: String, enum: MERGE_STATUSES, required: true, index: true },
    planned: { type: Boolean, required: true, default: false },
    identityKeys: { type: [String], default: [] },
    messageIds: { type: [Schema.Types.ObjectId], default: [] },
    survivorMessageIdsOnKeys: { type: [Schema.Types.ObjectId], default: [] },
    profileTaken: {
      type: [
        new Schema(
          { field: { type: String, enum: PROFILE_KEYS, required: true }, value: profileFieldSchema },
          { _id: false },
        ),
      ],
      default: [],
    },
    displayNameTaken: String,
    ownerTaken: String,
    firstSeenAtTaken: Date,
    lastSeenTaken: {
      type: new Schema(
        { at: { type: Date, required: true }, channel: String, provider: String },
        { _id: false },
      ),
      required: false,
    },
    mergedSnapshot: { type: snapshotSchema, required: false },
    survivorSnapshot: { type: snapshotSchema, required: false },
    cancelReason: String,
    completedAt: Date,
    undoActor: String,
    undoneAt: Date,
  },
  { collection: 'merge_events', timestamps: true },
);

const claimSchema = new Schema<Claim>(
  {
    customerId: { type: Schema.Types.ObjectId, required: true },
    identityKey: { type: String, required: true, index: true },
    kind: { type: String, enum: ['phone', 'email'], required: true },
    value: { type: String, required: true },
    claimedKey: { type: String, required: true },
    codeHash: { type: String, required: true },
    salt: { type: String, required: true },
    expiresAt: { type: Date, required: true },
    attempts: { type: Number, required: true, default: 0 },
    status: {
      type: String,
      enum: ['pending', 'verified', 'expired', 'locked', 'superseded'],
      required: true,
    },
    verifiedAt: Date,
    verifiedBy: String,
    mergeEventId: Schema.Types.ObjectId,
  },
  { collection: 'claims', timestamps: true },
);

const mergeLockSchema = new Schema<MergeLock>(
  {
    _id: { type: Schema.Types.ObjectId, required: true },
    eventId: { type: Schema.Types.ObjectId, required: true },
  },
  { collection: 'merge_locks', timestamps: { createdAt: true, updatedAt: false } },
);

const claimAttemptSchema = new Schema<ClaimAttempt>(
  { _id: { type: String, required: true }, claimId: { type: Schema.Types.ObjectId, required: true } },
  { collection: 'claim_attempts', timestamps: { createdAt: true, updatedAt: false } },
);

/**
 * Registers the identity models on `connection` and returns them. Idempotent: calling it again on
 * the same connection returns the already registered models.
 */
export function registerIdentityModels(connection: Connection): IdentityModels {
  const model = <T>(name: string, schema: Schema<T>): Model<T> =>
    (connection.models[name] as Model<T> | undefined) ?? connection.model<T>(name, schema);
  return {
    Customer: model('Customer', customerSchema),
    Identity: model('Identity', identitySchema),
    Message: model('Message', messageSchema),
    MergeEvent: model('MergeEvent', mergeEventSchema),
    MergeLock: model('MergeLock', mergeLockSchema),
    Claim: model('Claim', claimSchema),
    ClaimAttempt: model('ClaimAttempt', claimAttemptSchema),
  };
}

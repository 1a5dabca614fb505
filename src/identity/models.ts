/**
 * Customers, their identities and their messages, as mongoose models registered on the app's own
 * connection (no global models, so two apps can live side by side in one process).
 *
 * Correctness rests on unique indexes, not transactions (FerretDB v1 / standalone MongoDB have
 * none): `identities.key` makes one identity belong to one customer, `messages.key` makes a
 * redelivered message a no-op. Indexes are built by src/storage/mongo.ts when it connects (it calls
 * `createIndexes()` on every model registered on the connection), so register before connecting
 * or call `createIndexes()` yourself.
 */
import { Schema, Types, type Connection, type Model } from 'mongoose';
import type { Channel, DeliveryState, MessagePart, Provider, ProviderError } from '../canonical';

export const CHANNELS: readonly Channel[] = ['sms', 'whatsapp', 'messenger'];
export const PROVIDERS: readonly Provider[] = ['twilio', 'whatsapp-cloud', 'whatsapp-web', 'messenger'];

export type IdentityKind = 'phone' | 'psid' | 'email';
/** Who asserted a fact: a provider (it delivered the message), an agent, or the admin API. */
export type Source = Provider | 'agent' | 'admin';
export const SOURCES: readonly Source[] = [...PROVIDERS, 'agent', 'admin'];

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

export interface Customer {
  _id: Types.ObjectId;
  displayName?: string;
  profile: CustomerProfile;
  ownerAgentId?: string;
  firstSeenAt: Date;
  lastSeenAt: Date;
  lastChannel?: Channel;
  lastProvider?: Provider;
  /** Tombstone: this customer was merged into that one. Follow it to the live customer. */
  mergedInto?: Types.ObjectId;
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

export interface IdentityModels {
  Customer: Model<Customer>;
  Identity: Model<Identity>;
  Message: Model<Message>;
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

const customerSchema = new Schema<Customer>(
  {
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
    mergedInto: { type: Schema.Types.ObjectId, index: true },
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
messageSchema.index({ provider: 1, providerMessageId: 1 });

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
  };
}

/**
 * The privacy module's own collections, registered on the app's connection (found through any
 * model's `db`, so callers pass the models they already have):
 *
 * - `erasures`: one document per erased customer family (the live customer and its merge
 *   tombstones). It drives the erasure as idempotent steps (like a MergeEvent drives a merge) and is
 *   then the audit record: ids, when, who, counts, never personal data. While an erasure runs its
 *   `plan` holds the identity keys it must still remove; the last step unsets it.
 * - `erased_opt_outs`: keyed HMACs of opt-outs that an erasure removed (see README.md for why a
 *   marker is kept and why it is keyed).
 */
import { Schema, type Connection, type Model, type Types } from 'mongoose';

export type ErasureStatus = 'in_progress' | 'done';

export const ERASURE_STEPS = [
  'identities',
  'opt-outs',
  'claims',
  'outboxes',
  'messages',
  'merges',
  'router',
  'customers',
  'jobs',
  'settle',
  'slack',
] as const;
export type ErasureStep = (typeof ERASURE_STEPS)[number];

export type SlackRefKind = 'card' | 'post' | 'human' | 'file';

/**
 * A Slack message Rapport knows about (its own posts and cards, and agents' replies), or a file it
 * uploaded into a thread (`fileId`; `ts` is then the thread's).
 */
export interface SlackRef {
  channel: string;
  ts: string;
  kind: SlackRefKind;
  fileId?: string;
}

export interface ErasureCounts {
  customers: number;
  identities: number;
  messages: number;
  optOuts: number;
  optOutMarkers: number;
  claims: number;
  agentPosts: number;
  customerSends: number;
  mergeEventsDeleted: number;
  mergeEventsScrubbed: number;
  ownershipChanges: number;
  slackDeleted: number;
  slackFailed: number;
  slackNotices: number;
  /** Agents' own messages (replies) that a bot token cannot delete; a notice points at them. */
  slackHumanRemaining: number;
  /** BullMQ jobs (any queue, any state) that held the customer's data, removed. */
  jobsRemoved: number;
}

export interface Erasure {
  _id: Types.ObjectId;
  /** The id the erasure was asked for (may be a tombstone's). */
  requestedId: Types.ObjectId;
  /** The live customer at the time of the request; the lock key. */
  liveId: Types.ObjectId;
  /** The live customer and every tombstone merged into it. */
  customerIds: Types.ObjectId[];
  /** `admin`, `cli:<os user>`. */
  actor: string;
  status: ErasureStatus;
  stepsDone: ErasureStep[];
  /** Transient (personal data): removed by the last step. */
  plan?: { identityKeys: string[]; needles: string[] };
  /**
   * Keyed hashes (DATA_KEY) of the erased identity keys, kept: a dead letter queued before the
   * erasure that names one of them is refused on replay. Useless to list numbers without DATA_KEY.
   */
  identityHashes: string[];
  slack: {
    refs: SlackRef[];
    /** Threads (parent = card) that get a notice before their bot messages are deleted. */
    threads: { channel: string; ts: string }[];
    /** Refs handled so far (deleted or failed for good), in order. */
    next: number;
    noticesPosted: string[];
    skipped?: string;
  };
  counts: ErasureCounts;
  lastError?: string;
  startedAt: Date;
  completedAt?: Date;
  updatedAt: Date;
}

export interface ErasedOptOut {
  /** HMAC-SHA256(markerKey, `${identityKey}|${channel}`), hex. */
  _id: string;
  /** Which DATA_KEY wrote it (`dataKeyId`); absent on markers of versions keyed by ADMIN_TOKEN. */
  kid?: string;
  channel: string;
  erasureId: Types.ObjectId;
  at: Date;
}

export interface PrivacyModels {
  Erasure: Model<Erasure>;
  ErasedOptOut: Model<ErasedOptOut>;
}

export const ZERO_COUNTS: ErasureCounts = {
  customers: 0,
  identities: 0,
  messages: 0,
  optOuts: 0,
  optOutMarkers: 0,
  claims: 0,
  agentPosts: 0,
  customerSends: 0,
  mergeEventsDeleted: 0,
  mergeEventsScrubbed: 0,
  ownershipChanges: 0,
  slackDeleted: 0,
  slackFailed: 0,
  slackNotices: 0,
  slackHumanRemaining: 0,
  jobsRemoved: 0,
};

const slackRefSchema = new Schema<SlackRef>(
  {
    channel: { type: String, required: true },
    ts: { type: String, required: true },
    kind: { type: String, enum: ['card', 'post', 'human', 'file'], required: true },
    fileId: String,
  },
  { _id: false },
);

const erasureSchema = new Schema<Erasure>(
  {
    requestedId: { type: Schema.Types.ObjectId, required: true },
    liveId: { type: Schema.Types.ObjectId, required: true },
    customerIds: { type: [Schema.Types.ObjectId], index: true, default: [] },
    identityHashes: { type: [String], index: true, default: [] },
    actor: { type: String, required: true },
    status: { type: String, enum: ['in_progress', 'done'], required: true, index: true },
    stepsDone: { type: [String], default: [] },
    plan: {
      type: new Schema({ identityKeys: [String], needles: [String] }, { _id: false }),
      required: false,
    },
    slack: {
      refs: { type: [slackRefSchema], default: [] },
      threads: { type: [new Schema({ channel: String, ts: String }, { _id: false })], default: [] },
      next: { type: Number, default: 0 },
      noticesPosted: { type: [String], default: [] },
      skipped: String,
    },
    counts: { type: Schema.Types.Mixed, default: () => ({ ...ZERO_COUNTS }) },
    lastError: String,
    startedAt: { type: Date, required: true },
    completedAt: Date,
  },
  { collection: 'erasures', timestamps: { createdAt: false, updatedAt: true }, minimize: false },
);

const erasedOptOutSchema = new Schema<ErasedOptOut>(
  {
    _id: { type: String, required: true },
    kid: { type: String, required: false, index: true },
    channel: { type: String, required: true },
    erasureId: { type: Schema.Types.ObjectId, required: true },
    at: { type: Date, required: true },
  },
  { collection: 'erased_opt_outs' },
);

/** Registers the privacy models on `connection` (idempotent). */
export function registerPrivacyModels(connection: Connection): PrivacyModels {
  const model = <T>(name: string, schema: Schema<T>): Model<T> =>
    (connection.models[name] as Model<T> | undefined) ?? connection.model<T>(name, schema);
  return {
    Erasure: model('Erasure', erasureSchema),
    ErasedOptOut: model('ErasedOptOut', erasedOptOutSchema),
  };
}

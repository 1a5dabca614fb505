/**
 * The router's own collections: agents, one conversation per customer, the two per-customer
 * outboxes (posts into Slack, sends to the customer), Slack threads, ownership history and opt-outs.
 *
 * As in src/identity, correctness rests on unique keys and single-document updates, never on
 * transactions (FerretDB v1 and standalone MongoDB have none): an outbox item is upserted under a
 * unique key, so a retried job never creates a second one, and its state moves forward with
 * conditional updates.
 */
import { Schema, type Connection, type Model, type Types } from 'mongoose';
import type { Channel, Provider } from '../canonical';
import { CHANNELS, PROVIDERS } from '../identity/models';

export type AgentStatus = 'available' | 'away' | 'offline';

/**
 * What an agent may do in Slack (src/router/authorize.ts): an `agent` acts on the customers they
 * own or cover; a `lead` or `admin` acts on any customer.
 */
export const AGENT_ROLES = ['agent', 'lead', 'admin'] as const;
export type AgentRole = (typeof AGENT_ROLES)[number];

export interface Agent {
  _id: Types.ObjectId;
  slackUserId: string;
  name: string;
  inboxChannelId: string;
  /** Open customers this agent can own before assignment prefers others. */
  capacity: number;
  backupAgentId?: string;
  /** Absent on agents created before roles existed: read as `agent`. */
  role?: AgentRole;
  status: AgentStatus;
  awayUntil?: Date;
  awaySince?: Date;
  /** Deactivated agents own nobody and are never assigned. */
  active: boolean;
  createdAt: Date;
  updatedAt: Date;
}

export interface ThreadRef {
  channel: string;
  ts: string;
}

/** One per customer (`_id` = customer id): who owns them and where their Slack thread is. */
export interface Conversation {
  _id: Types.ObjectId;
  ownerAgentId?: string;
  open: boolean;
  lastCustomerMessageAt?: Date;
  lastAgentReplyAt?: Date;
  lastAckAt?: Date;
  /** Set while the customer waits for an answer; SLA timers compare against it. */
  awaitingSince?: Date;
  createdAt: Date;
  updatedAt: Date;
}

/**
 * The customer's current Slack thread (`_id` = customer id), in the current owner's inbox channel (a
 * handoff opens a new one). Its own document because only the `to-agent` flush writes it.
 */
export interface CurrentThread {
  _id: Types.ObjectId;
  channel: string;
  ts: string;
  agentId: string;
  /** The channel of the last customer message posted into it (to show switches). */
  lastPostedChannel?: Channel;
}

/** A Slack thread → the customer it belongs to (every thread ever opened, for replies to old ones). */
export interface SlackThread {
  _id: Types.ObjectId;
  channel: string;
  ts: string;
  customerId: Types.ObjectId;
  agentId: string;
}

export type AgentPostKind = 'message' | 'note';

/** A button under an agent post: Slack sends `actionId` and `value` back when it is pressed. */
export interface AgentPostButton {
  actionId: string;
  text: string;
  value: string;
}

/** Outbox into Slack: one item per customer message or note, posted in `seq` order. */
export interface AgentPost {
  _id: Types.ObjectId;
  key: string;
  customerId: Types.ObjectId;
  seq: number;
  kind: AgentPostKind;
  channel?: Channel;
  /**
   * `message`: the customer's content as plain text (slack-delivery escapes it when posting).
   * `note`: Rapport's own Slack mrkdwn; whoever writes one passes every customer-controlled piece
   * through `escapeSlackText`.
   */
  text: string;
  /** Plain text (the customer's name, or `Rapport`); escaped when posted. */
  username?: string;
  button?: AgentPostButton;
  state: 'pending' | 'posted';
  /**
   * Set before the Slack call by earlier versions (a post so marked is looked up before posting);
   * attempts are now recorded in Redis (post-attempts.ts).
   */
  attemptedAt?: Date;
  slack?: ThreadRef;
  /** Files (in GridFS, src/media) uploaded into the thread right after the text, in order. */
  files?: AgentPostFile[];
  createdAt: Date;
}

/** A file of an agent post. `slackFileId` is recorded before the upload is completed (exactly once). */
export interface AgentPostFile {
  mediaId: string;
  filename: string;
  contentType: string;
  bytes: number;
  slackFileId?: string;
  posted?: boolean;
}

export type SendOrigin = 'agent' | 'auto' | 'template' | 'claim_code';
export type SendState = 'scheduled' | 'sending' | 'sent' | 'failed' | 'cancelled';

export interface SendMedia {
  /** A URL the provider can fetch; for an agent's Slack file, its `url_private_download`. */
  url: string;
  contentType?: string;
  filename?: string;
  /** An agent's Slack file: downloaded with the bot token into GridFS (`mediaId`) before sending. */
  slackFileId?: string;
  bytes?: number;
  mediaId?: string;
}

/** Outbox to the customer: agent replies and automatic messages, sent in `seq` order. */
export interface CustomerSend {
  _id: Types.ObjectId;
  key: string;
  customerId: Types.ObjectId;
  seq: number;
  origin: SendOrigin;
  text?: string;
  media: SendMedia[];
  template?: { id: string; language?: string; variables?: Record<string, string> };
  /** The agent's choice of channel; default: the customer's latest. */
  via?: Channel;
  /** Send to this identity (e.g. a claim code to the claimed phone); default: the customer's latest. */
  toIdentityKey?: string;
  /** The agent's Slack message this send came from (reactions show its fate). */
  slack?: ThreadRef;
  agentSlackUserId?: string;
  state: SendState;
  sendAfter: Date;
  attempts: number;
  provider?: Provider;
  channel?: Channel;
  providerMessageId?: string;
  /**
   * Provider ids of the parts already accepted (a message with media takes several calls), in
   * order; a retry resumes after the last one, so no part is sent twice.
   */
  parts: string[];
  /** The key of the uncertain send this one repeats (the agent pressed "Send again"). */
  resendOf?: string;
  failure?: { reason: string; code?: string; message: string };
  createdAt: Date;
  updatedAt: Date;
}

export interface OwnershipChange {
  _id: Types.ObjectId;
  customerId: Types.ObjectId;
  fromAgentId?: string;
  toAgentId: string;
  reason: 'assigned' | 'handoff' | 'deactivated' | 'merge';
  actor: string;
  at: Date;
}

export interface OptOut {
  _id: Types.ObjectId;
  /** `${identityKey}|${channel}` */
  key: string;
  identityKey: string;
  channel: Channel;
  optedOut: boolean;
  at: Date;
}

export interface RouterModels {
  Agent: Model<Agent>;
  Conversation: Model<Conversation>;
  CurrentThread: Model<CurrentThread>;
  SlackThread: Model<SlackThread>;
  AgentPost: Model<AgentPost>;
  CustomerSend: Model<CustomerSend>;
  OwnershipChange: Model<OwnershipChange>;
  OptOut: Model<OptOut>;
}

const threadRef = new Schema<ThreadRef>({ channel: String, ts: String }, { _id: false });

const agentSchema = new Schema<Agent>(
  {
    slackUserId: { type: String, required: true, unique: true },
    name: { type: String, required: true },
    inboxChannelId: { type: String, required: true },
    capacity: { type: Number, required: true, default: 50 },
    backupAgentId: String,
    role: { type: String, enum: AGENT_ROLES, default: 'agent' },
    status: { type: String, enum: ['available', 'away', 'offline'], required: true, default: 'available' },
    awayUntil: Date,
    awaySince: Date,
    active: { type: Boolean, required: true, default: true },
  },
  { collection: 'agents', timestamps: true },
);

const conversationSchema = new Schema<Conversation>(
  {
    ownerAgentId: { type: String, index: true },
    open: { type: Boolean, required: true, default: true },
    lastCustomerMessageAt: Date,
    lastAgentReplyAt: Date,
    lastAckAt: Date,
    awaitingSince: Date,
  },
  { collection: 'conversations', timestamps: true },
);

const currentThreadSchema = new Schema<CurrentThread>(
  {
    channel: { type: String, required: true },
    ts: { type: String, required: true },
    agentId: { type: String, required: true },
    lastPostedChannel: { type: String, enum: CHANNELS },
  },
  { collection: 'current_threads' },
);

const slackThreadSchema = new Schema<SlackThread>(
  {
    channel: { type: String, required: true },
    ts: { type: String, required: true },
    customerId: { type: Schema.Types.ObjectId, required: true, index: true },
    agentId: { type: String, required: true },
  },
  { collection: 'slack_threads' },
);
slackThreadSchema.index({ channel: 1, ts: 1 }, { unique: true });

const agentPostSchema = new Schema<AgentPost>(
  {
    key: { type: String, required: true, unique: true },
    customerId: { type: Schema.Types.ObjectId, required: true },
    seq: { type: Number, required: true },
    kind: { type: String, enum: ['message', 'note'], required: true },
    channel: { type: String, enum: CHANNELS },
    text: { type: String, required: true },
    username: String,
    button: {
      type: new Schema({ actionId: String, text: String, value: String }, { _id: false }),
      default: undefined,
    },
    state: { type: String, enum: ['pending', 'posted'], required: true },
    attemptedAt: Date,
    slack: threadRef,
    files: {
      type: [
        new Schema<AgentPostFile>(
          {
            mediaId: { type: String, required: true },
            filename: { type: String, required: true },
            contentType: { type: String, required: true },
            bytes: { type: Number, required: true },
            slackFileId: String,
            posted: Boolean,
          },
          { _id: false },
        ),
      ],
      default: undefined,
    },
  },
  { collection: 'agent_posts', timestamps: { createdAt: true, updatedAt: false } },
);
agentPostSchema.index({ customerId: 1, state: 1, seq: 1 });

const customerSendSchema = new Schema<CustomerSend>(
  {
    key: { type: String, required: true, unique: true },
    customerId: { type: Schema.Types.ObjectId, required: true },
    seq: { type: Number, required: true },
    origin: { type: String, enum: ['agent', 'auto', 'template', 'claim_code'], required: true },
    text: String,
    media: {
      type: [
        new Schema(
          {
            url: String,
            contentType: String,
            filename: String,
            slackFileId: String,
            bytes: Number,
            mediaId: String,
          },
          { _id: false },
        ),
      ],
      default: [],
    },
    template: { type: Schema.Types.Mixed },
    via: { type: String, enum: CHANNELS },
    toIdentityKey: String,
    slack: threadRef,
    agentSlackUserId: String,
    state: { type: String, enum: ['scheduled', 'sending', 'sent', 'failed', 'cancelled'], required: true },
    sendAfter: { type: Date, required: true },
    attempts: { type: Number, required: true, default: 0 },
    provider: { type: String, enum: PROVIDERS },
    channel: { type: String, enum: CHANNELS },
    providerMessageId: String,
    parts: { type: [String], default: [] },
    resendOf: String,
    failure: { type: new Schema({ reason: String, code: String, message: String }, { _id: false }) },
  },
  { collection: 'customer_sends', timestamps: true },
);
customerSendSchema.index({ customerId: 1, state: 1, seq: 1 });
customerSendSchema.index({ provider: 1, providerMessageId: 1 });
customerSendSchema.index({ 'slack.channel': 1, 'slack.ts': 1 });

const ownershipChangeSchema = new Schema<OwnershipChange>(
  {
    customerId: { type: Schema.Types.ObjectId, required: true, index: true },
    fromAgentId: String,
    toAgentId: { type: String, required: true },
    reason: { type: String, enum: ['assigned', 'handoff', 'deactivated', 'merge'], required: true },
    actor: { type: String, required: true },
    at: { type: Date, required: true },
  },
  { collection: 'ownership_changes' },
);

const optOutSchema = new Schema<OptOut>(
  {
    key: { type: String, required: true, unique: true },
    identityKey: { type: String, required: true, index: true },
    channel: { type: String, enum: CHANNELS, required: true },
    optedOut: { type: Boolean, required: true },
    at: { type: Date, required: true },
  },
  { collection: 'opt_outs' },
);

export function registerRouterModels(connection: Connection): RouterModels {
  const model = <T>(name: string, schema: Schema<T>): Model<T> =>
    (connection.models[name] as Model<T> | undefined) ?? connection.model<T>(name, schema);
  return {
    Agent: model('Agent', agentSchema),
    Conversation: model('Conversation', conversationSchema),
    CurrentThread: model('CurrentThread', currentThreadSchema),
    SlackThread: model('SlackThread', slackThreadSchema),
    AgentPost: model('AgentPost', agentPostSchema),
    CustomerSend: model('CustomerSend', customerSendSchema),
    OwnershipChange: model('OwnershipChange', ownershipChangeSchema),
    OptOut: model('OptOut', optOutSchema),
  };
}

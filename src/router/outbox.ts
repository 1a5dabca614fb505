/**
 * The two per-customer outboxes and their flush jobs.
 *
 * Every item (a customer message or note to post in Slack; a reply or automatic message to send to
 * the customer) is stored under a unique key with a per-customer sequence number, then a "flush this
 * customer" job is queued — except what the inbound job appends (`appendForAgent`): it flushes the
 * Slack outbox itself when the flush lock is free and queues the job otherwise (inbound.ts,
 * slack-delivery.ts `flushNow`). A flush (slack-delivery.ts, delivery.ts) takes a per-customer lock
 * and works through the pending items in sequence order. So:
 * - order: items go out in the order they were appended, with any number of workers;
 * - exactly once: a retried append finds its item (unique key); a retried flush skips done items;
 * - isolation: a flush that must wait (a Slack channel's 429, a provider's backoff) delays that
 *   customer only.
 *
 * The Slack outbox also lists each customer's pending keys in Redis (`pendingPostsKey`), entered
 * before the row is stored, and a freshly stored post without files rides in its flush job: when it
 * is the only key listed, the flush posts it without reading the outbox (slack-delivery.ts).
 */
import { Types } from 'mongoose';
import type { Queue } from 'bullmq';
import type { RedisClient } from '../queue/connection';
import type { Channel, Provider } from '../canonical';
import { retryOnDuplicate } from '../storage/duplicate-key';
import type {
  AgentPostFile,
  AgentPostButton,
  AgentPostKind,
  CustomerSend,
  RouterModels,
  SendMedia,
  SendOrigin,
} from './models';

export interface NewAgentPost {
  key: string;
  kind: AgentPostKind;
  text: string;
  channel?: Channel;
  username?: string;
  files?: AgentPostFile[];
  /** A button under the post (e.g. "Send a code to …"); its press comes back as a Slack interaction. */
  button?: AgentPostButton;
}

export interface NewCustomerSend {
  key: string;
  origin: SendOrigin;
  text?: string;
  media?: SendMedia[];
  template?: CustomerSend['template'];
  via?: Channel;
  toIdentityKey?: string;
  slack?: { channel: string; ts: string };
  agentSlackUserId?: string;
  /** Hold the send until then (the agent's undo window). */
  sendAfter?: Date;
  /** Parts an earlier send already got accepted (a "Send again" resumes after them). */
  parts?: string[];
  /** The uncertain send this one repeats. */
  resendOf?: string;
}

/** A freshly stored post as its flush job carries it (JSON: ids and dates as strings). */
export interface CarriedPost extends NewAgentPost {
  id: string;
  seq: number;
  createdAt: string;
}

/**
 * Where a first contact's acknowledgement goes: the identity, channel and provider the customer just
 * wrote from (what the send worker would otherwise read back: delivery.ts `chooseRoute`).
 */
export interface CarriedRoute {
  identityKey: string;
  channel: Channel;
  provider: Provider;
  /** When the customer wrote (ms): the messaging window's start. */
  lastInboundAt: number;
}

/** A freshly stored send as its flush job carries it (a first contact's acknowledgement). */
export interface CarriedSend {
  id: string;
  seq: number;
  key: string;
  origin: SendOrigin;
  text?: string;
  sendAfter: string;
  route: CarriedRoute;
}

/** The customer's listed pending Slack posts: key → when listed (ms). */
export function pendingPostsKey(prefix: string, customerId: Types.ObjectId | string): string {
  return `${prefix}:to-agent:pending:${String(customerId)}`;
}

/** A listing nobody flushed for this long is dropped (an erased customer's, say). */
const PENDING_LIST_TTL_S = 7 * 24 * 3600;

/**
 * Lists member ARGV[2] at score ARGV[1] in KEYS[1] and (re)sets its TTL to ARGV[3], atomically. A
 * script rather than MULTI…EXEC, which ioredis builds as a Pipeline copying a method pair for each of
 * the ~50 BullMQ scripts on this connection (see src/queue/lock.ts `TAKE_AND_READ`).
 */
const LIST_PENDING = `redis.call('zadd', KEYS[1], ARGV[1], ARGV[2])
return redis.call('expire', KEYS[1], ARGV[3])`;

export interface Outbox {
  /** Next sequence number of a customer's outboxes. */
  nextSeq(customerId: Types.ObjectId): Promise<number>;
  postToAgent(customerId: Types.ObjectId, post: NewAgentPost): Promise<void>;
  /**
   * Appends like postToAgent without queueing the flush: the caller flushes the customer's outbox
   * itself, or queues the flush (the inbound job: slack-delivery.ts `flushNow`). Returns the post as
   * a flush carries it when this call stored it (no files).
   */
  appendForAgent(customerId: Types.ObjectId, post: NewAgentPost): Promise<CarriedPost | undefined>;
  /**
   * `carry.route`: the customer's first send (nothing of theirs can be waiting before it), which its
   * flush job carries with its route, so the send worker reads no outbox, customer or identity.
   */
  sendToCustomer(
    customerId: Types.ObjectId,
    send: NewCustomerSend,
    carry?: { route: CarriedRoute },
  ): Promise<void>;
  /**
   * Queues a flush of the customer's Slack outbox (e.g. after an owner change). `tried`: a flush
   * already tried these posts (an inbound job's inline flush that failed), so they are looked up
   * in the thread before posting again, as a failed job's retry does.
   */
  flushAgent(
    customerId: Types.ObjectId,
    delayMs?: number,
    post?: CarriedPost,
    tried?: boolean,
  ): Promise<void>;
  flushCustomer(customerId: Types.ObjectId, delayMs?: number, send?: CarriedSend): Promise<void>;
}

export function createOutbox(
  models: RouterModels,
  queues: { toAgent: Queue; toCustomer: Queue },
  redis: RedisClient,
  prefix: string,
): Outbox {
  const { AgentPost, CustomerSend } = models;
  let counter = 0;
  const flushJobId = (kind: string, customerId: Types.ObjectId) =>
    // Unique per call: a flush queued while another runs must still run after it.
    `${kind}~${String(customerId)}~${Date.now().toString(36)}~${(counter++).toString(36)}~${process.pid}`;

  const outbox: Outbox = {
    async nextSeq(customerId) {
      // Redis INCR, not a `$inc` on a document: atomic on every MongoDB-protocol server (FerretDB v1
      // loses concurrent updates to one document). Equal numbers after a Redis wipe are ordered by
      // creation time as well.
      return redis.incr(`${prefix}:seq:${String(customerId)}`);
    },
    async postToAgent(customerId, post) {
      const carried = await outbox.appendForAgent(customerId, post);
      await outbox.flushAgent(customerId, 0, carried);
    },
    async appendForAgent(customerId, post) {
      // No existence check first: a retried append's upsert matches the stored item and changes
      // nothing (its sequence number is simply unused; gaps do not matter, only order does).
      const seq = await outbox.nextSeq(customerId);
      // Listed before it is stored, so a stored pending post is always listed (a listed key whose
      // row is not stored, or already posted, only sends a flush to the outbox read).
      const listed = pendingPostsKey(prefix, customerId);
      await redis.eval(LIST_PENDING, 1, listed, Date.now(), post.key, PENDING_LIST_TTL_S);
      const createdAt = new Date();
      const res = await retryOnDuplicate(() =>
        AgentPost.updateOne(
          { key: post.key },
          { $setOnInsert: { ...post, customerId, seq, state: 'pending', createdAt } },
          { upsert: true, timestamps: false },
        ),
      );
      // Only a post this call stored rides along (a retried append's may be posted already); files
      // keep per-file marks that only the stored row has.
      return res.upsertedCount === 1 && res.upsertedId && !post.files?.length
        ? { ...post, id: String(res.upsertedId), seq, createdAt: createdAt.toISOString() }
        : undefined;
    },
    async sendToCustomer(customerId, send, carry) {
      const sendAfter = send.sendAfter ?? new Date();
      // As postToAgent: a retried append matches the stored send and changes nothing.
      const seq = await outbox.nextSeq(customerId);
      const res = await retryOnDuplicate(() =>
        CustomerSend.updateOne(
          { key: send.key },
          {
            $setOnInsert: {
              ...send,
              media: send.media ?? [],
              parts: send.parts ?? [],
              customerId,
              seq,
              state: 'scheduled',
              sendAfter,
              attempts: 0,
            },
          },
          { upsert: true },
        ),
      );
      // Only a send this call stored rides along (a retried append's may be sent already).
      const carried: CarriedSend | undefined =
        carry && res.upsertedCount === 1 && res.upsertedId && !send.media?.length && !send.template
          ? {
              id: String(res.upsertedId),
              seq,
              key: send.key,
              origin: send.origin,
              ...(send.text === undefined ? {} : { text: send.text }),
              sendAfter: sendAfter.toISOString(),
              route: carry.route,
            }
          : undefined;
      await outbox.flushCustomer(customerId, Math.max(0, sendAfter.getTime() - Date.now()), carried);
    },
    async flushAgent(customerId, delayMs = 0, post, tried) {
      await queues.toAgent.add(
        'flush',
        { customerId: String(customerId), ...(post ? { post } : {}), ...(tried ? { tried } : {}) },
        { jobId: flushJobId('a', customerId), delay: delayMs },
      );
    },
    async flushCustomer(customerId, delayMs = 0, send) {
      await queues.toCustomer.add(
        'flush',
        { customerId: String(customerId), ...(send ? { send } : {}) },
        { jobId: flushJobId('c', customerId), delay: delayMs },
      );
    },
  };
  return outbox;
}

export function toObjectId(id: string | Types.ObjectId): Types.ObjectId {
  return typeof id === 'string' ? new Types.ObjectId(id) : id;
}

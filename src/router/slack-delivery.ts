/**
 * The `to-agent` worker: flushes a customer's Slack outbox into their owner's thread.
 *
 * - The thread is opened by a customer card (who they are, their identities and channels, owner,
 *   first seen, last channel, messaging-window state, recent history) in the owner's inbox channel.
 * - Posts go out strictly in outbox order, each labelled with its channel; a channel switch shows.
 * - Never two cards for one thread opening: the card carries a per-attempt key as metadata, the
 *   attempt is recorded in Redis before the call, and a retry looks the key up in the channel
 *   (`conversations.history`) before posting again; a card found there gets its thread record.
 * - Never two posts for one item: each post carries its outbox key as Slack message metadata, the
 *   attempt is recorded before the call, and a retry after an unrecorded attempt looks the key up in
 *   the thread (`conversations.replies`) before posting again.
 * - Slack's rate limit is per channel: a 429 records "wait until" for that channel in Redis (shared
 *   by every worker process) and defers only the customers whose thread is in that channel.
 */
import type { Job } from 'bullmq';
import type { RedisClient } from '../queue/connection';
import type { Types } from 'mongoose';
import { SlackApiError, type SlackClient } from '../channels/slack/client';
import { escapeSlackText } from '../channels/slack/escape';
import type { IdentityModels } from '../identity/models';
import type { Logger } from '../logger';
import { withLock } from '../queue/lock';
import { DeferError } from '../errors';
import type { MediaStore } from '../media/store';
import type { AgentPost, AgentPostButton, CurrentThread, RouterModels, ThreadRef } from './models';
import { toObjectId, type Outbox } from './outbox';
import type { Ownership } from './ownership';
import { createCardPoster } from './card-post';
import { channelLabel } from './texts';
import { createHotThreads, threadChanged } from './hot-state';

export const POST_EVENT_TYPE = 'rapport_post';

export type ToAgentJob =
  { customerId: string } | { react: { channel: string; ts: string; name: string; remove?: string[] } };

export interface SlackDeliveryOptions {
  models: RouterModels & IdentityModels;
  slack: SlackClient;
  redis: RedisClient;
  prefix: string;
  ownership: Ownership;
  outbox: Outbox;
  escalationChannel?: string;
  log: Logger;
  /** Where inbound files wait to be uploaded (src/media). */
  media?: MediaStore;
  /** Called when a channel is rate limited (metrics). */
  onRateLimited?: (channel: string) => void;
}

/** Per-channel "do not call before" marker, shared by every process. */
export function channelWaitKey(prefix: string, channel: string): string {
  return `${prefix}:slack-wait:${channel}`;
}

export async function respectChannelLimit(
  redis: RedisClient,
  prefix: string,
  channel: string,
): Promise<void> {
  const ttl = await redis.pttl(channelWaitKey(prefix, channel));
  if (ttl > 0)
    throw new DeferError(ttl + Math.round(Math.random() * 250), `slack channel ${channel} rate limited`);
}

export async function noteRateLimit(
  redis: RedisClient,
  prefix: string,
  channel: string,
  err: unknown,
): Promise<void> {
  if (err instanceof SlackApiError && err.slackError === 'ratelimited') {
    const wait = err.retryAfterMs ?? 1_000;
    await redis.set(channelWaitKey(prefix, channel), '1', 'PX', wait);
    throw new DeferError(wait, `slack channel ${channel} rate limited for ${wait} ms`);
  }
}

export { windowState } from './card';

/** A post with a button under it: its text as a section, then the button. */
function buttonBlocks(text: string, button: AgentPostButton): unknown[] {
  return [
    { type: 'section', text: { type: 'mrkdwn', text } },
    {
      type: 'actions',
      elements: [
        {
          type: 'button',
          action_id: button.actionId,
          // plain_text: Slack renders it literally, so no escaping is needed (max 75 characters).
          text: { type: 'plain_text', text: button.text.slice(0, 75) },
          value: button.value.slice(0, 2000),
        },
      ],
    },
  ];
}

/** Tries of one Slack step in place before the flush job fails (and backs off). */
const INLINE_TRIES = 3;
/** Short lock, renewed while the flush works: a killed worker blocks its customer for 15 s at most. */
const FLUSH_LOCK_TTL_MS = 15_000;
const FOLLOW_UP_DELAY_MS = 500;

/** Worth trying again at once: a 5xx, a timeout or a lost answer (a 429 waits per channel instead). */
function isTransient(err: unknown): boolean {
  return err instanceof SlackApiError && err.retryable && err.slackError !== 'ratelimited';
}

/** Runs `step` up to INLINE_TRIES times while it fails transiently, with a short growing pause. */
export async function retryTransient<T>(step: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step(attempt);
    } catch (err) {
      if (attempt >= INLINE_TRIES || !isTransient(err)) throw err;
      await new Promise((r) => setTimeout(r, 150 * attempt + Math.random() * 150));
    }
  }
}

export function createSlackDelivery(o: SlackDeliveryOptions) {
  const { models, slack, redis, prefix, ownership, log } = o;
  const { AgentPost, CurrentThread, SlackThread } = models;
  // The current thread from Redis when its copy is current (hot-state.ts): no read per flush.
  const hotThreads = createHotThreads(
    redis,
    prefix,
    async (id) => (await CurrentThread.findById(id).lean<CurrentThread>()) ?? undefined,
  );

  const cards = createCardPoster({
    models,
    slack,
    redis,
    prefix,
    log,
    noteRateLimit: (channel, err) => noteRateLimit(redis, prefix, channel, err),
  });
  const { postCard } = cards;

  /** The customer's current thread, opening one (with a card) in the owner's inbox if needed. */
  async function ensureThread(
    customerId: Types.ObjectId,
  ): Promise<{ channel: string; ts: string; lastPostedChannel?: string }> {
    // The inbound router keeps the conversation's owner in step; here only the thread matters.
    const { agent, customer } = await ownership.ensureOwner(customerId, 'rapport', { syncUnchanged: false });
    const current = await hotThreads.get(String(customerId));
    const agentId = agent ? String(agent._id) : 'unassigned';
    if (current && current.agentId === agentId) return current;
    const channel = agent?.inboxChannelId ?? o.escalationChannel;
    if (!channel) throw new DeferError(30_000, 'no agent and no escalation channel: waiting for an agent');
    await respectChannelLimit(redis, prefix, channel);
    // The customer the owner check used (its hot copy, current under its tokens) is the card's too.
    const ts = await postCard(customerId, channel, agent ?? undefined, { customer, hadThread: current !== undefined });
    const recorded = await SlackThread.findOneAndUpdate(
      { channel, ts },
      { $setOnInsert: { channel, ts, customerId, agentId } },
      { upsert: true, returnDocument: 'after' },
    ).lean();
    if (recorded && String(recorded.customerId) !== String(customerId)) {
      // Slack gave a ts another customer's thread already has: never make it this customer's thread.
      throw new Error(`slack ts ${ts} in ${channel} is already another customer's thread`);
    }
    await CurrentThread.updateOne(
      { _id: customerId },
      { $set: { channel, ts, agentId }, $unset: { lastPostedChannel: 1 } },
      { upsert: true },
    );
    await threadChanged(redis, prefix, customerId);
    await cards.attemptDone(customerId);
    log.info({ customerId: String(customerId), agentId }, 'customer thread opened');
    return { channel, ts };
  }

  /** A note is Rapport's own mrkdwn (its writer escaped what it quotes); a message is the customer's. */
  function render(post: AgentPost, previousChannel: string | undefined): string {
    if (post.kind === 'note') return post.text;
    const switched =
      previousChannel && post.channel && previousChannel !== post.channel
        ? `:twisted_rightwards_arrows: _now writing on ${channelLabel(post.channel)}_\n`
        : '';
    return `${switched}*[${channelLabel(post.channel)}]* ${escapeSlackText(post.text)}`;
  }

  /** The post's text, exactly once (its key in the message metadata; looked up after a crash). */
  async function postText(post: AgentPost, thread: ThreadRef, lastPostedChannel?: string): Promise<void> {
    if (post.attemptedAt) {
      const ts = await slack.findInThread(thread.channel, thread.ts, POST_EVENT_TYPE, 'key', post.key);
      if (ts) {
        await AgentPost.updateOne({ _id: post._id }, { $set: { slack: { channel: thread.channel, ts } } });
        return;
      }
    }
    await AgentPost.updateOne({ _id: post._id }, { $set: { attemptedAt: new Date() } });
    let ts: string;
    try {
      const text = render(post, lastPostedChannel);
      ({ ts } = await slack.postMessage({
        channel: thread.channel,
        threadTs: thread.ts,
        text,
        ...(post.button ? { blocks: buttonBlocks(text, post.button) } : {}),
        username: post.username === undefined ? undefined : escapeSlackText(post.username),
        iconEmoji: post.kind === 'note' ? ':memo:' : undefined,
        metadata: { eventType: POST_EVENT_TYPE, payload: { key: post.key } },
      }));
    } catch (err) {
      await noteRateLimit(redis, prefix, thread.channel, err);
      throw err;
    }
    await AgentPost.updateOne({ _id: post._id }, { $set: { slack: { channel: thread.channel, ts } } });
  }

  /**
   * The post's files into the thread with Slack's external upload flow, each exactly once: the
   * Slack file id is recorded before the upload is completed, so a retry after a crash first looks
   * for that file in the thread; an upload never completed was never shown, and starts over.
   */
  async function uploadFiles(post: AgentPost, thread: ThreadRef): Promise<void> {
    const store = o.media;
    if (!store) return;
    for (const [i, file] of (post.files ?? []).entries()) {
      if (file.posted) continue;
      const done = async () =>
        AgentPost.updateOne({ _id: post._id }, { $set: { [`files.${i}.posted`]: true } });
      if (file.slackFileId && (await slack.fileInThread(thread.channel, thread.ts, file.slackFileId))) {
        await done();
        continue;
      }
      // Erased or expired (retention) before it could be posted: nothing left to upload.
      if (!(await store.info(file.mediaId))) {
        log.warn({ key: post.key, index: i }, 'file gone before its upload; skipped');
        await done();
        continue;
      }
      try {
        const { uploadUrl, fileId } = await slack.getUploadUrl(file.filename, file.bytes);
        await AgentPost.updateOne({ _id: post._id }, { $set: { [`files.${i}.slackFileId`]: fileId } });
        await slack.putUpload(uploadUrl, store.open(file.mediaId), file.bytes);
        await slack.completeUpload({
          fileId,
          title: file.filename,
          channel: thread.channel,
          threadTs: thread.ts,
        });
      } catch (err) {
        await noteRateLimit(redis, prefix, thread.channel, err);
        throw err;
      }
      await done();
    }
  }

  /** One pending post into the thread: its text, then its files; then it is marked posted. */
  async function deliverPost(post: AgentPost, thread: ThreadRef, lastPostedChannel?: string): Promise<void> {
    if (!post.slack) await postText(post, thread, lastPostedChannel);
    if (post.files?.length) await uploadFiles(post, thread);
    await AgentPost.updateOne({ _id: post._id }, { $set: { state: 'posted' } });
  }

  /**
   * A post tried again in place after a transient failure (5xx, timeout, lost answer), re-read so the
   * retry sees the attempt it recorded and looks the post up before posting again.
   */
  async function deliverWithRetries(post: AgentPost, thread: ThreadRef, lastPostedChannel?: string) {
    await retryTransient(async (attempt) => {
      const current = attempt === 1 ? post : await AgentPost.findById(post._id).lean<AgentPost>();
      if (!current || current.state === 'posted') return;
      await respectChannelLimit(redis, prefix, thread.channel);
      await deliverPost(current, thread, lastPostedChannel);
    });
  }

  /**
   * Posts the customer's pending items in order. A transient Slack failure is tried again in place a
   * few times; a flush that still fails after posting something hands the rest to a fresh job (its
   * attempts and backoff start over) instead of backing off as if nothing had moved.
   */
  async function flush(customerId: Types.ObjectId): Promise<void> {
    const lockKey = `${prefix}:lock:to-agent:${String(customerId)}`;
    await withLock(redis, lockKey, FLUSH_LOCK_TTL_MS, () => flushLocked(customerId), { renew: true });
  }

  async function flushLocked(customerId: Types.ObjectId): Promise<void> {
    const pending = await AgentPost.find({ customerId, state: 'pending' })
      .sort({ seq: 1, _id: 1 })
      .limit(50)
      .lean<AgentPost[]>();
    if (pending.length === 0) return;
    const thread = await retryTransient(() => ensureThread(customerId));
    // The channel of the last message posted in this thread ("now writing on WhatsApp" on a switch),
    // read once per flush and kept here; written only when it changes.
    let lastPostedChannel = thread.lastPostedChannel;
    let posted = 0;
    try {
      for (const post of pending) {
        await deliverWithRetries(post, thread, lastPostedChannel);
        posted++;
        if (post.kind === 'message' && post.channel && post.channel !== lastPostedChannel) {
          await CurrentThread.updateOne({ _id: customerId }, { $set: { lastPostedChannel: post.channel } });
          await threadChanged(redis, prefix, customerId);
          lastPostedChannel = post.channel;
        }
      }
    } catch (err) {
      if (posted === 0 || err instanceof DeferError) throw err;
      log.warn(
        { customerId: String(customerId), posted, code: err instanceof SlackApiError ? err.code : undefined },
        'slack flush stopped after progress; the rest continues in a new job',
      );
      await o.outbox.flushAgent(customerId, FOLLOW_UP_DELAY_MS);
      return;
    }
    if (pending.length === 50) await o.outbox.flushAgent(customerId);
  }

  async function react(r: { channel: string; ts: string; name: string; remove?: string[] }): Promise<void> {
    await respectChannelLimit(redis, prefix, r.channel);
    try {
      for (const name of r.remove ?? []) await slack.removeReaction(r.channel, r.ts, name);
      await slack.addReaction(r.channel, r.ts, r.name);
    } catch (err) {
      await noteRateLimit(redis, prefix, r.channel, err);
      if (
        err instanceof SlackApiError &&
        (err.slackError === 'message_not_found' || err.slackError === 'too_many_reactions')
      )
        return;
      throw err;
    }
  }

  return {
    flush,
    ensureThread,
    async handle(job: Job<ToAgentJob>): Promise<void> {
      if ('react' in job.data) return react(job.data.react);
      await flush(toObjectId(job.data.customerId));
    },
  };
}

export type SlackDelivery = ReturnType<typeof createSlackDelivery>;

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
 *   attempt is recorded in Redis before the call, and a post an earlier try may have made (its
 *   attempt recorded, a retry, a Redis that may have lost the record: post-attempts.ts) is looked up
 *   in the thread (`conversations.replies`) before posting again. A post is marked once, after it is
 *   out: its ts and `posted` together, the marks of one flush in one command.
 * - Slack's rate limit is per channel: a 429 records "wait until" for that channel in Redis (shared
 *   by every worker process) and defers only the customers whose thread is in that channel. While a
 *   channel is busy (refused within the last minute), a customer's waiting messages go out together,
 *   one post carrying every message's key (coalesce.ts); each is marked with that post's ts.
 */
import type { Job } from 'bullmq';
import type { Channel } from '../canonical';
import type { RedisClient } from '../queue/connection';
import { Types } from 'mongoose';
import { SlackApiError, type SlackClient } from '../channels/slack/client';
import { escapeSlackText } from '../channels/slack/escape';
import type { IdentityModels } from '../identity/models';
import type { Logger } from '../logger';
import { FLUSH_LOCK_TTL_MS, toAgentLockKey, withLock } from '../queue/lock';
import { DeferError } from '../errors';
import type { MediaStore } from '../media/store';
import type { AgentPost, AgentPostButton, CurrentThread, RouterModels, ThreadRef } from './models';
import type { FirstCard } from './card';
import { pendingPostsKey, toObjectId, type CarriedPost, type Outbox } from './outbox';
import type { Ownership } from './ownership';
import { createCardPoster } from './card-post';
import { channelLabel } from './texts';
import { createHotThreads } from './hot-state';
import { createPostAttempts } from './post-attempts';
import { channelAfter, channelBusy, groupPosts, markChannelBusy, postPayload, renderGroup } from './coalesce';

export const POST_EVENT_TYPE = 'rapport_post';

export type ToAgentJob =
  | { customerId: string; post?: CarriedPost; tried?: boolean }
  | { react: { channel: string; ts: string; name: string; remove?: string[] } };

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
  /**
   * A thread was opened (its card posted): the card refresh records what the card shows and
   * schedules its window's close (card-updates.ts). `shown`: what a customer's first card shows and
   * the change tokens read before it was read, to record as is (`recordFirstCard`); otherwise the
   * refresh reads it (`requestRefresh`).
   */
  onThreadOpened?: (customerId: Types.ObjectId, shown?: FirstCard) => Promise<void>;
  /** The change tokens a first card depends on, read before its customer is (card-updates.ts `cardTokens`). */
  cardTokens?: (customerId: string) => Promise<string[]>;
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
    // Two keys, two commands (a MULTI of both would cross Redis Cluster slots).
    await redis.set(channelWaitKey(prefix, channel), '1', 'PX', wait);
    await markChannelBusy(redis, prefix, channel);
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

/** A note is Rapport's own mrkdwn (its writer escaped what it quotes); a message is the customer's. */
function render(post: AgentPost, previousChannel: string | undefined): string {
  if (post.kind === 'note') return post.text;
  const switched =
    previousChannel && post.channel && previousChannel !== post.channel
      ? `:twisted_rightwards_arrows: _now writing on ${channelLabel(post.channel)}_\n`
      : '';
  return `${switched}*[${channelLabel(post.channel)}]* ${escapeSlackText(post.text)}`;
}

/** Tries of one Slack step in place before the flush job fails (and backs off). */
const INLINE_TRIES = 3;
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

/**
 * The posted marks of a flush, in one command: a post's Slack ts and `posted` together. A crash
 * before they are written leaves the posts pending with their attempts recorded: the next flush
 * finds them in the thread instead of posting them again.
 */
async function markPosted(
  AgentPost: RouterModels['AgentPost'],
  marks: { id: Types.ObjectId; slack: ThreadRef }[],
): Promise<void> {
  if (marks.length === 0) return;
  await AgentPost.bulkWrite(
    marks.map((m) => ({
      updateOne: { filter: { _id: m.id }, update: { $set: { slack: m.slack, state: 'posted' as const } } },
    })),
    { ordered: false },
  );
}

/** Listings are trusted this long after they started (see listingTrusted). */
export const LISTING_TRUST_MS = 10 * 60_000;
/** A listed key younger than this may belong to an append still storing its row: kept. */
const LISTING_GRACE_MS = 60_000;
/** Drops listed keys whose listing time is still the one read (a re-listed key stays). */
const DROP_UNCHANGED = `for i = 1, #ARGV, 2 do if redis.call('zscore', KEYS[1], ARGV[i]) == ARGV[i + 1] then redis.call('zrem', KEYS[1], ARGV[i]) end end return 0`;

/** The carried post as the outbox row it was stored as. */
function fromCarried(customerId: Types.ObjectId, c: CarriedPost): AgentPost {
  const { id, createdAt, ...post } = c;
  return {
    ...post,
    _id: new Types.ObjectId(id),
    customerId,
    state: 'pending',
    createdAt: new Date(createdAt),
  };
}

/** The flush's side of the outbox's Redis listing (outbox.ts): what to post, and posted. */
function createPendingPosts(
  AgentPost: RouterModels['AgentPost'],
  redis: RedisClient,
  prefix: string,
  attempts: ReturnType<typeof createPostAttempts>,
) {
  /**
   * Whether the listings may be trusted. They started over (a first deploy with them, a wiped Redis)
   * at `listing-since`; posts stored before then may be pending unlisted. Trusted once no pending
   * post is older than that (one read per process and start), or LISTING_TRUST_MS after it: by
   * then the sweep (every minute, posts pending over 5 minutes) has read, and so listed, every such
   * customer's outbox. The carried post does not count: it was listed before it was stored (by a
   * process that lists, since it carries it), though the first flush after the start, which sets
   * `listing-since`, finds it older than that.
   */
  let trustedSince: string | undefined;
  async function listingTrusted(carried: CarriedPost): Promise<boolean> {
    const now = String(Date.now());
    const since = (await redis.set(`${prefix}:to-agent:listing-since`, now, 'NX', 'GET')) ?? now;
    if (since === trustedSince) return true;
    const old = Date.now() - Number(since) > LISTING_TRUST_MS;
    const before = { state: 'pending' as const, createdAt: { $lt: new Date(Number(since)) } };
    if (!old && (await AgentPost.exists({ ...before, _id: { $ne: new Types.ObjectId(carried.id) } })))
      return false;
    trustedSince = since;
    return true;
  }

  /**
   * The posts to flush. A carried post alone when it is the only key listed: nothing older waits
   * (an append lists its key before storing its row, and Redis keeps a prefix of one key's writes, so
   * a listing that still has this key has every earlier one). Otherwise the outbox read, which also
   * drops listed keys it shows are done (posted, or never stored).
   */
  async function pendingPosts(
    customerId: Types.ObjectId,
    triedBefore: boolean,
    carried: CarriedPost | undefined,
  ): Promise<AgentPost[]> {
    const listed = pendingPostsKey(prefix, customerId);
    if (carried && !triedBefore && !attempts.unsettled() && (await listingTrusted(carried))) {
      const first = await redis.zrange(listed, '0', '1');
      if (first.length === 1 && first[0] === carried.key) return [fromCarried(customerId, carried)];
    }
    const old = await redis.zrangebyscore(
      listed,
      '-inf',
      String(Date.now() - LISTING_GRACE_MS),
      'WITHSCORES',
    );
    const pending = await AgentPost.find({ customerId, state: 'pending' })
      .sort({ seq: 1, _id: 1 })
      .limit(50)
      .lean<AgentPost[]>();
    // Listed as read: a post stored while nothing listed it (a rolling deploy, a wiped Redis) is
    // listed by its customer's next outbox read.
    if (pending.length > 0) await redis.zadd(listed, 'NX', ...pending.flatMap((p) => [Date.now(), p.key]));
    if (pending.length < 50 && old.length > 0) {
      const waiting = new Set(pending.map((p) => p.key));
      const done = old.flatMap((key, i) => (i % 2 === 0 && !waiting.has(key) ? [key, old[i + 1]!] : []));
      if (done.length > 0) await redis.eval(DROP_UNCHANGED, 1, listed, ...done);
    }
    return pending;
  }

  /** Posted: marked in the outbox (one command), then unlisted. */
  async function posted(
    customerId: Types.ObjectId,
    marks: { id: Types.ObjectId; slack: ThreadRef; key: string }[],
  ) {
    if (marks.length === 0) return;
    await markPosted(AgentPost, marks);
    await redis.zrem(pendingPostsKey(prefix, customerId), ...marks.map((m) => m.key));
  }
  return { pendingPosts, posted };
}

/**
 * An inline flush holds the inbound job, so its whole partition (one job at a time) and every
 * customer behind it there, for as long as Slack takes. Worth it while a Slack post takes less
 * than the rest of an inbound job (the partition's time per message at most doubles), or under
 * INLINE_POST_FLOOR_MS; not when Slack is slow for the network's sake (a real Slack far away). Both
 * are averaged (this process's posts, flush jobs' too, and its inbound jobs' steps): on a loaded
 * machine both slow down together, and the comparison holds. Otherwise inbound jobs queue flush jobs.
 */
export const INLINE_POST_FLOOR_MS = 50;
/** Weight of the newest sample in the averages. */
const INLINE_EWMA_WEIGHT = 0.3;

/** This process's average Slack post and inbound steps durations, and whether to flush inline. */
function inlineGauge() {
  let postMs = 0;
  let stepsMs = 0;
  const average = (avg: number, sample: number) => avg + INLINE_EWMA_WEIGHT * (sample - avg);
  return {
    /** A post that started at `startedAt` is out now. */
    took(startedAt: number): void {
      postMs = average(postMs, Date.now() - startedAt);
    },
    /** An inbound job's steps before its flush took `ms`; whether to flush inline. */
    inline(ms: number): boolean {
      stepsMs = average(stepsMs, ms);
      return postMs <= Math.max(INLINE_POST_FLOOR_MS, stepsMs);
    },
  };
}

/**
 * The inbound job's own flush (one job per message instead of two): when the customer's flush lock
 * is free at once, their outbox is flushed here and now. A flush job is queued instead when the lock
 * is held (its holder may have read the outbox before this append), when Slack asks to wait (a 429,
 * no agent yet: the deferral's delay), or when the flush failed (`tried`: its posts are looked up
 * before posting again); and without trying when a post has files (uploads take long) or Slack
 * posts take longer than the rest of an inbound job (inlineGauge). So every appended post is posted by someone: an
 * inbound job killed before this point is run again (stalled), and its re-run flushes. Resolves to
 * whether it flushed here.
 */
function inlineFlush(
  o: SlackDeliveryOptions,
  flushLocked: (customerId: Types.ObjectId, triedBefore: boolean, carried?: CarriedPost) => Promise<void>,
  gauge: ReturnType<typeof inlineGauge>,
) {
  return async function flushNow(
    customerId: Types.ObjectId,
    carried: CarriedPost | undefined,
    triedBefore: boolean,
    opts: { files?: boolean; stepsMs?: number } = {},
  ): Promise<boolean> {
    if (!gauge.inline(opts.stepsMs ?? 0) || opts.files) {
      await o.outbox.flushAgent(customerId, 0, carried, triedBefore);
      return false;
    }
    const lockKey = toAgentLockKey(o.prefix, String(customerId));
    let ran = false;
    const locked = () => {
      ran = true;
      return flushLocked(customerId, triedBefore, carried);
    };
    try {
      await withLock(o.redis, lockKey, FLUSH_LOCK_TTL_MS, locked, { renew: true });
      return true;
    } catch (err) {
      const deferred = err instanceof DeferError;
      if (!deferred)
        o.log.warn(
          { customerId: String(customerId), err: { message: (err as Error).message } },
          'inline slack flush failed; a flush job takes over',
        );
      const delay = deferred ? err.delayMs : FOLLOW_UP_DELAY_MS;
      await o.outbox.flushAgent(
        customerId,
        delay,
        ran ? undefined : carried,
        triedBefore || (ran && !deferred),
      );
      return false;
    }
  };
}

export function createSlackDelivery(o: SlackDeliveryOptions) {
  const { models, slack, redis, prefix, ownership, log } = o;
  const { AgentPost, CurrentThread, SlackThread } = models;
  const attempts = createPostAttempts(redis, prefix);
  const { pendingPosts, posted } = createPendingPosts(AgentPost, redis, prefix, attempts);
  // The current thread from Redis when its copy is current (hot-state.ts): no read per flush.
  const hotThreads = createHotThreads(
    redis,
    prefix,
    async (id) => (await CurrentThread.findById(id).lean<CurrentThread>()) ?? undefined,
  );

  const gauge = inlineGauge();
  const limited = (channel: string, err: unknown) => noteRateLimit(redis, prefix, channel, err);
  const cards = createCardPoster({ models, slack, redis, prefix, log, noteRateLimit: limited });

  /**
   * The customer's current thread, opening one (with a card) in the owner's inbox if needed; a new
   * one records `firstChannel` (the flush's first message's) as its last posted channel at once.
   */
  async function ensureThread(customerId: Types.ObjectId, firstChannel?: Channel): Promise<CurrentThread> {
    const current = await hotThreads.get(String(customerId));
    // A first thread's card is recorded as posted: the tokens it depends on, before its customer is read.
    const tokens = current ? undefined : await o.cardTokens?.(String(customerId));
    // The inbound router keeps the conversation's owner in step; here only the thread matters.
    const { agent, customer } = await ownership.ensureOwner(customerId, 'rapport', { syncUnchanged: false });
    const agentId = agent ? String(agent._id) : 'unassigned';
    if (current && current.agentId === agentId) return current;
    const channel = agent?.inboxChannelId ?? o.escalationChannel;
    if (!channel) throw new DeferError(30_000, 'no agent and no escalation channel: waiting for an agent');
    await respectChannelLimit(redis, prefix, channel);
    // The customer the owner check used (its hot copy, current under its tokens) is the card's too.
    const { ts, shown } = await cards.postCard(customerId, channel, agent ?? undefined, {
      customer,
      hadThread: current !== undefined,
    });
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
      firstChannel
        ? { $set: { channel, ts, agentId, lastPostedChannel: firstChannel } }
        : { $set: { channel, ts, agentId }, $unset: { lastPostedChannel: 1 } },
      { upsert: true },
    );
    const opened: CurrentThread = {
      _id: customerId,
      channel,
      ts,
      agentId,
      ...(firstChannel ? { lastPostedChannel: firstChannel } : {}),
    };
    const threadGen = await hotThreads.put(opened, { recreated: true });
    await cards.attemptDone(customerId);
    const first =
      tokens && shown ? { ...shown, tokens: [...tokens, threadGen], ownerName: agent?.name } : undefined;
    await o.onThreadOpened?.(customerId, first);
    log.info({ customerId: String(customerId), agentId }, 'customer thread opened');
    return opened;
  }

  /**
   * The text of `posts` (one group of groupPosts, or the part of it still to post), exactly once, as
   * one Slack post: every post's key rides in the message metadata, and when an earlier try may have
   * made any of them (post-attempts.ts) the thread is read first (one read for all) and what it
   * carries is not posted again. Returns key → ts of each post.
   */
  async function postTexts(
    group: AgentPost[],
    thread: ThreadRef,
    lastPostedChannel: Channel | undefined,
    triedBefore: boolean,
  ): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    let rest = group;
    const earlier = await Promise.all(
      group.map((p) => attempts.begin(p, triedBefore || p.attemptedAt !== undefined)),
    );
    if (earlier.some(Boolean)) {
      const keys = group.map((p) => p.key);
      const found = await slack.findAllInThread(thread.channel, thread.ts, POST_EVENT_TYPE, 'key', keys);
      for (const [key, ts] of found) out.set(key, ts);
      rest = group.filter((p) => !found.has(p.key));
    }
    if (rest.length === 0) return out;
    const first = rest[0]!;
    const startedAt = Date.now();
    try {
      const text = renderGroup(group, rest, render, lastPostedChannel);
      const { ts } = await slack.postMessage({
        channel: thread.channel,
        threadTs: thread.ts,
        text,
        ...(first.button && rest.length === 1 ? { blocks: buttonBlocks(text, first.button) } : {}),
        username: first.username === undefined ? undefined : escapeSlackText(first.username),
        iconEmoji: first.kind === 'note' ? ':memo:' : undefined,
        metadata: { eventType: POST_EVENT_TYPE, payload: postPayload(rest) },
      });
      gauge.took(startedAt);
      for (const p of rest) out.set(p.key, ts);
      return out;
    } catch (err) {
      await noteRateLimit(redis, prefix, thread.channel, err);
      throw err;
    }
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

  /**
   * One group of pending posts into the thread (several messages share a post only while the
   * channel is busy; files and buttons are always alone): the text, then the files. Returns where
   * each post's text is.
   */
  async function deliverGroup(
    group: AgentPost[],
    thread: ThreadRef,
    lastPostedChannel: Channel | undefined,
    triedBefore: boolean,
  ): Promise<Map<string, ThreadRef>> {
    const refs = new Map<string, ThreadRef>();
    for (const p of group) if (p.slack) refs.set(p.key, p.slack);
    const unposted = group.filter((p) => !p.slack);
    if (unposted.length > 0) {
      const ts = await postTexts(unposted, thread, lastPostedChannel, triedBefore);
      for (const [key, at] of ts) refs.set(key, { channel: thread.channel, ts: at });
    }
    for (const p of group) if (p.files?.length) await uploadFiles(p, thread);
    return refs;
  }

  /**
   * A group tried again in place after a transient failure (5xx, timeout, lost answer): the retry
   * looks its posts up before posting again. A post with files (always alone) is re-read for its
   * files' marks.
   */
  async function deliverWithRetries(
    group: AgentPost[],
    thread: ThreadRef,
    lastPostedChannel: Channel | undefined,
    triedBefore: boolean,
  ): Promise<Map<string, ThreadRef>> {
    return retryTransient(async (attempt) => {
      let current = group;
      if (attempt > 1 && group.length === 1 && group[0]!.files?.length) {
        const reread = await AgentPost.findById(group[0]!._id).lean<AgentPost>();
        current = reread && reread.state !== 'posted' ? [reread] : [];
      }
      if (current.length === 0) return new Map<string, ThreadRef>();
      await respectChannelLimit(redis, prefix, thread.channel);
      return deliverGroup(current, thread, lastPostedChannel, triedBefore || attempt > 1);
    });
  }

  /**
   * Posts the customer's pending items in order. A transient Slack failure is tried again in place a
   * few times; a flush that still fails after posting something hands the rest to a fresh job (its
   * attempts and backoff start over) instead of backing off as if nothing had moved.
   * `triedBefore`: the job failed or stalled before, so its posts may have been made. `carried`: the
   * post whose append queued this flush (outbox.ts).
   */
  async function flush(
    customerId: Types.ObjectId,
    triedBefore = false,
    carried?: CarriedPost,
  ): Promise<void> {
    const lockKey = toAgentLockKey(prefix, String(customerId));
    await withLock(redis, lockKey, FLUSH_LOCK_TTL_MS, () => flushLocked(customerId, triedBefore, carried), {
      renew: true,
    });
  }

  async function flushLocked(customerId: Types.ObjectId, triedBefore: boolean, carried?: CarriedPost) {
    const pending = await pendingPosts(customerId, triedBefore, carried);
    if (pending.length === 0) return;
    // A new thread's first message shows no channel switch either way: its channel is recorded with it.
    const firstChannel = pending.find((p) => p.kind === 'message')?.channel;
    const thread = await retryTransient(() => ensureThread(customerId, firstChannel));
    // The channel of the last message posted in this thread ("now writing on WhatsApp" on a switch),
    // read once per flush and kept here; written only when it changes.
    let lastPostedChannel = thread.lastPostedChannel;
    const marks: { id: Types.ObjectId; slack: ThreadRef; key: string }[] = [];
    // Several waiting messages share a post only while the channel is busy (coalesce.ts).
    const coalesce = pending.length > 1 && (await channelBusy(redis, prefix, thread.channel));
    try {
      for (const group of groupPosts(pending, render, lastPostedChannel, coalesce)) {
        const refs = await deliverWithRetries(group, thread, lastPostedChannel, triedBefore);
        for (const post of group) {
          const ref = refs.get(post.key);
          if (ref) marks.push({ id: post._id, slack: ref, key: post.key });
        }
        const channel = group.reduce((shown, p) => channelAfter(p, shown), lastPostedChannel);
        if (channel && channel !== lastPostedChannel) {
          await CurrentThread.updateOne({ _id: customerId }, { $set: { lastPostedChannel: channel } });
          await hotThreads.put({ ...thread, lastPostedChannel: channel }, { recreated: false });
          lastPostedChannel = channel;
        }
      }
    } catch (err) {
      await posted(customerId, marks);
      if (marks.length === 0 || err instanceof DeferError) throw err;
      log.warn(
        {
          customerId: String(customerId),
          posted: marks.length,
          code: err instanceof SlackApiError ? err.code : undefined,
        },
        'slack flush stopped after progress; the rest continues in a new job',
      );
      await o.outbox.flushAgent(customerId, FOLLOW_UP_DELAY_MS);
      return;
    }
    await posted(customerId, marks);
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
    flushNow: inlineFlush(o, flushLocked, gauge),
    ensureThread,
    async handle(job: Job<ToAgentJob>): Promise<void> {
      if ('react' in job.data) return react(job.data.react);
      const triedBefore = job.attemptsMade > 0 || job.stalledCounter > 0 || job.data.tried === true;
      await flush(toObjectId(job.data.customerId), triedBefore, job.data.post);
    },
  };
}

export type SlackDelivery = ReturnType<typeof createSlackDelivery>;

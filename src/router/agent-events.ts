/**
 * The `agent-events` worker: what agents do in Slack becomes work for the customer side.
 *
 * The rule for what reaches a customer (chosen to fail safe — peers that send everything unless a
 * note prefix is typed leak internal notes when someone forgets it):
 * - Only a human's reply inside a customer thread can be sent; top-level channel messages and bot
 *   posts never are.
 * - A reply that starts with `note:`, `//` or `(note)`, or that mentions anyone (`@user`, `@here`,
 *   a channel or a group), is an internal note. Mentions mean the text is talking to colleagues, and
 *   a customer could not read them anyway.
 * - Everything else is sent after REPLY_UNDO_SECONDS (default 10 s). Until then the reply shows ⏳
 *   and deleting it in Slack cancels it (editing it changes what is sent). After: 📤 sent, ✅
 *   delivered, 👀 read, ❌ failed with the reason in the thread. Notes get 📝. Every send is visible.
 * - `sms:`, `whatsapp:` or `messenger:` at the start picks the channel for that reply.
 * - A reply that would be sent is sent only if its author may act on the customer (authorize.ts:
 *   an active agent who owns or covers them, or a lead/admin). Anyone else's reply is never sent:
 *   it gets ⛔ and its author an ephemeral note saying why (nothing about the customer).
 */
import type { Job } from 'bullmq';
import type { Types } from 'mongoose';
import type { Channel } from '../canonical';
import { mentionsSomeone, type AgentEvent } from '../channels/slack/normalize';
import type { IdentityModels } from '../identity/models';
import { isDuplicateKeyError } from '../storage/duplicate-key';
import type { Logger } from '../logger';
import type { RedisClient } from '../queue/connection';
import { withConversationLock } from '../queue/lock';
import { conversationChanged } from './hot-state';
import { DeferError } from '../errors';
import { SlackApiError } from '../channels/slack/client';
import type { Authorizer } from './authorize';
import type { Agent, CurrentThread, RouterModels, SlackThread } from './models';
import type { Outbox } from './outbox';

export type AgentEventJob = Exclude<AgentEvent, { type: 'url_verification' } | { type: 'ignored' }>;

const NOTE_PREFIX = /^\s*(note:|\/\/|\(note\))/i;
const CHANNEL_PREFIX = /^\s*(sms|whatsapp|messenger):\s*/i;
/**
 * How long a reply in an unknown thread is retried: the card is visible in Slack a moment before
 * its thread is recorded, and an agent who answers at once must not be ignored.
 */
const UNKNOWN_THREAD_WAIT_MS = 15_000;

export type ReplyKind = { kind: 'note' } | { kind: 'send'; text: string; via?: Channel };

/** Classifies an agent's thread reply (pure; see the module comment for the rule). */
export function classifyReply(rawText: string, text: string): ReplyKind {
  if (NOTE_PREFIX.test(text) || mentionsSomeone(rawText)) return { kind: 'note' };
  const prefix = CHANNEL_PREFIX.exec(text);
  if (prefix)
    return { kind: 'send', text: text.slice(prefix[0].length), via: prefix[1]!.toLowerCase() as Channel };
  return { kind: 'send', text };
}

export interface AgentEventsOptions {
  models: RouterModels & IdentityModels;
  outbox: Outbox;
  replyUndoMs: number;
  react(ref: { channel: string; ts: string }, name: string, remove?: string[]): Promise<void>;
  /** Who may send (src/router/authorize.ts). */
  authorizer: Authorizer;
  /** An ephemeral message to one person in a thread (Slack `chat.postEphemeral`). */
  tellUser?(ref: { channel: string; threadTs: string; user: string }, text: string): Promise<void>;
  redis: RedisClient;
  prefix: string;
  log: Logger;
  /**
   * Whether the Slack thread at `ref` is the card of `customerId` (slack-delivery `createCardCheck`).
   * A reply in a thread whose card is missing or names another customer is never routed.
   * @defaultValue every recorded thread is trusted
   */
  cardNames?(ref: { channel: string; ts: string }, customerId: string): Promise<boolean>;
  /** A thread with no record: records it if its parent is one of our cards, returning the customer. */
  adoptThread?: (channel: string, threadTs: string) => Promise<Types.ObjectId | undefined>;
  /** A reply in a thread with no customer: tells the agent when it is in an inbox channel. */
  onUnknownThread?: (where: { channel: string; threadTs: string; user: string }) => Promise<void>;
}

/**
 * A covering teammate answers under their own name ("— Sam" below the text): the customer knows
 * who wrote, and ownership stays where it was. Applied to the reply and to every edit of it.
 */
function signed(text: string, author: Agent | null | undefined, ownerAgentId: string | undefined): string {
  return author && ownerAgentId && String(author._id) !== ownerAgentId ? `${text}\n— ${author.name}` : text;
}

type ThreadReply = Extract<AgentEventJob, { type: 'thread_reply' }>;
type MessageDeleted = Extract<AgentEventJob, { type: 'message_deleted' }>;
type MessageChanged = Extract<AgentEventJob, { type: 'message_changed' }>;
/** A reply's thread, as `threadOf` found it. */
interface Thread {
  moved?: boolean;
  ownerAgentId?: string;
  current?: CurrentThread | null;
}

/** The reply's files that have a download link, as media for the send. */
function mediaOf(files: ThreadReply['files']) {
  return files.flatMap((f) => {
    const url = f.urlPrivateDownload ?? f.urlPrivate;
    if (!url) return [];
    return [
      {
        url,
        slackFileId: f.id,
        ...(f.name ? { filename: f.name } : {}),
        ...(f.mimetype ? { contentType: f.mimetype } : {}),
        ...(f.size !== undefined ? { bytes: f.size } : {}),
      },
    ];
  });
}

export function createAgentEvents(o: AgentEventsOptions) {
  const { models, outbox, log, redis, prefix } = o;
  const { SlackThread, CustomerSend, Conversation, Customer } = models;

  async function threadCustomer(channel: string, threadTs: string | undefined) {
    return (await threadOf(channel, threadTs))?.customerId;
  }

  /**
   * The customer a thread belongs to, and whether the thread was left behind by a handoff (the
   * customer's conversation moved to another owner's thread: replies there are not sent).
   */
  async function threadOf(channel: string, threadTs: string | undefined) {
    if (!threadTs) return undefined;
    const thread = await SlackThread.findOne({ channel, ts: threadTs }).lean<SlackThread>();
    if (!thread) return undefined;
    if (o.cardNames && !(await o.cardNames({ channel, ts: threadTs }, String(thread.customerId)))) {
      log.warn(
        { channel, customerId: String(thread.customerId) },
        'thread record does not match its Slack card',
      );
      return null;
    }
    const customer = await Customer.findById(thread.customerId).lean();
    // Follow a merge: replies in the merged-away customer's old thread reach the survivor.
    if (customer?.mergedInto) return { customerId: customer.mergedInto };
    const current = await models.CurrentThread.findById(thread.customerId).lean<CurrentThread>();
    const owner = customer?.ownerAgentId;
    // Left behind: opened for an earlier owner, or the owner has a newer thread (A → B → A).
    const moved =
      (owner !== undefined && thread.agentId !== owner) ||
      (current !== null && current.ts !== thread.ts && current.agentId === owner);
    return { customerId: thread.customerId, moved, ownerAgentId: customer?.ownerAgentId, current };
  }

  /** Where a reply typed in a thread left behind by a handoff should go. */
  async function whereToAnswer(where: { ownerAgentId?: string; current?: CurrentThread | null }) {
    const owner = where.ownerAgentId ? await models.Agent.findById(where.ownerAgentId).lean() : null;
    const place =
      where.current && where.current.agentId === where.ownerAgentId
        ? `their thread in <#${where.current.channel}>`
        : owner
          ? `${owner.name}'s inbox (<#${owner.inboxChannelId}>)`
          : 'the escalation channel';
    return `This customer was handed off${owner ? ` to ${owner.name}` : ''} and this thread is no longer theirs: answer in ${place}.`;
  }

  /** A reply that must not be sent: marked ⛔ for everyone, and its author is told why. */
  async function refuseReply(event: ThreadReply, why: string) {
    await o.react({ channel: event.channel, ts: event.ts }, 'no_entry_sign');
    const text = `:no_entry: Your reply was not sent to the customer. ${why} It stays in the thread as a message to your teammates.`;
    await tellAuthor(event, text);
  }

  /** A private note to the reply's author that it went nowhere. */
  async function tellAuthor(event: ThreadReply, text: string): Promise<void> {
    await o
      .tellUser?.({ channel: event.channel, threadTs: event.threadTs, user: event.user }, text)
      .catch((err: unknown) => {
        // A transient failure (5xx, timeout, lost answer) is retried with the event: the author must
        // learn the reply went nowhere. Only a note Slack will never accept is given up, logged.
        if (!(err instanceof SlackApiError) || err.retryable) throw err;
        log.warn({ channel: event.channel, slackError: err.slackError }, 'refusal note not posted');
      });
  }

  /**
   * The customer a thread reply is for: the thread's, or (for a card whose record is missing) the
   * card's. Undefined when the reply must not reach anyone; a DeferError while a just-posted card's
   * thread may still be being recorded.
   */
  async function replyTarget(event: ThreadReply, queuedAt: number) {
    const thread = await threadOf(event.channel, event.threadTs);
    if (thread === null) {
      // Never to a customer this thread may not belong to; its author is told, privately.
      await o.react({ channel: event.channel, ts: event.ts }, 'warning');
      await tellAuthor(
        event,
        ":warning: Your reply was not sent: this thread's customer card is missing or names someone else, so Rapport cannot tell whose thread it is. Answer in the customer's current thread.",
      );
      return undefined;
    }
    const customerId =
      thread?.customerId ??
      (event.threadTs ? await o.adoptThread?.(event.channel, event.threadTs) : undefined);
    if (customerId) return { customerId, thread };
    if (event.threadTs && Date.now() - queuedAt < UNKNOWN_THREAD_WAIT_MS) {
      throw new DeferError(500, 'thread not recorded yet (a card just posted?)');
    }
    if (event.threadTs)
      await o.onUnknownThread?.({ channel: event.channel, threadTs: event.threadTs, user: event.user });
    log.info({ channel: event.channel }, 'reply outside a customer thread: not sent');
    return undefined;
  }

  /** The reply's files that can be sent; the agent is told when one cannot. */
  async function replyFiles(event: ThreadReply, customerId: Types.ObjectId) {
    const media = mediaOf(event.files);
    if (media.length < event.files.length) {
      await outbox.postToAgent(customerId, {
        key: `files-note:${event.channel}:${event.ts}`,
        kind: 'note',
        username: 'Rapport',
        text: ':paperclip: A file in your reply has no download link (a Slack Connect or external file), so it was not sent; upload it to Slack directly or paste a link.',
      });
    }
    return media;
  }

  /** Whether the reply may go out: not deleted already, not a note, and its author may send it. */
  async function mayReply(event: ThreadReply, target: { customerId: Types.ObjectId; thread?: Thread }) {
    const { customerId, thread } = target;
    const earlier = await CustomerSend.findOne(
      { key: `slack:${event.channel}:${event.ts}` },
      { state: 1 },
    ).lean();
    if (earlier?.state === 'cancelled') {
      // Deleted before this event was handled (Slack does not promise order): never sent.
      log.info({ customerId: String(customerId) }, 'agent reply was deleted before it was scheduled');
      return undefined;
    }
    const reply = classifyReply(event.rawText, event.text);
    if (reply.kind === 'note') {
      await o.react({ channel: event.channel, ts: event.ts }, 'memo');
      return undefined;
    }
    // A thread left behind by a handoff: the reply is not sent, its author is told where to answer.
    if (thread?.moved) {
      await refuseReply(event, await whereToAnswer(thread));
      log.info({ customerId: String(customerId) }, 'reply in a handed-off thread not sent');
      return undefined;
    }
    const customer = await Customer.findById(customerId, { ownerAgentId: 1 }).lean();
    const may = await o.authorizer.authorizeAgentAction({
      slackUserId: event.user,
      action: 'reply',
      customer: customer ?? null,
    });
    if (may.allowed) return { reply, may };
    await refuseReply(event, may.why);
    return undefined;
  }

  async function onReply(event: ThreadReply, queuedAt: number): Promise<void> {
    const target = await replyTarget(event, queuedAt);
    if (!target) return;
    const allowed = await mayReply(event, target);
    if (!allowed) return;
    const { reply, may } = allowed;
    const { customerId } = target;
    // Files go with the reply: src/media checks, downloads and signs them when it is sent.
    const media = await replyFiles(event, customerId);
    if (!reply.text.trim() && media.length === 0) return;
    // A teammate covering for the owner (or a lead) answers under their own name: the customer
    // knows who wrote, and ownership stays where it was.
    const attributed = may.basis === 'owner' ? reply.text : `${reply.text}\n— ${may.agent.name}`;
    const ref = { channel: event.channel, ts: event.ts };
    await outbox.sendToCustomer(customerId, {
      key: `slack:${event.channel}:${event.ts}`,
      origin: 'agent',
      ...(attributed.trim() ? { text: attributed } : {}),
      ...(media.length > 0 ? { media } : {}),
      via: reply.via,
      slack: ref,
      agentSlackUserId: event.user,
      sendAfter: new Date(Date.now() + o.replyUndoMs),
    });
    await withConversationLock(redis, prefix, customerId, async () => {
      await Conversation.updateOne(
        { _id: customerId },
        { $set: { lastAgentReplyAt: new Date() }, $unset: { awaitingSince: 1 } },
      );
      await conversationChanged(redis, prefix, customerId);
    });
    if (o.replyUndoMs > 0) await o.react(ref, 'hourglass_flowing_sand');
    log.info({ customerId: String(customerId), via: reply.via }, 'agent reply scheduled');
  }

  async function onDeleted(event: MessageDeleted): Promise<void> {
    const key = `slack:${event.channel}:${event.ts}`;
    const cancelled = await CustomerSend.updateOne(
      { key, state: 'scheduled' },
      { $set: { state: 'cancelled' } },
    );
    if (cancelled.modifiedCount === 1) {
      log.info({ key }, 'agent reply cancelled by deleting it');
      return;
    }
    const customerId = await threadCustomer(event.channel, event.threadTs);
    if (!customerId) return;
    // The deletion may overtake the reply's own event: leave a cancelled send under its key, so
    // the reply, when it arrives, finds it and is never scheduled (a no-op if the send exists).
    await CustomerSend.updateOne(
      { key },
      {
        $setOnInsert: {
          key,
          customerId,
          seq: 0,
          origin: 'agent',
          media: [],
          state: 'cancelled',
          sendAfter: new Date(),
          attempts: 0,
          slack: { channel: event.channel, ts: event.ts },
        },
      },
      { upsert: true },
    ).catch((err: unknown) => {
      if (!isDuplicateKeyError(err)) throw err; // the reply's insert won the race
    });
    // …and the reply may have been scheduled between the first check and the upsert.
    await CustomerSend.updateOne({ key, state: 'scheduled' }, { $set: { state: 'cancelled' } });
    const send = await CustomerSend.findOne({ key }, { state: 1 }).lean();
    if (send?.state === 'cancelled') {
      log.info({ key }, 'agent reply cancelled by deleting it');
    } else if (send?.state === 'sending' || send?.state === 'sent') {
      await outbox.postToAgent(customerId, {
        key: `deleted-note:${key}`,
        kind: 'note',
        username: 'Rapport',
        text: ':warning: You deleted a reply that had already been sent: the customer still has it (the undo window is over).',
      });
    }
  }

  async function onChanged(event: MessageChanged): Promise<void> {
    const key = `slack:${event.channel}:${event.ts}`;
    const send = await CustomerSend.findOne({ key }).lean();
    if (!send) return;
    const reply = classifyReply(event.rawText, event.text);
    if (reply.kind === 'note') {
      // Turned into a note before it went out: do not send it.
      await CustomerSend.updateOne({ key, state: 'scheduled' }, { $set: { state: 'cancelled' } });
      return;
    }
    // The edit keeps the covering teammate's signature, as the reply had it.
    const [customer, author] = await Promise.all([
      Customer.findById(send.customerId, { ownerAgentId: 1 }).lean(),
      send.agentSlackUserId ? models.Agent.findOne({ slackUserId: send.agentSlackUserId }).lean() : null,
    ]);
    await CustomerSend.updateOne(
      { key, state: 'scheduled' },
      {
        $set: {
          text: signed(reply.text, author, customer?.ownerAgentId),
          ...(reply.via ? { via: reply.via } : {}),
        },
      },
    );
  }

  return {
    async handle(job: Job<AgentEventJob>): Promise<void> {
      const event = job.data;
      if (event.type === 'thread_reply') return onReply(event, job.timestamp);
      if (event.type === 'message_deleted') return onDeleted(event);
      if (event.type === 'message_changed') return onChanged(event);
    },
  };
}

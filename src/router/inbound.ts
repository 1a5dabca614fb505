/**
 * What happens to one stored customer message: the router's half of the `inbound` worker.
 *
 * In order, each step idempotent (a retried job repeats them all and changes nothing twice):
 * 1. opt-out keywords (STOP / START) on SMS and WhatsApp are recorded and shown to the agent;
 * 2. claims (claims-bridge.ts): a 6-digit code may verify a pending claim (merge: the message then
 *    belongs to the survivor), an explicit claim starts one; what the claim step appends (answers,
 *    notes) follows the message's own post, in step 5;
 * 3. the owner is ensured (assigned on first contact, sticky after);
 * 4. the acknowledgement: the first message of a conversation, or the first after a quiet period,
 *    gets an automatic reply naming the owner (away owner: when they are back and who covers;
 *    outside business hours: when we open);
 * 5. the message is appended to the customer's Slack outbox (posted in order by slack-delivery.ts);
 * 6. the SLA clock starts if the customer was not already waiting;
 * 7. the customer's Slack outbox is flushed by this job when its lock is free (`flushNow`), and a
 *    flush job is queued only when it is not, Slack asks to wait or the flush failed: one job per
 *    message, not two. What the job appended is always flushed by someone: a job killed before step
 *    7 is run again (BullMQ's stalled jobs; each step is idempotent), a step that fails queues the
 *    flush of what was appended before the job retries.
 */
import type { Queue } from 'bullmq';
import type { Types } from 'mongoose';
import type { InboundMessage } from '../canonical';
import type { InboundFile, InboundMedia } from '../media/inbound';
import type { RouterConfig } from '../config';
import type { Customer, Identity, IdentityModels } from '../identity/models';
import type { Logger } from '../logger';
import type { RedisClient } from '../queue/connection';
import { conversationLockKey, withLockReading, type LockedRead } from '../queue/lock';
import { addBusinessTime, describeOpening, isOpen } from './business-hours';
import type { Agent, Conversation, RouterModels } from './models';
import type { CarriedPost, CarriedRoute, NewAgentPost, Outbox } from './outbox';
import type { Ownership } from './ownership';
import { describeParts, referencedIds, type TargetLookup } from './inbound-text';
import { channelLabel, fill } from './texts';
import { applyClaimEffects, type ClaimMerge, type ClaimsPort } from './claim-plan';
import type { TimerJob } from './sla';
import {
  createHotConversations,
  fileFirstContact,
  type ConversationTokens,
  type HotConversation,
} from './hot-state';
import { epochKey, TOUCH_INTERVAL_MS } from '../identity/cache';
import type { OptOuts } from './opt-outs';

/** SMS: the carriers' (and Twilio's) opt-out and opt-in keywords. */
export const STOP_WORDS = ['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'OPTOUT'];
export const START_WORDS = ['START', 'UNSTOP', 'YES', 'OPTIN'];
/**
 * WhatsApp and Messenger: "cancel", "end" or "yes" are everyday answers there (cancel my order), so
 * only the configured unambiguous words opt out (CHAT_OPT_OUT_WORDS) and only these opt back in.
 */
export const CHAT_START_WORDS = ['START', 'UNSTOP'];

export interface InboundRouterOptions {
  models: RouterModels & IdentityModels;
  outbox: Outbox;
  ownership: Ownership;
  timers: Queue<TimerJob>;
  config: RouterConfig;
  claims?: ClaimsPort;
  redis: RedisClient;
  prefix: string;
  log: Logger;
  /** Stores the message's files before it is posted (src/media); absent: files are linked. */
  media?: Pick<InboundMedia, 'keep'>;
  /** Tell both threads of a merge (router/index.ts); `survivorNote` replaces the generic one. */
  onMerged?: (outcome: ClaimMerge, survivorNote?: string) => Promise<void>;
  /**
   * Flushes the customer's Slack outbox in this job, or queues its flush (slack-delivery.ts
   * `flushNow`). Absent (no Slack): the flush is queued, as for every other append.
   */
  flushNow?: (
    customerId: Types.ObjectId,
    carried: CarriedPost | undefined,
    triedBefore: boolean,
    opts: { files?: boolean; stepsMs?: number },
  ) => Promise<unknown>;
  /** Where STOP and START are recorded (the database, then Redis: opt-outs.ts). */
  optOuts: Pick<OptOuts, 'record'>;
}

/** What one route appended to Slack outboxes: customer id → the customer, what each append carried, any files. */
type Appended = Map<
  string,
  { customerId: Types.ObjectId; carried: (CarriedPost | undefined)[]; files: boolean }
>;

function keyword(text: string | undefined): string | undefined {
  return text
    ?.trim()
    .toUpperCase()
    .replace(/[.!]+$/, '');
}

export function createInboundRouter(o: InboundRouterOptions) {
  const { models, outbox, ownership, config, log } = o;
  const { Conversation } = models;
  // Under the conversation lock only: this router is the one writer that files its own result.
  const hotConversations = createHotConversations(
    o.redis,
    o.prefix,
    async (id) => (await Conversation.findById(id).lean<Conversation>()) ?? undefined,
  );

  async function recordOptOut(identityKey: string, message: InboundMessage): Promise<string | undefined> {
    const word = keyword(message.text);
    if (!word) return undefined;
    const sms = message.channel === 'sms';
    const stop = sms ? STOP_WORDS : config.chatOptOutWords;
    const start = sms ? START_WORDS : CHAT_START_WORDS;
    const optedOut = stop.includes(word) ? true : start.includes(word) ? false : undefined;
    if (optedOut === undefined) return undefined;
    await o.optOuts.record(identityKey, message.channel, optedOut);
    return optedOut
      ? `:no_bell: The customer opted out of ${channelLabel(message.channel)} (${word}). Nothing will be sent there until they write START.`
      : `:bell: The customer opted back in on ${channelLabel(message.channel)} (${word}).`;
  }

  function ackText(agent: Agent | undefined, backup: Agent | undefined, at: Date): string {
    const name = agent?.name ?? 'Our team';
    if (!isOpen(config.businessHours, at)) {
      return fill(config.texts.ackClosed, {
        agent: name,
        opening: describeOpening(config.businessHours, at, at),
      });
    }
    if (agent && agent.status !== 'available') {
      const back = agent.awayUntil
        ? describeOpening({ ...config.businessHours, always: true }, agent.awayUntil, at)
        : 'soon';
      return fill(config.texts.ackAway, { agent: name, back, cover: backup?.name ?? 'a teammate' });
    }
    return fill(config.texts.ack, { agent: name });
  }

  /** The stored text of the earlier messages this one reacts to, edits or deletes, by provider id. */
  async function earlierTexts(message: InboundMessage): Promise<TargetLookup> {
    const ids = referencedIds(message);
    if (ids.length === 0) return () => undefined;
    const found = await models.Message.find(
      { key: { $in: ids.map((id) => `${message.provider}:${id}`) } },
      { key: 1, text: 1 },
    ).lean<{ key: string; text?: string }[]>();
    const texts = new Map(
      found.map((m) => [m.key.slice(message.provider.length + 1), m.text ?? '[attachment]']),
    );
    return (id) => texts.get(id);
  }

  async function scheduleSla(customerId: Types.ObjectId, since: Date): Promise<void> {
    const hours = config.businessHours;
    const now = Date.now();
    const remindAt = addBusinessTime(hours, since, config.slaFirstResponseMs).getTime();
    const escalateAt = addBusinessTime(hours, since, config.slaEscalateMs).getTime();
    const base = `${String(customerId)}~${since.getTime()}`;
    const data = { customerId: String(customerId), awaitingSince: since.toISOString() };
    await o.timers.add(
      'sla',
      { ...data, kind: 'remind' },
      { jobId: `sla~remind~${base}`, delay: Math.max(0, remindAt - now) },
    );
    await o.timers.add(
      'sla',
      { ...data, kind: 'escalate' },
      { jobId: `sla~escalate~${base}`, delay: Math.max(0, escalateAt - now) },
    );
  }

  /**
   * What a customer message changes of the conversation, written to MongoDB only when it changes
   * something Rapport decides with: open, owner, awaitingSince, the ack (lastAckAt), or a
   * lastCustomerMessageAt more than TOUCH_INTERVAL_MS newer than the stored one. So the stored
   * lastCustomerMessageAt may lag the last message by up to a minute; the hot copy holds it exactly.
   * Only a read from the database (the copy stopped counting: another writer, a merge, Redis lost)
   * sees the lag, and the quiet period is then measured from an earlier time: the acknowledgement
   * can come at most a minute early (a message 11h59m after the last one, with the 12h default),
   * never late or missed — the safe direction for a customer coming back after a silence. Retries
   * stay once-only either way: the ack is sent under the message's own key.
   */
  async function recordCustomerMessage(
    customerId: Types.ObjectId,
    read: { hot?: HotConversation; tokens: ConversationTokens },
    agent: Agent | undefined,
    sentAt: Date,
    quiet: boolean,
  ): Promise<{ hot: HotConversation; tokens: ConversationTokens }> {
    const { hot, tokens } = read;
    const before = hot?.conversation;
    const last = before?.lastCustomerMessageAt?.getTime();
    const now = new Date();
    const changes = {
      open: true,
      ownerAgentId: agent ? String(agent._id) : before?.ownerAgentId,
      awaitingSince: before?.awaitingSince ?? sentAt,
      lastCustomerMessageAt: last !== undefined && last > sentAt.getTime() ? new Date(last) : sentAt,
      ...(quiet ? { lastAckAt: now } : {}),
    };
    const stored = hot?.stored?.getTime();
    const touchDue =
      stored === undefined || changes.lastCustomerMessageAt.getTime() - stored > TOUCH_INTERVAL_MS;
    const unchanged =
      before?.open === true &&
      before.ownerAgentId === changes.ownerAgentId &&
      before.awaitingSince !== undefined &&
      !quiet &&
      !touchDue;
    const conversation = {
      ...(before ?? { _id: customerId, createdAt: now }),
      ...changes,
      updatedAt: now,
    } as Conversation;
    if (unchanged) return { hot: { conversation, stored: hot?.stored }, tokens };
    const writing = await hotConversations.writing(String(customerId), tokens);
    const { ownerAgentId, ...set } = changes;
    await Conversation.updateOne(
      { _id: customerId },
      { $set: { ...set, ...(agent ? { ownerAgentId } : {}) } },
      { upsert: true },
    );
    // A conversation (re)opening counts for its owner in the pick's shared counts at once.
    if (before?.open !== true && ownerAgentId) await ownership.reopened(customerId, ownerAgentId);
    return { hot: { conversation, stored: changes.lastCustomerMessageAt }, tokens: writing };
  }

  /**
   * The acknowledgement. A first contact's carries its route (the identity, channel and provider the
   * customer just wrote from: what the send worker would read back), so its send reads no customer,
   * outbox or identity (delivery.ts).
   */
  async function acknowledge(
    customerId: Types.ObjectId,
    message: InboundMessage,
    ack: { identityKey: string; first: boolean; sentAt: Date; agent?: Agent },
  ): Promise<void> {
    const { agent } = ack;
    const backup = agent?.backupAgentId ? await ownership.agentById(agent.backupAgentId) : undefined;
    const route: CarriedRoute = {
      identityKey: ack.identityKey,
      channel: message.channel,
      provider: message.provider,
      lastInboundAt: ack.sentAt.getTime(),
    };
    await outbox.sendToCustomer(
      customerId,
      { key: `ack:${message.key}`, origin: 'auto', text: ackText(agent, backup, new Date()) },
      ack.first ? { route } : undefined,
    );
  }

  return {
    /**
     * Routes one stored inbound message of `customer` (the live one) from `identityKey`. `created`:
     * this message created the customer (a first contact), so no conversation, thread or send of
     * theirs can exist yet and none is read.
     */
    async route(
      message: InboundMessage,
      routed: Customer,
      identityKey: string,
      opts: { created?: boolean; identity?: Identity; retried?: boolean } = {},
    ): Promise<void> {
      let customer = routed;
      const at = new Date(message.sentAt);
      const sentAt = Number.isNaN(at.getTime()) ? new Date() : at;
      // Before anything is appended (so before any flush of this customer can run): their Slack flush
      // then knows from Redis that there is no thread yet, and what their first card shows.
      if (opts.created) await fileFirstContact(o.redis, o.prefix, String(customer._id), opts.identity);

      // What this job appends to Slack outboxes is flushed at its end (flushAppended), not by a job each.
      const appended: Appended = new Map();
      const append = (customerId: Types.ObjectId, post: NewAgentPost) =>
        appendFor(outbox, appended, customerId, post);
      const steps = async () => {
        const optNote = await recordOptOut(identityKey, message);
        if (optNote)
          await append(customer._id, {
            key: `optout:${message.key}`,
            kind: 'note',
            text: optNote,
            username: 'Rapport',
          });

        // Claims first (a code may merge this customer into another); what they append follows the
        // message itself, which is always posted (a six-digit message may be an order number).
        const plan = o.claims ? await o.claims.handle({ customer, identityKey, message }) : undefined;
        if (plan?.customer) customer = plan.customer;
        const customerId = customer._id;
        // Created by this very message and not merged into another by a claim: nothing of theirs to read.
        const first = opts.created === true && !plan?.customer;
        const name = customer.displayName ?? 'Customer';

        // Files first, outside the lock: a slow download holds up this customer only.
        const files = o.media ? await o.media.keep(message, customerId) : undefined;
        // The conversation's owner is written below, under the conversation lock.
        const { agent } = await ownership.ensureOwner(customerId, 'rapport', {
          customer,
          syncUnchanged: false,
          syncChanged: false,
        });
        // One writer at a time on the conversation document (see src/queue/lock.ts). The lock is taken
        // with a read of the conversation's copy, and released with the copy filed: two exchanges.
        const id = String(customerId);
        await withLockReading(
          o.redis,
          conversationLockKey(o.prefix, id),
          30_000,
          hotConversations.keys(id),
          () => o.redis.get(epochKey(o.prefix)),
          async (values, epoch): Promise<LockedRead<void>> => {
            const read = await hotConversations.read(id, values, epoch, { none: first });
            const before = read.hot?.conversation;
            // Acknowledge the first message of a conversation (and the first after a quiet period). A
            // retried job finds lastCustomerMessageAt already at this message (not quiet), and the ack
            // appended by the first run under its own key.
            const last = before?.lastCustomerMessageAt?.getTime();
            // A reaction or a deletion is shown, but asks nothing: no acknowledgement, no SLA clock.
            const signal = isSignalOnly(message);
            const quiet =
              !signal && (last === undefined || sentAt.getTime() - last > config.ackQuietPeriodMs);
            if (quiet) await acknowledge(customerId, message, { identityKey, first, sentAt, agent });

            if (agent && agent.status !== 'available' && agent.backupAgentId) {
              const backup = await ownership.agentById(agent.backupAgentId);
              if (backup) {
                await append(customerId, {
                  key: `cover:${String(customerId)}:${agent.awaySince?.getTime() ?? 0}`,
                  kind: 'note',
                  username: 'Rapport',
                  text: `<@${backup.slackUserId}> ${agent.name} is away${agent.awayUntil ? ` until ${agent.awayUntil.toISOString().slice(0, 16).replace('T', ' ')} UTC` : ''}; you're covering. Replies here are sent and attributed to you; ${agent.name} stays the owner.`,
                });
              }
            }

            await append(customerId, {
              key: message.key,
              kind: 'message',
              channel: message.channel,
              text: describeParts(message, await earlierTexts(message), files),
              username: `${name} (${channelLabel(message.channel)})`,
              ...(files?.some((f) => f.kind === 'stored') ? { files: postFiles(files) } : {}),
            });
            if (signal) return { result: undefined };

            const after = await recordCustomerMessage(customerId, read, agent, sentAt, quiet);
            if (!before?.awaitingSince) await scheduleSla(customerId, sentAt);
            // Last (written as the lock is released): a job retried after a crash before this point
            // finds what it found before (the copy, or, once it wrote, the database).
            return { result: undefined, file: hotConversations.filed(id, after.hot, after.tokens) };
          },
          { waitMs: 10_000 },
        );
        return { plan, customerId };
      };
      const { plan, customerId } = await flushAppended(o, appended, opts.retried === true, steps);
      if (plan) {
        await applyClaimEffects(outbox, plan.effects);
        if (plan.merged) await o.onMerged?.(plan.merged.outcome, plan.merged.survivorNote);
      }
      log.debug({ key: message.key, customerId: String(customerId) }, 'message routed');
    },
  };
}

/** Appends `post` without queueing its flush, and notes it for flushAppended. */
async function appendFor(outbox: Outbox, appended: Appended, customerId: Types.ObjectId, post: NewAgentPost) {
  const id = String(customerId);
  const entry = appended.get(id) ?? { customerId, carried: [], files: false };
  appended.set(id, entry);
  entry.carried.push(await outbox.appendForAgent(customerId, post));
  entry.files ||= (post.files?.length ?? 0) > 0;
}

/**
 * Runs `steps` (which append to `appended`), then flushes each outbox appended to in this job
 * (`flushNow`, told how long the steps took), or queues its flush. Steps that fail after appending still queue the flush of what
 * they appended, before the job is retried. A post rides in the flush when it is the only one.
 */
async function flushAppended<T>(
  o: Pick<InboundRouterOptions, 'outbox' | 'flushNow'>,
  appended: Appended,
  retried: boolean,
  steps: () => Promise<T>,
): Promise<T> {
  const carriedOf = (e: { carried: (CarriedPost | undefined)[] }) =>
    e.carried.length === 1 ? e.carried[0] : undefined;
  let done: T;
  const began = Date.now();
  try {
    done = await steps();
  } catch (err) {
    for (const e of appended.values()) await o.outbox.flushAgent(e.customerId, 0, carriedOf(e), retried);
    throw err;
  }
  for (const e of appended.values()) {
    const stepsMs = Date.now() - began;
    if (o.flushNow) await o.flushNow(e.customerId, carriedOf(e), retried, { files: e.files, stepsMs });
    else await o.outbox.flushAgent(e.customerId, 0, carriedOf(e));
  }
  return done;
}

/** The stored files, as the Slack outbox uploads them. */
function postFiles(files: InboundFile[]) {
  return files.flatMap((f) =>
    f.kind === 'stored'
      ? [{ mediaId: f.id, filename: f.filename, contentType: f.contentType, bytes: f.bytes }]
      : [],
  );
}

/** A message that only reacts to or deletes an earlier one: news for the agent, not a question. */
export function isSignalOnly(message: InboundMessage): boolean {
  return message.parts.length > 0 && message.parts.every((p) => p.kind === 'reaction' || p.kind === 'revoke');
}

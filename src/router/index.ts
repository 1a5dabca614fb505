/**
 * The router: everything between "a customer message is stored" and "the agent's reply reached the
 * customer". Built from plain factories; `createRouter` wires them and exposes one handler per queue.
 */
import type { RedisClient } from '../queue/connection';
import { Types } from 'mongoose';
import type { DeliveryState, DeliveryStatus } from '../canonical';
import type { SlackClient } from '../channels/slack/client';
import { escapeSlackText } from '../channels/slack/escape';
import type { RouterConfig } from '../config';
import type { IdentityModels } from '../identity/models';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { Job } from 'bullmq';
import type { Queues } from '../queue/queues';
import type { InboundMedia } from '../media/inbound';
import type { MediaStore } from '../media/store';
import type { OutboundMediaPreparer } from '../media/outbound';
import { createAgentEvents } from './agent-events';
import { createAuthorizer } from './authorize';
import { createCommands, type LinkPort } from './commands';
import { createDelivery, type Senders } from './delivery';
import { createSendAgain } from './send-again';
import { SlackApiError } from '../channels/slack/client';
import { createInboundRouter } from './inbound';
import type { ClaimMerge, ClaimOffers, ClaimsPort } from './claim-plan';
import type { CustomerSend, RouterModels } from './models';
import { createOutbox } from './outbox';
import { createOwnership } from './ownership';
import { createSla } from './sla';
import { CARD_EVENT_TYPE, createCardCheck, createSlackDelivery, type ToAgentJob } from './slack-delivery';
import { createCardUpdates, isCardJob, type CardJob } from './card-updates';
import { createNaming } from './naming';
import { customerChanged } from '../identity/cache';
import { explainDeliveryFailure } from './texts';

export interface RouterOptions {
  config: RouterConfig;
  models: RouterModels & IdentityModels;
  queues: Queues;
  redis: RedisClient;
  prefix: string;
  slack?: SlackClient;
  escalationChannel?: string;
  senders: Senders;
  claims?: ClaimsPort;
  link?: LinkPort;
  /** The "Send a code to …" button (claims-bridge.ts). */
  claimOffers?: ClaimOffers;
  isErasedOptOut?: (identityKey: string, channel: string) => Promise<boolean>;
  /** Customers' files (src/media): stored on the way in, uploaded into threads. */
  media?: { store: MediaStore; inbound: InboundMedia; outbound?: OutboundMediaPreparer };
  /** Messenger's User Profile API, for the card's name (Messenger webhooks carry none). */
  messengerProfiles?: { name(psid: string): Promise<string | undefined> };
  log: Logger;
  metrics: Metrics;
}

const STATUS_REACTION: Record<string, string | undefined> = {
  sent: undefined,
  delivered: 'white_check_mark',
  read: 'eyes',
  played: 'eyes',
  failed: 'x',
  undelivered: 'x',
};

/** The receipt reactions; showing one removes the others. */
const RECEIPT_REACTIONS = ['white_check_mark', 'eyes', 'x'];

export function createRouter(o: RouterOptions) {
  const { models, queues, redis, prefix, log, metrics } = o;
  const outbox = createOutbox(
    models,
    { toAgent: queues['to-agent'], toCustomer: queues['to-customer'] },
    redis,
    prefix,
  );
  const ownership = createOwnership(models, redis, prefix, log.child({ component: 'ownership' }));

  const cards = createCardUpdates({
    models,
    slack: o.slack,
    redis,
    prefix,
    queue: queues['to-agent'],
    ownership,
    messengerProfiles: o.messengerProfiles,
    log: log.child({ component: 'card' }),
  });
  const naming = createNaming({
    models,
    cards,
    log: log.child({ component: 'naming' }),
    customerChanged: (id) => customerChanged(redis, prefix, id),
  });

  const react = async (ref: { channel: string; ts: string }, name: string, remove: string[] = []) => {
    if (!o.slack) return;
    await queues['to-agent'].add(
      'react',
      { react: { ...ref, name, remove } },
      { jobId: `r~${ref.channel}~${ref.ts}~${name}` },
    );
  };

  /**
   * The other owner of a merge is told in their thread; the survivor's thread gets one note: the
   * history note, or `survivorNote` (a verified claim's own account of the merge).
   */
  const onMerged = async (
    m: { survivorId?: string; mergedId?: string; otherOwnerAgentId?: string },
    survivorNote?: string,
  ) => {
    if (!m.mergedId || !m.survivorId) return;
    const merged = new Types.ObjectId(m.mergedId);
    const survivor = await models.Customer.findById(m.survivorId).lean();
    const owner = await ownership.agentById(survivor?.ownerAgentId);
    await outbox.postToAgent(merged, {
      key: `merged-away:${m.mergedId}:${m.survivorId}`,
      kind: 'note',
      username: 'Rapport',
      text: `:twisted_rightwards_arrows: This customer turned out to be the same person as ${escapeSlackText(survivor?.displayName ?? 'another customer')} (\`${m.survivorId}\`), owned by ${owner?.name ?? 'nobody'}. Their conversation continues there; a reply here still reaches them if you may act on that customer (its owner, their cover or a lead).`,
    });
    await outbox.postToAgent(new Types.ObjectId(m.survivorId), {
      key: `merged-into:${m.mergedId}:${m.survivorId}`,
      kind: 'note',
      username: 'Rapport',
      text:
        survivorNote ??
        `:twisted_rightwards_arrows: Merged with customer \`${m.mergedId}\`: their identities and history are now part of this customer.`,
    });
    await cards.requestRefresh(m.survivorId);
    await cards.requestRefresh(m.mergedId);
  };

  /**
   * A merge was undone: the restored customer's owner gets them back and is told in that customer's
   * thread; the survivor's thread says what left. Both cards are refreshed.
   */
  const onUnmerged = async (m: { survivorId: string; restoredId: string; mergeId: string }) => {
    const [survivor, restored] = await Promise.all([
      models.Customer.findById(m.survivorId).lean(),
      models.Customer.findById(m.restoredId).lean(),
    ]);
    const owner = await ownership.agentById(restored?.ownerAgentId);
    await outbox.postToAgent(new Types.ObjectId(m.restoredId), {
      key: `unmerged:${m.mergeId}:${m.restoredId}`,
      kind: 'note',
      username: 'Rapport',
      text: `:leftwards_arrow_with_hook: ${owner ? `<@${owner.slackUserId}> ` : ''}The merge with customer \`${m.survivorId}\` was undone: this customer is separate again${owner ? ` and yours (${owner.name})` : ''}, with their own identities and history. Replies here reach them.`,
    });
    await outbox.postToAgent(new Types.ObjectId(m.survivorId), {
      key: `unmerged:${m.mergeId}:${m.survivorId}`,
      kind: 'note',
      username: 'Rapport',
      text: `:leftwards_arrow_with_hook: The merge with customer \`${m.restoredId}\` was undone: their identities and history left this customer${survivor?.ownerAgentId !== restored?.ownerAgentId && owner ? ` and are back with ${owner.name}` : ''}.`,
    });
    await cards.requestRefresh(m.survivorId);
    await cards.requestRefresh(m.restoredId);
  };

  /** States a watermark report must not overwrite (it would step the receipt back). */
  const AT_OR_AFTER: Partial<Record<DeliveryState, DeliveryState[]>> = {
    delivered: ['delivered', 'read', 'played', 'failed', 'undelivered'],
    read: ['read', 'played', 'failed', 'undelivered'],
  };

  /**
   * A Messenger delivery or read watermark: every reply to that customer sent before it is delivered
   * (or read). Each such reply's stored state moves forward and its Slack message shows it.
   */
  const onWatermark = async (status: DeliveryStatus): Promise<void> => {
    const skip = AT_OR_AFTER[status.state];
    const to = status.recipient;
    if (status.provider !== 'messenger' || !status.watermark || to?.kind !== 'psid' || !skip) return;
    const filter = {
      provider: 'messenger' as const,
      direction: 'out' as const,
      identityKey: `psid:${to.pageId}:${to.psid}`,
      sentAt: { $lte: new Date(status.watermark) },
      'status.state': { $nin: skip },
    };
    const covered = await models.Message.find(filter, { providerMessageId: 1 })
      .sort({ sentAt: -1 })
      .limit(20)
      .lean<{ providerMessageId: string }[]>();
    const entry = { key: status.key, state: status.state, at: new Date(status.at), providerErrors: [] };
    for (const { providerMessageId } of covered) {
      const moved = await models.Message.updateOne(
        { ...filter, providerMessageId },
        { $set: { status: entry } },
      );
      if (moved.modifiedCount === 0) continue;
      const send = await models.CustomerSend.findOne({
        provider: 'messenger',
        providerMessageId,
      }).lean<CustomerSend>();
      const reaction = STATUS_REACTION[status.state];
      if (send?.slack && reaction)
        await react(
          send.slack,
          reaction,
          RECEIPT_REACTIONS.filter((r) => r !== reaction),
        );
    }
  };

  /**
   * A reply under a card whose thread record is missing (its answer was lost and the retry has not
   * run yet, or the process died between posting and recording): the card's metadata names the
   * customer, so the thread is recorded here and the reply is not lost.
   */
  const adoptCardThread = async (channel: string, ts: string): Promise<Types.ObjectId | undefined> => {
    if (!o.slack) return undefined;
    const meta = await o.slack.metadataAt(channel, ts);
    const id = meta?.eventType === CARD_EVENT_TYPE ? meta.payload.customerId : undefined;
    if (typeof id !== 'string' || !Types.ObjectId.isValid(id)) return undefined;
    const customerId = new Types.ObjectId(id);
    const customer = await models.Customer.findById(customerId, { ownerAgentId: 1, mergedInto: 1 }).lean();
    if (!customer) return undefined;
    await models.SlackThread.updateOne(
      { channel, ts },
      { $setOnInsert: { channel, ts, customerId, agentId: customer.ownerAgentId ?? 'unassigned' } },
      { upsert: true },
    );
    log.info({ customerId: id }, 'card thread recorded from its metadata');
    return customer.mergedInto ?? customerId;
  };

  /** A reply in an inbox channel's thread that has no customer reaches nobody: say so, privately. */
  const tellUnknownThread = async (w: { channel: string; threadTs: string; user: string }) => {
    if (!o.slack) return;
    const inbox =
      w.channel === o.escalationChannel ||
      (await models.Agent.exists({ inboxChannelId: w.channel })) !== null;
    if (!inbox) return;
    try {
      await o.slack.postEphemeral(
        w.channel,
        w.user,
        ":warning: This thread is not linked to a customer, so your reply was NOT sent to anyone. Reply in the customer's card thread instead (`/rapport whois` there shows who it is).",
        w.threadTs,
      );
    } catch (err) {
      if (!(err instanceof SlackApiError) || err.retryable) throw err;
      log.warn({ channel: w.channel, code: err.code }, 'could not tell the agent their reply reached nobody');
    }
  };

  const postDelivery = o.slack
    ? createSlackDelivery({
        models,
        slack: o.slack,
        redis,
        prefix,
        ownership,
        outbox,
        escalationChannel: o.escalationChannel,
        media: o.media?.store,
        log: log.child({ component: 'to-agent' }),
        onRateLimited: () => metrics.slackRateLimited.inc(),
      })
    : undefined;
  // The to-agent queue carries posts and reactions (slack-delivery.ts) and card edits and thread
  // notices (card-updates.ts).
  const slackDelivery = postDelivery && {
    ...postDelivery,
    handle: (job: Job<ToAgentJob | CardJob>): Promise<void> =>
      isCardJob(job.data) ? cards.handle(job as Job<CardJob>) : postDelivery.handle(job as Job<ToAgentJob>),
  };

  const delivery = createDelivery({
    models,
    senders: o.senders,
    redis,
    prefix,
    outbox,
    log: log.child({ component: 'to-customer' }),
    messengerHumanAgent: o.config.messengerHumanAgent,
    templates: o.config.whatsappTemplate,
    isErasedOptOut: o.isErasedOptOut,
    media: o.media?.outbound,
    react,
    onSent: (channel, provider) => metrics.sends.inc({ channel, provider, outcome: 'sent' }),
    onFailed: (reason) => {
      metrics.sends.inc({ channel: '', provider: '', outcome: reason });
      metrics.providerErrors.inc({ provider: 'any', reason });
    },
  });

  const inbound = createInboundRouter({
    models,
    outbox,
    ownership,
    timers: queues.timers,
    config: o.config,
    claims: o.claims,
    redis,
    prefix,
    media: o.media?.inbound,
    log: log.child({ component: 'router' }),
    onMerged: (claim: ClaimMerge, survivorNote?: string) => onMerged(claim, survivorNote),
  });

  const authorizer = createAuthorizer({
    models,
    log: log.child({ component: 'authorize' }),
    onRefused: (action, reason) => metrics.slackRefusals.inc({ action, reason }),
  });

  const slack = o.slack;
  const agentEvents = createAgentEvents({
    models,
    outbox,
    replyUndoMs: o.config.replyUndoMs,
    react,
    authorizer,
    tellUser: slack
      ? (ref, text) => slack.postEphemeral(ref.channel, ref.user, text, ref.threadTs)
      : undefined,
    redis,
    prefix,
    log: log.child({ component: 'agent-events' }),
    ...(o.slack ? { cardNames: createCardCheck(o.slack, redis, prefix) } : {}),
    onUnknownThread: (where) => tellUnknownThread(where),
    adoptThread: (channel, ts) => adoptCardThread(channel, ts),
  });

  const commands = createCommands({
    models,
    ownership,
    outbox,
    config: o.config,
    link: o.link,
    claimOffers: o.claimOffers,
    authorizer,
    cards,
    naming,
    onMerged: (m) => onMerged(m),
    redis,
    prefix,
    log: log.child({ component: 'commands' }),
    sendAgain: createSendAgain({ models, outbox, log: log.child({ component: 'send-again' }) }),
  });

  const sla = createSla({
    models,
    outbox,
    ownership,
    slack: o.slack,
    redis,
    prefix,
    escalationChannel: o.escalationChannel,
    log: log.child({ component: 'sla' }),
    onBreach: (kind) => metrics.slaBreaches.inc({ kind }),
  });

  return {
    outbox,
    ownership,
    /** The Slack permission check (authorize.ts), for every command and interaction. */
    authorizer,
    inbound,
    slackDelivery,
    delivery,
    agentEvents,
    commands,
    sla,
    onMerged,
    onUnmerged,
    cards,
    naming,
    /**
     * Re-queues the flush of every outbox with items left waiting longer than `olderThanMs` — e.g.
     * a flush job that ran out of attempts while Slack or a provider was failing. Flushes are
     * idempotent, so a spare one costs nothing. Run by worker processes every minute.
     */
    async sweepStale(olderThanMs = 5 * 60_000): Promise<number> {
      const before = new Date(Date.now() - olderThanMs);
      const posts = await models.AgentPost.distinct('customerId', {
        state: 'pending',
        createdAt: { $lt: before },
      });
      for (const id of posts) await outbox.flushAgent(id as Types.ObjectId);
      const sends = await models.CustomerSend.distinct('customerId', {
        state: 'scheduled',
        sendAfter: { $lt: before },
      });
      for (const id of sends) await outbox.flushCustomer(id as Types.ObjectId);
      if (posts.length + sends.length > 0)
        log.info(
          { agentOutboxes: posts.length, customerOutboxes: sends.length },
          'stale outboxes re-flushed',
        );
      return posts.length + sends.length;
    },
    /**
     * A provider's delivery report about one of our sends, shown on the agent's Slack message: one
     * reaction for the message's current state (read replaces delivered; a failure removes both —
     * reports arriving out of order do not step back, the stored state decides), and for a failure a
     * note with the provider's reason and what to do.
     */
    async onStatus(status: DeliveryStatus): Promise<void> {
      if (!status.providerMessageId) return onWatermark(status);
      const send = await models.CustomerSend.findOne({
        provider: status.provider,
        providerMessageId: status.providerMessageId,
      }).lean<CustomerSend>();
      if (!send) return;
      const stored = await models.Message.findOne(
        { key: `${status.provider}:${status.providerMessageId}` },
        { status: 1 },
      ).lean<{ status?: { state: string } }>();
      const state = stored?.status?.state ?? status.state;
      const reaction = STATUS_REACTION[state];
      if (send.slack && reaction)
        await react(
          send.slack,
          reaction,
          RECEIPT_REACTIONS.filter((r) => r !== reaction),
        );
      if (
        (status.state === 'failed' || status.state === 'undelivered') &&
        (send.origin === 'agent' || send.origin === 'template')
      ) {
        await outbox.postToAgent(send.customerId, {
          key: `status-note:${status.key}`,
          kind: 'note',
          username: 'Rapport',
          text: explainDeliveryFailure(status.channel, status.errors[0]),
        });
      }
    },
  };
}

export type Router = ReturnType<typeof createRouter>;

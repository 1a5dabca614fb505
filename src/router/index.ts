/**
 * The router: everything between "a customer message is stored" and "the agent's reply reached the
 * customer". Built from plain factories; `createRouter` wires them and exposes one handler per queue.
 */
import type { RedisClient } from '../queue/connection';
import { Types } from 'mongoose';
import type { SlackClient } from '../channels/slack/client';
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
import { createAuthorizer, type Authorizer } from './authorize';
import { createCommands, type LinkPort } from './commands';
import { createDelivery, type Senders } from './delivery';
import { createSendAgain } from './send-again';
import { SlackApiError } from '../channels/slack/client';
import { createInboundRouter, type InboundRouterOptions } from './inbound';
import type { ClaimMerge, ClaimOffers, ClaimsPort } from './claim-plan';
import { createMergeNotices, type MergeNotices } from './merge-notices';
import type { RouterModels } from './models';
import { createOutbox, type Outbox } from './outbox';
import { createOwnership, type Ownership } from './ownership';
import { createReceipts } from './receipts';
import { createSla } from './sla';
import { CARD_EVENT_TYPE, createCardCheck } from './card-post';
import { createSlackDelivery, type ToAgentJob } from './slack-delivery';
import {
  createCardUpdates,
  firstCardTokens,
  isCardJob,
  type CardJob,
  type CardUpdates,
} from './card-updates';
import { createNaming, type Naming } from './naming';
import { customerChanged } from '../identity/cache';
import type { OptOuts } from './opt-outs';

export interface RouterOptions {
  config: RouterConfig;
  models: RouterModels & IdentityModels;
  /** The owner pick and assignments, when the caller shares them (app.ts: with identity resolution). */
  ownership?: Ownership;
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
  /** STOP and START, and the check before every send (opt-outs.ts; built with the erasure's markers). */
  optOuts: OptOuts;
  /** Customers' files (src/media): stored on the way in, uploaded into threads. */
  media?: { store: MediaStore; inbound: InboundMedia; outbound?: OutboundMediaPreparer };
  /** Messenger's User Profile API, for the card's name (Messenger webhooks carry none). */
  messengerProfiles?: { name(psid: string): Promise<string | undefined> };
  log: Logger;
  metrics: Metrics;
}

type React = (ref: { channel: string; ts: string }, name: string, remove?: string[]) => Promise<void>;

/** What the router's parts are built from, besides the options. */
interface Shared {
  outbox: Outbox;
  ownership: Ownership;
  cards: CardUpdates;
  naming: Naming;
  react: React;
  authorizer: Authorizer;
  onMerged: MergeNotices['onMerged'];
}

export function createRouter(o: RouterOptions) {
  const { models, queues, redis, prefix, log } = o;
  const outbox = createOutbox(
    models,
    { toAgent: queues['to-agent'], toCustomer: queues['to-customer'] },
    redis,
    prefix,
  );
  const ownership =
    o.ownership ?? createOwnership(models, redis, prefix, log.child({ component: 'ownership' }));
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
  const react = reactionsVia(o);
  const { onMerged, onUnmerged } = createMergeNotices({ models, ownership, outbox, cards });
  const authorizer = createAuthorizer({
    models,
    log: log.child({ component: 'authorize' }),
    onRefused: (action, reason) => o.metrics.slackRefusals.inc({ action, reason }),
  });
  const shared: Shared = { outbox, ownership, cards, naming, react, authorizer, onMerged };
  const { onStatus } = createReceipts({ models, outbox, react });
  const slackDelivery = slackDeliveryFor(o, shared);

  return {
    outbox,
    ownership,
    /** The Slack permission check (authorize.ts), for every command and interaction. */
    authorizer,
    inbound: inboundFor(o, shared, slackDelivery?.flushNow),
    slackDelivery,
    delivery: deliveryFor(o, shared),
    agentEvents: agentEventsFor(o, shared),
    commands: commandsFor(o, shared),
    sla: slaFor(o, shared),
    onMerged,
    onUnmerged,
    cards,
    naming,
    sweepStale: (olderThanMs = 5 * 60_000) => sweepStaleOutboxes(o, outbox, olderThanMs),
    /** A provider's delivery report about one of our sends, shown on the agent's message (receipts.ts). */
    onStatus,
  };
}

export type Router = ReturnType<typeof createRouter>;

/** Reactions go through the to-agent queue, one job per message and reaction. */
function reactionsVia(o: RouterOptions): React {
  return async (ref, name, remove = []) => {
    if (!o.slack) return;
    await o.queues['to-agent'].add(
      'react',
      { react: { ...ref, name, remove } },
      { jobId: `r~${ref.channel}~${ref.ts}~${name}` },
    );
  };
}

/**
 * Re-queues the flush of every outbox with items left waiting longer than `olderThanMs` — e.g.
 * a flush job that ran out of attempts while Slack or a provider was failing. Flushes are
 * idempotent, so a spare one costs nothing. Run by worker processes every minute.
 */
async function sweepStaleOutboxes(o: RouterOptions, outbox: Outbox, olderThanMs: number): Promise<number> {
  const before = new Date(Date.now() - olderThanMs);
  const posts = await o.models.AgentPost.distinct('customerId', {
    state: 'pending',
    createdAt: { $lt: before },
  });
  for (const id of posts) await outbox.flushAgent(id as Types.ObjectId);
  const sends = await o.models.CustomerSend.distinct('customerId', {
    state: 'scheduled',
    sendAfter: { $lt: before },
  });
  for (const id of sends) await outbox.flushCustomer(id as Types.ObjectId);
  if (posts.length + sends.length > 0)
    o.log.info({ agentOutboxes: posts.length, customerOutboxes: sends.length }, 'stale outboxes re-flushed');
  return posts.length + sends.length;
}

/**
 * A reply under a card whose thread record is missing (its answer was lost and the retry has not
 * run yet, or the process died between posting and recording): the card's metadata names the
 * customer, so the thread is recorded here and the reply is not lost.
 */
async function adoptCardThread(
  o: RouterOptions,
  channel: string,
  ts: string,
): Promise<Types.ObjectId | undefined> {
  if (!o.slack) return undefined;
  const meta = await o.slack.metadataAt(channel, ts);
  const id = meta?.eventType === CARD_EVENT_TYPE ? meta.payload.customerId : undefined;
  if (typeof id !== 'string' || !Types.ObjectId.isValid(id)) return undefined;
  const customerId = new Types.ObjectId(id);
  const customer = await o.models.Customer.findById(customerId, { ownerAgentId: 1, mergedInto: 1 }).lean();
  if (!customer) return undefined;
  await o.models.SlackThread.updateOne(
    { channel, ts },
    { $setOnInsert: { channel, ts, customerId, agentId: customer.ownerAgentId ?? 'unassigned' } },
    { upsert: true },
  );
  o.log.info({ customerId: id }, 'card thread recorded from its metadata');
  return customer.mergedInto ?? customerId;
}

/** A reply in an inbox channel's thread that has no customer reaches nobody: say so, privately. */
async function tellUnknownThread(o: RouterOptions, w: { channel: string; threadTs: string; user: string }) {
  if (!o.slack) return;
  const inbox =
    w.channel === o.escalationChannel ||
    (await o.models.Agent.exists({ inboxChannelId: w.channel })) !== null;
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
    o.log.warn({ channel: w.channel, code: err.code }, 'could not tell the agent their reply reached nobody');
  }
}

/**
 * The to-agent queue carries posts and reactions (slack-delivery.ts) and card edits and thread
 * notices (card-updates.ts).
 */
function slackDeliveryFor(o: RouterOptions, { outbox, ownership, cards }: Shared) {
  if (!o.slack) return undefined;
  const postDelivery = createSlackDelivery({
    models: o.models,
    slack: o.slack,
    redis: o.redis,
    prefix: o.prefix,
    ownership,
    outbox,
    escalationChannel: o.escalationChannel,
    media: o.media?.store,
    log: o.log.child({ component: 'to-agent' }),
    onRateLimited: () => o.metrics.slackRateLimited.inc(),
    onThreadOpened: (customerId, first) =>
      first ? cards.recordFirstCard(customerId, first) : cards.requestRefresh(customerId),
    cardTokens: (id) => firstCardTokens(o.redis, o.prefix, id),
  });
  return {
    ...postDelivery,
    handle: (job: Job<ToAgentJob | CardJob>): Promise<void> =>
      isCardJob(job.data) ? cards.handle(job as Job<CardJob>) : postDelivery.handle(job as Job<ToAgentJob>),
  };
}

function deliveryFor(o: RouterOptions, { outbox, react }: Shared) {
  const { metrics } = o;
  return createDelivery({
    models: o.models,
    senders: o.senders,
    redis: o.redis,
    prefix: o.prefix,
    outbox,
    log: o.log.child({ component: 'to-customer' }),
    messengerHumanAgent: o.config.messengerHumanAgent,
    templates: o.config.whatsappTemplate,
    optOuts: o.optOuts,
    media: o.media?.outbound,
    react,
    onSent: (channel, provider) => metrics.sends.inc({ channel, provider, outcome: 'sent' }),
    onFailed: (reason) => {
      metrics.sends.inc({ channel: '', provider: '', outcome: reason });
      metrics.providerErrors.inc({ provider: 'any', reason });
    },
  });
}

/** `flushNow`: the inbound job flushes the Slack outbox it appended to (slack-delivery.ts). */
function inboundFor(
  o: RouterOptions,
  { outbox, ownership, onMerged }: Shared,
  flushNow?: InboundRouterOptions['flushNow'],
) {
  return createInboundRouter({
    models: o.models,
    outbox,
    ownership,
    optOuts: o.optOuts,
    timers: o.queues.timers,
    config: o.config,
    claims: o.claims,
    redis: o.redis,
    prefix: o.prefix,
    media: o.media?.inbound,
    log: o.log.child({ component: 'router' }),
    onMerged: (claim: ClaimMerge, survivorNote?: string) => onMerged(claim, survivorNote),
    flushNow,
  });
}

function agentEventsFor(o: RouterOptions, { outbox, react, authorizer }: Shared) {
  const slack = o.slack;
  return createAgentEvents({
    models: o.models,
    outbox,
    replyUndoMs: o.config.replyUndoMs,
    react,
    authorizer,
    tellUser: slack
      ? (ref, text) => slack.postEphemeral(ref.channel, ref.user, text, ref.threadTs)
      : undefined,
    redis: o.redis,
    prefix: o.prefix,
    log: o.log.child({ component: 'agent-events' }),
    ...(slack ? { cardNames: createCardCheck(slack, o.redis, o.prefix) } : {}),
    onUnknownThread: (where) => tellUnknownThread(o, where),
    adoptThread: (channel, ts) => adoptCardThread(o, channel, ts),
  });
}

function commandsFor(o: RouterOptions, { outbox, ownership, authorizer, cards, naming, onMerged }: Shared) {
  return createCommands({
    models: o.models,
    ownership,
    outbox,
    config: o.config,
    link: o.link,
    claimOffers: o.claimOffers,
    authorizer,
    cards,
    naming,
    onMerged: (m) => onMerged(m),
    redis: o.redis,
    prefix: o.prefix,
    log: o.log.child({ component: 'commands' }),
    sendAgain: createSendAgain({ models: o.models, outbox, log: o.log.child({ component: 'send-again' }) }),
  });
}

function slaFor(o: RouterOptions, { outbox, ownership }: Shared) {
  return createSla({
    models: o.models,
    outbox,
    ownership,
    slack: o.slack,
    redis: o.redis,
    prefix: o.prefix,
    escalationChannel: o.escalationChannel,
    log: o.log.child({ component: 'sla' }),
    onBreach: (kind) => o.metrics.slaBreaches.inc({ kind }),
  });
}

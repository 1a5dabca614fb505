/**
 * The `to-customer` worker: sends a customer's outbox (agent replies, acknowledgements, templates,
 * claim codes) in order, on the channel the agent picked or else the customer's latest, after the
 * opt-out and messaging-window checks (a send that cannot go out is explained in the thread).
 *
 * The guarantee: never sent twice behind the agent's back. A send is marked `sending` before the
 * provider call and `sent` after; it is retried only when the provider certainly did not take it.
 * A lost answer, or a send found still `sending` (a crash mid-call), fails as `uncertain` and the
 * agent gets a "Send again" button (send-again.ts). Accepted parts of a multi-part message are
 * recorded one by one, so a retry resumes after them.
 */
import type { Job } from 'bullmq';
import type { RedisClient } from '../queue/connection';
import type { Types } from 'mongoose';
import type { Channel, Provider } from '../canonical';
import {
  OutboundError,
  type ChannelSender,
  type OutboundMessage,
  type SendProgress,
  type SendResult,
} from '../channels/sender';
import type { Customer, Identity, IdentityModels } from '../identity/models';
import type { Logger } from '../logger';
import type { OutboundMediaPreparer } from '../media/outbound';
import { FLUSH_LOCK_TTL_MS, withLock } from '../queue/lock';
import { DeferError } from '../errors';
import type { AgentPostButton, CustomerSend, RouterModels } from './models';
import { toObjectId, type CarriedRoute, type CarriedSend, type Outbox } from './outbox';
import { createHotCustomers } from './hot-state';
import type { OptOuts } from './opt-outs';
import { ago, channelLabel, explainFailure } from './texts';

export type Senders = Partial<Record<Provider, ChannelSender>>;

/** The `action_id` of the "Send again" button under an uncertain send's note (send-again.ts). */
export const SEND_AGAIN_ACTION = 'rapport_send_again';

export interface DeliveryOptions {
  models: RouterModels & IdentityModels;
  senders: Senders;
  redis: RedisClient;
  prefix: string;
  outbox: Outbox;
  log: Logger;
  messengerHumanAgent: boolean;
  /** Attempts on retryable provider errors before the agent is told it failed. @defaultValue 5 */
  maxAttempts?: number;
  /** The opt-out check before every send, and the record of a provider's "opted out" (opt-outs.ts). */
  optOuts: Pick<OptOuts, 'isOptedOut' | 'record'>;
  /** Approved templates for closed WhatsApp windows. */
  templates?: { twilioContentSid?: string; cloudName?: string };
  /** Reactions on the agent's Slack message. */
  react(ref: { channel: string; ts: string }, name: string, remove?: string[]): Promise<void>;
  /** Agents' Slack files: checked against the channel, downloaded, signed (src/media). */
  media?: Pick<OutboundMediaPreparer, 'prepare'>;
  onSent?: (channel: Channel, provider: Provider) => void;
  onFailed?: (reason: string) => void;
}

const DAY = 24 * 3600_000;

function withFlushLock(redis: RedisClient, key: string, fn: () => Promise<void>): Promise<void> {
  return withLock(redis, key, FLUSH_LOCK_TTL_MS, fn, { renew: true });
}

const CANDIDATES: Record<Channel, Provider[]> = {
  sms: ['twilio'],
  messenger: ['messenger'],
  whatsapp: ['whatsapp-cloud', 'twilio', 'whatsapp-web'],
};

interface Route {
  channel: Channel;
  provider: Provider;
  sender: ChannelSender;
  identity: Identity;
  to: string;
}

type RouteResult =
  { route: Route } | { failure: { reason: 'no_route' | 'window_closed' | 'opted_out'; message: string } };

/** Window check; returns the Messenger tag to use, or a failure explanation. */
function checkWindow(
  send: CustomerSend,
  route: Route,
  now: number,
  messengerHumanAgent: boolean,
): { tag?: 'HUMAN_AGENT' } | { closed: string } {
  if (send.template || route.channel === 'sms' || route.provider === 'whatsapp-web') return {};
  const last = route.identity.lastInboundAt?.[route.channel]?.getTime();
  const since = last === undefined ? Infinity : now - last;
  if (since <= DAY) return {};
  if (route.channel === 'messenger' && messengerHumanAgent && since <= 7 * DAY) return { tag: 'HUMAN_AGENT' };
  const when = last === undefined ? 'has never written on it' : `last wrote ${ago(since)} ago`;
  return {
    closed:
      `:no_entry: Not sent: the ${channelLabel(route.channel)} window is closed (the customer ${when}). ` +
      (route.channel === 'whatsapp'
        ? 'Only an approved template can be sent: use `/rapport template` or the *Send template* button, or reply starting with `sms:` to text them.'
        : 'Messenger allows replies only within 24 hours' +
          (messengerHumanAgent
            ? ' (7 days with the human-agent tag).'
            : ' (enable MESSENGER_HUMAN_AGENT for 7 days).')),
  };
}

/** What the agent reads when a send's outcome is unknown (a lost answer or a crash mid-call). */
function uncertainText(send: CustomerSend, channel: Channel | undefined, detail?: string): string {
  const where = channel ? ` on ${channelLabel(channel)}` : '';
  const parts = send.parts?.length ? ` (${send.parts.length} part(s) of it were accepted before that)` : '';
  return `:grey_question: Delivery uncertain${where}: ${detail ?? explainFailure('uncertain')}${parts} It was not resent automatically, since that could send it twice. Check with the customer, or press *Send again*.`;
}

/** The template to send for `send` on `route`: its own id, else the one configured for the provider. */
function templateFor(
  send: CustomerSend,
  route: Route,
  templates: DeliveryOptions['templates'],
): { template?: OutboundMessage['template'] } | { refused: string } {
  if (!send.template) return {};
  const configured =
    route.provider === 'twilio'
      ? templates?.twilioContentSid
      : route.provider === 'whatsapp-cloud'
        ? templates?.cloudName
        : undefined;
  const id = send.template.id || configured;
  if (!id)
    return { refused: `:x: No approved template is configured for ${route.provider}, so nothing was sent.` };
  return { template: { ...send.template, id } };
}

/** The stored outbound message of an accepted send (what a status report will update). */
function sentMessage(send: CustomerSend, customer: Customer, route: Route, result: SendResult) {
  return {
    key: `${result.provider}:${result.providerMessageId}`,
    customerId: customer._id,
    direction: 'out',
    channel: route.channel,
    provider: result.provider,
    providerMessageId: result.providerMessageId,
    identityKey: route.identity.key,
    parts: [
      ...(send.text ? [{ kind: 'text', text: send.text }] : []),
      ...(send.media ?? []).map((m) => ({ kind: 'media', url: m.url, contentType: m.contentType })),
    ],
    text: send.text ?? (send.template ? `[template ${send.template.id}]` : undefined),
    statusHistory: [],
    sentAt: new Date(),
  };
}

/** How a send's route is read back: the customer's identities, and which provider carries the channel. */
function createRouteFinder(models: RouterModels & IdentityModels, senders: Senders) {
  const { Identity, Message } = models;
  /**
   * Which provider carries `channel` for this identity: the one that brought the customer's latest
   * message on that channel (a number can write by SMS and WhatsApp through Twilio and by WhatsApp
   * through Cloud; `lastAddress` alone cannot tell Twilio's SMS from its WhatsApp), else the first
   * enabled one.
   */
  async function providerFor(channel: Channel, identity: Identity): Promise<Provider | undefined> {
    const usable = CANDIDATES[channel].filter((p) => senders[p]?.channels.includes(channel));
    // One provider carries the channel (SMS: Twilio; Messenger): nothing to choose, nothing to read.
    if (usable.length <= 1) return usable[0];
    const latest = await Message.findOne(
      {
        customerId: identity.customerId,
        identityKey: identity.key,
        direction: 'in',
        channel,
        provider: { $in: usable },
      },
      { provider: 1 },
    )
      // Our receive time, not the provider's: Meta stamps whole seconds, Twilio nothing at all.
      .sort({ receivedAt: -1, sentAt: -1 })
      .lean<{ provider: Provider }>();
    if (latest) return latest.provider;
    const used = usable
      .map((p) => ({ p, at: identity.lastAddress?.[p]?.at?.getTime() ?? 0 }))
      // Twilio's last address may be an SMS: only a provider that is WhatsApp-only proves WhatsApp.
      .filter((c) => c.at > 0 && (channel !== 'whatsapp' || c.p !== 'twilio'))
      .sort((a, b) => b.at - a.at);
    return used[0]?.p ?? usable[0];
  }

  /** The identity and provider to send on, read from the customer's identities and messages. */
  async function findRoute(
    send: CustomerSend,
    customer: Customer,
  ): Promise<{ route: Omit<Route, 'to'> } | Extract<RouteResult, { failure: unknown }>> {
    let identities = send.toIdentityKey
      ? await Identity.find({ key: send.toIdentityKey }).lean<Identity[]>()
      : await Identity.find({ customerId: customer._id }).lean<Identity[]>();
    if (send.toIdentityKey?.startsWith('phone:') && identities.length === 0) {
      // A claim code goes to a number nobody has written from yet: address it directly.
      const value = send.toIdentityKey.slice('phone:'.length);
      identities = [
        {
          key: send.toIdentityKey,
          kind: 'phone',
          value,
          lastInboundAt: {},
          lastAddress: {},
        } as unknown as Identity,
      ];
    }
    const channel: Channel | undefined =
      send.via ??
      (send.toIdentityKey ? (identities[0]?.kind === 'psid' ? 'messenger' : 'sms') : customer.lastChannel);
    if (!channel) return { failure: { reason: 'no_route', message: explainFailure('no_route') } };
    const fitting = identities
      .filter((i) => (channel === 'messenger' ? i.kind === 'psid' : i.kind === 'phone'))
      .sort(
        (a, b) => (b.lastInboundAt?.[channel]?.getTime() ?? 0) - (a.lastInboundAt?.[channel]?.getTime() ?? 0),
      );
    const identity = fitting[0];
    if (!identity) {
      return {
        failure: {
          reason: 'no_route',
          message: `This customer has no ${channelLabel(channel)} address on file, so it cannot be sent there.`,
        },
      };
    }
    const provider = await providerFor(channel, identity);
    const sender = provider ? senders[provider] : undefined;
    if (!provider || !sender) return { failure: { reason: 'no_route', message: explainFailure('no_route') } };
    return { route: { channel, provider, sender, identity } };
  }

  return findRoute;
}

/**
 * A first contact's acknowledgement: the identity, channel and provider the customer just wrote
 * from, as `findRoute` would read them back (their only identity; the provider of their only
 * message, when it can send on that channel). Undefined when it cannot (then the route is read).
 */
function carriedRoute(senders: Senders, carried: CarriedRoute): Omit<Route, 'to'> | undefined {
  const { channel, provider, identityKey } = carried;
  const sender = senders[provider];
  if (!sender?.channels.includes(channel) || !CANDIDATES[channel].includes(provider)) return undefined;
  const kind = identityKey.startsWith('psid:')
    ? 'psid'
    : identityKey.startsWith('phone:')
      ? 'phone'
      : undefined;
  if (!kind || (channel === 'messenger') !== (kind === 'psid')) return undefined;
  const identity = {
    key: identityKey,
    kind,
    value: identityKey.slice(kind.length + 1),
    lastInboundAt: { [channel]: new Date(carried.lastInboundAt) },
  } as unknown as Identity;
  return { channel, provider, sender, identity };
}

export function createDelivery(o: DeliveryOptions) {
  const { models, senders, redis, prefix, outbox, log } = o;
  const { CustomerSend, Customer, Message } = models;
  const maxAttempts = o.maxAttempts ?? 5;
  const findRoute = createRouteFinder(models, senders);
  // The carried send's check that its customer is live, from Redis (hot-state.ts).
  const hotCustomers = createHotCustomers(
    redis,
    prefix,
    async (id) => (await Customer.findById(id).lean<Customer>()) ?? undefined,
  );

  /** Where the send goes, unless the identity opted out there. `carried`: a route known without a read. */
  async function chooseRoute(
    send: CustomerSend,
    customer: Customer,
    carried?: Omit<Route, 'to'>,
  ): Promise<RouteResult> {
    const found = carried ? { route: carried } : await findRoute(send, customer);
    if ('failure' in found) return found;
    const { identity, channel } = found.route;
    // Kept or erased STOPs, from the Redis copy when it proves there is none (opt-outs.ts). Claim
    // codes too: a number that said STOP never gets one (claims-bridge.ts checks first).
    if (await o.optOuts.isOptedOut(identity.key, channel)) {
      return { failure: { reason: 'opted_out', message: explainFailure('opted_out') } };
    }
    const to = identity.kind === 'psid' ? (identity.value.split(':')[1] ?? '') : identity.value;
    return { route: { ...found.route, to } };
  }

  async function tellAgent(send: CustomerSend, text: string, reason: string): Promise<void> {
    const uncertain = reason === 'uncertain';
    const button: AgentPostButton | undefined = uncertain
      ? { actionId: SEND_AGAIN_ACTION, text: 'Send again', value: send.key }
      : undefined;
    await outbox.postToAgent(send.customerId, {
      key: `send-note:${send.key}:${send.attempts}`,
      kind: 'note',
      text,
      username: 'Rapport',
      ...(button ? { button } : {}),
    });
    const mark = uncertain ? 'grey_question' : 'x';
    if (send.slack) await o.react(send.slack, mark, ['hourglass_flowing_sand', 'outbox_tray']);
  }

  async function fail(send: CustomerSend, reason: string, text: string, code?: string): Promise<void> {
    // An automatic reply that may not have gone out is the agent's to check too.
    const tell =
      send.origin === 'agent' ||
      send.origin === 'template' ||
      (reason === 'uncertain' && send.origin === 'auto');
    // The note first (keyed, so a retry writes it once): a flush that fails after marking the send
    // failed would find nothing left to do on its retry, and the agent would never be told.
    if (tell) await tellAgent(send, text, reason);
    await CustomerSend.updateOne(
      { _id: send._id },
      { $set: { state: 'failed', failure: { reason, code, message: text } } },
    );
    o.onFailed?.(reason);
    log.info({ sendKey: send.key, reason, code }, 'send failed; agent told');
  }

  /**
   * Records an accepted part before the next one goes out. The last part has no next: it is recorded
   * with `sent` (recordSent), one command less per send; a crash between its acceptance and that
   * mark leaves the send `sending`, which is uncertain like a crash during the call.
   */
  function progressOf(send: CustomerSend): SendProgress & { accepted: string[] } {
    const accepted = [...(send.parts ?? [])];
    return {
      accepted,
      done: send.parts ?? [],
      onPart: async (index, id, last) => {
        if (index < (send.parts?.length ?? 0)) return;
        accepted.push(id);
        if (!last) await CustomerSend.updateOne({ _id: send._id }, { $push: { parts: id } });
      },
    };
  }

  /** The message to hand to the provider, or why it cannot be sent there. */
  async function prepare(
    send: CustomerSend,
    route: Route,
  ): Promise<{ message: OutboundMessage } | { reason: string; text: string }> {
    const window = checkWindow(send, route, Date.now(), o.messengerHumanAgent);
    if ('closed' in window) return { reason: 'window_closed', text: window.closed };
    const template = templateFor(send, route, o.templates);
    if ('refused' in template) return { reason: 'unsupported', text: template.refused };
    let media: OutboundMessage['media'] = send.media ?? [];
    if (o.media && media.length > 0) {
      const prepared = await o.media.prepare(send, route);
      if ('refused' in prepared) return { reason: 'unsupported', text: prepared.refused };
      media = prepared.media;
    }
    const message: OutboundMessage = {
      key: send.key,
      channel: route.channel,
      provider: route.provider,
      to: route.to,
      text: send.text,
      media,
      template: template.template,
      messengerTag: window.tag,
    };
    return { message };
  }

  async function sendOne(send: CustomerSend, customer: Customer, carried?: Omit<Route, 'to'>): Promise<void> {
    if (send.state === 'sending') {
      const fresh = await CustomerSend.findById(send._id).lean<CustomerSend>();
      await fail(fresh ?? send, 'uncertain', uncertainText(fresh ?? send, send.channel));
      return;
    }
    const routed = await chooseRoute(send, customer, carried);
    if ('failure' in routed) return fail(send, routed.failure.reason, routed.failure.message);
    const { route } = routed;
    const prepared = await prepare(send, route);
    if (!('message' in prepared)) return fail(send, prepared.reason, prepared.text);
    const marked = await CustomerSend.updateOne(
      { _id: send._id, state: 'scheduled' },
      { $set: { state: 'sending', channel: route.channel, provider: route.provider }, $inc: { attempts: 1 } },
    );
    if (marked.modifiedCount !== 1) return; // cancelled or handled meanwhile
    const attempts = send.attempts + 1;
    const progress = progressOf(send);
    let result: SendResult;
    try {
      result = await route.sender.send(prepared.message, progress);
    } catch (err) {
      // Not a provider answer (our bug, the database): leave it `sending` → uncertain on the next run.
      if (!(err instanceof OutboundError)) throw err;
      return refused(send, route, attempts, err);
    }
    await recordSent(send, customer, route, { ...result, parts: progress.accepted });
  }

  /**
   * The provider took the send: the stored message first, then `sent` with every accepted part, so
   * a status report finds both.
   */
  async function recordSent(
    send: CustomerSend,
    customer: Customer,
    route: Route,
    result: SendResult & { parts: string[] },
  ) {
    const message = sentMessage(send, customer, route, result);
    await Message.updateOne({ key: message.key }, { $setOnInsert: message }, { upsert: true });
    await CustomerSend.updateOne(
      { _id: send._id },
      {
        $set: {
          state: 'sent',
          providerMessageId: result.providerMessageId,
          provider: result.provider,
          parts: result.parts,
        },
      },
    );
    o.onSent?.(route.channel, route.provider);
    if (send.slack) await o.react(send.slack, 'outbox_tray', ['hourglass_flowing_sand']);
    log.info(
      {
        sendKey: send.key,
        channel: route.channel,
        provider: route.provider,
        customerId: String(customer._id),
      },
      'sent to customer',
    );
  }

  /**
   * The provider answered with an error: uncertain → failed and the agent asked to check; retryable
   * → scheduled again (DeferError) until `maxAttempts`; otherwise failed and explained.
   */
  async function refused(send: CustomerSend, route: Route, attempts: number, err: OutboundError) {
    if (err.reason === 'uncertain') {
      const fresh = await CustomerSend.findById(send._id).lean<CustomerSend>();
      return fail(
        { ...(fresh ?? send), attempts },
        'uncertain',
        uncertainText(fresh ?? send, route.channel, `${err.message}.`),
        err.providerCode,
      );
    }
    if (err.retryable && attempts < maxAttempts) {
      await CustomerSend.updateOne({ _id: send._id }, { $set: { state: 'scheduled' } });
      const delay = err.retryAfterMs ?? Math.min(1_000 * 2 ** (attempts - 1), 30_000);
      throw new DeferError(delay, `provider ${route.provider}: ${err.reason}; retry in ${delay} ms`);
    }
    if (err.reason === 'opted_out') await o.optOuts.record(route.identity.key, route.channel, true);
    await fail(
      { ...send, attempts },
      err.reason,
      `:x: Not delivered on ${channelLabel(route.channel)}. ${explainFailure(err.reason, err.providerCode, route.channel)}`,
      err.providerCode,
    );
  }

  /**
   * A carried first send (outbox.ts): sent without reading the outbox, the customer or the route,
   * when the customer is still live (their copy in Redis: merges and erasures replace the epoch it
   * is filed under) and the route needs no choice. False: read and sent the usual way.
   */
  async function sendCarried(customerId: Types.ObjectId, carried: CarriedSend): Promise<boolean> {
    const route = carriedRoute(senders, carried.route);
    if (!route) return false;
    const customer = await hotCustomers.get(String(customerId));
    if (!customer || customer.mergedInto) return false;
    const sendAfter = new Date(carried.sendAfter);
    if (sendAfter.getTime() > Date.now()) return false;
    const now = new Date();
    const send: CustomerSend = {
      _id: toObjectId(carried.id),
      key: carried.key,
      customerId,
      seq: carried.seq,
      origin: carried.origin,
      ...(carried.text === undefined ? {} : { text: carried.text }),
      media: [],
      parts: [],
      state: 'scheduled',
      sendAfter,
      attempts: 0,
      createdAt: now,
      updatedAt: now,
    };
    // Its `sending` mark is conditional on `scheduled`: a flush that read and sent it first wins.
    await sendOne(send, customer, route);
    return true;
  }

  async function flush(customerId: Types.ObjectId, carried?: CarriedSend): Promise<void> {
    await withFlushLock(redis, `${prefix}:lock:to-customer:${String(customerId)}`, async () => {
      if (carried && (await sendCarried(customerId, carried))) return;
      const customer = await Customer.findById(customerId).lean<Customer>();
      if (!customer) return;
      if (customer.mergedInto) {
        // Sends of a merged-away customer move with it: re-point them to the survivor.
        await CustomerSend.updateMany(
          { customerId, state: 'scheduled' },
          { $set: { customerId: customer.mergedInto } },
        );
        await outbox.flushCustomer(customer.mergedInto);
        return;
      }
      const sends = await CustomerSend.find({ customerId, state: { $in: ['scheduled', 'sending'] } })
        .sort({ seq: 1, _id: 1 })
        .limit(20)
        .lean<CustomerSend[]>();
      for (const send of sends) {
        const wait = send.sendAfter.getTime() - Date.now();
        // Later sends wait behind an earlier one still in its undo window: order is kept.
        if (wait > 0) throw new DeferError(wait, 'next send is still in its undo window');
        await sendOne(send, customer);
      }
      if (sends.length === 20) await outbox.flushCustomer(customerId);
    });
  }

  return {
    flush: (customerId: Types.ObjectId) => flush(customerId),
    async handle(job: Job<{ customerId: string; send?: CarriedSend }>): Promise<void> {
      // Only on the job's first run: a run after a deferral, a failure or a stall reads the send's
      // state (it may be `sending`, or scheduled again after a retryable refusal).
      const firstRun = job.attemptsStarted <= 1 && job.attemptsMade === 0 && job.stalledCounter === 0;
      await flush(toObjectId(job.data.customerId), firstRun ? job.data.send : undefined);
    },
  };
}

export type Delivery = ReturnType<typeof createDelivery>;

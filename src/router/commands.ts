/**
 * `/rapport …` slash commands and the customer card's buttons. Commands answer at once (Slack wants
 * an answer within 3 s) with an ephemeral text; anything slow is queued.
 *
 * Who may: every subcommand but `help` asks authorize.ts first — the caller must be an active
 * agent, and a subcommand on a customer needs the owner, their cover or a lead/admin (`link`, a
 * trusted merge: the owner of every customer involved, or a lead/admin). Buttons run the same code.
 *
 * Which customer: the thread the command was run in (Slack sends `thread_ts` there), else a customer
 * id given as the last argument (the card shows it), e.g. `/rapport handoff @sam 65f0…`.
 */
import { Types } from 'mongoose';
import type { Channel } from '../canonical';
import type { RouterConfig } from '../config';
import type { Customer, Identity, IdentityModels } from '../identity/models';
import type { Logger } from '../logger';
import type { RedisClient } from '../queue/connection';
import { withConversationLock } from '../queue/lock';
import type { AgentAuthorization, Authorizer } from './authorize';
import type { Agent, Conversation, CurrentThread, RouterModels, SlackThread } from './models';
import type { Outbox } from './outbox';
import type { Ownership } from './ownership';
import { SEND_AGAIN_ACTION } from './delivery';
import type { SendAgain } from './send-again';
import { channelLabel, fill } from './texts';
import { windowState } from './card';
import type { CardUpdates } from './card-updates';
import { nameFromSlack, type Naming } from './naming';
import { applyClaimEffects, CLAIM_OFFER_ACTION, type ClaimOffers } from './claim-plan';
import { escapeSlackText } from '../channels/slack/escape';
import { agentChanged, conversationChanged } from './hot-state';

export interface LinkPort {
  /** Trusted link (an agent vouches): merges at once or attaches the identity. */
  link(input: {
    customerId: Types.ObjectId;
    value: string;
    actor: string;
  }): Promise<{ text: string; mergedOwnerAgentId?: string; mergedId?: string; survivorId?: string }>;
  /** The identity key `link` would attach for `value` (`phone:+…`, `email:…`), if it is one. */
  identityKeyOf(value: string): string | undefined;
}

export interface CommandsOptions {
  models: RouterModels & IdentityModels;
  ownership: Ownership;
  outbox: Outbox;
  config: RouterConfig;
  link?: LinkPort;
  /** The "Send a code to …" button of claim offers (claims-bridge.ts). */
  claimOffers?: ClaimOffers;
  /** Who may act (src/router/authorize.ts). */
  authorizer: Authorizer;
  /** Card refreshes and notices in a given thread (card-updates.ts). */
  cards: CardUpdates;
  naming: Naming;
  /** Tells the owner who lost a customer to a merge (router/index.ts onMerged). */
  onMerged?: (m: { survivorId?: string; mergedId?: string }) => Promise<void>;
  redis: RedisClient;
  prefix: string;
  log: Logger;
  /** The "Send again" button under an uncertain send (send-again.ts). */
  sendAgain?: SendAgain;
}

export interface CommandContext {
  userId: string;
  channelId: string;
  threadTs?: string;
}

const HELP = [
  '*Rapport commands*',
  '`/rapport handoff @agent` — give this customer to a teammate (the customer is told)',
  '`/rapport away [until]` — mark yourself away (e.g. `away 14:00` or `away 2026-12-01`); your backup covers',
  '`/rapport back` — available again, with a summary of what happened',
  '`/rapport link <phone|email>` — this customer is also that number/email (merges their profiles)',
  '`/rapport whois` — who this customer is',
  '`/rapport name <name>` — name the customer or correct their name (the card follows)',
  '`/rapport template` — send the approved WhatsApp template (window closed)',
  '`/rapport close` — close the conversation (it reopens when they write)',
  'In a customer thread, or add the customer id (from the card) at the end.',
  'You act on the customers you own, or cover while their owner is away; leads and admins on any. `link` merges: the owner of both, or a lead.',
].join('\n');

/** The customer's name for a Slack text (escaped: the customer chose it). */
function nameOf(customer: Customer, fallback: string): string {
  return escapeSlackText(customer.displayName ?? fallback);
}

function parseUntil(text: string | undefined, now: Date): Date | undefined {
  if (!text) return undefined;
  const time = /^(\d{1,2}):(\d{2})$/.exec(text);
  if (time) {
    const d = new Date(now);
    d.setUTCHours(Number(time[1]), Number(time[2]), 0, 0);
    if (d <= now) d.setUTCDate(d.getUTCDate() + 1);
    return d;
  }
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** The subcommands that act on one customer (the caller must own or cover them, or be a lead). */
const CUSTOMER_COMMANDS = ['handoff', 'whois', 'close', 'link', 'template', 'name'] as const;
type CustomerCommand = (typeof CUSTOMER_COMMANDS)[number];

function isCustomerCommand(sub: string): sub is CustomerCommand {
  return (CUSTOMER_COMMANDS as readonly string[]).includes(sub);
}

type Allowed = Extract<AgentAuthorization, { allowed: true }>;

export function createCommands(o: CommandsOptions) {
  const { models, ownership, outbox, log, redis, prefix } = o;
  const { authorizeAgentAction: authorize } = o.authorizer;
  const { Agent, SlackThread, Customer, Identity, Conversation, AgentPost } = models;

  /** The customer, following merges; null when there is none by that id. */
  async function liveCustomer(id: Types.ObjectId): Promise<Customer | null> {
    let customer = await Customer.findById(id).lean<Customer>();
    for (let hops = 0; customer?.mergedInto && hops < 8; hops++)
      customer = await Customer.findById(customer.mergedInto).lean<Customer>();
    return customer ?? null;
  }

  /**
   * The customer a command names: an id as the last argument, else the thread it was run in.
   * undefined: none named; null: an id or thread that leads to no customer.
   */
  async function customerFor(ctx: CommandContext, args: string[]): Promise<Customer | null | undefined> {
    const last = args[args.length - 1];
    if (last && /^[0-9a-f]{24}$/i.test(last)) {
      args.pop();
      return liveCustomer(new Types.ObjectId(last));
    }
    if (!ctx.threadTs) return undefined;
    const thread = await SlackThread.findOne({
      channel: ctx.channelId,
      ts: ctx.threadTs,
    }).lean<SlackThread>();
    return thread ? liveCustomer(thread.customerId) : undefined;
  }

  async function agentByMention(arg: string | undefined): Promise<Agent | undefined> {
    if (!arg) return undefined;
    const mention = /^<@([A-Z0-9]+)(\|[^>]*)?>$/.exec(arg);
    if (mention)
      return (await Agent.findOne({ slackUserId: mention[1], active: true }).lean<Agent>()) ?? undefined;
    const name = arg.replace(/^@/, '').toLowerCase();
    const agents = await Agent.find({ active: true }).lean<Agent[]>();
    return agents.find((a) => a.name.toLowerCase() === name || a.slackUserId === arg);
  }

  async function handoff(customer: Customer, to: Agent, actor: string): Promise<string> {
    if (customer.ownerAgentId === String(to._id))
      return `${to.name} already owns ${nameOf(customer, 'this customer')}.`;
    const { from } = await ownership.transfer(customer._id, to, 'handoff', actor);
    await tellThreads(customer, from, to, actor);
    await outbox.sendToCustomer(customer._id, {
      key: `handoff-tell:${String(customer._id)}:${String(to._id)}:${Date.now()}`,
      origin: 'auto',
      text: fill(o.config.texts.handoff, { agent: to.name, previous: from?.name }),
    });
    return `${nameOf(customer, 'The customer')} now belongs to ${to.name}; they have been told.`;
  }

  /**
   * The old thread says where the customer went (posted into that thread itself: the outbox posts
   * into the current one); the new owner's thread opens with a fresh card and a note.
   */
  async function tellThreads(customer: Customer, from: Agent | undefined, to: Agent, actor: string) {
    const old = await models.CurrentThread.findById(customer._id).lean<CurrentThread>();
    if (!old) return;
    const by = /^[UW][A-Z0-9]+$/.test(actor) ? `<@${actor}>` : actor === 'admin' ? 'an admin' : actor;
    const stamp = `${String(customer._id)}:${String(to._id)}:${Date.now()}`;
    await o.cards.notify({
      key: `handoff-note:${stamp}`,
      channel: old.channel,
      threadTs: old.ts,
      text: `:arrow_right: Handed off from ${from?.name ?? 'nobody'} to <@${to.slackUserId}> by ${by}. The conversation continues in ${to.name}'s inbox (<#${to.inboxChannelId}>); replies typed here are no longer sent to the customer.`,
    });
    await outbox.postToAgent(customer._id, {
      key: `handoff-in:${stamp}`,
      kind: 'note',
      username: 'Rapport',
      text: `:arrow_left: <@${to.slackUserId}> this customer was handed to you by ${by}${from ? ` (from ${from.name})` : ''}. Their earlier conversation is in <#${old.channel}>.`,
    });
    await o.cards.requestRefresh(customer._id);
  }

  async function whois(customer: Customer): Promise<string> {
    const identities = await Identity.find({ customerId: customer._id }).lean<Identity[]>();
    const owner = await ownership.agentById(customer.ownerAgentId);
    return [
      `*${nameOf(customer, 'Unnamed customer')}* (\`${String(customer._id)}\`)`,
      `Owner: ${owner?.name ?? 'none'} · first seen ${customer.firstSeenAt.toISOString().slice(0, 10)} · last channel ${channelLabel(customer.lastChannel)}`,
      `Identities: ${identities.map((i) => `${escapeSlackText(i.key)}${i.verified ? '' : ' (unverified)'}`).join(', ') || 'none'}`,
      `Window: ${windowState(identities)}`,
    ].join('\n');
  }

  async function summaryFor(agent: Agent): Promise<string> {
    const since = agent.awaySince ?? new Date(Date.now() - 24 * 3600_000);
    const waiting = await Conversation.find({
      ownerAgentId: String(agent._id),
      awaitingSince: { $ne: null },
    }).lean<Conversation[]>();
    const posts = await AgentPost.countDocuments({
      kind: 'message',
      createdAt: { $gte: since },
      customerId: {
        $in: (await Conversation.find({ ownerAgentId: String(agent._id) }, { _id: 1 }).lean()).map(
          (c) => c._id,
        ),
      },
    });
    return `Welcome back, ${agent.name}. While you were away: ${posts} customer message${posts === 1 ? '' : 's'}; ${waiting.length} customer${waiting.length === 1 ? ' is' : 's are'} waiting for you.`;
  }

  async function away(me: Agent, args: string[]): Promise<string> {
    const until = parseUntil(args.join(' ') || undefined, new Date());
    await Agent.updateOne(
      { _id: me._id },
      {
        $set: { status: 'away', awaySince: new Date(), ...(until ? { awayUntil: until } : {}) },
        ...(until ? {} : { $unset: { awayUntil: 1 } }),
      },
    );
    await agentChanged(redis, prefix, me._id);
    const backup = await ownership.agentById(me.backupAgentId);
    return `You are away${until ? ` until ${until.toISOString().slice(0, 16).replace('T', ' ')} UTC` : ''}. ${backup ? `${backup.name} is mentioned in your threads and covers.` : 'You have no backup set: only a lead or an admin can answer in your threads while you are away.'}`;
  }

  async function back(me: Agent): Promise<string> {
    await Agent.updateOne({ _id: me._id }, { $set: { status: 'available' }, $unset: { awayUntil: 1 } });
    await agentChanged(redis, prefix, me._id);
    const summary = await summaryFor(me);
    await Agent.updateOne({ _id: me._id }, { $unset: { awaySince: 1 } });
    await agentChanged(redis, prefix, me._id);
    return summary;
  }

  async function close(customer: Customer): Promise<string> {
    await withConversationLock(
      redis,
      prefix,
      customer._id,
      async () => {
        await Conversation.updateOne(
          { _id: customer._id },
          { $set: { open: false }, $unset: { awaitingSince: 1 } },
        );
        await conversationChanged(redis, prefix, customer._id);
      },
      { waitMs: 2_000 },
    );
    return `Closed. It reopens when ${nameOf(customer, 'the customer')} writes again.`;
  }

  /** The live customer already holding `value`, if it is not `customer` (the link would merge it). */
  async function otherHolder(customer: Customer, value: string): Promise<Customer | undefined> {
    const key = o.link?.identityKeyOf(value);
    if (!key) return undefined;
    const identity = await Identity.findOne({ key }, { customerId: 1 }).lean<Identity>();
    if (!identity) return undefined;
    const holder = await liveCustomer(identity.customerId);
    return holder && !holder._id.equals(customer._id) ? holder : undefined;
  }

  /**
   * A trusted link: the owner of every customer it touches, or a lead/admin (authorize.ts); covering
   * for the owner is not enough. Refused, the caller learns only that the value is someone's.
   */
  async function link(ctx: CommandContext, customer: Customer, may: Allowed, value: string) {
    if (!o.link) return 'Linking is not available.';
    if (!value) return 'Usage: `/rapport link <phone|email>`';
    const request = { slackUserId: ctx.userId, action: 'link', customer } as const;
    if (may.basis === 'cover') return o.authorizer.refuse(request, 'not_owner_of_both', may.agent).text;
    const other = await otherHolder(customer, value);
    if (other) {
      const may = await authorize({ slackUserId: ctx.userId, action: 'link', customer: other, need: 'own' });
      if (!may.allowed) return may.text;
    }
    const result = await o.link.link({ customerId: customer._id, value, actor: `slack:${ctx.userId}` });
    // A merge may have taken the customer from another agent: they are told in their thread.
    if (result.mergedId) await o.onMerged?.({ survivorId: result.survivorId, mergedId: result.mergedId });
    else await o.cards.requestRefresh(customer._id);
    // The answer quotes what was typed (and may name an email a customer gave): plain text.
    const said = escapeSlackText(result.text);
    await outbox.postToAgent(customer._id, {
      key: `link-note:${String(customer._id)}:${Date.now()}`,
      kind: 'note',
      username: 'Rapport',
      text: `:link: <@${ctx.userId}> ${said}`,
    });
    return said;
  }

  async function template(ctx: CommandContext, customer: Customer): Promise<string> {
    const t = o.config.whatsappTemplate;
    if (!t.twilioContentSid && !t.cloudName)
      return 'No WhatsApp template is configured (WHATSAPP_TEMPLATE_CONTENT_SID or WHATSAPP_CLOUD_TEMPLATE).';
    await outbox.sendToCustomer(customer._id, {
      key: `template:${String(customer._id)}:${ctx.userId}:${Date.now()}`,
      origin: 'template',
      via: 'whatsapp' as Channel,
      template: { id: '', language: t.cloudLanguage },
    });
    return 'The approved template is on its way; the thread shows the result.';
  }

  /** A subcommand on one customer, once the caller may act on them. */
  async function onCustomer(
    ctx: CommandContext,
    sub: CustomerCommand,
    customer: Customer,
    may: Allowed,
    args: string[],
  ): Promise<string> {
    switch (sub) {
      case 'handoff': {
        const to = await agentByMention(args[0]);
        if (!to) return `Who should take over? Use \`/rapport handoff @agent\` with an active Rapport agent.`;
        return handoff(customer, to, ctx.userId);
      }
      case 'whois':
        return whois(customer);
      case 'close':
        return close(customer);
      case 'link':
        return link(ctx, customer, may, args.join(' '));
      case 'template':
        return template(ctx, customer);
      case 'name':
        return nameFromSlack(o.naming, customer, args.join(' '), ctx.userId);
    }
  }

  async function run(ctx: CommandContext, text: string): Promise<string> {
    const args = text.trim().split(/\s+/).filter(Boolean);
    const sub = (args.shift() ?? 'help').toLowerCase();
    if (sub === 'help') return HELP;
    const known = sub === 'away' || sub === 'back' || isCustomerCommand(sub);
    const action = known ? sub : 'other';
    // Everything but help needs an active agent, before anything about a customer is looked up.
    const caller = await authorize({ slackUserId: ctx.userId, action });
    if (!caller.allowed) return caller.text;
    if (sub === 'away') return away(caller.agent, args);
    if (sub === 'back') return back(caller.agent);
    if (!isCustomerCommand(sub)) return `Unknown command \`${escapeSlackText(sub)}\`.\n\n${HELP}`;
    const customer = await customerFor(ctx, args);
    if (customer === undefined)
      return `Run this in a customer thread, or add the customer id (shown on the card).\n\n${HELP}`;
    const may = await authorize({ slackUserId: ctx.userId, action: sub, customer });
    if (!may.allowed) return may.text;
    if (!customer) throw new Error('authorize allowed an action on no customer');
    return onCustomer(ctx, sub, customer, may, args);
  }

  return {
    run,
    handoff,
    /** A card button or menu. */
    async interaction(
      ctx: CommandContext & { actionId: string; selectedUser?: string; value?: string },
    ): Promise<string | undefined> {
      if (ctx.actionId === CLAIM_OFFER_ACTION && o.claimOffers && ctx.value) {
        const pressed = await o.claimOffers.pressOffer({
          userId: ctx.userId,
          messageKey: ctx.value,
          authorize: async (customer) => {
            const may = await authorize({ slackUserId: ctx.userId, action: 'claim', customer });
            return may.allowed ? undefined : may.text;
          },
        });
        await applyClaimEffects(outbox, pressed.effects);
        log.info({ user: ctx.userId, sent: pressed.effects.length > 0 }, 'claim offer pressed');
        return pressed.text;
      }
      if (ctx.actionId === 'rapport_handoff' && ctx.selectedUser)
        return run(ctx, `handoff <@${ctx.selectedUser}>`);
      if (ctx.actionId === 'rapport_close') return run(ctx, 'close');
      if (ctx.actionId === 'rapport_template') return run(ctx, 'template');
      if (ctx.actionId === SEND_AGAIN_ACTION && ctx.value && o.sendAgain)
        return o.sendAgain({
          userId: ctx.userId,
          sendKey: ctx.value,
          authorize: async (customer) => {
            const may = await authorize({ slackUserId: ctx.userId, action: 'reply', customer });
            return may.allowed ? undefined : may.text;
          },
        });
      if (ctx.actionId === 'rapport_name' && ctx.value) return run(ctx, `name ${ctx.value}`);
      log.debug({ actionId: ctx.actionId }, 'unknown card action');
      return undefined;
    },
  };
}

/**
 * `/rapport …` slash commands and the customer card's buttons. Commands answer at once (Slack wants
 * an answer within 3 s) with an ephemeral text; anything slow is queued.
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
import { conversationLockKey, withLock } from '../queue/lock';
import type { Agent, Conversation, CurrentThread, RouterModels, SlackThread } from './models';
import type { Outbox } from './outbox';
import type { Ownership } from './ownership';
import { channelLabel, fill } from './texts';
import { windowState } from './card';
import type { CardUpdates } from './card-updates';
import { nameFromSlack, type Naming } from './naming';
import { escapeSlackText } from '../channels/slack/escape';

export interface LinkPort {
  /** Trusted link (an agent vouches): merges at once or attaches the identity. */
  link(input: {
    customerId: Types.ObjectId;
    value: string;
    actor: string;
  }): Promise<{ text: string; mergedOwnerAgentId?: string; mergedId?: string; survivorId?: string }>;
}

export interface CommandsOptions {
  models: RouterModels & IdentityModels;
  ownership: Ownership;
  outbox: Outbox;
  config: RouterConfig;
  link?: LinkPort;
  /** Card refreshes and notices in a given thread (card-updates.ts). */
  cards: CardUpdates;
  naming: Naming;
  /** Tells the owner who lost a customer to a merge (router/index.ts onMerged). */
  onMerged?: (m: { survivorId?: string; mergedId?: string }) => Promise<void>;
  redis: RedisClient;
  prefix: string;
  log: Logger;
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

export function createCommands(o: CommandsOptions) {
  const { models, ownership, outbox, log, redis, prefix } = o;
  const { Agent, SlackThread, Customer, Identity, Conversation, AgentPost } = models;

  async function customerFor(ctx: CommandContext, args: string[]): Promise<Customer | undefined> {
    const last = args[args.length - 1];
    let id: Types.ObjectId | undefined;
    if (last && /^[0-9a-f]{24}$/i.test(last)) {
      id = new Types.ObjectId(last);
      args.pop();
    } else if (ctx.threadTs) {
      id = (await SlackThread.findOne({ channel: ctx.channelId, ts: ctx.threadTs }).lean<SlackThread>())
        ?.customerId;
    }
    if (!id) return undefined;
    let customer = await Customer.findById(id).lean<Customer>();
    for (let hops = 0; customer?.mergedInto && hops < 8; hops++)
      customer = await Customer.findById(customer.mergedInto).lean<Customer>();
    return customer ?? undefined;
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

  async function run(ctx: CommandContext, text: string): Promise<string> {
    const args = text.trim().split(/\s+/).filter(Boolean);
    const sub = (args.shift() ?? 'help').toLowerCase();
    const me = await Agent.findOne({ slackUserId: ctx.userId }).lean<Agent>();
    switch (sub) {
      case 'away': {
        if (!me) return 'You are not a Rapport agent yet (ask an admin to add you).';
        const until = parseUntil(args.join(' ') || undefined, new Date());
        await Agent.updateOne(
          { _id: me._id },
          {
            $set: { status: 'away', awaySince: new Date(), ...(until ? { awayUntil: until } : {}) },
            ...(until ? {} : { $unset: { awayUntil: 1 } }),
          },
        );
        const backup = await ownership.agentById(me.backupAgentId);
        return `You are away${until ? ` until ${until.toISOString().slice(0, 16).replace('T', ' ')} UTC` : ''}. ${backup ? `${backup.name} is mentioned in your threads and covers.` : 'You have no backup set; teammates can still answer in your threads.'}`;
      }
      case 'back': {
        if (!me) return 'You are not a Rapport agent yet.';
        await Agent.updateOne({ _id: me._id }, { $set: { status: 'available' }, $unset: { awayUntil: 1 } });
        const summary = await summaryFor(me);
        await Agent.updateOne({ _id: me._id }, { $unset: { awaySince: 1 } });
        return summary;
      }
      case 'help':
        return HELP;
    }
    const customer = await customerFor(ctx, args);
    if (!customer)
      return `Run this in a customer thread, or add the customer id (shown on the card).\n\n${HELP}`;
    switch (sub) {
      case 'handoff': {
        const to = await agentByMention(args[0]);
        if (!to) return `Who should take over? Use \`/rapport handoff @agent\` with an active Rapport agent.`;
        return handoff(customer, to, ctx.userId);
      }
      case 'whois':
        return whois(customer);
      case 'name':
        return nameFromSlack(o.naming, customer, args.join(' '), ctx.userId);
      case 'close':
        await withLock(
          redis,
          conversationLockKey(prefix, String(customer._id)),
          10_000,
          () =>
            Conversation.updateOne(
              { _id: customer._id },
              { $set: { open: false }, $unset: { awaitingSince: 1 } },
            ),
          { waitMs: 2_000 },
        );
        return `Closed. It reopens when ${nameOf(customer, 'the customer')} writes again.`;
      case 'link': {
        if (!o.link) return 'Linking is not available.';
        const value = args.join(' ');
        if (!value) return 'Usage: `/rapport link <phone|email>`';
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
      case 'template': {
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
      default:
        return `Unknown command \`${sub}\`.\n\n${HELP}`;
    }
  }

  return {
    run,
    handoff,
    /** A card button or menu. */
    async interaction(
      ctx: CommandContext & { actionId: string; selectedUser?: string; value?: string },
    ): Promise<string | undefined> {
      if (ctx.actionId === 'rapport_handoff' && ctx.selectedUser)
        return run(ctx, `handoff <@${ctx.selectedUser}>`);
      if (ctx.actionId === 'rapport_close') return run(ctx, 'close');
      if (ctx.actionId === 'rapport_name' && ctx.value) return run(ctx, `name ${ctx.value}`);
      if (ctx.actionId === 'rapport_template') return run(ctx, 'template');
      log.debug({ actionId: ctx.actionId }, 'unknown card action');
      return undefined;
    },
  };
}

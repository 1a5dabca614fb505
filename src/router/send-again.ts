/**
 * "Send again" under an uncertain send's note: an agent's explicit, recorded second send.
 *
 * A send whose answer was lost on a provider that cannot be asked (WhatsApp Cloud, Messenger) or
 * that was interrupted mid-call is never resent automatically (delivery.ts). The agent, who can
 * check with the customer, may press the button: a new send is scheduled with the same content and
 * route, keyed `<original key>:again` (a second press, or Slack delivering the click twice, finds it
 * and changes nothing), with `resendOf` and the agent who pressed recorded, and the parts the
 * original already got accepted carried over so they are not sent twice. Who may press it: whoever
 * may reply to that customer (authorize.ts: the owner, the teammate covering, a lead or an admin).
 */
import type { Types } from 'mongoose';
import type { Logger } from '../logger';
import type { IdentityModels } from '../identity/models';
import type { CustomerSend, RouterModels } from './models';
import type { Outbox } from './outbox';

export interface SendAgainOptions {
  models: RouterModels & IdentityModels;
  outbox: Outbox;
  log: Logger;
}

export type SendAgain = (ctx: {
  userId: string;
  sendKey: string;
  /** The permission check of the caller (authorize.ts, as for a reply): a refusal's text, or undefined. */
  authorize?: (customer: { _id: Types.ObjectId; ownerAgentId?: string }) => Promise<string | undefined>;
}) => Promise<string>;

/** The new send's fields: the original's content and route, its accepted parts, who asked. */
function repeatOf(original: CustomerSend, userId: string) {
  return {
    key: `${original.key}:again`,
    origin: original.origin === 'template' ? ('template' as const) : ('agent' as const),
    ...(original.text !== undefined ? { text: original.text } : {}),
    media: original.media ?? [],
    ...(original.template ? { template: original.template } : {}),
    ...((original.channel ?? original.via) ? { via: original.channel ?? original.via } : {}),
    ...(original.toIdentityKey ? { toIdentityKey: original.toIdentityKey } : {}),
    ...(original.slack ? { slack: original.slack } : {}),
    agentSlackUserId: userId,
    parts: original.parts ?? [],
    resendOf: original.key,
  };
}

export function createSendAgain(o: SendAgainOptions): SendAgain {
  const { Agent, Customer, CustomerSend } = o.models;
  return async ({ userId, sendKey, authorize }) => {
    const agent = await Agent.findOne({ slackUserId: userId }, { _id: 1 }).lean();
    if (!agent) return 'Only a Rapport agent can send a reply again.';
    const original = await CustomerSend.findOne({ key: sendKey }).lean<CustomerSend>();
    if (!original) return 'That reply is no longer known, so it cannot be sent again.';
    const customer = await Customer.findById(original.customerId, { ownerAgentId: 1 }).lean();
    const refused = customer && authorize ? await authorize(customer) : undefined;
    if (refused) return refused;
    if (original.state !== 'failed' || original.failure?.reason !== 'uncertain')
      return 'Only a reply whose delivery is uncertain can be sent again from here.';
    const repeat = repeatOf(original, userId);
    const existing = await CustomerSend.findOne({ key: repeat.key }, { _id: 1 }).lean();
    if (existing) return 'It was already sent again; the thread shows how that went.';
    await o.outbox.sendToCustomer(original.customerId as Types.ObjectId, repeat);
    await o.outbox.postToAgent(original.customerId, {
      key: `send-again-note:${original.key}`,
      kind: 'note',
      username: 'Rapport',
      text: `:repeat: <@${userId}> chose to send the uncertain reply again.`,
    });
    o.log.info(
      { sendKey: original.key, customerId: String(original.customerId) },
      'uncertain send repeated by an agent',
    );
    return 'Sending it again; the thread shows the result.';
  };
}

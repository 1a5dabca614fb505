/**
 * Who may act on a customer from Slack: every `/rapport` subcommand, every card button and every
 * thread reply that would become a send asks `authorizeAgentAction` first.
 *
 * The model (README "Permissions"):
 * - only a registered, active agent acts at all; any other workspace member is refused;
 * - an `agent` acts on the customers they own, and on those they cover: the owner named them as
 *   backup and is away (or offline);
 * - a `lead` or `admin` acts on any customer;
 * - `need: 'own'` (a trusted merge, `/rapport link`) leaves cover out: the owner, or a lead/admin.
 *
 * A refusal reveals nothing about the customer: a customer id that does not exist gets the very
 * same answer as one the caller may not touch (only leads and admins, who may see every customer,
 * are told it does not exist). Every refusal is counted in `rapport_slack_refusals_total` and
 * logged with ids only.
 */
import type { Types } from 'mongoose';
import type { Logger } from '../logger';
import type { Agent, AgentRole, RouterModels } from './models';

/** What is being done, as counted in metrics (a fixed set, so labels stay bounded). */
export type SlackAction =
  | 'away'
  | 'back'
  | 'whois'
  | 'handoff'
  | 'close'
  | 'link'
  | 'template'
  | 'name'
  | 'reply'
  | 'claim'
  | 'other';

export type RefusalReason =
  'not_agent' | 'inactive' | 'not_permitted' | 'unknown_customer' | 'not_owner_of_both';

/** Why an agent may act: they own the customer, cover for its owner, or hold a role. */
export type PermissionBasis = 'owner' | 'cover' | 'role';

export type AgentAuthorization =
  | { allowed: true; agent: Agent; basis: PermissionBasis }
  | {
      allowed: false;
      reason: RefusalReason;
      agent?: Agent;
      /** The ephemeral answer: `:no_entry:` and `why`. */
      text: string;
      /** The reason told to the caller (the same for a customer that does not exist). */
      why: string;
    };

/** The customer acted on, as far as permissions go. */
export interface CustomerRef {
  _id: Types.ObjectId;
  ownerAgentId?: string;
}

export interface AgentActionRequest {
  /** The Slack user asking (the command's `user_id`, the event's `user`). */
  slackUserId: string;
  action: SlackAction;
  /**
   * The customer acted on. `null`: the caller named one that does not exist (answered like a
   * customer they may not touch). Omitted: an action on oneself (`away`, `back`).
   */
  customer?: CustomerRef | null;
  /** `own`: cover is not enough (trusted merges). @defaultValue `'act'` */
  need?: 'act' | 'own';
}

export interface AuthorizerOptions {
  models: RouterModels;
  log: Logger;
  /** Counts a refusal (metrics). */
  onRefused?: (action: SlackAction, reason: RefusalReason) => void;
}

const ANY_CUSTOMER: ReadonlySet<AgentRole> = new Set(['lead', 'admin']);

/** The refusal texts: what each reason tells the caller (never anything about the customer). */
export const REFUSAL_TEXT: Record<RefusalReason, string> = {
  not_agent:
    'Only active Rapport agents can act on customers. Ask an admin to add you (`rapport agents add`).',
  inactive:
    'Only active Rapport agents can act on customers. Ask an admin to add you (`rapport agents add`).',
  not_permitted:
    "You can't do that: agents act only on the customers they own, or cover while the owner is away. Ask the owner or a lead.",
  unknown_customer: 'There is no customer with that id (it may have been erased).',
  not_owner_of_both:
    'Linking merges two customers: only a lead, an admin or the owner of both can do that. Ask a lead.',
};

/** Whether a role lets an agent act on every customer. */
export function actsOnAnyCustomer(agent: Pick<Agent, 'role'>): boolean {
  return ANY_CUSTOMER.has(agent.role ?? 'agent');
}

export function createAuthorizer(o: AuthorizerOptions) {
  const { Agent } = o.models;

  function refuse(
    req: AgentActionRequest,
    reason: RefusalReason,
    agent?: Agent,
  ): Extract<AgentAuthorization, { allowed: false }> {
    o.onRefused?.(req.action, reason);
    o.log.info(
      {
        slackUserId: req.slackUserId,
        agentId: agent ? String(agent._id) : undefined,
        action: req.action,
        reason,
        customerId: req.customer ? String(req.customer._id) : undefined,
      },
      'slack action refused',
    );
    // Someone who may not see every customer is not told whether this one exists.
    const shown =
      reason === 'unknown_customer' && !(agent && actsOnAnyCustomer(agent)) ? 'not_permitted' : reason;
    const why = REFUSAL_TEXT[shown];
    return { allowed: false, reason, text: `:no_entry: ${why}`, why, ...(agent ? { agent } : {}) };
  }

  async function basisFor(agent: Agent, customer: CustomerRef, need: 'act' | 'own') {
    if (actsOnAnyCustomer(agent)) return 'role' as const;
    const id = String(agent._id);
    if (customer.ownerAgentId === id) return 'owner' as const;
    if (need === 'own' || !customer.ownerAgentId || !/^[0-9a-f]{24}$/i.test(customer.ownerAgentId))
      return undefined;
    const owner = await Agent.findById(customer.ownerAgentId, { backupAgentId: 1, status: 1 }).lean<Agent>();
    return owner?.backupAgentId === id && owner.status !== 'available' ? ('cover' as const) : undefined;
  }

  /** The permission check for one Slack action (see the module comment). */
  async function authorizeAgentAction(req: AgentActionRequest): Promise<AgentAuthorization> {
    const agent = await Agent.findOne({ slackUserId: req.slackUserId }).lean<Agent>();
    if (!agent) return refuse(req, 'not_agent');
    if (!agent.active) return refuse(req, 'inactive', agent);
    if (req.customer === undefined) return { allowed: true, agent, basis: 'owner' };
    if (req.customer === null) return refuse(req, 'unknown_customer', agent);
    const basis = await basisFor(agent, req.customer, req.need ?? 'act');
    if (!basis) return refuse(req, req.need === 'own' ? 'not_owner_of_both' : 'not_permitted', agent);
    return { allowed: true, agent, basis };
  }

  return { authorizeAgentAction, refuse };
}

export type Authorizer = ReturnType<typeof createAuthorizer>;

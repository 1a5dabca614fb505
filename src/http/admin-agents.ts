/**
 * `/api/agents`: the people who own customers. Deactivating an agent (PATCH `active: false`) hands
 * every customer they own to the next agent by the assignment policy, and each customer is told.
 */
import { Router } from 'express';
import { Types } from 'mongoose';
import { z } from 'zod';
import { ConflictError, NotFoundError, PayloadError } from '../errors';
import type { Logger } from '../logger';
import { AGENT_ROLES, type Agent, type RouterModels } from '../router/models';
import type { Router as RapportRouter } from '../router';
import type { Customer, IdentityModels } from '../identity/models';
import { adminActor } from './admin-auth';

const slackId = (prefix: string) =>
  z
    .string()
    .trim()
    .regex(new RegExp(`^${prefix}[A-Z0-9]{2,}$`), `must be a Slack id starting with ${prefix}`);

export const createAgentSchema = z.object({
  slackUserId: slackId('[UW]'),
  name: z.string().trim().min(1).max(80),
  inboxChannelId: slackId('[CG]'),
  capacity: z.number().int().min(1).max(10_000).default(50),
  backupAgentId: z
    .string()
    .regex(/^[0-9a-f]{24}$/i, 'must be an agent id')
    .optional(),
  /** What they may do in Slack (README "Permissions"). */
  role: z.enum(AGENT_ROLES).default('agent'),
});

export const updateAgentSchema = z
  .object({
    name: z.string().trim().min(1).max(80),
    inboxChannelId: slackId('[CG]'),
    capacity: z.number().int().min(1).max(10_000),
    backupAgentId: z
      .string()
      .regex(/^[0-9a-f]{24}$/i, 'must be an agent id')
      .nullable(),
    status: z.enum(['available', 'away', 'offline']),
    role: z.enum(AGENT_ROLES),
    awayUntil: z.iso.datetime().nullable(),
    active: z.boolean(),
  })
  .partial()
  .strict();

export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const result = schema.safeParse(body ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
  throw new PayloadError(`invalid request: ${problems.join('; ')}`);
}

/** The agent as the agents API answers with it (published as `Agent` in the OpenAPI document). */
export const agentView = z.object({
  id: z.string(),
  slackUserId: z.string(),
  name: z.string(),
  inboxChannelId: z.string(),
  capacity: z.number().int(),
  backupAgentId: z.string().nullable(),
  role: z.enum(AGENT_ROLES),
  status: z.enum(['available', 'away', 'offline']),
  awayUntil: z.string().nullable(),
  active: z.boolean(),
  createdAt: z.string(),
  /** GET: how many customers they own now. */
  openCustomers: z.number().int().optional(),
  /** PATCH with `active: false`: how many of their customers were handed to others. */
  reassignedCustomers: z.number().int().optional(),
});

export type AgentView = z.infer<typeof agentView>;

/** GET /agents. */
export const agentListView = z.object({ agents: z.array(agentView) });

export function agentJson(a: Agent): AgentView {
  return {
    id: String(a._id),
    slackUserId: a.slackUserId,
    name: a.name,
    inboxChannelId: a.inboxChannelId,
    capacity: a.capacity,
    backupAgentId: a.backupAgentId ?? null,
    role: a.role ?? 'agent',
    status: a.status,
    awayUntil: a.awayUntil?.toISOString() ?? null,
    active: a.active,
    createdAt: a.createdAt.toISOString(),
  };
}

export function agentAdminRoutes(o: {
  models: RouterModels & IdentityModels;
  router: RapportRouter;
  log: Logger;
  /** Called after an agent's record changed (the hot-state cache, src/router/hot-state.ts). */
  agentChanged?: (id: string) => Promise<void>;
}): Router {
  const { Agent, Customer } = o.models;
  const api = Router();

  const find = async (id: string) => {
    if (!Types.ObjectId.isValid(id) || !/^[0-9a-f]{24}$/i.test(id)) throw new NotFoundError('agent');
    const agent = await Agent.findById(id).lean<Agent>();
    if (!agent) throw new NotFoundError('agent');
    return agent;
  };

  api.post('/agents', async (req, res) => {
    const body = parseBody(createAgentSchema, req.body);
    if (body.backupAgentId) await find(body.backupAgentId);
    if (await Agent.exists({ slackUserId: body.slackUserId }))
      throw new ConflictError('an agent with this slackUserId exists');
    const agent = await Agent.create({ ...body, status: 'available', active: true });
    await o.agentChanged?.(String(agent._id)); // the owner pick's list of active agents
    o.log.info({ agentId: String(agent._id), actor: adminActor(res) }, 'agent created');
    res.status(201).json(agentJson(agent.toObject()));
  });

  api.get('/agents', async (_req, res) => {
    const agents = await Agent.find().sort({ createdAt: 1 }).lean<Agent[]>();
    const withLoad = await Promise.all(
      agents.map(async (a) => ({
        ...agentJson(a),
        openCustomers: await o.router.ownership.openCount(String(a._id)),
      })),
    );
    res.json({ agents: withLoad } satisfies z.infer<typeof agentListView>);
  });

  api.get('/agents/:id', async (req, res) => {
    const agent = await find(req.params.id);
    res.json({
      ...agentJson(agent),
      openCustomers: await o.router.ownership.openCount(String(agent._id)),
    } satisfies AgentView);
  });

  api.patch('/agents/:id', async (req, res) => {
    const agent = await find(req.params.id);
    const body = parseBody(updateAgentSchema, req.body);
    if (body.backupAgentId) {
      if (body.backupAgentId === String(agent._id))
        throw new ConflictError('an agent cannot be their own backup');
      await find(body.backupAgentId);
    }
    const set: Record<string, unknown> = {};
    const unset: Record<string, 1> = {};
    for (const [k, v] of Object.entries(body)) {
      if (v === null) unset[k] = 1;
      else set[k] = k === 'awayUntil' ? new Date(v as string) : v;
    }
    if (body.status === 'away' && agent.status !== 'away') set.awaySince = new Date();
    await Agent.updateOne(
      { _id: agent._id },
      {
        ...(Object.keys(set).length ? { $set: set } : {}),
        ...(Object.keys(unset).length ? { $unset: unset } : {}),
      },
    );
    await o.agentChanged?.(String(agent._id));
    let reassigned = 0;
    if (body.active === false && agent.active) {
      const owned = await Customer.find({ ownerAgentId: String(agent._id), mergedInto: null }).lean<
        Customer[]
      >();
      for (const customer of owned) {
        const next = await o.router.ownership.pickAgent([String(agent._id)]);
        if (!next) break;
        await o.router.commands.handoff(customer, next, adminActor(res));
        reassigned++;
      }
      o.log.info({ agentId: String(agent._id), reassigned, actor: adminActor(res) }, 'agent deactivated');
    }
    const updated = await find(req.params.id);
    res.json({
      ...agentJson(updated),
      ...(body.active === false ? { reassignedCustomers: reassigned } : {}),
    } satisfies AgentView);
  });

  return api;
}

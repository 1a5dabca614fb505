/**
 * Ownership: "one person, not a queue". A customer gets an owner on first contact and keeps them;
 * the owner changes only by an explicit handoff or when the owner is deactivated, every change is
 * recorded, and the customer is told the new name.
 *
 * Assignment policy: among active agents that are available and below capacity, the one with the
 * fewest open customers (ties: the longest-standing agent, then id). If nobody is available, the
 * least-loaded active agent — the customer is told when they will be answered. The write is a
 * conditional update (`ownerAgentId: null`), so two concurrent first messages agree on one owner.
 */
import type { Types } from 'mongoose';
import type { Customer, IdentityModels } from '../identity/models';
import type { Logger } from '../logger';
import type { Agent, Conversation, RouterModels } from './models';
import type { RedisClient } from '../queue/connection';
import { withConversationLock } from '../queue/lock';
import { isDuplicateKeyError } from '../storage/duplicate-key';
import {
  currentToken,
  customerChanged,
  customerDocKey,
  customerGenKey,
  encodeHotCopy,
  epochKey,
  HOT_COPY_TTL_S,
  HOT_TOKEN_TTL_S,
  newToken,
} from '../identity/cache';
import { conversationChanged, createHotAgents, createHotCustomers, createHotRecords } from './hot-state';

export interface Ownership {
  /**
   * The customer's owner, assigning one if they have none (or theirs was deactivated). The
   * conversation's copy of the owner is written when the owner changes; with `syncUnchanged: false`
   * an unchanged owner is not re-checked there (the caller writes the conversation itself, or does
   * not need it) — one database read less per message. `customer`: the customer document if the
   * caller has just read it. Returns the customer document it decided on as well (after the
   * assignment when it assigned), so the caller need not read it again.
   */
  ensureOwner(
    customerId: Types.ObjectId,
    actor: string,
    opts?: { customer?: Customer; syncUnchanged?: boolean },
  ): Promise<{ agent?: Agent; changed: boolean; customer?: Customer }>;
  /** Moves the customer to `toAgent`; returns the previous owner. */
  transfer(
    customerId: Types.ObjectId,
    toAgent: Agent,
    reason: 'handoff' | 'deactivated' | 'merge',
    actor: string,
  ): Promise<{ from?: Agent }>;
  pickAgent(exclude?: string[]): Promise<Agent | undefined>;
  openCount(agentId: string): Promise<number>;
  agentById(id: string | undefined): Promise<Agent | undefined>;
}

/**
 * The customer's gen is replaced (as `customerChanged` does) and, only if it is still the token read
 * before the assignment, the assigned customer is stored as the router's copy under the new one: no
 * other write to the customer can have landed between the read token and the assignment's answer
 * without replacing the token first (writers replace it after writing). One hash slot: safe on a
 * Redis Cluster.
 */
const REPLACE_AND_FILL = `
local filled = 0
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[5]))
  filled = 1
end
redis.call('set', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[4]))
return filled`;

/**
 * The owner assignment (conditional on the owner read), returning the assigned customer and leaving
 * it as the router's hot copy (hot-state.ts `createHotCustomers`' entry format), so the Slack flush,
 * the card and the identity cache's refill read it from Redis instead of the database. Undefined
 * when another assignment won.
 */
async function assignAndCache(
  Customer: IdentityModels['Customer'],
  redis: RedisClient,
  prefix: string,
  customer: Customer,
  agentId: string,
): Promise<Customer | undefined> {
  const id = String(customer._id);
  // Tokens first, then the database (the hot-state reader's order).
  const [genBefore, epoch] = await Promise.all([
    currentToken(redis, customerGenKey(prefix, id)),
    currentToken(redis, epochKey(prefix)),
  ]);
  const assigned = await Customer.findOneAndUpdate(
    { _id: customer._id, ownerAgentId: customer.ownerAgentId ?? null },
    { $set: { ownerAgentId: agentId } },
    { returnDocument: 'after' },
  ).lean<Customer>();
  if (!assigned) return undefined;
  const gen = newToken();
  const entry = encodeHotCopy({ gen, also: epoch, doc: assigned });
  await redis.eval(
    REPLACE_AND_FILL,
    2,
    customerGenKey(prefix, id),
    customerDocKey(prefix, id),
    genBefore,
    gen,
    entry,
    String(HOT_TOKEN_TTL_S),
    String(HOT_COPY_TTL_S),
  );
  return assigned;
}

export function createOwnership(
  models: RouterModels & IdentityModels,
  redis: RedisClient,
  prefix: string,
  log: Logger,
): Ownership {
  const { Agent, Conversation, Customer, OwnershipChange } = models;

  // From the hot state in Redis when current (src/router/hot-state.ts): no database read per message.
  const hotAgents = createHotAgents(redis, prefix, async (id) => (await Agent.findById(id).lean<Agent>()) ?? undefined);
  const hotCustomers = createHotCustomers(redis, prefix, async (id) => (await Customer.findById(id).lean<Customer>()) ?? undefined);
  // The merged-away customers that still name an owner, valid while the identity epoch is: only a
  // merge, an undo, a link or an erasure (each replaces the epoch after its writes) makes or unmakes
  // a tombstone, and a tombstone's owner is not changed otherwise (handoffs and deactivation move
  // live customers only). The pick reads them from Redis instead of the database.
  const hotTombstones = createHotRecords<Pick<Customer, '_id' | 'ownerAgentId'>[]>(
    redis,
    () => ({ gen: `${prefix}:hot:{tombstones}:gen`, doc: `${prefix}:hot:{tombstones}:doc` }),
    () =>
      Customer.find({ mergedInto: { $ne: null }, ownerAgentId: { $ne: null } }, { _id: 1, ownerAgentId: 1 }).lean<
        Pick<Customer, '_id' | 'ownerAgentId'>[]
      >(),
    epochKey(prefix),
  );
  const agentById = async (id: string | undefined) => {
    if (!id || !/^[0-9a-f]{24}$/i.test(id)) return undefined;
    return hotAgents.get(id);
  };

  /**
   * Live count: an open conversation of a customer merged into another (a tombstone) is not a
   * customer any more; the survivor's conversation counts for its own owner.
   */
  const openCount = async (agentId: string) => {
    const open = await Conversation.find({ ownerAgentId: agentId, open: true }, { _id: 1 }).lean();
    if (open.length === 0) return 0;
    const merged = await Customer.countDocuments({
      _id: { $in: open.map((c) => c._id) },
      mergedInto: { $ne: null },
    });
    return open.length - merged;
  };

  /** Open customers per agent, for all of `agentIds` in one aggregate (not one count per agent). */
  async function openCounts(agentIds: string[]): Promise<Map<string, number>> {
    const rows = await Conversation.aggregate<{ _id: string; open: number }>([
      { $match: { open: true, ownerAgentId: { $in: agentIds } } },
      { $group: { _id: '$ownerAgentId', open: { $sum: 1 } } },
    ]);
    const counts = new Map(rows.map((r) => [String(r._id), r.open]));
    // Live counts: a merged-away customer's conversation no longer counts (one more command when
    // one of these agents has such a customer).
    const merged = ((await hotTombstones.get('all')) ?? []).filter((c) => agentIds.includes(String(c.ownerAgentId)));
    if (merged.length === 0) return counts;
    const stale = await Conversation.find(
      { _id: { $in: merged.map((c) => c._id) }, open: true, ownerAgentId: { $in: agentIds } },
      { ownerAgentId: 1 },
    ).lean();
    for (const c of stale) {
      const id = String(c.ownerAgentId);
      counts.set(id, (counts.get(id) ?? 1) - 1);
    }
    return counts;
  }

  async function pickAgent(exclude: string[] = []): Promise<Agent | undefined> {
    const agents = (await Agent.find({ active: true }).lean<Agent[]>()).filter(
      (a) => !exclude.includes(String(a._id)),
    );
    if (agents.length === 0) return undefined;
    const open = await openCounts(agents.map((a) => String(a._id)));
    const loads = agents.map((a) => ({ agent: a, open: open.get(String(a._id)) ?? 0 }));
    const byLoad = (x: { agent: Agent; open: number }, y: { agent: Agent; open: number }) =>
      x.open - y.open ||
      x.agent.createdAt.getTime() - y.agent.createdAt.getTime() ||
      String(x.agent._id).localeCompare(String(y.agent._id));
    const available = loads
      .filter((l) => l.agent.status === 'available' && l.open < l.agent.capacity)
      .sort(byLoad);
    return (available[0] ?? loads.sort(byLoad)[0])?.agent;
  }

  async function record(
    customerId: Types.ObjectId,
    from: string | undefined,
    to: string,
    reason: 'assigned' | 'handoff' | 'deactivated' | 'merge',
    actor: string,
  ) {
    await OwnershipChange.create({
      customerId,
      fromAgentId: from,
      toAgentId: to,
      reason,
      actor,
      at: new Date(),
    });
  }

  /** `changed`: the owner was just changed, so the conversation cannot show it yet (no read). */
  async function syncConversation(customerId: Types.ObjectId, ownerAgentId: string, changed = false) {
    if (!changed) {
      const current = await Conversation.findById(customerId, { ownerAgentId: 1 }).lean<Conversation>();
      if (current?.ownerAgentId === ownerAgentId) return;
    }
    await withConversationLock(redis, prefix, customerId, async () => {
      await Conversation.updateOne(
        { _id: customerId },
        { $set: { ownerAgentId }, $setOnInsert: { open: true } },
        { upsert: true },
      );
      await conversationChanged(redis, prefix, customerId);
    }).catch((err: unknown) => {
      if (!isDuplicateKeyError(err)) throw err; // a concurrent upsert created it; the next call syncs
    });
  }

  return {
    pickAgent,
    openCount,
    agentById,
    async ensureOwner(customerId, actor, opts = {}) {
      // A stale copy cannot assign wrongly: the assignment below is conditional on the owner it read.
      const customer = opts.customer ?? (await hotCustomers.get(String(customerId)));
      if (!customer) throw new Error(`customer ${String(customerId)} not found`);
      const current = await agentById(customer.ownerAgentId);
      if (current?.active) {
        if (opts.syncUnchanged !== false) await syncConversation(customerId, String(current._id));
        return { agent: current, changed: false, customer };
      }
      const agent = await pickAgent();
      if (!agent) return { agent: undefined, changed: false, customer };
      const assigned = await assignAndCache(Customer, redis, prefix, customer, String(agent._id));
      if (assigned) {
        await record(
          customerId,
          customer.ownerAgentId,
          String(agent._id),
          customer.ownerAgentId ? 'deactivated' : 'assigned',
          actor,
        );
        log.info({ customerId: String(customerId), agentId: String(agent._id) }, 'owner assigned');
        await syncConversation(customerId, String(agent._id), true);
        return { agent, changed: true, customer: assigned };
      }
      // Someone else assigned concurrently: theirs stands.
      const again = await Customer.findById(customerId).lean<Customer>();
      const owner = await agentById(again?.ownerAgentId);
      if (owner) await syncConversation(customerId, String(owner._id));
      return { agent: owner, changed: false, ...(again ? { customer: again } : {}) };
    },
    async transfer(customerId, toAgent, reason, actor) {
      const customer = await Customer.findById(customerId).lean<Customer>();
      if (!customer) throw new Error(`customer ${String(customerId)} not found`);
      const from = await agentById(customer.ownerAgentId);
      await Customer.updateOne({ _id: customerId }, { $set: { ownerAgentId: String(toAgent._id) } });
      await customerChanged(redis, prefix, customerId);
      await syncConversation(customerId, String(toAgent._id));
      await record(customerId, customer.ownerAgentId, String(toAgent._id), reason, actor);
      log.info(
        {
          customerId: String(customerId),
          fromAgentId: customer.ownerAgentId,
          toAgentId: String(toAgent._id),
          reason,
        },
        'owner changed',
      );
      return { from };
    },
  };
}

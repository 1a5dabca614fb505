/**
 * Ownership: "one person, not a queue". A customer gets an owner on first contact and keeps them;
 * the owner changes only by an explicit handoff or when the owner is deactivated, every change is
 * recorded, and the customer is told the new name.
 *
 * Assignment policy: among active agents that are available and below capacity, the one with the
 * fewest open customers (ties: the longest-standing agent, then id). If nobody is available, the
 * least-loaded active agent — the customer is told when they will be answered. A new customer is
 * created with their owner (`createOwned`: the owner is set on insert, so of concurrent first
 * messages the one that creates the customer sets it and the others find it); a customer without
 * one (nobody was active then, or theirs was deactivated) gets one by a conditional update
 * (`ownerAgentId` as read), so two concurrent messages agree on one owner either way.
 */
import mongoose, { type Types } from 'mongoose';
import type { Customer, IdentityModels } from '../identity/models';
import type { OwnedCreation } from '../identity/resolve';
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
import {
  conversationChanged,
  createHotAgents,
  createHotCustomers,
  createHotRecords,
  createHotTeam,
} from './hot-state';
import { createOwnerLoad } from './owner-load';

/**
 * How old the shared open counts may get before one process takes them from the database again
 * (the aggregate over all open conversations: ~0.3 s at 400, ~4 s at 6,000 on a loaded 2-core
 * machine). Until then closes, erasures and merges still count (too high: an assignment can come
 * up to this much later than possible), and an undone merge does not count yet.
 */
const LOAD_MAX_AGE_MS = 15_000;

export interface Ownership {
  /**
   * The customer's owner, assigning one if they have none (or theirs was deactivated). The
   * conversation's copy of the owner is written when the owner changes; with `syncUnchanged: false`
   * an unchanged owner is not re-checked there (the caller writes the conversation itself, or does
   * not need it) — one database read less per message; with `syncChanged: false` a new owner is not
   * written there either (the caller writes the conversation with it right after, as the inbound
   * router does) — one write less per first contact. `customer`: the customer document if the
   * caller has just read it. Returns the customer document it decided on as well (after the
   * assignment when it assigned), so the caller need not read it again.
   */
  ensureOwner(
    customerId: Types.ObjectId,
    actor: string,
    opts?: { customer?: Customer; syncUnchanged?: boolean; syncChanged?: boolean },
  ): Promise<{ agent?: Agent; changed: boolean; customer?: Customer }>;
  /**
   * A new customer created with their owner in the creating write (identity/resolve.ts
   * `OwnedCreation`), so no assignment write follows: the pick (reserved as for `ensureOwner`), the
   * tokens, `create` with the pick, then — if this call created the customer with it — the
   * assignment's record and the router's hot copy of the customer. Of concurrent creations one
   * inserts; the others find its owner stored and settle the shared counts to it.
   */
  createOwned: OwnedCreation;
  /** Moves the customer to `toAgent`; returns the previous owner. */
  transfer(
    customerId: Types.ObjectId,
    toAgent: Agent,
    reason: 'handoff' | 'deactivated' | 'merge',
    actor: string,
  ): Promise<{ from?: Agent }>;
  pickAgent(exclude?: string[]): Promise<Agent | undefined>;
  /**
   * A closed conversation of the customer reopened for `agentId` (the inbound router): counted for
   * them at once, not only at the next rebuild of the shared counts.
   */
  reopened(customerId: Types.ObjectId, agentId: string): Promise<void>;
  /** The shared open counts as the pick sees them now (undefined before the first pick). */
  loadCounts(): Promise<Map<string, number> | undefined>;
  /** Rebuilds the shared open counts from the database now; returns them. */
  refreshLoad(): Promise<Map<string, number>>;
  /** The agent's live open customers, from the database (the admin view). */
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

/**
 * The merged-away customers that still name an owner, valid while the identity epoch is: only a
 * merge, an undo, a link or an erasure (each replaces the epoch after its writes) makes or unmakes a
 * tombstone, and a tombstone's owner is not changed otherwise (handoffs and deactivation move live
 * customers only). The pick reads them from Redis instead of the database.
 */
function createHotTombstones(Customer: IdentityModels['Customer'], redis: RedisClient, prefix: string) {
  return createHotRecords<Pick<Customer, '_id' | 'ownerAgentId'>[]>(
    redis,
    () => ({ gen: `${prefix}:hot:{tombstones}:gen`, doc: `${prefix}:hot:{tombstones}:doc` }),
    () =>
      Customer.find(
        { mergedInto: { $ne: null }, ownerAgentId: { $ne: null } },
        { _id: 1, ownerAgentId: 1 },
      ).lean<Pick<Customer, '_id' | 'ownerAgentId'>[]>(),
    epochKey(prefix),
  );
}

export function createOwnership(
  models: RouterModels & IdentityModels,
  redis: RedisClient,
  prefix: string,
  log: Logger,
  opts: { loadMaxAgeMs?: number } = {},
): Ownership {
  const { Agent, Conversation, Customer, OwnershipChange } = models;

  // From the hot state in Redis when current (src/router/hot-state.ts): no database read per message.
  const hotAgents = createHotAgents(
    redis,
    prefix,
    async (id) => (await Agent.findById(id).lean<Agent>()) ?? undefined,
  );
  const hotCustomers = createHotCustomers(
    redis,
    prefix,
    async (id) => (await Customer.findById(id).lean<Customer>()) ?? undefined,
  );
  const hotTombstones = createHotTombstones(Customer, redis, prefix);
  const hotTeam = createHotTeam(redis, prefix, () => Agent.find({ active: true }).lean<Agent[]>());
  const load = createOwnerLoad(redis, prefix, opts.loadMaxAgeMs ?? LOAD_MAX_AGE_MS);
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

  /**
   * Open customers per agent in the database, leaving out `skip` (the customers the load counts from
   * Redis): one aggregate over the open conversations, run at most every `loadMaxAgeMs` by one
   * process (src/router/owner-load.ts), not per first contact.
   */
  async function databaseCounts(skip: string[]): Promise<Map<string, number>> {
    const nin = skip.length > 0 ? { _id: { $nin: skip.map((id) => new mongoose.Types.ObjectId(id)) } } : {};
    const rows = await Conversation.aggregate<{ _id: string; open: number }>([
      { $match: { open: true, ownerAgentId: { $ne: null }, ...nin } },
      { $group: { _id: '$ownerAgentId', open: { $sum: 1 } } },
    ]);
    const counts = new Map(rows.map((r) => [String(r._id), r.open]));
    // Live counts: a merged-away customer's conversation no longer counts (one more command when
    // there is such a customer).
    const merged = ((await hotTombstones.get('all')) ?? []).filter((c) => !skip.includes(String(c._id)));
    if (merged.length === 0) return counts;
    const stale = await Conversation.find(
      { _id: { $in: merged.map((c) => c._id) }, open: true, ownerAgentId: { $ne: null } },
      { ownerAgentId: 1 },
    ).lean();
    for (const c of stale) {
      const id = String(c.ownerAgentId);
      counts.set(id, (counts.get(id) ?? 1) - 1);
    }
    return counts;
  }

  /**
   * A new snapshot of the counts: recent customers whose conversation shows their owner now are
   * counted from the database from here on; the others stay counted from Redis (and are left out of
   * the database's count).
   */
  async function rebuildLoad(): Promise<void> {
    // The epoch before the database (as every hot copy): a merge after this read replaces it again.
    const epoch = await currentToken(redis, epochKey(prefix));
    const recent = await load.recent();
    const written =
      recent.size === 0
        ? []
        : await Conversation.find(
            { _id: { $in: [...recent.keys()].map((id) => new mongoose.Types.ObjectId(id)) } },
            { ownerAgentId: 1 },
          ).lean();
    const settled = new Map(
      written
        .filter((c) => recent.get(String(c._id)) === c.ownerAgentId)
        .map((c) => [String(c._id), c.ownerAgentId!]),
    );
    await load.settle(settled);
    await load.store(await databaseCounts([...recent.keys()].filter((id) => !settled.has(id))), epoch);
  }

  /**
   * The pick, from the shared counts: with `customerId`, that customer's place is reserved with the
   * chosen agent in the same atomic step (see owner-load.ts). The candidates are the active agents'
   * current records (the team's hot copy), never the counts: a count cannot bring back an agent.
   */
  async function choose(exclude: string[], customerId?: string): Promise<Agent | undefined> {
    const agents = ((await hotTeam.get('all')) ?? []).filter(
      (a) => a.active && !exclude.includes(String(a._id)),
    );
    if (agents.length === 0) return undefined;
    agents.sort(
      (x, y) => x.createdAt.getTime() - y.createdAt.getTime() || String(x._id).localeCompare(String(y._id)),
    );
    const candidates = agents.map((a) => ({
      id: String(a._id),
      available: a.status === 'available',
      capacity: a.capacity ?? 0,
    }));
    const epoch = (await redis.get(epochKey(prefix))) ?? '';
    let picked = await load.pick(candidates, epoch, customerId);
    if (!picked || picked.first) {
      // No counts yet (a fresh Redis: every process needing them builds them; each result is
      // valid), or a merge, undo, link or erasure since the snapshot (this process holds the lock).
      await rebuildLoad();
      picked = await load.pick(candidates, (await redis.get(epochKey(prefix))) ?? '', customerId);
      // Another identity change meanwhile: pick from these counts; the next pick rebuilds.
      if (picked?.first) picked = await load.pick(candidates, '*', customerId);
      if (!picked) throw new Error('owner load counts missing right after they were stored');
    }
    // The pick stands on the counts it read; a failed rebuild leaves them (and the lock) to expire.
    if (picked.rebuild)
      await rebuildLoad().catch((err: unknown) =>
        log.warn({ err: String(err) }, 'owner load rebuild failed'),
      );
    return agents.find((a) => String(a._id) === picked.id);
  }

  const pickAgent = (exclude: string[] = []) => choose(exclude);

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
    reopened: (customerId, agentId) => load.moved(String(customerId), agentId),
    loadCounts: () => load.snapshot(),
    async refreshLoad() {
      await rebuildLoad();
      return (await load.snapshot()) ?? new Map();
    },
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
      const agent = await choose([], String(customerId));
      if (!agent) return { agent: undefined, changed: false, customer };
      const assigned = await assignAndCache(Customer, redis, prefix, customer, String(agent._id));
      if (!assigned) await load.release(String(customerId), String(agent._id));
      if (assigned) {
        await record(
          customerId,
          customer.ownerAgentId,
          String(agent._id),
          customer.ownerAgentId ? 'deactivated' : 'assigned',
          actor,
        );
        log.info({ customerId: String(customerId), agentId: String(agent._id) }, 'owner assigned');
        if (opts.syncChanged !== false) await syncConversation(customerId, String(agent._id), true);
        return { agent, changed: true, customer: assigned };
      }
      // Someone else assigned concurrently: theirs stands.
      const again = await Customer.findById(customerId).lean<Customer>();
      const owner = await agentById(again?.ownerAgentId);
      if (owner) await syncConversation(customerId, String(owner._id));
      return { agent: owner, changed: false, ...(again ? { customer: again } : {}) };
    },
    async createOwned(customerId, create) {
      const id = String(customerId);
      const agent = await choose([], id);
      if (!agent) return create(undefined);
      const agentId = String(agent._id);
      // Tokens first, then the database (the hot-state reader's order): the copy filed below counts
      // only while no write to the customer (owner, name) and no merge, undo, link or erasure came since.
      const [gen, epoch] = await Promise.all([
        currentToken(redis, customerGenKey(prefix, id)),
        currentToken(redis, epochKey(prefix)),
      ]);
      const made = await create(agentId);
      const owner = made.customer.ownerAgentId;
      if (owner !== agentId) {
        // Another creation won with its own pick, which this one's replaced in the shared counts
        // (one reservation per customer): this one is undone, and the customer counted for its owner.
        await load.release(id, agentId);
        if (owner) await load.moved(id, owner);
        return made;
      }
      // Another creation won with the same pick: its record stands, and so does the reservation.
      if (!made.created) return made;
      const entry = encodeHotCopy({ gen, also: epoch, doc: made.customer });
      await redis.set(customerDocKey(prefix, id), entry, 'EX', HOT_COPY_TTL_S);
      await record(customerId, undefined, agentId, 'assigned', 'rapport');
      log.info({ customerId: id, agentId }, 'owner assigned');
      return made;
    },
    async transfer(customerId, toAgent, reason, actor) {
      const customer = await Customer.findById(customerId).lean<Customer>();
      if (!customer) throw new Error(`customer ${String(customerId)} not found`);
      const from = await agentById(customer.ownerAgentId);
      await Customer.updateOne({ _id: customerId }, { $set: { ownerAgentId: String(toAgent._id) } });
      await customerChanged(redis, prefix, customerId);
      await load.moved(String(customerId), String(toAgent._id));
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

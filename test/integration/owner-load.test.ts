/**
 * The owner pick's shared open counts (issue 22, src/router/owner-load.ts), on real Redis and the
 * real MongoDB-protocol server. Picks no longer count the open conversations each time: the counts
 * live in Redis, rebuilt from the database every few seconds, and every assignment reserves its
 * place atomically. What must hold:
 * - Two processes picking at once fill an agent up to its capacity, not beyond (the old per-pick
 *   aggregate let every concurrent pick see the same count and choose the same agent).
 * - A handoff counts for the new owner at once; a count can never bring back a deactivated agent.
 * - Through open, close, reopen, handoff, merge, undo (once a pick has seen its new identity epoch),
 *   erasure and deactivation the counts are never below the database's between rebuilds (too high
 *   only delays an assignment), and equal to it after one.
 */
import { once } from 'node:events';
import type { Types } from 'mongoose';
import { createIdentityStore } from '../../src/identity/resolve';
import { createLogger } from '../../src/logger';
import { createRedisConnection, type RedisClient } from '../../src/queue/connection';
import { conversationChanged } from '../../src/router/hot-state';
import { createOwnership, type Ownership } from '../../src/router/ownership';
import { uniqueName } from '../helpers/env';
import { inboundMessage } from '../helpers/identity-db';
import { eventually } from '../helpers/eventually';
import { startWorld, type World } from '../helpers/world';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const REDIS = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Long enough that no rebuild happens during a test unless it asks for one. */
const NEVER = 3_600_000;

let w: World;
const extra: RedisClient[] = [];
let n = 0;

beforeEach(async () => {
  w = await startWorld({ MONGODB_URI: `${MONGO}/rapport_${uniqueName('ownload')}` });
  await w.t.app.mongo.ready;
});
afterEach(async () => {
  for (const r of extra.splice(0)) r.disconnect();
  await w.stop();
});

/** Another "process": its own Redis connection and ownership, on the app's database and key prefix. */
async function processOwnership(loadMaxAgeMs = NEVER): Promise<Ownership> {
  const redis = createRedisConnection(REDIS, 'worker');
  extra.push(redis);
  if (redis.status !== 'ready') await once(redis, 'ready');
  const log = createLogger({ level: 'silent' });
  return createOwnership(w.t.app.models, redis, w.t.app.config.queuePrefix, log, { loadMaxAgeMs });
}

async function agent(name: string, capacity: number): Promise<string> {
  const i = String(++n).padStart(3, '0');
  return (await w.addAgent({ slackUserId: `U0LOAD${i}`, name, inboxChannelId: `C0LOAD${i}`, capacity })).id;
}

async function newCustomer(): Promise<Types.ObjectId> {
  const now = new Date();
  return (await w.t.app.models.Customer.create({ firstSeenAt: now, lastSeenAt: now }))._id;
}

async function ownerOf(id: Types.ObjectId): Promise<string | undefined> {
  return (await w.t.app.models.Customer.findById(id).lean())?.ownerAgentId;
}

/** Each agent's open customers in the database (the admin view's live count). */
async function truth(p: Ownership, agents: string[]): Promise<Record<string, number>> {
  return Object.fromEntries(await Promise.all(agents.map(async (a) => [a, await p.openCount(a)] as const)));
}

function countsOf(map: Map<string, number>, agents: string[]): Record<string, number> {
  return Object.fromEntries(agents.map((a) => [a, map.get(a) ?? 0]));
}

describe('the owner pick with shared open counts', () => {
  it('two processes picking at once fill each agent up to its capacity, not beyond', async () => {
    const a = await agent('Ada', 2);
    const b = await agent('Bo', 2);
    const [p1, p2] = [await processOwnership(), await processOwnership()];
    const customers = await Promise.all([1, 2, 3, 4].map(() => newCustomer()));
    await Promise.all(customers.map((c, i) => (i % 2 === 0 ? p1 : p2).ensureOwner(c, 'test')));
    const owners = await Promise.all(customers.map(ownerOf));
    expect(owners.filter((o) => o === a)).toHaveLength(2);
    expect(owners.filter((o) => o === b)).toHaveLength(2);
  });

  it('counts a handoff for the new owner at once, and never routes to a deactivated agent', async () => {
    const p = await processOwnership();
    const bo = await agent('Bo', 1); // oldest: first choice while below capacity
    const ada = await agent('Ada', 10);
    const cy = await agent('Cy', 1);
    const c1 = await newCustomer();
    const c2 = await newCustomer();
    expect((await p.ensureOwner(c1, 'test')).agent?._id.toString()).toBe(bo); // Bo full
    expect((await p.ensureOwner(c2, 'test')).agent?._id.toString()).toBe(ada);
    // Cy takes Ada's customer: full now, although no rebuild has counted it from the database.
    const cyAgent = await p.agentById(cy);
    await p.transfer(c2, cyAgent!, 'handoff', 'test');
    const c3 = await newCustomer();
    expect((await p.ensureOwner(c3, 'test')).agent?._id.toString()).toBe(ada);

    // Dee owns nobody (the least-loaded by far in the counts) and is deactivated after the pick
    // has seen the team with her in it.
    const dee = await agent('Dee', 10);
    expect((await p.pickAgent())?._id.toString()).toBe(dee);
    const off = await w.admin('PATCH', `/agents/${dee}`, { active: false });
    expect(off.status).toBe(200);
    const c4 = await newCustomer();
    expect((await p.ensureOwner(c4, 'test')).agent?._id.toString()).not.toBe(dee);
    expect(await ownerOf(c4)).not.toBe(dee);
  });

  it('keeps the counts at or above the database between rebuilds, and equal after one', async () => {
    const { Conversation } = w.t.app.models;
    const prefix = w.t.app.config.queuePrefix;
    const p = await processOwnership();
    const agents = [await agent('Ada', 100), await agent('Bo', 100), await agent('Cy', 100)];
    // The first customer writes in (the inbound router opens their conversation), the rest are
    // assigned directly.
    expect((await w.sms('+14155550731', 'hello')).status).toBe(200);
    const first = await eventually(
      async () => (await Conversation.findOne({ ownerAgentId: { $in: agents } }).lean())?._id,
      Boolean,
    );
    const customers: Types.ObjectId[] = [first!];
    for (let i = 1; i < 6; i++) {
      customers.push(await newCustomer());
      await p.ensureOwner(customers[i]!, 'test');
    }
    const check = async (step: string, { below = false } = {}) => {
      const now = await truth(p, agents);
      const held = countsOf((await p.loadCounts()) ?? new Map(), agents);
      if (!below)
        for (const a of agents)
          expect({ step, a, held: held[a]! >= now[a]! }).toEqual({ step, a, held: true });
      expect({ step, counts: countsOf(await p.refreshLoad(), agents) }).toEqual({ step, counts: now });
    };
    await check('open');
    expect(Object.values(await truth(p, agents))).toEqual([2, 2, 2]);

    const close = async (c: Types.ObjectId, open: boolean) => {
      await Conversation.updateOne({ _id: c }, { $set: { open } });
      await conversationChanged(w.t.app.redis, prefix, c);
    };
    await close(customers[0]!, false);
    await check('close');
    // The customer writes again: the inbound router reopens the conversation and counts it at once.
    expect((await w.sms('+14155550731', 'me again')).status).toBe(200);
    await eventually(async () => (await Conversation.findById(customers[0]).lean())?.open, Boolean);
    await check('reopen');

    const bo = await p.agentById(agents[1]);
    await p.transfer(customers[2]!, bo!, 'handoff', 'test');
    await check('handoff');

    const merged = await w.admin('POST', `/customers/${String(customers[3])}/merge`, {
      otherId: String(customers[4]),
    });
    expect(merged.status).toBe(200);
    await check('merge');
    const undone = await w.admin('POST', `/merges/${merged.body.merge.id as string}/undo`);
    expect(undone.status).toBe(200);
    // The undo replaced the identity epoch: the next pick rebuilds the counts before it picks.
    await p.pickAgent();
    await check('undo');

    const erased = await w.admin('DELETE', `/customers/${String(customers[5])}`);
    expect(erased.status).toBeLessThan(300);
    await eventually(async () => (await Conversation.findById(customers[5]).lean()) === null, Boolean);
    await check('erase');

    const off = await w.admin('PATCH', `/agents/${agents[0]}`, { active: false });
    expect(off.status).toBe(200);
    await check('deactivation');
    expect((await truth(p, agents))[agents[0]!]).toBe(0);
  });
});

describe('a new customer created with their owner (ownership.ts `createOwned`)', () => {
  /**
   * Two "processes" resolve a first message from one new number at once, each with its own identity
   * store and ownership: the first holds its creation until the second has picked too (`between`
   * runs in between), then creates first; the second then finds the first's customer.
   */
  async function createdAtOnce(between: () => Promise<void> = async () => undefined) {
    const ps = [await processOwnership(), await processOwnership()];
    const picks: (string | undefined)[] = [];
    const gates = [0, 1].map(() => {
      let open!: () => void;
      return { wait: new Promise<void>((r) => (open = r)), open: () => open() };
    });
    const stores = ps.map((p, i) =>
      createIdentityStore(w.t.app.models, {
        defaultRegion: 'US',
        createOwned: (id, create) =>
          p.createOwned(id, async (owner) => {
            picks[i] = owner;
            await gates[i]!.wait;
            return create(owner);
          }),
      }),
    );
    const from = { kind: 'phone' as const, e164: `+1415555${String(700 + ++n).padStart(4, '0')}` };
    const first = stores[0]!.resolveCustomer(inboundMessage(from));
    await eventually(async () => picks[0], Boolean);
    await between();
    const second = stores[1]!.resolveCustomer(inboundMessage(from));
    await eventually(async () => picks[1], Boolean);
    gates[0]!.open();
    const a = await first;
    gates[1]!.open();
    const b = await second;
    const customerId = a.customer._id;
    const records = await w.t.app.models.OwnershipChange.find({ customerId }).lean();
    return { a, b, picks, owner: await ownerOf(customerId), records, p: ps[0]! };
  }

  it('two creations of one customer at once: one customer, its owner stored once, recorded once, counted once', async () => {
    const ada = await agent('Ada', 10);
    const bo = await agent('Bo', 10);
    const { a, b, picks, owner, records, p } = await createdAtOnce();
    expect(String(b.customer._id)).toBe(String(a.customer._id));
    expect([a.created, b.created]).toEqual([true, false]);
    expect(picks).toEqual([ada, ada]);
    expect(owner).toBe(ada);
    expect(records.map((r) => [r.reason, r.toAgentId])).toEqual([['assigned', ada]]);
    // The second pick replaced the first's reservation with its own, for the same agent: it stands.
    expect(countsOf((await p.loadCounts()) ?? new Map(), [ada, bo])).toEqual({ [ada]: 1, [bo]: 0 });
  });

  it('when the two picked different agents, the stored owner stands and is the one counted', async () => {
    const ada = await agent('Ada', 10);
    const bo = await agent('Bo', 10);
    // Ada goes away between the two picks: the second picks Bo.
    const { a, b, picks, owner, records, p } = await createdAtOnce(async () => {
      expect((await w.admin('PATCH', `/agents/${ada}`, { status: 'away' })).status).toBe(200);
    });
    expect(String(b.customer._id)).toBe(String(a.customer._id));
    expect(picks).toEqual([ada, bo]);
    expect(owner).toBe(ada);
    expect(b.customer.ownerAgentId).toBe(ada);
    expect(records.map((r) => [r.reason, r.toAgentId])).toEqual([['assigned', ada]]);
    expect(countsOf((await p.loadCounts()) ?? new Map(), [ada, bo])).toEqual({ [ada]: 1, [bo]: 0 });
  });

  it('a first contact by SMS is created with its owner, recorded once, and routed to them', async () => {
    const ada = await agent('Ada', 10);
    expect((await w.sms('+14155550741', 'hello there')).status).toBe(200);
    const conversation = await eventually(
      async () => w.t.app.models.Conversation.findOne({ ownerAgentId: ada }).lean(),
      Boolean,
    );
    const customerId = conversation!._id;
    expect(await ownerOf(customerId)).toBe(ada);
    const records = await w.t.app.models.OwnershipChange.find({ customerId }).lean();
    expect(records.map((r) => [r.reason, r.toAgentId, r.actor])).toEqual([['assigned', ada, 'rapport']]);
  });
});

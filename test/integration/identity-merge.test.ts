/**
 * Merge and unmerge against the real MongoDB-protocol server (FerretDB in CI), one database for this
 * file, no mocks. Crashes are simulated with the merge service's `onStep` hook: it throws after step
 * k, exactly where a process could die, and the test re-runs the merge (or `resumeMerges`).
 */
import mongoose, { type Types } from 'mongoose';
import pino from 'pino';
import type { Address, Channel, InboundMessage, Provider } from '../../src/canonical';
import { createInboundProcessor, type InboundProcessor } from '../../src/identity/inbound-processor';
import { createMergeService, type MergeService, type MergeStep } from '../../src/identity/merge';
import type { IdentityModels } from '../../src/identity/models';
import type { IdentityStore } from '../../src/identity/resolve';
import { identityDb, inboundMessage, type IdentityDb } from '../helpers/identity-db';

let db: IdentityDb;
let models: IdentityModels;
let store: IdentityStore;
let processor: InboundProcessor;
let merges: MergeService;
/** Set by a test to make the merge "crash" right after that step. */
let crashAfter: MergeStep | undefined;

class SimulatedCrash extends Error {}

beforeAll(async () => {
  db = await identityDb('merge');
  models = db.models;
  store = db.store;
  processor = createInboundProcessor({ store, log: pino({ level: 'silent' }) });
  merges = createMergeService(models, {
    onStep: (step) => {
      if (step === crashAfter) throw new SimulatedCrash(`crash after ${step}`);
    },
  });
});

afterEach(() => {
  crashAfter = undefined;
});

afterAll(async () => {
  await db.drop();
});

let seq = 0;
let numbers = 0;
function inbound(
  from: Address,
  opts: { channel?: Channel; provider?: Provider; profileName?: string; sentAt?: Date } = {},
): InboundMessage {
  const at = (opts.sentAt ?? new Date()).toISOString();
  return inboundMessage(from, { ...opts, text: `hello ${++seq}`, sentAt: at, receivedAt: at });
}

const nextPhone = (): Address => ({
  kind: 'phone',
  e164: `+1415555${String(1000 + ++numbers).padStart(4, '0')}`,
});
const nextPsid = (): Address => ({ kind: 'psid', pageId: '1234567890', psid: `77${++numbers}` });

async function send(from: Address, opts: Parameters<typeof inbound>[1] = {}): Promise<string> {
  const result = await processor.process({ type: 'message', message: inbound(from, opts) });
  return result.customerId!;
}

/** A customer who wrote `count` messages from `from`, starting at `at`. */
async function customerFrom(
  from: Address,
  count: number,
  opts: { at?: Date; profileName?: string; channel?: Channel; provider?: Provider } = {},
): Promise<string> {
  let id = '';
  const start = (opts.at ?? new Date()).getTime();
  for (let i = 0; i < count; i++) {
    id = await send(from, { ...opts, sentAt: new Date(start + i * 1000) });
  }
  return id;
}

/** Everything a merge may change, in comparable form. */
async function stateOf(customerIds: string[]) {
  const ids = customerIds.map((id) => new mongoose.Types.ObjectId(id));
  const customers = await models.Customer.find({ _id: { $in: ids } })
    .sort({ _id: 1 })
    .lean();
  const identities = await models.Identity.find({ customerId: { $in: ids } })
    .sort({ key: 1 })
    .lean();
  const messages = await models.Message.find({ customerId: { $in: ids } })
    .sort({ key: 1 })
    .lean();
  return {
    customers: customers.map((c) => ({
      id: String(c._id),
      displayName: c.displayName ?? null,
      profile: JSON.parse(JSON.stringify(c.profile ?? {})) as unknown,
      ownerAgentId: c.ownerAgentId ?? null,
      firstSeenAt: c.firstSeenAt.toISOString(),
      lastSeenAt: c.lastSeenAt.toISOString(),
      lastChannel: c.lastChannel ?? null,
      mergedInto: c.mergedInto ? String(c.mergedInto) : null,
    })),
    identities: identities.map((i) => `${i.key}→${String(i.customerId)}`),
    messages: messages.map((m) => `${m.key}→${String(m.customerId)}`),
  };
}

/** Two customers: an older SMS one (owner, name) and a newer Messenger one (other owner, email). */
async function pair(): Promise<{ older: string; newer: string; olderPhone: Address; newerPsid: Address }> {
  const olderPhone = nextPhone();
  const newerPsid = nextPsid();
  const older = await customerFrom(olderPhone, 3, {
    at: new Date(Date.now() - 3_600_000),
    profileName: 'Ada',
  });
  const newer = await customerFrom(newerPsid, 2, {
    channel: 'messenger',
    provider: 'messenger',
    profileName: 'Ada L.',
  });
  await models.Customer.updateOne({ _id: older }, { $set: { ownerAgentId: 'agent-older' } });
  await models.Customer.updateOne(
    { _id: newer },
    {
      $set: {
        ownerAgentId: 'agent-newer',
        'profile.email': { value: 'ada@example.com', source: 'agent', at: new Date('2024-01-01T00:00:00Z') },
      },
    },
  );
  return { older, newer, olderPhone, newerPsid };
}

describe('merge', () => {
  it('keeps the older customer, moves identities and messages to it, and tombstones the other', async () => {
    const { older, newer, newerPsid } = await pair();
    const result = await merges.mergeCustomers({ aId: newer, bId: older, reason: 'admin', actor: 'admin' });

    expect(String(result.event.survivorId)).toBe(older);
    expect(String(result.event.mergedId)).toBe(newer);
    expect(result.event.status).toBe('done');
    expect(result.event.identityKeys).toEqual([
      `psid:${newerPsid.kind === 'psid' ? `${newerPsid.pageId}:${newerPsid.psid}` : ''}`,
    ]);
    expect(result.event.messageIds).toHaveLength(2);
    expect(result.survivorOwnerAgentId).toBe('agent-older');
    expect(result.mergedOwnerAgentId).toBe('agent-newer');

    const state = await stateOf([older, newer]);
    expect(state.identities.every((i) => i.endsWith(`→${older}`))).toBe(true);
    expect(state.messages).toHaveLength(5);
    expect(state.messages.every((m) => m.endsWith(`→${older}`))).toBe(true);
    const survivor = state.customers.find((c) => c.id === older)!;
    const tombstone = state.customers.find((c) => c.id === newer)!;
    expect(tombstone.mergedInto).toBe(older);
    // Survivor wins conflicts (name), takes what it lacked (email) with its provenance.
    expect(survivor.displayName).toBe('Ada');
    expect(survivor.profile).toMatchObject({
      name: { value: 'Ada', source: 'twilio' },
      email: { value: 'ada@example.com', source: 'agent' },
    });
    expect(survivor.ownerAgentId).toBe('agent-older');
    expect(survivor.lastChannel).toBe('messenger');
    expect(await models.MergeLock.countDocuments({})).toBe(0);

    // The merged customer's identity now resolves to the survivor.
    expect(await send(newerPsid, { channel: 'messenger', provider: 'messenger' })).toBe(older);
  });

  it('keeps the customer an agent chooses as survivor', async () => {
    const { older, newer } = await pair();
    const result = await merges.mergeCustomers({
      aId: older,
      bId: newer,
      survivorId: newer,
      reason: 'agent',
      actor: 'agent:U123',
    });
    expect(String(result.event.survivorId)).toBe(newer);
    expect(result.event.actor).toBe('agent:U123');
    const survivor = await models.Customer.findById(newer).lean();
    const olderBefore = result.event.mergedSnapshot!;
    // The survivor is now first seen when the older one was.
    expect(survivor?.firstSeenAt.getTime()).toBe(olderBefore.firstSeenAt.getTime());
    expect(survivor?.displayName).toBe('Ada L.');
  });

  it('answers a repeated merge of the same pair with the same merge', async () => {
    const { older, newer } = await pair();
    const first = await merges.mergeCustomers({ aId: older, bId: newer, reason: 'admin', actor: 'admin' });
    const again = await merges.mergeCustomers({ aId: newer, bId: older, reason: 'admin', actor: 'admin' });
    expect(String(again.event._id)).toBe(String(first.event._id));
    expect(await models.MergeEvent.countDocuments({ mergedId: first.event.mergedId })).toBe(1);
  });

  it('refuses self-merge and tombstones with 409, unknown and malformed ids with 404', async () => {
    const { older, newer } = await pair();
    const third = await customerFrom(nextPhone(), 1);
    await expect(
      merges.mergeCustomers({ aId: older, bId: older, reason: 'admin', actor: 'admin' }),
    ).rejects.toMatchObject({
      status: 409,
    });
    await merges.mergeCustomers({ aId: older, bId: newer, reason: 'admin', actor: 'admin' });
    await expect(
      merges.mergeCustomers({ aId: newer, bId: third, reason: 'admin', actor: 'admin' }),
    ).rejects.toMatchObject({
      status: 409,
      code: 'conflict',
    });
    const unknown = new mongoose.Types.ObjectId().toHexString();
    await expect(
      merges.mergeCustomers({ aId: third, bId: unknown, reason: 'admin', actor: 'admin' }),
    ).rejects.toMatchObject({
      status: 404,
    });
    await expect(
      merges.mergeCustomers({ aId: third, bId: 'nope', reason: 'admin', actor: 'admin' }),
    ).rejects.toMatchObject({
      status: 404,
    });
    await expect(merges.undoMerge('nope', 'admin')).rejects.toMatchObject({ status: 404 });
    await expect(merges.undoMerge(unknown, 'admin')).rejects.toMatchObject({ status: 404 });
  });

  it('files a message resolved before the merge but stored after it under the survivor', async () => {
    const { older, newer, newerPsid } = await pair();
    const message = inbound(newerPsid, { channel: 'messenger', provider: 'messenger' });
    const resolved = await store.resolveCustomer(message);
    expect(String(resolved.customer._id)).toBe(newer);
    await merges.mergeCustomers({ aId: older, bId: newer, reason: 'admin', actor: 'admin' });

    const stored = await store.storeInbound(message, resolved.customer._id, resolved.identity.key);
    expect(stored).toEqual({ stored: true, customerId: older });
    const doc = await models.Message.findOne({ key: message.key }).lean();
    expect(String(doc?.customerId)).toBe(older);
  });

  it('lets only one of two concurrent merges take the same customer', async () => {
    // Repeated: the race this guards (FerretDB v1 conditional updates are not atomic) is timing-bound.
    for (let round = 0; round < 5; round++) await concurrentMergesOfOneCustomer();
  });

  async function concurrentMergesOfOneCustomer(): Promise<void> {
    const a = await customerFrom(nextPhone(), 2, { at: new Date(Date.now() + 10_000) });
    const b = await customerFrom(nextPhone(), 1);
    const c = await customerFrom(nextPhone(), 1);
    const results = await Promise.allSettled([
      merges.mergeCustomers({ aId: a, bId: b, reason: 'admin', actor: 'admin' }),
      merges.mergeCustomers({ aId: a, bId: c, reason: 'admin', actor: 'admin' }),
    ]);
    const done = results.filter((r) => r.status === 'fulfilled');
    expect(done.length).toBeGreaterThanOrEqual(1);
    const tombstone = await models.Customer.findById(a).lean();
    expect(tombstone?.mergedInto).toBeDefined();
    const target = String(tombstone?.mergedInto);
    // All of a's identities and messages went to the one customer it was merged into.
    expect(await models.Identity.countDocuments({ customerId: a })).toBe(0);
    expect(await models.Message.countDocuments({ customerId: target })).toBeGreaterThanOrEqual(3);
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as { status?: number }).status).toBe(409);
    }
    expect(await models.Message.countDocuments({ customerId: a })).toBe(0);
  }
});

describe('unmerge', () => {
  it('restores the exact earlier state of identities, messages and profiles', async () => {
    const { older, newer } = await pair();
    const before = await stateOf([older, newer]);
    const merged = await merges.mergeCustomers({ aId: older, bId: newer, reason: 'admin', actor: 'admin' });
    const undone = await merges.undoMerge(merged.event._id, 'admin');

    expect(undone.event.status).toBe('undone');
    expect(undone.event.undoneAt).toBeInstanceOf(Date);
    expect(undone.event.undoActor).toBe('admin');
    expect(undone.mergedOwnerAgentId).toBe('agent-newer');
    expect(await stateOf([older, newer])).toEqual(before);
    // Undo is idempotent.
    const again = await merges.undoMerge(merged.event._id, 'admin');
    expect(again.event.status).toBe('undone');
    expect(await stateOf([older, newer])).toEqual(before);
  });

  it('gives back messages that arrived after the merge on the returned identities', async () => {
    const { older, newer, olderPhone, newerPsid } = await pair();
    const merged = await merges.mergeCustomers({
      aId: older,
      bId: newer,
      reason: 'claim',
      actor: 'customer:x',
    });
    const late = inbound(newerPsid, {
      channel: 'messenger',
      provider: 'messenger',
      sentAt: new Date(Date.now() + 5_000),
    });
    expect((await processor.process({ type: 'message', message: late })).customerId).toBe(older);
    const own = inbound(olderPhone);
    await processor.process({ type: 'message', message: own });

    await merges.undoMerge(merged.event._id, 'admin');
    const lateDoc = await models.Message.findOne({ key: late.key }).lean();
    const ownDoc = await models.Message.findOne({ key: own.key }).lean();
    expect(String(lateDoc?.customerId)).toBe(newer);
    expect(String(ownDoc?.customerId)).toBe(older);
    expect(await models.Message.countDocuments({ customerId: newer })).toBe(3);
    // The returned customer counts the late message as seen; messages now land on it again.
    const restored = await models.Customer.findById(newer).lean();
    expect(restored?.lastSeenAt.getTime()).toBe(new Date(late.sentAt).getTime());
    expect(await send(newerPsid, { channel: 'messenger', provider: 'messenger' })).toBe(newer);
  });

  it('files a message resolved before the undo but stored after it under the restored customer', async () => {
    const { older, newer, newerPsid } = await pair();
    const merged = await merges.mergeCustomers({ aId: older, bId: newer, reason: 'admin', actor: 'admin' });
    const message = inbound(newerPsid, { channel: 'messenger', provider: 'messenger' });
    const resolved = await store.resolveCustomer(message);
    expect(String(resolved.customer._id)).toBe(older);
    await merges.undoMerge(merged.event._id, 'admin');
    const stored = await store.storeInbound(message, resolved.customer._id, resolved.identity.key);
    expect(stored.customerId).toBe(newer);
  });

  it('refuses to undo a merge whose survivor was merged again since (409), until that one is undone', async () => {
    const { older, newer } = await pair();
    const third = await customerFrom(nextPhone(), 1, { at: new Date(Date.now() - 7_200_000) });
    const first = await merges.mergeCustomers({ aId: older, bId: newer, reason: 'admin', actor: 'admin' });
    const second = await merges.mergeCustomers({ aId: third, bId: older, reason: 'admin', actor: 'admin' });
    expect(String(second.event.survivorId)).toBe(third);
    await expect(merges.undoMerge(first.event._id, 'admin')).rejects.toMatchObject({ status: 409 });
    await merges.undoMerge(second.event._id, 'admin');
    await merges.undoMerge(first.event._id, 'admin');
    expect(await models.Identity.countDocuments({ customerId: newer })).toBe(1);
    expect(await models.Identity.countDocuments({ customerId: older })).toBe(1);
    expect(await models.Identity.countDocuments({ customerId: third })).toBe(1);
  });
});

const MERGE_STEPS: MergeStep[] = [
  'event-created',
  'survivor-locked',
  'merged-tombstoned',
  'planned',
  'identities-moved',
  'messages-moved',
  'profile-merged',
  'unlocked',
  'done',
];
const UNDO_STEPS: MergeStep[] = [
  'undo-started',
  'undo-locked',
  'identities-restored',
  'merged-restored',
  'messages-restored',
  'survivor-restored',
  'undo-unlocked',
  'undone',
];

/** The state a merge of this pair reaches, expressed without ids that differ between pairs. */
function shape(state: Awaited<ReturnType<typeof stateOf>>, survivor: string, merged: string) {
  const name = (id: string) => (id === survivor ? 'S' : id === merged ? 'M' : id);
  return {
    customers: state.customers.map((c) => ({
      ...c,
      id: name(c.id),
      mergedInto: c.mergedInto && name(c.mergedInto),
      firstSeenAt: undefined,
      lastSeenAt: undefined,
      profile: JSON.stringify(c.profile).replace(/"at":"[^"]+"/g, ''),
    })),
    identities: state.identities.map((i) => name(i.split('→')[1]!)),
    messages: state.messages.map((m) => name(m.split('→')[1]!)),
  };
}

describe('crash safety', () => {
  it.each(MERGE_STEPS)('a merge interrupted after "%s" converges when re-run', async (stop) => {
    const reference = await pair();
    const clean = await merges.mergeCustomers({
      aId: reference.older,
      bId: reference.newer,
      reason: 'admin',
      actor: 'admin',
    });
    const expected = shape(
      await stateOf([reference.older, reference.newer]),
      reference.older,
      reference.newer,
    );

    const { older, newer } = await pair();
    crashAfter = stop;
    const crashed = merges.mergeCustomers({ aId: older, bId: newer, reason: 'admin', actor: 'admin' });
    await expect(crashed).rejects.toBeInstanceOf(SimulatedCrash);
    crashAfter = undefined;

    // Half the steps re-run through resumeMerges, half by calling merge again with the same pair.
    const viaResume = MERGE_STEPS.indexOf(stop) % 2 === 0;
    if (viaResume) {
      const { resumed } = await merges.resumeMerges({ olderThanMs: 0 });
      // After 'done' there is nothing in progress to resume.
      expect(resumed).toBe(stop === 'done' ? 0 : 1);
    }
    const result = await merges.mergeCustomers({ aId: newer, bId: older, reason: 'admin', actor: 'admin' });
    expect(result.event.status).toBe('done');
    expect(await models.MergeEvent.countDocuments({ mergedId: newer })).toBe(1);
    expect(result.event.identityKeys).toHaveLength(clean.event.identityKeys.length);
    expect(result.event.messageIds).toHaveLength(clean.event.messageIds.length);

    const state = shape(await stateOf([older, newer]), older, newer);
    expect(state).toEqual(expected);
    expect(await models.MergeLock.countDocuments({ eventId: result.event._id })).toBe(0);
  });

  it.each(UNDO_STEPS)('an undo interrupted after "%s" converges when re-run', async (stop) => {
    const { older, newer } = await pair();
    const before = await stateOf([older, newer]);
    const merged = await merges.mergeCustomers({ aId: older, bId: newer, reason: 'admin', actor: 'admin' });
    crashAfter = stop;
    await expect(merges.undoMerge(merged.event._id, 'admin')).rejects.toBeInstanceOf(SimulatedCrash);
    crashAfter = undefined;

    if (UNDO_STEPS.indexOf(stop) % 2 === 0) await merges.resumeMerges({ olderThanMs: 0 });
    const result = await merges.undoMerge(merged.event._id, 'admin');
    expect(result.event.status).toBe('undone');
    expect(await stateOf([older, newer])).toEqual(before);
    expect(await models.MergeLock.countDocuments({ eventId: merged.event._id })).toBe(0);
  });

  it('leaves a merge interrupted before its locks mergeable by a re-run of the same pair', async () => {
    const { older, newer } = await pair();
    crashAfter = 'event-created';
    await expect(
      merges.mergeCustomers({ aId: older, bId: newer, reason: 'admin', actor: 'admin' }),
    ).rejects.toThrow();
    crashAfter = undefined;
    // Another pair is not blocked by the unfinished event: nothing is locked yet.
    const other = await customerFrom(nextPhone(), 1, { at: new Date(Date.now() - 7_200_000) });
    const r = await merges.mergeCustomers({ aId: newer, bId: other, reason: 'admin', actor: 'admin' });
    expect(String(r.event.mergedId)).toBe(newer);
    expect(r.event.status).toBe('done');
    // The unfinished event now cannot complete (newer is a tombstone): resuming cancels it.
    const { failed } = await merges.resumeMerges({ olderThanMs: 0 });
    expect(failed).toBeGreaterThanOrEqual(1);
    const leftover = await models.MergeEvent.findOne({ survivorId: older, mergedId: newer }).lean();
    expect(leftover?.status).toBe('cancelled');
    expect((await models.Customer.findById(older).lean())?.mergedInto).toBeUndefined();
  });
});

export type { Types };

describe('resumeMerges reports a merge that keeps failing', () => {
  it('logs each failure with the event and customer ids and the count, and alerts after N', async () => {
    const { older, newer } = await pair();
    crashAfter = 'survivor-locked';
    await expect(
      merges.mergeCustomers({ aId: newer, bId: older, reason: 'admin', actor: 'admin' }),
    ).rejects.toBeInstanceOf(SimulatedCrash);
    crashAfter = undefined;
    const lines: Record<string, unknown>[] = [];
    const alerts: boolean[] = [];
    // A service whose every resumption breaks at the same step, as a merge with a persistent fault does.
    const broken = createMergeService(models, {
      onStep: (step) => {
        if (step === 'merged-tombstoned') throw new SimulatedCrash('still broken');
      },
      log: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) }),
      alertAfter: 3,
      onResumeFailed: (_id, _n, alert) => void alerts.push(alert),
    });
    for (let i = 0; i < 3; i++)
      expect(await broken.resumeMerges({ olderThanMs: 0 })).toMatchObject({ failed: 1 });
    const event = await models.MergeEvent.findOne({ mergedId: newer }).lean();
    expect(lines.map((l) => [l.level, l.failures, l.mergeEventId, l.survivorId, l.mergedId])).toEqual([
      [40, 1, String(event!._id), older, newer],
      [40, 2, String(event!._id), older, newer],
      [50, 3, String(event!._id), older, newer],
    ]);
    expect(alerts).toEqual([false, false, true]);
    // Nothing about the customers themselves is logged.
    expect(JSON.stringify(lines)).not.toMatch(/Ada|\+1415/);
    // Finished by a healthy run, it is not reported again.
    expect(await merges.resumeMerges({ olderThanMs: 0 })).toMatchObject({ resumed: 1, failed: 0 });
  });
});

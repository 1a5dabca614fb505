/**
 * The merge's units one by one against the real MongoDB-protocol server (FerretDB in CI), one
 * database for this file: the locks, each row of the step table in both directions, settle, and
 * the resumer's failure reports. The whole merge and its crash safety are in identity-merge.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { Types } from 'mongoose';
import pino from 'pino';
import { loadEvent } from '../../src/identity/merge/events';
import { lock, lockPair } from '../../src/identity/merge/locks';
import { createResumer, ResumeFailures } from '../../src/identity/merge/resume';
import { MERGE_STEPS, settle, undoSteps, type StepHalf } from '../../src/identity/merge/steps';
import type { IdentityModels, MergeStatus } from '../../src/identity/models';
import { MergeBusyError, type MergeEventDoc } from '../../src/identity/merge/types';
import { identityDb, type IdentityDb } from '../helpers/identity-db';

let db: IdentityDb;
let models: IdentityModels;

beforeAll(async () => {
  db = await identityDb('merge_steps');
  models = db.models;
});

afterAll(async () => {
  await db.drop();
});

let seq = 0;
const hour = 3_600_000;

async function customer(fields: Record<string, unknown> = {}): Promise<Types.ObjectId> {
  const now = Date.now();
  const c = await models.Customer.create({
    profile: {},
    firstSeenAt: new Date(now - 2 * hour),
    lastSeenAt: new Date(now - hour),
    ...fields,
  });
  return c._id;
}

async function identity(customerId: Types.ObjectId): Promise<string> {
  const psid = `${++seq}${randomBytes(3).toString('hex')}`;
  await models.Identity.create({
    key: `psid:1:${psid}`,
    kind: 'psid',
    value: `1:${psid}`,
    customerId,
    source: 'messenger',
  });
  return `psid:1:${psid}`;
}

async function message(
  customerId: Types.ObjectId,
  identityKey: string,
  sentAt = new Date(),
): Promise<Types.ObjectId> {
  const id = `m${++seq}-${randomBytes(3).toString('hex')}`;
  const m = await models.Message.create({
    key: `messenger:${id}`,
    customerId,
    direction: 'in',
    channel: 'messenger',
    provider: 'messenger',
    providerMessageId: id,
    identityKey,
    parts: [{ kind: 'text', text: 'hi' }],
    sentAt,
  });
  return m._id;
}

async function newEvent(
  survivorId: Types.ObjectId,
  mergedId: Types.ObjectId,
  status: MergeStatus = 'in_progress',
): Promise<MergeEventDoc> {
  const e = await models.MergeEvent.create({ survivorId, mergedId, reason: 'admin', actor: 'admin', status });
  return loadEvent(models, e._id);
}

const stepNamed = (name: string) => MERGE_STEPS.find((s) => s.name === name)!;

/** A survivor and a merged customer (with one identity and message each), its tombstone and plan in place. */
async function planned() {
  const survivorId = await customer({
    displayName: 'Ada',
    profile: { name: { value: 'Ada', source: 'agent', at: new Date() } },
  });
  const mergedId = await customer({
    ownerAgentId: 'U2',
    lastSeenAt: new Date(),
    lastChannel: 'messenger',
    lastProvider: 'messenger',
    profile: { email: { value: 'ada@example.com', source: 'agent', at: new Date() } },
  });
  const survivorKey = await identity(survivorId);
  const mergedKey = await identity(mergedId);
  await message(survivorId, survivorKey);
  await message(mergedId, mergedKey, new Date(Date.now() - hour));
  let event = await newEvent(survivorId, mergedId);
  await stepNamed('tombstone').merge.run(models, event);
  event = (await stepNamed('plan').merge.run(models, event)) ?? event;
  return { event, survivorId, mergedId, survivorKey, mergedKey };
}

const customerOf = (id: Types.ObjectId) => models.Customer.findById(id).lean();

describe('locks', () => {
  it('lets one event take a customer and tells the other it is busy while the first is in progress', async () => {
    const c = await customer();
    const first = await newEvent(c, await customer());
    const second = await newEvent(c, await customer());
    expect(await lock(models, c, first._id)).toBe('ok');
    expect(await lock(models, c, first._id)).toBe('ok');
    expect(await lock(models, c, second._id)).toBe('busy');
    expect(String((await models.MergeLock.findById(c).lean())?.eventId)).toBe(String(first._id));
  });

  it('takes over a lock left behind by an event that is no longer in progress', async () => {
    const c = await customer();
    const finished = await newEvent(c, await customer(), 'cancelled');
    const next = await newEvent(c, await customer());
    await models.MergeLock.create({ _id: c, eventId: finished._id });
    expect(await lock(models, c, next._id)).toBe('ok');
    expect(String((await models.MergeLock.findById(c).lean())?.eventId)).toBe(String(next._id));
  });

  it('gives back the survivor when the merged customer is busy, and answers MergeBusyError (409)', async () => {
    const [survivorId, mergedId] = [await customer(), await customer()];
    const holder = await newEvent(mergedId, await customer());
    await lock(models, mergedId, holder._id);
    const event = await newEvent(survivorId, mergedId);
    const busy = lockPair(models, event);
    await expect(busy).rejects.toBeInstanceOf(MergeBusyError);
    await expect(busy).rejects.toMatchObject({ status: 409, code: 'merge_in_progress' });
    expect(await models.MergeLock.countDocuments({ eventId: event._id })).toBe(0);
  });
});

describe('the step table, one row at a time', () => {
  it('tombstone: the merged customer points at the survivor; undone, it is its pre-merge self again', async () => {
    const { event, survivorId, mergedId } = await planned();
    const row = stepNamed('tombstone');
    expect(await row.merge.holds!(models, event)).toBe(true);
    expect(await customerOf(mergedId)).toMatchObject({ mergedInto: survivorId, mergedBy: event._id });

    await models.Customer.updateOne({ _id: mergedId }, { $set: { ownerAgentId: 'changed meanwhile' } });
    await row.undo!.run(models, event);
    await row.undo!.run(models, event);
    const restored = await customerOf(mergedId);
    expect(restored?.mergedInto).toBeUndefined();
    expect(restored?.ownerAgentId).toBe('U2');
    expect(await row.undo!.holds!(models, event)).toBe(true);
  });

  it('plan: written once, so a second run keeps what the first planned', async () => {
    const { event, mergedId, mergedKey } = await planned();
    expect(event.identityKeys).toEqual([mergedKey]);
    expect(event.messageIds).toHaveLength(1);
    expect(event.profileTaken.map((p) => p.field)).toEqual(['email']);
    expect(event.ownerTaken).toBe('U2');

    await message(mergedId, mergedKey);
    const again = await stepNamed('plan').merge.run(models, { ...event, planned: false });
    expect((again as MergeEventDoc).messageIds).toHaveLength(1);
  });

  it('identities: move to the survivor, and back on undo', async () => {
    const { event, survivorId, mergedId, mergedKey } = await planned();
    const row = stepNamed('identities');
    expect(await row.merge.holds!(models, event)).toBe(false);
    await row.merge.run(models, event);
    expect(String((await models.Identity.findOne({ key: mergedKey }).lean())?.customerId)).toBe(
      String(survivorId),
    );
    expect(await row.merge.holds!(models, event)).toBe(true);

    await row.undo!.run(models, event);
    expect(String((await models.Identity.findOne({ key: mergedKey }).lean())?.customerId)).toBe(
      String(mergedId),
    );
    expect(await row.undo!.holds!(models, event)).toBe(true);
  });

  it('messages: all move to the survivor; undo returns the planned ones and later ones on the returned key, not the survivor’s own', async () => {
    const { event, survivorId, mergedId, survivorKey, mergedKey } = await planned();
    const row = stepNamed('messages');
    const straggler = await message(mergedId, mergedKey);
    await row.merge.run(models, event);
    expect(await models.Message.countDocuments({ customerId: mergedId })).toBe(0);
    expect(await row.merge.holds!(models, event)).toBe(true);

    const late = await message(survivorId, mergedKey, new Date(Date.now() + 1_000));
    const own = await message(survivorId, survivorKey);
    await row.undo!.run(models, event);
    const onMerged = await models.Message.find({ customerId: mergedId }, { _id: 1 }).lean();
    expect(onMerged.map((m) => String(m._id)).sort()).toEqual(
      [String(event.messageIds[0]), String(straggler), String(late)].sort(),
    );
    expect(String((await models.Message.findById(own).lean())?.customerId)).toBe(String(survivorId));
    // The late message counts as seen by the customer it went back to.
    expect((await customerOf(mergedId))?.lastSeenAt.getTime()).toBeGreaterThan(Date.now());
    expect(await row.undo!.holds!(models, event)).toBe(true);
  });

  it('profile: the survivor takes what it lacked; undo removes only what still holds the taken value', async () => {
    const { event, survivorId } = await planned();
    const row = stepNamed('profile');
    await row.merge.run(models, event);
    await row.merge.run(models, event);
    const survivor = await customerOf(survivorId);
    expect(survivor).toMatchObject({
      displayName: 'Ada',
      ownerAgentId: 'U2',
      profile: { email: { value: 'ada@example.com' } },
    });
    expect(await row.merge.holds!(models, event)).toBe(true);

    // An agent changed the owner since: the undo leaves that alone and takes the email back.
    await models.Customer.updateOne({ _id: survivorId }, { $set: { ownerAgentId: 'U3' } });
    await row.undo!.run(models, event);
    const after = await customerOf(survivorId);
    expect(after?.ownerAgentId).toBe('U3');
    expect(after?.profile.email).toBeUndefined();
    expect(after?.profile.name?.value).toBe('Ada');
    expect(after?.lastSeenAt.getTime()).toBe(event.survivorSnapshot!.lastSeenAt.getTime());
  });
});

describe('settle', () => {
  it('re-applies the steps until they hold again after a lost update put an identity back', async () => {
    const { event, mergedId, mergedKey } = await planned();
    for (const { merge } of MERGE_STEPS) await merge.run(models, event);
    // What a concurrent message touch on FerretDB v1 can do: write the old owner back.
    await models.Identity.updateOne({ key: mergedKey }, { $set: { customerId: mergedId } });
    await models.Customer.updateOne({ _id: mergedId }, { $unset: { mergedInto: 1 } });

    await settle(
      'test merge',
      models,
      event,
      MERGE_STEPS.map((s) => s.merge),
    );
    expect(await models.Identity.countDocuments({ key: mergedKey, customerId: mergedId })).toBe(0);
    expect((await customerOf(mergedId))?.mergedInto).toBeDefined();
  });

  it('clears only the tombstone when it reappears after an undo, keeping what the undo restored', async () => {
    const { event, mergedId } = await planned();
    for (const { merge } of MERGE_STEPS) await merge.run(models, event);
    for (const undo of undoSteps()) await undo.run(models, event);
    const seen = new Date(Date.now() + 5 * hour);
    await models.Customer.updateOne(
      { _id: mergedId },
      { $set: { mergedInto: event.survivorId, lastSeenAt: seen } },
    );

    await settle('test undo', models, event, undoSteps());
    const restored = await customerOf(mergedId);
    expect(restored?.mergedInto).toBeUndefined();
    expect(restored?.lastSeenAt.getTime()).toBe(seen.getTime());
  });

  it('gives up with an error that asks for a re-run when a step cannot be made to hold', async () => {
    const { event } = await planned();
    let repairs = 0;
    const stuck: StepHalf = {
      reported: 'identities-moved',
      run: async () => void repairs++,
      holds: async () => (await models.Identity.countDocuments({ key: 'no such key' })) > 0,
    };
    await expect(settle('stuck merge', models, event, [stuck])).rejects.toThrow(
      'stuck merge did not settle; re-run to finish it',
    );
    expect(repairs).toBe(5);
  });
});

describe('resuming', () => {
  async function staleEvent(): Promise<MergeEventDoc> {
    const e = await newEvent(await customer(), await customer());
    await models.MergeEvent.collection.updateOne(
      { _id: e._id },
      { $set: { updatedAt: new Date(Date.now() - hour) } },
    );
    return e;
  }

  it('reports every failure of an event (counted, logged with ids, alerted after N) and goes on with the others', async () => {
    const failing = await staleEvent();
    const healthy = await staleEvent();
    const lines: Record<string, unknown>[] = [];
    const reports: [string, number, boolean][] = [];
    const ran: string[] = [];
    const resume = createResumer({
      models,
      log: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) }),
      alertAfter: 2,
      onResumeFailed: (id, n, alert) => void reports.push([id, n, alert]),
      run: async (event) => {
        ran.push(String(event._id));
        if (event._id.equals(failing._id)) throw new MergeBusyError(event.mergedId);
        await models.MergeEvent.updateOne({ _id: event._id }, { $set: { status: 'done' } });
        return { event };
      },
    });

    expect(await resume({ olderThanMs: 60_000 })).toMatchObject({ failed: 1 });
    expect(ran).toContain(String(healthy._id));
    expect((await models.MergeEvent.findById(healthy._id).lean())?.status).toBe('done');
    expect(await resume({ olderThanMs: 60_000 })).toMatchObject({ resumed: 0, failed: 1 });
    const mine = reports.filter(([id]) => id === String(failing._id));
    expect(mine).toEqual([
      [String(failing._id), 1, false],
      [String(failing._id), 2, true],
    ]);
    const logged = lines.filter((l) => l.mergeEventId === String(failing._id));
    expect(logged.map((l) => [l.level, l.failures, l.mergedId, (l.err as { code?: string }).code])).toEqual([
      [40, 1, String(failing.mergedId), 'merge_in_progress'],
      [50, 2, String(failing.mergedId), 'merge_in_progress'],
    ]);
    await models.MergeEvent.updateOne({ _id: failing._id }, { $set: { status: 'cancelled' } });
  });

  it('counts an event’s failures again from one once it has been resumed', () => {
    const failures = new ResumeFailures({});
    const e = {
      _id: new Types.ObjectId(),
      survivorId: new Types.ObjectId(),
      mergedId: new Types.ObjectId(),
    } as MergeEventDoc;
    expect(failures.report(e, new Error('x'))).toBe(1);
    expect(failures.report(e, new Error('x'))).toBe(2);
    failures.clear(e);
    expect(failures.report(e, new Error('x'))).toBe(1);
  });
});

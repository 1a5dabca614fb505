/**
 * The one description of what a merge does to the data, and how an undo reverses it: a table of
 * steps, each with a `merge` half and an `undo` half. The merge runs the table in order, the undo
 * runs the undo halves by `at`; both then settle on the same table (FerretDB v1 loses concurrent
 * updates, so each half says what must hold afterwards and settle re-applies until it does).
 *
 * Guarantee: every half is idempotent and driven only by the stored event, so a crash after any
 * step and a re-run end in the same state.
 */
import type { Types } from 'mongoose';
import type { Customer, IdentityModels, MergeEvent, MergeStatus } from '../models';
import { planMerge } from './plan';
import { giveBackProfile, takeProfile } from './profile';
import type { MergeEventDoc, MergeStep } from './types';

/** One direction of a step. */
export interface StepHalf {
  /** Applies it; may return the event re-read (planning stores the plan on it). */
  run(models: IdentityModels, event: MergeEventDoc): Promise<MergeEventDoc | void>;
  /** Reported to `onStep` after `run`: the durable step name. */
  reported: MergeStep;
  /** What must hold once the merge (or undo) is complete; checked by settle. */
  holds?(models: IdentityModels, event: MergeEventDoc): Promise<boolean>;
  /** What settle re-applies while `holds` fails. @defaultValue `run` */
  repair?(models: IdentityModels, event: MergeEventDoc): Promise<void>;
}

export interface MergeStepDef {
  name: string;
  merge: StepHalf;
  /** None: nothing to reverse (the plan stays on the event as its record). */
  undo?: StepHalf & {
    /** Position in the undo: identities back, then the tombstone cleared, both before the message sweep. */
    at: number;
  };
}

/** Settle rounds before giving up (the re-run continues). */
const SETTLE_ROUNDS = 5;

/** Messages the undo gives back: the planned ones, and every later one on the returned identity keys. */
export function messagesBackFilters(event: MergeEventDoc): Record<string, unknown>[] {
  const filters: Record<string, unknown>[] = [];
  if (event.messageIds.length > 0)
    filters.push({ customerId: event.survivorId, _id: { $in: event.messageIds } });
  if (event.identityKeys.length > 0) {
    filters.push({
      customerId: event.survivorId,
      identityKey: { $in: event.identityKeys },
      _id: { $nin: event.survivorMessageIdsOnKeys },
    });
  }
  return filters;
}

/** u4: the merged customer as before the merge, live again (only while still this merge's tombstone). */
export async function restoreMerged(models: IdentityModels, event: MergeEventDoc): Promise<void> {
  const snap = event.mergedSnapshot;
  if (!snap) throw new Error(`merge ${String(event._id)} has no snapshot of the merged customer`);
  const set: Record<string, unknown> = {
    profile: snap.profile,
    firstSeenAt: snap.firstSeenAt,
    lastSeenAt: snap.lastSeenAt,
  };
  const unset: Record<string, 1> = { mergedInto: 1 };
  for (const key of ['displayName', 'ownerAgentId', 'lastChannel', 'lastProvider'] as const) {
    if (snap[key] !== undefined && snap[key] !== null) set[key] = snap[key];
    else unset[key] = 1;
  }
  await models.Customer.updateOne(
    { _id: event.mergedId, mergedBy: event._id, mergedInto: event.survivorId },
    { $set: set, $unset: unset },
  );
}

/** After u5: messages that arrived on the returned identities during the merge count as seen. */
export async function catchUpLastSeen(models: IdentityModels, event: MergeEventDoc): Promise<void> {
  const latest = await models.Message.findOne({ customerId: event.mergedId, direction: 'in' })
    .sort({ sentAt: -1 })
    .lean<{ sentAt: Date; channel: string; provider: string }>();
  if (!latest) return;
  await models.Customer.updateOne(
    { _id: event.mergedId, lastSeenAt: { $lt: latest.sentAt } },
    { $set: { lastSeenAt: latest.sentAt, lastChannel: latest.channel, lastProvider: latest.provider } },
  );
}

async function moveMessagesBack(models: IdentityModels, event: MergeEventDoc): Promise<void> {
  for (const filter of messagesBackFilters(event)) {
    await models.Message.updateMany(filter, { $set: { customerId: event.mergedId } });
  }
}

const customer = (models: IdentityModels, id: Types.ObjectId) =>
  models.Customer.findById(id).lean<Customer>();
const identitiesNotOn = (models: IdentityModels, event: MergeEventDoc, customerId: Types.ObjectId) =>
  models.Identity.countDocuments({ key: { $in: event.identityKeys }, customerId: { $ne: customerId } });

/** Steps 3–7 of a merge and u3–u6 of its undo (the locks, the event status and settle are the runners'). */
export const MERGE_STEPS: readonly MergeStepDef[] = [
  {
    // From here on every lookup of the merged customer lands on the survivor.
    name: 'tombstone',
    merge: {
      reported: 'merged-tombstoned',
      run: async (models, event) => {
        await models.Customer.updateOne(
          { _id: event.mergedId },
          { $set: { mergedInto: event.survivorId, mergedBy: event._id } },
        );
      },
      holds: async (models, event) => {
        const m = await customer(models, event.mergedId);
        return m?.mergedInto?.equals(event.survivorId) === true && m.mergedBy?.equals(event._id) === true;
      },
    },
    undo: {
      at: 2,
      reported: 'merged-restored',
      run: restoreMerged,
      holds: async (models, event) => !(await customer(models, event.mergedId))?.mergedInto,
      // Only the tombstone: the snapshot was restored once, and messages since may have moved last seen.
      repair: async (models, event) => {
        await models.Customer.updateOne(
          { _id: event.mergedId, mergedBy: event._id },
          { $unset: { mergedInto: 1 } },
        );
      },
    },
  },
  { name: 'plan', merge: { reported: 'planned', run: planMerge } },
  {
    name: 'identities',
    merge: {
      reported: 'identities-moved',
      run: async (models, event) => {
        if (event.identityKeys.length === 0) return;
        await models.Identity.updateMany(
          { key: { $in: event.identityKeys }, customerId: event.mergedId },
          { $set: { customerId: event.survivorId } },
        );
      },
      holds: async (models, event) => (await identitiesNotOn(models, event, event.survivorId)) === 0,
    },
    undo: {
      at: 1,
      reported: 'identities-restored',
      run: async (models, event) => {
        if (event.identityKeys.length === 0) return;
        await models.Identity.updateMany(
          { key: { $in: event.identityKeys }, customerId: { $ne: event.mergedId } },
          { $set: { customerId: event.mergedId } },
        );
      },
      holds: async (models, event) => (await identitiesNotOn(models, event, event.mergedId)) === 0,
    },
  },
  {
    // `{customerId: merged}`: also catches messages stored under the merged customer after the plan.
    name: 'messages',
    merge: {
      reported: 'messages-moved',
      run: async (models, event) => {
        await models.Message.updateMany(
          { customerId: event.mergedId },
          { $set: { customerId: event.survivorId } },
        );
      },
      holds: async (models, event) =>
        (await models.Message.countDocuments({ customerId: event.mergedId })) === 0,
    },
    undo: {
      at: 3,
      reported: 'messages-restored',
      run: async (models, event) => {
        await moveMessagesBack(models, event);
        await catchUpLastSeen(models, event);
      },
      holds: async (models, event) => {
        const left = await Promise.all(
          messagesBackFilters(event).map((f) => models.Message.countDocuments(f)),
        );
        return left.every((n) => n === 0);
      },
      repair: moveMessagesBack,
    },
  },
  {
    name: 'profile',
    merge: {
      reported: 'profile-merged',
      run: takeProfile,
      holds: async (models, event) => {
        const s = await customer(models, event.survivorId);
        return (
          event.profileTaken.every((p) => s?.profile?.[p.field]) &&
          (event.ownerTaken === undefined || Boolean(s?.ownerAgentId))
        );
      },
    },
    // No check for settle: each give-back applies only while the taken value holds: no single end state.
    undo: { at: 4, reported: 'survivor-restored', run: giveBackProfile },
  },
];

/** The undo halves in the order the undo runs them. */
export function undoSteps(steps: readonly MergeStepDef[] = MERGE_STEPS): NonNullable<MergeStepDef['undo']>[] {
  return steps.flatMap((s) => (s.undo ? [s.undo] : [])).sort((a, b) => a.at - b.at);
}

/** A direction of the table: its halves in order, and how the event ends once they hold. */
export interface Direction {
  /** For settle's error: `merge <id>`, `undo of merge <id>`. */
  what: string;
  halves: readonly StepHalf[];
  from: MergeStatus;
  end: () => Partial<MergeEvent>;
  unlocked: MergeStep;
  finished: MergeStep;
}

export const MERGE: Direction = {
  what: 'merge',
  halves: MERGE_STEPS.map((s) => s.merge),
  from: 'in_progress',
  end: () => ({ status: 'done', completedAt: new Date() }),
  unlocked: 'unlocked',
  finished: 'done',
};

export const UNDO: Direction = {
  what: 'undo of merge',
  halves: undoSteps(),
  from: 'undoing',
  end: () => ({ status: 'undone', undoneAt: new Date() }),
  unlocked: 'undo-unlocked',
  finished: 'undone',
};

/**
 * Runs the halves' checks until all hold, re-applying every checked half in between (in order).
 * Gives up after a few rounds with a retryable error: the re-run settles it. On MongoDB it is one read.
 */
export async function settle(
  what: string,
  models: IdentityModels,
  event: MergeEventDoc,
  halves: readonly StepHalf[],
): Promise<void> {
  const checked = halves.flatMap((h) => (h.holds ? [{ ...h, holds: h.holds }] : []));
  const check = async () => (await Promise.all(checked.map((h) => h.holds(models, event)))).every(Boolean);
  for (let round = 0; round < SETTLE_ROUNDS; round++) {
    if (await check()) return;
    for (const h of checked) await (h.repair ?? h.run)(models, event);
    await new Promise((r) => setTimeout(r, 10 * (round + 1)));
  }
  if (!(await check())) throw new Error(`${what} did not settle; re-run to finish it`);
}

/**
 * Merging two customers into one, and undoing it, without multi-document transactions (FerretDB v1,
 * standalone MongoDB have none).
 *
 * A merge is a MergeEvent document plus a fixed sequence of single-document (or updateMany)
 * operations, each idempotent and each guarded by a condition that makes a repeat a no-op. The
 * event is written FIRST; everything after it can be re-run from the event alone, so a crash after
 * any step and a re-run (`resumeMerges()`, or `mergeCustomers` called again with the same pair)
 * ends in the same state:
 *
 *   1. event inserted (`in_progress`, survivor, merged, reason, actor)
 *   2. both customers locked (survivor first), then checked: survivor live, merged customer live
 *      or already this event's tombstone
 *   3. merged customer tombstoned (`mergedInto = survivor`, `mergedBy = event`); from here on every
 *      lookup of the merged customer lands on the survivor
 *   4. plan written once (`planned: false → true`): the merged customer's identity keys and message
 *      ids, the survivor's messages on those keys, both pre-merge snapshots, the profile fields the
 *      survivor lacks. Never recomputed, so a resumed merge moves exactly what was planned.
 *   5. identities re-pointed (`updateMany {key ∈ plan, customerId: merged}`)
 *   6. messages re-pointed (`updateMany {customerId: merged}`: also catches stragglers)
 *   7. survivor profile: the missing fields set, each only while still missing (survivor wins)
 *   8. settle: re-read and re-apply 3, 5, 6, 7 until they hold (see "Lost updates" below)
 *   9. locks released; 10. event `done`. (Locks go first so that no finished event ever holds one.)
 *
 * Locks: a merge holds both customers, so two merges cannot move the same identities or make a
 * cycle (A into B while B into A). A lock is a document in `merge_locks` whose `_id` is the
 * customer id: taking it is an insert, and the unique `_id` index lets exactly one event win. A
 * lock held by an in-progress event answers MergeBusyError (409, retryable): that merge finishes on
 * its own re-run. Only lock holders change `mergedInto`, so reads made after locking are stable.
 *
 * Lost updates (FerretDB v1): the server applies every update as a read-modify-write of the whole
 * document without isolation, so two concurrent updates of one document can lose one of them —
 * even updates of different fields, even `$inc`, and a conditional update is not a compare-and-set
 * (measured: 10 concurrent `updateOne({_id, v: null}, {$set: {v: i}})` often report several
 * winners). Unique indexes on insert are enforced. Hence locks by insert, and the settle step: a
 * message touching an identity or customer at the moment a merge moves it can write back the old
 * `customerId` or drop the tombstone. Settle re-reads what the merge must have achieved and re-applies
 * the idempotent steps (bounded, with a short pause) until it holds. On MongoDB it is one read.
 *
 * Messages in flight: the inbound worker resolves a customer, then stores the message, and a merge
 * can happen in between. `storeInbound` inserts first and then checks the identity's live customer;
 * the merge tombstones first (3) and sweeps messages later (6). Either the check runs after the
 * tombstone and re-files the message itself, or it ran before, so the insert precedes the sweep and
 * the sweep moves it. Undo mirrors this: identities go back (u3) and the tombstone is cleared (u4)
 * before the message sweep (u5).
 *
 * Undo (same event, `done → undoing → undone`): u1 status undoing, u2 both locked, u3 identities back,
 * u4 merged customer restored from its snapshot and its tombstone cleared, u5 messages back (the
 * planned ones plus every later message on the returned identity keys), u6 the survivor's taken
 * fields removed where they still hold the taken value, settle, u7 unlocked, u8 undone. Undo needs the
 * survivor to be live: if it was merged again since, that later merge must be undone first.
 */
import { Types } from 'mongoose';
import { AppError, ConflictError, isAppError, NotFoundError, PayloadError } from '../errors';
import type { Logger } from '../logger';
import { isDuplicateKeyError } from '../storage/duplicate-key';
import type {
  Customer,
  CustomerSnapshot,
  IdentityModels,
  MergeEvent,
  MergeLock as MergeLockDoc,
  MergeReason,
  ProfileField,
  ProfileKey,
} from './models';
import { PROFILE_KEYS } from './models';

/** A merge event as stored (lean). */
export type MergeEventDoc = MergeEvent;

export interface MergeResult {
  event: MergeEventDoc;
  /** The survivor's owner after the merge (or undo): keeps the customer. */
  survivorOwnerAgentId?: string;
  /**
   * Merge: the merged customer's owner before the merge, when it is a different agent — that agent
   * lost the customer and should be told. Undo: the restored customer's owner (gets it back).
   */
  mergedOwnerAgentId?: string;
}

export interface MergeInput {
  aId: Types.ObjectId | string;
  bId: Types.ObjectId | string;
  /** Keep this one (an agent's choice); default: the customer seen first (then the smaller id). */
  survivorId?: Types.ObjectId | string;
  reason: MergeReason;
  /** `admin`, `agent:<slack user id>`, `customer:<identity key>`. */
  actor: string;
}

/** Durable steps, in order; `onStep` is told after each one (logging, crash tests). */
export type MergeStep =
  | 'event-created'
  | 'survivor-locked'
  | 'merged-tombstoned'
  | 'planned'
  | 'identities-moved'
  | 'messages-moved'
  | 'profile-merged'
  | 'unlocked'
  | 'done'
  | 'undo-started'
  | 'undo-locked'
  | 'identities-restored'
  | 'merged-restored'
  | 'messages-restored'
  | 'survivor-restored'
  | 'undo-unlocked'
  | 'undone';

export interface MergeServiceOptions {
  /**
   * Called after each durable step with the event id. A throw stops the merge there, exactly like
   * a crash (the crash-safety tests use that); a re-run continues from the stored event.
   */
  onStep?: (step: MergeStep, eventId: Types.ObjectId) => void | Promise<void>;
  /** Where a resumed merge that fails is reported (ids and error, never profile data). */
  log?: Logger;
  /** Failures of one event's resumption, in this process, before it is reported as an alert. @defaultValue 5 */
  alertAfter?: number;
  /** Called on every failed resumption: `alert` once `failures` reaches `alertAfter` (metrics). */
  onResumeFailed?: (eventId: string, failures: number, alert: boolean) => void;
}

export interface MergeService {
  mergeCustomers(input: MergeInput): Promise<MergeResult>;
  undoMerge(mergeEventId: Types.ObjectId | string, actor: string): Promise<MergeResult>;
  /**
   * Finishes merges and undos left in progress by a crash (call at worker start, and periodically).
   * Only events untouched for `olderThanMs` (default 30 s) are picked up, so live ones are left alone
   * (running one twice at once would still be safe, only wasted work).
   */
  resumeMerges(options?: { olderThanMs?: number }): Promise<{ resumed: number; failed: number }>;
}

/** Another merge or undo holds one of the customers; retry once it finishes. */
export class MergeBusyError extends AppError {
  constructor(customerId: Types.ObjectId) {
    super(`a merge involving customer ${String(customerId)} is in progress`, 'merge_in_progress', 409, true);
  }
}

/** A customer id from the outside; malformed ids are unknown ids (404), not bad requests. */
export function parseCustomerId(id: Types.ObjectId | string, what = 'customer'): Types.ObjectId {
  if (id instanceof Types.ObjectId) return id;
  if (!/^[0-9a-f]{24}$/i.test(id)) throw new NotFoundError(`${what} ${id}`);
  return new Types.ObjectId(id);
}

const ACTIVE = ['in_progress', 'undoing'] as const;
/** Settle rounds before giving up (the re-run continues). */
const SETTLE_ROUNDS = 5;

function snapshotOf(c: Customer): CustomerSnapshot {
  const snapshot: CustomerSnapshot = {
    profile: { ...c.profile },
    firstSeenAt: c.firstSeenAt,
    lastSeenAt: c.lastSeenAt,
  };
  if (c.displayName !== undefined && c.displayName !== null) snapshot.displayName = c.displayName;
  if (c.ownerAgentId) snapshot.ownerAgentId = c.ownerAgentId;
  if (c.lastChannel) snapshot.lastChannel = c.lastChannel;
  if (c.lastProvider) snapshot.lastProvider = c.lastProvider;
  return snapshot;
}

/** The survivor by default: seen first, then the smaller id (ObjectIds sort by creation time). */
function olderOf(a: Customer, b: Customer): Customer {
  const d = a.firstSeenAt.getTime() - b.firstSeenAt.getTime();
  if (d !== 0) return d < 0 ? a : b;
  return String(a._id) < String(b._id) ? a : b;
}

export function createMergeService(models: IdentityModels, options: MergeServiceOptions = {}): MergeService {
  const { Customer, Identity, Message, MergeEvent, MergeLock } = models;
  /** Failed resumptions per event in this process (in memory: the event document is not written to). */
  const resumeFailures = new Map<string, number>();
  const alertAfter = options.alertAfter ?? 5;

  function reportResumeFailure(event: MergeEventDoc, err: unknown): void {
    const eventId = String(event._id);
    const failures = (resumeFailures.get(eventId) ?? 0) + 1;
    resumeFailures.set(eventId, failures);
    const alert = failures >= alertAfter;
    const context = {
      mergeEventId: eventId,
      survivorId: String(event.survivorId),
      mergedId: String(event.mergedId),
      status: event.status,
      failures,
      err: { name: err instanceof Error ? err.name : 'Error', code: isAppError(err) ? err.code : undefined },
    };
    if (alert) options.log?.error(context, 'merge keeps failing to resume: needs a look');
    else options.log?.warn(context, 'resuming a merge failed; retried next sweep');
    options.onResumeFailed?.(eventId, failures, alert);
  }
  const step = async (name: MergeStep, id: Types.ObjectId) => {
    await options.onStep?.(name, id);
  };

  async function loadEvent(id: Types.ObjectId): Promise<MergeEventDoc> {
    const event = await MergeEvent.findById(id).lean<MergeEventDoc>();
    if (!event) throw new NotFoundError(`merge ${String(id)}`);
    return event;
  }

  /**
   * Takes `customerId`'s merge lock for `eventId` (an insert that only one event can win). A lock
   * left by an event that is no longer in progress is removed and taken.
   */
  async function lock(customerId: Types.ObjectId, eventId: Types.ObjectId): Promise<'ok' | 'busy'> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await MergeLock.create({ _id: customerId, eventId });
        return 'ok';
      } catch (err) {
        if (!isDuplicateKeyError(err)) throw err;
      }
      const held = await MergeLock.findById(customerId).lean<MergeLockDoc>();
      if (!held) continue;
      if (held.eventId.equals(eventId)) return 'ok';
      const active = await MergeEvent.countDocuments({ _id: held.eventId, status: { $in: ACTIVE } });
      if (active > 0) return 'busy';
      await MergeLock.deleteOne({ _id: customerId, eventId: held.eventId });
    }
    return 'busy';
  }

  async function unlock(eventId: Types.ObjectId, ids: Types.ObjectId[]): Promise<void> {
    await MergeLock.deleteMany({ _id: { $in: ids }, eventId });
  }

  /**
   * Runs `check` until it holds, re-applying `repair` in between (FerretDB v1 lost updates; see the
   * module comment). Gives up after a few rounds with a retryable error: the re-run settles it.
   */
  async function settle(
    what: string,
    check: () => Promise<boolean>,
    repair: () => Promise<void>,
  ): Promise<void> {
    for (let round = 0; round < SETTLE_ROUNDS; round++) {
      if (await check()) return;
      await repair();
      await new Promise((r) => setTimeout(r, 10 * (round + 1)));
    }
    if (!(await check())) throw new Error(`${what} did not settle; re-run to finish it`);
  }

  /** Ends a merge that changed nothing (it never tombstoned the merged customer). */
  async function cancel(event: MergeEventDoc, reason: string): Promise<void> {
    await unlock(event._id, [event.survivorId, event.mergedId]);
    await MergeEvent.updateOne(
      { _id: event._id, status: 'in_progress' },
      { $set: { status: 'cancelled', cancelReason: reason } },
    );
  }

  function resultOf(event: MergeEventDoc, survivor?: Customer, merged?: Customer): MergeResult {
    const survivorOwner = survivor?.ownerAgentId ?? undefined;
    const result: MergeResult = { event };
    if (survivorOwner) result.survivorOwnerAgentId = survivorOwner;
    if (event.status === 'undone' || event.status === 'undoing') {
      const restored = merged?.ownerAgentId ?? undefined;
      if (restored) result.mergedOwnerAgentId = restored;
    } else {
      const before = event.mergedSnapshot?.ownerAgentId;
      if (before && before !== survivorOwner) result.mergedOwnerAgentId = before;
    }
    return result;
  }

  async function finalResult(event: MergeEventDoc): Promise<MergeResult> {
    const [survivor, merged] = await Promise.all([
      Customer.findById(event.survivorId).lean<Customer>(),
      Customer.findById(event.mergedId).lean<Customer>(),
    ]);
    return resultOf(event, survivor ?? undefined, merged ?? undefined);
  }

  /** Step 4: what the merge will move and take, computed once after the tombstone. */
  async function plan(event: MergeEventDoc): Promise<MergeEventDoc> {
    if (event.planned) return event;
    const [survivor, merged, identities, messages] = await Promise.all([
      Customer.findById(event.survivorId).lean<Customer>(),
      Customer.findById(event.mergedId).lean<Customer>(),
      Identity.find({ customerId: event.mergedId }, { key: 1 }).lean<{ key: string }[]>(),
      Message.find({ customerId: event.mergedId }, { _id: 1 }).lean<{ _id: Types.ObjectId }[]>(),
    ]);
    if (!survivor || !merged) throw new Error(`merge ${String(event._id)}: a customer vanished`);
    const identityKeys = identities.map((i) => i.key);
    const survivorOnKeys =
      identityKeys.length === 0
        ? []
        : await Message.find(
            { customerId: event.survivorId, identityKey: { $in: identityKeys } },
            { _id: 1 },
          ).lean<{ _id: Types.ObjectId }[]>();

    const profileTaken: { field: ProfileKey; value: ProfileField }[] = [];
    for (const field of PROFILE_KEYS) {
      const value = merged.profile?.[field];
      if (value && !survivor.profile?.[field]) profileTaken.push({ field, value });
    }
    const set: Partial<MergeEvent> = {
      planned: true,
      identityKeys,
      messageIds: messages.map((m) => m._id),
      survivorMessageIdsOnKeys: survivorOnKeys.map((m) => m._id),
      profileTaken,
      mergedSnapshot: snapshotOf(merged),
      survivorSnapshot: snapshotOf(survivor),
    };
    if (merged.displayName != null && survivor.displayName == null) set.displayNameTaken = merged.displayName;
    if (merged.ownerAgentId && !survivor.ownerAgentId) set.ownerTaken = merged.ownerAgentId;
    if (merged.firstSeenAt < survivor.firstSeenAt) set.firstSeenAtTaken = merged.firstSeenAt;
    if (merged.lastSeenAt > survivor.lastSeenAt) {
      set.lastSeenTaken = {
        at: merged.lastSeenAt,
        channel: merged.lastChannel,
        provider: merged.lastProvider,
      };
    }
    // Written once: a concurrent runner of the same event that planned first wins, and both go on
    // with the stored plan.
    await MergeEvent.updateOne({ _id: event._id, planned: false }, { $set: set });
    return loadEvent(event._id);
  }

  /** Step 7: the survivor takes the fields it lacks, each only while it still lacks it. */
  async function takeProfile(event: MergeEventDoc): Promise<void> {
    const parts: { filter: Record<string, unknown>; update: Record<string, unknown> }[] = [];
    for (const { field, value } of event.profileTaken) {
      parts.push({
        filter: { [`profile.${field}`]: null },
        update: { $set: { [`profile.${field}`]: value } },
      });
    }
    if (event.displayNameTaken !== undefined) {
      parts.push({
        filter: { displayName: null },
        update: { $set: { displayName: event.displayNameTaken } },
      });
    }
    if (event.ownerTaken !== undefined) {
      parts.push({ filter: { ownerAgentId: null }, update: { $set: { ownerAgentId: event.ownerTaken } } });
    }
    if (event.firstSeenAtTaken) {
      parts.push({ filter: {}, update: { $min: { firstSeenAt: event.firstSeenAtTaken } } });
    }
    if (event.lastSeenTaken) {
      const t = event.lastSeenTaken;
      parts.push({
        filter: { lastSeenAt: { $lt: t.at } },
        update: { $set: { lastSeenAt: t.at, lastChannel: t.channel, lastProvider: t.provider } },
      });
    }
    if (parts.length === 0) return;
    // Usually every condition holds: one update. If any does not (a resumed merge, or a message set
    // the field meanwhile), apply each part on its own so the others still happen.
    const filter = Object.assign({ _id: event.survivorId }, ...parts.map((p) => p.filter)) as Record<
      string,
      unknown
    >;
    const update: Record<string, Record<string, unknown>> = {};
    for (const p of parts) {
      for (const [op, fields] of Object.entries(p.update)) {
        update[op] = { ...(update[op] ?? {}), ...(fields as Record<string, unknown>) };
      }
    }
    const all = await Customer.updateOne(filter, update);
    if (all.matchedCount === 1) return;
    for (const p of parts) await Customer.updateOne({ _id: event.survivorId, ...p.filter }, p.update);
  }

  async function runMerge(initial: MergeEventDoc): Promise<MergeResult> {
    let event = initial;
    const { _id: id, survivorId, mergedId } = event;

    for (const customerId of [survivorId, mergedId]) {
      if ((await lock(customerId, id)) === 'busy') {
        await unlock(id, [survivorId]);
        throw new MergeBusyError(customerId);
      }
    }
    const [survivor, merged] = await Promise.all([
      Customer.findById(survivorId).lean<Customer>(),
      Customer.findById(mergedId).lean<Customer>(),
    ]);
    const problem = !survivor
      ? new NotFoundError(`customer ${String(survivorId)}`)
      : !merged
        ? new NotFoundError(`customer ${String(mergedId)}`)
        : survivor.mergedInto
          ? new ConflictError(`customer ${String(survivorId)} is merged into another customer`)
          : merged.mergedInto && !merged.mergedBy?.equals(id)
            ? new ConflictError(`customer ${String(mergedId)} is merged into another customer`)
            : undefined;
    if (problem) {
      await cancel(event, problem.message);
      throw problem;
    }
    await step('survivor-locked', id);

    const tombstone = () =>
      Customer.updateOne({ _id: mergedId }, { $set: { mergedInto: survivorId, mergedBy: id } });
    await tombstone();
    await step('merged-tombstoned', id);

    event = await plan(event);
    await step('planned', id);

    const moveIdentities = async () => {
      if (event.identityKeys.length === 0) return;
      await Identity.updateMany(
        { key: { $in: event.identityKeys }, customerId: mergedId },
        { $set: { customerId: survivorId } },
      );
    };
    await moveIdentities();
    await step('identities-moved', id);

    const moveMessages = () =>
      Message.updateMany({ customerId: mergedId }, { $set: { customerId: survivorId } });
    await moveMessages();
    await step('messages-moved', id);

    await takeProfile(event);
    await step('profile-merged', id);

    await settle(
      `merge ${String(id)}`,
      async () => {
        const [m, s, strayIdentities, strayMessages] = await Promise.all([
          Customer.findById(mergedId).lean<Customer>(),
          Customer.findById(survivorId).lean<Customer>(),
          Identity.countDocuments({ key: { $in: event.identityKeys }, customerId: { $ne: survivorId } }),
          Message.countDocuments({ customerId: mergedId }),
        ]);
        return (
          m?.mergedInto?.equals(survivorId) === true &&
          m.mergedBy?.equals(id) === true &&
          strayIdentities === 0 &&
          strayMessages === 0 &&
          event.profileTaken.every((p) => s?.profile?.[p.field]) &&
          (event.ownerTaken === undefined || Boolean(s?.ownerAgentId))
        );
      },
      async () => {
        await tombstone();
        await moveIdentities();
        await moveMessages();
        await takeProfile(event);
      },
    );

    await unlock(id, [survivorId, mergedId]);
    await step('unlocked', id);

    await MergeEvent.updateOne(
      { _id: id, status: 'in_progress' },
      { $set: { status: 'done', completedAt: new Date() } },
    );
    await step('done', id);
    return finalResult(await loadEvent(id));
  }

  async function restoreSurvivor(event: MergeEventDoc): Promise<void> {
    const s = event.survivorId;
    const snap = event.survivorSnapshot;
    for (const { field, value } of event.profileTaken) {
      await Customer.updateOne(
        {
          _id: s,
          [`profile.${field}.value`]: value.value,
          [`profile.${field}.source`]: value.source,
          [`profile.${field}.at`]: value.at,
        },
        { $unset: { [`profile.${field}`]: 1 } },
      );
    }
    if (event.displayNameTaken !== undefined) {
      await Customer.updateOne(
        { _id: s, displayName: event.displayNameTaken },
        { $unset: { displayName: 1 } },
      );
    }
    if (event.ownerTaken !== undefined) {
      await Customer.updateOne({ _id: s, ownerAgentId: event.ownerTaken }, { $unset: { ownerAgentId: 1 } });
    }
    if (event.firstSeenAtTaken && snap) {
      await Customer.updateOne(
        { _id: s, firstSeenAt: event.firstSeenAtTaken },
        { $set: { firstSeenAt: snap.firstSeenAt } },
      );
    }
    // Last seen goes back only if nothing newer arrived on the survivor's own identities since.
    if (event.lastSeenTaken && snap) {
      const unset: Record<string, 1> = {};
      const set: Record<string, unknown> = { lastSeenAt: snap.lastSeenAt };
      if (snap.lastChannel) set.lastChannel = snap.lastChannel;
      else unset.lastChannel = 1;
      if (snap.lastProvider) set.lastProvider = snap.lastProvider;
      else unset.lastProvider = 1;
      await Customer.updateOne(
        { _id: s, lastSeenAt: event.lastSeenTaken.at },
        Object.keys(unset).length > 0 ? { $set: set, $unset: unset } : { $set: set },
      );
    }
  }

  /** u4: the merged customer as it was before the merge, live again. */
  async function restoreMerged(event: MergeEventDoc): Promise<void> {
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
    // Only while it is still this merge's tombstone: a re-run after u4 changes nothing.
    await Customer.updateOne(
      { _id: event.mergedId, mergedBy: event._id, mergedInto: event.survivorId },
      {
        $set: set,
        $unset: unset,
      },
    );
  }

  /** After u5: messages that arrived on the returned identities during the merge count as seen. */
  async function catchUpLastSeen(event: MergeEventDoc): Promise<void> {
    const latest = await Message.findOne({ customerId: event.mergedId, direction: 'in' })
      .sort({ sentAt: -1 })
      .lean<{ sentAt: Date; channel: string; provider: string }>();
    if (!latest) return;
    await Customer.updateOne(
      { _id: event.mergedId, lastSeenAt: { $lt: latest.sentAt } },
      { $set: { lastSeenAt: latest.sentAt, lastChannel: latest.channel, lastProvider: latest.provider } },
    );
  }

  async function runUndo(initial: MergeEventDoc): Promise<MergeResult> {
    const event = initial;
    const { _id: id, survivorId, mergedId } = event;

    for (const customerId of [survivorId, mergedId]) {
      if ((await lock(customerId, id)) === 'busy') {
        await unlock(id, [survivorId]);
        throw new MergeBusyError(customerId);
      }
    }
    const [survivor, merged] = await Promise.all([
      Customer.findById(survivorId).lean<Customer>(),
      Customer.findById(mergedId).lean<Customer>(),
    ]);
    if (!survivor || survivor.mergedInto || !merged?.mergedBy?.equals(id)) {
      await unlock(id, [survivorId, mergedId]);
      throw new ConflictError(
        survivor?.mergedInto
          ? `survivor ${String(survivorId)} was merged again since; undo that merge first`
          : `customer ${String(mergedId)} is no longer this merge's tombstone`,
      );
    }
    await step('undo-locked', id);

    const restoreIdentities = async () => {
      if (event.identityKeys.length === 0) return;
      await Identity.updateMany(
        { key: { $in: event.identityKeys }, customerId: { $ne: mergedId } },
        { $set: { customerId: mergedId } },
      );
    };
    await restoreIdentities();
    await step('identities-restored', id);

    await restoreMerged(event);
    await step('merged-restored', id);

    const messagesBack: Record<string, unknown>[] = [];
    if (event.messageIds.length > 0)
      messagesBack.push({ customerId: survivorId, _id: { $in: event.messageIds } });
    if (event.identityKeys.length > 0) {
      messagesBack.push({
        customerId: survivorId,
        identityKey: { $in: event.identityKeys },
        _id: { $nin: event.survivorMessageIdsOnKeys },
      });
    }
    const restoreMessages = async () => {
      for (const filter of messagesBack) await Message.updateMany(filter, { $set: { customerId: mergedId } });
    };
    await restoreMessages();
    await catchUpLastSeen(event);
    await step('messages-restored', id);

    await restoreSurvivor(event);
    await step('survivor-restored', id);

    await settle(
      `undo of merge ${String(id)}`,
      async () => {
        const [m, strayIdentities, ...strayMessages] = await Promise.all([
          Customer.findById(mergedId).lean<Customer>(),
          Identity.countDocuments({ key: { $in: event.identityKeys }, customerId: { $ne: mergedId } }),
          ...messagesBack.map((f) => Message.countDocuments(f)),
        ]);
        return !m?.mergedInto && strayIdentities === 0 && strayMessages.every((n) => n === 0);
      },
      async () => {
        await restoreIdentities();
        await Customer.updateOne({ _id: mergedId, mergedBy: id }, { $unset: { mergedInto: 1 } });
        await restoreMessages();
      },
    );

    await unlock(id, [survivorId, mergedId]);
    await step('undo-unlocked', id);

    await MergeEvent.updateOne(
      { _id: id, status: 'undoing' },
      { $set: { status: 'undone', undoneAt: new Date() } },
    );
    await step('undone', id);
    return finalResult(await loadEvent(id));
  }

  /** The latest event of this pair that is not cancelled or undone, if any. */
  async function currentEventOf(a: Types.ObjectId, b: Types.ObjectId): Promise<MergeEventDoc | null> {
    return MergeEvent.findOne({
      $or: [
        { survivorId: a, mergedId: b },
        { survivorId: b, mergedId: a },
      ],
      status: { $in: ['in_progress', 'done', 'undoing'] },
    })
      .sort({ createdAt: -1 })
      .lean<MergeEventDoc>();
  }

  return {
    async mergeCustomers(input) {
      const a = parseCustomerId(input.aId);
      const b = parseCustomerId(input.bId);
      if (a.equals(b)) throw new ConflictError('cannot merge a customer into itself');
      const chosen = input.survivorId === undefined ? undefined : parseCustomerId(input.survivorId);
      if (chosen && !chosen.equals(a) && !chosen.equals(b)) {
        throw new PayloadError('survivorId must be one of the two customers');
      }

      // The same pair again: finish the merge a crash left behind, or answer with the finished one.
      const previous = await currentEventOf(a, b);
      if (previous?.status === 'in_progress') return runMerge(previous);
      if (previous?.status === 'undoing') throw new MergeBusyError(previous.mergedId);
      if (previous?.status === 'done') {
        const stillMerged = await Customer.countDocuments({
          _id: previous.mergedId,
          mergedBy: previous._id,
          mergedInto: previous.survivorId,
        });
        if (stillMerged > 0) return finalResult(previous);
      }

      const [ca, cb] = await Promise.all([
        Customer.findById(a).lean<Customer>(),
        Customer.findById(b).lean<Customer>(),
      ]);
      if (!ca) throw new NotFoundError(`customer ${String(a)}`);
      if (!cb) throw new NotFoundError(`customer ${String(b)}`);
      for (const c of [ca, cb]) {
        if (c.mergedInto) {
          throw new ConflictError(
            `customer ${String(c._id)} is merged into ${String(c.mergedInto)}; merge the live customer`,
          );
        }
      }
      const survivor = chosen ? (chosen.equals(a) ? ca : cb) : olderOf(ca, cb);
      const merged = survivor === ca ? cb : ca;
      const created = await MergeEvent.create({
        survivorId: survivor._id,
        mergedId: merged._id,
        reason: input.reason,
        actor: input.actor,
        status: 'in_progress',
        planned: false,
      });
      await step('event-created', created._id);
      return runMerge(await loadEvent(created._id));
    },

    async undoMerge(mergeEventId, actor) {
      const id = parseCustomerId(mergeEventId, 'merge');
      let event = await loadEvent(id);
      if (event.status === 'undone') return finalResult(event);
      if (event.status === 'cancelled')
        throw new ConflictError(`merge ${String(id)} was cancelled; nothing to undo`);
      if (event.status === 'in_progress') throw new MergeBusyError(event.mergedId);
      if (event.status === 'done') {
        const [survivor, merged] = await Promise.all([
          Customer.findById(event.survivorId).lean<Customer>(),
          Customer.findById(event.mergedId).lean<Customer>(),
        ]);
        if (!survivor || !merged) throw new NotFoundError(`customer of merge ${String(id)}`);
        if (survivor.mergedInto) {
          throw new ConflictError(
            `survivor ${String(survivor._id)} was merged into ${String(survivor.mergedInto)} since; undo that merge first`,
          );
        }
        if (!merged.mergedBy?.equals(id) || !merged.mergedInto?.equals(event.survivorId)) {
          throw new ConflictError(`customer ${String(merged._id)} is no longer this merge's tombstone`);
        }
        await MergeEvent.updateOne(
          { _id: id, status: 'done' },
          { $set: { status: 'undoing', undoActor: actor } },
        );
        event = await loadEvent(id);
        if (event.status === 'undone') return finalResult(event);
        await step('undo-started', id);
      }
      return runUndo(event);
    },

    async resumeMerges({ olderThanMs = 30_000 } = {}) {
      const stale = await MergeEvent.find({
        status: { $in: ACTIVE },
        updatedAt: { $lt: new Date(Date.now() - olderThanMs) },
      })
        .sort({ createdAt: 1 })
        .lean<MergeEventDoc[]>();
      let resumed = 0;
      let failed = 0;
      for (const event of stale) {
        try {
          await (event.status === 'undoing' ? runUndo(event) : runMerge(event));
          resumeFailures.delete(String(event._id));
          resumed++;
        } catch (err) {
          // Cancelled (conflict), still busy, or broken: reported with ids; picked up again next time.
          failed++;
          reportResumeFailure(event, err);
        }
      }
      return { resumed, failed };
    },
  };
}

/**
 * Merge locks: a merge or undo holds both of its customers, so two of them never move the same
 * identities or make a cycle (A into B while B into A). A lock is a `merge_locks` document whose
 * `_id` is the customer id; taking it is an insert, and the unique `_id` lets exactly one event win
 * (FerretDB v1 conditional updates are not compare-and-set; unique inserts are).
 */
import type { Types } from 'mongoose';
import { isDuplicateKeyError } from '../../storage/duplicate-key';
import type { Customer, IdentityModels, MergeLock } from '../models';
import { ACTIVE, MergeBusyError } from './types';

type LockModels = Pick<IdentityModels, 'MergeEvent' | 'MergeLock'>;

/**
 * Takes `customerId`'s lock for `eventId`. A lock this event already holds counts as taken; one left
 * by an event that is no longer active is removed and taken.
 */
export async function lock(
  models: LockModels,
  customerId: Types.ObjectId,
  eventId: Types.ObjectId,
): Promise<'ok' | 'busy'> {
  const { MergeEvent, MergeLock: Locks } = models;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await Locks.create({ _id: customerId, eventId });
      return 'ok';
    } catch (err) {
      if (!isDuplicateKeyError(err)) throw err;
    }
    const held = await Locks.findById(customerId).lean<MergeLock>();
    if (!held) continue;
    if (held.eventId.equals(eventId)) return 'ok';
    const active = await MergeEvent.countDocuments({ _id: held.eventId, status: { $in: ACTIVE } });
    if (active > 0) return 'busy';
    await Locks.deleteOne({ _id: customerId, eventId: held.eventId });
  }
  return 'busy';
}

/** Releases `eventId`'s locks on `ids` (locks held by other events stay). */
export async function unlock(
  models: LockModels,
  eventId: Types.ObjectId,
  ids: Types.ObjectId[],
): Promise<void> {
  await models.MergeLock.deleteMany({ _id: { $in: ids }, eventId });
}

/**
 * Locks the event's survivor, then its merged customer (always in that order), and reads both: only
 * lock holders change `mergedInto`, so these reads stay true until the locks go. When one is busy,
 * gives back what it took and throws MergeBusyError (409, retryable): the holder finishes on its own.
 */
export async function lockPair(
  models: LockModels & Pick<IdentityModels, 'Customer'>,
  event: { _id: Types.ObjectId; survivorId: Types.ObjectId; mergedId: Types.ObjectId },
): Promise<{ survivor: Customer | null; merged: Customer | null }> {
  for (const customerId of [event.survivorId, event.mergedId]) {
    if ((await lock(models, customerId, event._id)) === 'busy') {
      await unlock(models, event._id, [event.survivorId]);
      throw new MergeBusyError(customerId);
    }
  }
  const [survivor, merged] = await Promise.all([
    models.Customer.findById(event.survivorId).lean<Customer>(),
    models.Customer.findById(event.mergedId).lean<Customer>(),
  ]);
  return { survivor, merged };
}

/**
 * Step 4 of a merge: what it will move and take, computed once after the tombstone and stored on
 * the event (`planned: false → true`). Never recomputed, so a resumed merge moves exactly what was
 * planned, and an undo gives back exactly that.
 */
import type { Types } from 'mongoose';
import type {
  Customer,
  CustomerSnapshot,
  IdentityModels,
  MergeEvent,
  ProfileField,
  ProfileKey,
} from '../models';
import { PROFILE_KEYS } from '../models';
import { loadEvent } from './events';
import type { MergeEventDoc } from './types';

/** A customer's fields as a merge or undo needs to restore them. */
export function snapshotOf(c: Customer): CustomerSnapshot {
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
export function olderOf(a: Customer, b: Customer): Customer {
  const d = a.firstSeenAt.getTime() - b.firstSeenAt.getTime();
  if (d !== 0) return d < 0 ? a : b;
  return String(a._id) < String(b._id) ? a : b;
}

/** What the merge moves (ids found by the caller) and what the survivor takes: where it has none. */
export function planOf(
  survivor: Customer,
  merged: Customer,
  moves: { identityKeys: string[]; messageIds: Types.ObjectId[]; survivorMessageIdsOnKeys: Types.ObjectId[] },
): Partial<MergeEvent> {
  const profileTaken: { field: ProfileKey; value: ProfileField }[] = [];
  for (const field of PROFILE_KEYS) {
    const value = merged.profile?.[field];
    if (value && !survivor.profile?.[field]) profileTaken.push({ field, value });
  }
  const set: Partial<MergeEvent> = {
    planned: true,
    ...moves,
    profileTaken,
    mergedSnapshot: snapshotOf(merged),
    survivorSnapshot: snapshotOf(survivor),
  };
  if (merged.displayName != null && survivor.displayName == null) set.displayNameTaken = merged.displayName;
  if (merged.ownerAgentId && !survivor.ownerAgentId) set.ownerTaken = merged.ownerAgentId;
  if (merged.firstSeenAt < survivor.firstSeenAt) set.firstSeenAtTaken = merged.firstSeenAt;
  if (merged.lastSeenAt > survivor.lastSeenAt) {
    set.lastSeenTaken = { at: merged.lastSeenAt, channel: merged.lastChannel, provider: merged.lastProvider };
  }
  return set;
}

/** Plans the event unless it already is; returns the event with its stored plan. */
export async function planMerge(models: IdentityModels, event: MergeEventDoc): Promise<MergeEventDoc> {
  if (event.planned) return event;
  const { Customer, Identity, Message, MergeEvent } = models;
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
  const set = planOf(survivor, merged, {
    identityKeys,
    messageIds: messages.map((m) => m._id),
    survivorMessageIdsOnKeys: survivorOnKeys.map((m) => m._id),
  });
  // Written once: a concurrent runner of the same event that planned first wins, and both go on
  // with the stored plan.
  await MergeEvent.updateOne({ _id: event._id, planned: false }, { $set: set });
  return loadEvent(models, event._id);
}

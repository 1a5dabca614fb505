/**
 * Reading merge events and turning them into results: the event is the whole record of a merge, so
 * every runner starts from it and ends by reading it back.
 */
import type { Types } from 'mongoose';
import { NotFoundError } from '../../errors';
import type { Customer, IdentityModels } from '../models';
import { unlock } from './locks';
import type { MergeEventDoc, MergeResult } from './types';

export async function loadEvent(
  models: Pick<IdentityModels, 'MergeEvent'>,
  id: Types.ObjectId,
): Promise<MergeEventDoc> {
  const event = await models.MergeEvent.findById(id).lean<MergeEventDoc>();
  if (!event) throw new NotFoundError(`merge ${String(id)}`);
  return event;
}

/** The latest event of this pair that is not cancelled or undone, if any. */
export async function currentEventOf(
  models: Pick<IdentityModels, 'MergeEvent'>,
  a: Types.ObjectId,
  b: Types.ObjectId,
): Promise<MergeEventDoc | null> {
  return models.MergeEvent.findOne({
    $or: [
      { survivorId: a, mergedId: b },
      { survivorId: b, mergedId: a },
    ],
    status: { $in: ['in_progress', 'done', 'undoing'] },
  })
    .sort({ createdAt: -1 })
    .lean<MergeEventDoc>();
}

/** Who keeps the customer and who lost (merge) or gets back (undo) the other one. */
export function resultOf(event: MergeEventDoc, survivor?: Customer, merged?: Customer): MergeResult {
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

export async function finalResult(models: IdentityModels, event: MergeEventDoc): Promise<MergeResult> {
  const [survivor, merged] = await Promise.all([
    models.Customer.findById(event.survivorId).lean<Customer>(),
    models.Customer.findById(event.mergedId).lean<Customer>(),
  ]);
  return resultOf(event, survivor ?? undefined, merged ?? undefined);
}

/** Ends a merge that changed nothing (it never tombstoned the merged customer). */
export async function cancel(models: IdentityModels, event: MergeEventDoc, reason: string): Promise<void> {
  await unlock(models, event._id, [event.survivorId, event.mergedId]);
  await models.MergeEvent.updateOne(
    { _id: event._id, status: 'in_progress' },
    { $set: { status: 'cancelled', cancelReason: reason } },
  );
}

/**
 * The survivor's side of a merge: step 7 gives it the fields it lacked, undo step u6 takes them back.
 * Each change is a conditional update built from the stored plan, so a repeat is a no-op and a
 * value the survivor set since (a newer name, an agent's edit) is never overwritten or removed.
 */
import type { IdentityModels } from '../models';
import type { MergeEventDoc } from './types';

/** One conditional update of the survivor: `filter` is added to `{ _id: survivorId }`. */
export interface SurvivorUpdate {
  filter: Record<string, unknown>;
  update: Record<string, Record<string, unknown>>;
}

/** Step 7's updates: each field is set only while the survivor still lacks it (survivor wins). */
export function profileTakes(event: MergeEventDoc): SurvivorUpdate[] {
  const parts: SurvivorUpdate[] = event.profileTaken.map(({ field, value }) => ({
    filter: { [`profile.${field}`]: null },
    update: { $set: { [`profile.${field}`]: value } },
  }));
  if (event.displayNameTaken !== undefined) {
    parts.push({ filter: { displayName: null }, update: { $set: { displayName: event.displayNameTaken } } });
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
  return parts;
}

/** Undo u6's updates: each taken value is removed (or the old one put back) only while it still holds. */
export function profileGiveBacks(event: MergeEventDoc): SurvivorUpdate[] {
  const snap = event.survivorSnapshot;
  const parts: SurvivorUpdate[] = event.profileTaken.map(({ field, value }) => ({
    filter: {
      [`profile.${field}.value`]: value.value,
      [`profile.${field}.source`]: value.source,
      [`profile.${field}.at`]: value.at,
    },
    update: { $unset: { [`profile.${field}`]: 1 } },
  }));
  if (event.displayNameTaken !== undefined) {
    parts.push({ filter: { displayName: event.displayNameTaken }, update: { $unset: { displayName: 1 } } });
  }
  if (event.ownerTaken !== undefined) {
    parts.push({ filter: { ownerAgentId: event.ownerTaken }, update: { $unset: { ownerAgentId: 1 } } });
  }
  if (event.firstSeenAtTaken && snap) {
    parts.push({
      filter: { firstSeenAt: event.firstSeenAtTaken },
      update: { $set: { firstSeenAt: snap.firstSeenAt } },
    });
  }
  // Last seen goes back only if nothing newer arrived on the survivor's own identities since.
  if (event.lastSeenTaken && snap) {
    const unset: Record<string, 1> = {};
    const set: Record<string, unknown> = { lastSeenAt: snap.lastSeenAt };
    if (snap.lastChannel) set.lastChannel = snap.lastChannel;
    else unset.lastChannel = 1;
    if (snap.lastProvider) set.lastProvider = snap.lastProvider;
    else unset.lastProvider = 1;
    parts.push({
      filter: { lastSeenAt: event.lastSeenTaken.at },
      update: Object.keys(unset).length > 0 ? { $set: set, $unset: unset } : { $set: set },
    });
  }
  return parts;
}

/** Step 7: the survivor takes the fields it lacks, each only while it still lacks it. */
export async function takeProfile(
  models: Pick<IdentityModels, 'Customer'>,
  event: MergeEventDoc,
): Promise<void> {
  const parts = profileTakes(event);
  if (parts.length === 0) return;
  // Usually every condition holds: one update. If any does not (a resumed merge, or a message set
  // the field meanwhile), apply each part on its own so the others still happen.
  const filter: Record<string, unknown> = Object.assign(
    { _id: event.survivorId },
    ...parts.map((p) => p.filter),
  );
  const update: Record<string, Record<string, unknown>> = {};
  for (const p of parts) {
    for (const [op, fields] of Object.entries(p.update)) update[op] = { ...(update[op] ?? {}), ...fields };
  }
  const all = await models.Customer.updateOne(filter, update);
  if (all.matchedCount === 1) return;
  for (const p of parts) await models.Customer.updateOne({ _id: event.survivorId, ...p.filter }, p.update);
}

/** Undo u6: the survivor loses what the merge gave it, where it still has exactly that. */
export async function giveBackProfile(
  models: Pick<IdentityModels, 'Customer'>,
  event: MergeEventDoc,
): Promise<void> {
  for (const p of profileGiveBacks(event)) {
    await models.Customer.updateOne({ _id: event.survivorId, ...p.filter }, p.update);
  }
}

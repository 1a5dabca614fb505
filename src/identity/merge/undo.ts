/**
 * Undoing a merge from its event (`done → undoing → undone`): the undo halves of the step table,
 * in their own order, then settle. Crash-safe the same way as the merge. The survivor must be
 * live: if it was merged again since, that later merge is undone first.
 */
import type { Types } from 'mongoose';
import { ConflictError, NotFoundError } from '../../errors';
import type { Customer } from '../models';
import { finalResult, loadEvent } from './events';
import { lockPair, unlock } from './locks';
import { runSteps } from './run-steps';
import { UNDO } from './steps';
import {
  MergeBusyError,
  parseCustomerId,
  type MergeContext,
  type MergeEventDoc,
  type MergeResult,
} from './types';

/** u2–u8 for an event in `undoing`: lock, check, then the undo halves to the end (`undone`). */
export async function runUndo(ctx: MergeContext, event: MergeEventDoc): Promise<MergeResult> {
  const { _id: id, survivorId, mergedId } = event;
  const { survivor, merged } = await lockPair(ctx.models, event);
  if (!survivor || survivor.mergedInto || !merged?.mergedBy?.equals(id)) {
    await unlock(ctx.models, id, [survivorId, mergedId]);
    throw new ConflictError(
      survivor?.mergedInto
        ? `survivor ${String(survivorId)} was merged again since; undo that merge first`
        : `customer ${String(mergedId)} is no longer this merge's tombstone`,
    );
  }
  await ctx.step('undo-locked', id);
  return runSteps(ctx, event, UNDO);
}

/** u1 for a `done` event: checks it can still be undone and marks it `undoing` (with the actor). */
async function startUndo(ctx: MergeContext, event: MergeEventDoc, actor: string): Promise<MergeEventDoc> {
  const { models } = ctx;
  const id = event._id;
  const [survivor, merged] = await Promise.all([
    models.Customer.findById(event.survivorId).lean<Customer>(),
    models.Customer.findById(event.mergedId).lean<Customer>(),
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
  await models.MergeEvent.updateOne(
    { _id: id, status: 'done' },
    { $set: { status: 'undoing', undoActor: actor } },
  );
  return loadEvent(models, id);
}

export async function undoMerge(
  ctx: MergeContext,
  mergeEventId: Types.ObjectId | string,
  actor: string,
): Promise<MergeResult> {
  const id = parseCustomerId(mergeEventId, 'merge');
  let event = await loadEvent(ctx.models, id);
  if (event.status === 'undone') return finalResult(ctx.models, event);
  if (event.status === 'cancelled')
    throw new ConflictError(`merge ${String(id)} was cancelled; nothing to undo`);
  if (event.status === 'in_progress') throw new MergeBusyError(event.mergedId);
  if (event.status === 'done') {
    event = await startUndo(ctx, event, actor);
    if (event.status === 'undone') return finalResult(ctx.models, event);
    await ctx.step('undo-started', id);
  }
  return runUndo(ctx, event);
}

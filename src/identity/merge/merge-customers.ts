/**
 * Merging two customers: write the event first, then run the step table from it. Everything after
 * the event can be re-run from the event alone (`resumeMerges`, or the same pair merged again), so
 * a crash after any step ends, once re-run, in the state an uninterrupted merge reaches.
 */
import type { Types } from 'mongoose';
import { ConflictError, NotFoundError, PayloadError } from '../../errors';
import type { Customer } from '../models';
import { cancel, currentEventOf, finalResult, loadEvent } from './events';
import { lockPair } from './locks';
import { olderOf } from './plan';
import { runSteps } from './run-steps';
import { MERGE } from './steps';
import {
  MergeBusyError,
  parseCustomerId,
  type MergeContext,
  type MergeEventDoc,
  type MergeInput,
  type MergeResult,
} from './types';

/** Why this event cannot go on, once both customers are locked (reads after locking are stable). */
function problemOf(
  event: MergeEventDoc,
  survivor: Customer | null,
  merged: Customer | null,
): Error | undefined {
  if (!survivor) return new NotFoundError(`customer ${String(event.survivorId)}`);
  if (!merged) return new NotFoundError(`customer ${String(event.mergedId)}`);
  if (survivor.mergedInto)
    return new ConflictError(`customer ${String(event.survivorId)} is merged into another customer`);
  // Already this event's tombstone is fine: a re-run after step 3.
  if (merged.mergedInto && !merged.mergedBy?.equals(event._id)) {
    return new ConflictError(`customer ${String(event.mergedId)} is merged into another customer`);
  }
  return undefined;
}

/** Steps 2–10 for a stored event: lock, check, then the step table to the end (`done`). */
export async function runMerge(ctx: MergeContext, event: MergeEventDoc): Promise<MergeResult> {
  const { survivor, merged } = await lockPair(ctx.models, event);
  const problem = problemOf(event, survivor, merged);
  if (problem) {
    await cancel(ctx.models, event, problem.message);
    throw problem;
  }
  await ctx.step('survivor-locked', event._id);
  return runSteps(ctx, event, MERGE);
}

/** The same pair again: the merge a crash left behind continues, a finished one is answered as is. */
async function previousMerge(
  ctx: MergeContext,
  a: Types.ObjectId,
  b: Types.ObjectId,
): Promise<MergeResult | undefined> {
  const previous = await currentEventOf(ctx.models, a, b);
  if (previous?.status === 'in_progress') return runMerge(ctx, previous);
  if (previous?.status === 'undoing') throw new MergeBusyError(previous.mergedId);
  if (previous?.status === 'done') {
    const stillMerged = await ctx.models.Customer.countDocuments({
      _id: previous.mergedId,
      mergedBy: previous._id,
      mergedInto: previous.survivorId,
    });
    if (stillMerged > 0) return finalResult(ctx.models, previous);
  }
  return undefined;
}

/** Step 1: checks the pair, picks the survivor and writes the event; then runs it. */
export async function mergeCustomers(ctx: MergeContext, input: MergeInput): Promise<MergeResult> {
  const a = parseCustomerId(input.aId);
  const b = parseCustomerId(input.bId);
  if (a.equals(b)) throw new ConflictError('cannot merge a customer into itself');
  const chosen = input.survivorId === undefined ? undefined : parseCustomerId(input.survivorId);
  if (chosen && !chosen.equals(a) && !chosen.equals(b)) {
    throw new PayloadError('survivorId must be one of the two customers');
  }
  const previous = await previousMerge(ctx, a, b);
  if (previous) return previous;

  const { Customer: Customers, MergeEvent } = ctx.models;
  const [ca, cb] = await Promise.all([
    Customers.findById(a).lean<Customer>(),
    Customers.findById(b).lean<Customer>(),
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
  await ctx.step('event-created', created._id);
  return runMerge(ctx, await loadEvent(ctx.models, created._id));
}

/**
 * The `erasures` document: it drives the steps while an erasure runs and is then the audit record
 * (ids, actor, times, counts; never personal data once finished).
 */
import type { Model, Types } from 'mongoose';
import type { Logger } from '../../logger';
import { ERASURE_STEPS, ZERO_COUNTS, type Erasure, type ErasureCounts, type ErasureStep } from '../models';

export interface ErasureView {
  id: string;
  requestedId: string;
  customerIds: string[];
  actor: string;
  status: Erasure['status'];
  stepsDone: ErasureStep[];
  pending: ErasureStep[];
  counts: ErasureCounts;
  slackSkipped: string | null;
  startedAt: string;
  completedAt: string | null;
}

/** Writes fields of the erasure document `e` (FerretDB v1: one field set per call, no transaction). */
export type SaveErasure = (
  e: Erasure,
  set: Record<string, unknown>,
  unset?: Record<string, 1>,
) => Promise<void>;

export function erasureSaver(model: Model<Erasure>): SaveErasure {
  return async (e, set, unset) => {
    await model.updateOne({ _id: e._id }, { $set: set, ...(unset ? { $unset: unset } : {}) });
  };
}

/** The newest erasure covering customer `id`, if any. */
export function latestErasure(model: Model<Erasure>, id: Types.ObjectId): Promise<Erasure | null> {
  return model.findOne({ customerIds: id }).sort({ startedAt: -1 }).lean<Erasure>();
}

/** Marks `e` done and drops what it still held for the run (plan, last error): the audit record. */
export async function completeErasure(save: SaveErasure, log: Logger, e: Erasure): Promise<Erasure> {
  const completedAt = new Date();
  await save(e, { status: 'done', completedAt }, { plan: 1, lastError: 1 });
  log.info(
    { erasureId: String(e._id), customerId: String(e.liveId), actor: e.actor, counts: e.counts },
    'customer erased',
  );
  return { ...e, status: 'done', completedAt, plan: undefined };
}

export function view(e: Erasure): ErasureView {
  const done = new Set(e.stepsDone);
  return {
    id: String(e._id),
    requestedId: String(e.requestedId),
    customerIds: e.customerIds.map(String),
    actor: e.actor,
    status: e.status,
    stepsDone: e.stepsDone,
    pending: ERASURE_STEPS.filter((s) => !done.has(s)),
    counts: { ...ZERO_COUNTS, ...e.counts },
    slackSkipped: e.slack?.skipped ?? null,
    startedAt: e.startedAt.toISOString(),
    completedAt: e.completedAt?.toISOString() ?? null,
  };
}

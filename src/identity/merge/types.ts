/**
 * The merge service's public types, its busy error and id parsing, and the context every step gets.
 */
import { Types } from 'mongoose';
import { AppError, NotFoundError } from '../../errors';
import type { Logger } from '../../logger';
import type { IdentityModels, MergeEvent, MergeReason } from '../models';

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

/** What the orchestrators run against: the models, and the `onStep` report after each durable step. */
export interface MergeContext {
  models: IdentityModels;
  step(name: MergeStep, eventId: Types.ObjectId): Promise<void>;
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

/** Events a runner is still working on: they hold their locks, and resume picks them up. */
export const ACTIVE = ['in_progress', 'undoing'] as const;

/**
 * Merging two customers into one, and undoing it, without multi-document transactions (FerretDB v1
 * and standalone MongoDB have none). A merge is a MergeEvent written first, then a fixed table of
 * idempotent steps driven only by that event (steps.ts), so a crash after any step and a re-run end
 * in the same state. See src/identity/README.md ("Merge") for the steps and why they are ordered so.
 */
import type { IdentityModels } from '../models';
import { mergeCustomers, runMerge } from './merge-customers';
import { createResumer } from './resume';
import type { MergeContext, MergeService, MergeServiceOptions } from './types';
import { runUndo, undoMerge } from './undo';

export {
  MergeBusyError,
  parseCustomerId,
  type MergeEventDoc,
  type MergeInput,
  type MergeResult,
  type MergeService,
  type MergeServiceOptions,
  type MergeStep,
} from './types';

export function createMergeService(models: IdentityModels, options: MergeServiceOptions = {}): MergeService {
  const ctx: MergeContext = {
    models,
    step: async (name, id) => {
      await options.onStep?.(name, id);
    },
  };
  return {
    mergeCustomers: (input) => mergeCustomers(ctx, input),
    undoMerge: (mergeEventId, actor) => undoMerge(ctx, mergeEventId, actor),
    resumeMerges: createResumer({
      ...options,
      models,
      run: (event) => (event.status === 'undoing' ? runUndo(ctx, event) : runMerge(ctx, event)),
    }),
  };
}

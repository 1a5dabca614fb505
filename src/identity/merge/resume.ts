/**
 * Finishing merges and undos a crash left in progress. A failure is never dropped: each one is
 * counted per event, logged with ids (never profile data), reported to `onResumeFailed`, raised to
 * an error-level alert once it has failed `alertAfter` times, and the event is retried next sweep.
 */
import { isAppError } from '../../errors';
import type { Logger } from '../../logger';
import type { IdentityModels } from '../models';
import { ACTIVE, type MergeEventDoc, type MergeResult, type MergeServiceOptions } from './types';

export interface ResumerOptions extends Pick<MergeServiceOptions, 'alertAfter' | 'onResumeFailed'> {
  models: Pick<IdentityModels, 'MergeEvent'>;
  log?: Logger;
  /** Runs one stale event to its end (merge or undo, by its status). */
  run(event: MergeEventDoc): Promise<MergeResult>;
}

/** Counts, logs and reports one failed resumption; the count lives in this process only. */
export class ResumeFailures {
  private readonly counts = new Map<string, number>();

  constructor(private readonly options: Pick<ResumerOptions, 'log' | 'alertAfter' | 'onResumeFailed'>) {}

  /** The event's failures so far, this one included. */
  report(event: MergeEventDoc, err: unknown): number {
    const eventId = String(event._id);
    const failures = (this.counts.get(eventId) ?? 0) + 1;
    this.counts.set(eventId, failures);
    const alert = failures >= (this.options.alertAfter ?? 5);
    const context = {
      mergeEventId: eventId,
      survivorId: String(event.survivorId),
      mergedId: String(event.mergedId),
      status: event.status,
      failures,
      err: { name: err instanceof Error ? err.name : 'Error', code: isAppError(err) ? err.code : undefined },
    };
    if (alert) this.options.log?.error(context, 'merge keeps failing to resume: needs a look');
    else this.options.log?.warn(context, 'resuming a merge failed; retried next sweep');
    this.options.onResumeFailed?.(eventId, failures, alert);
    return failures;
  }

  /** The event finished: its count starts again. */
  clear(event: MergeEventDoc): void {
    this.counts.delete(String(event._id));
  }
}

/** `resumeMerges`: every stale event in turn; one failing does not stop the others. */
export function createResumer(options: ResumerOptions) {
  const failures = new ResumeFailures(options);
  return async ({ olderThanMs = 30_000 }: { olderThanMs?: number } = {}) => {
    const stale = await options.models.MergeEvent.find({
      status: { $in: ACTIVE },
      updatedAt: { $lt: new Date(Date.now() - olderThanMs) },
    })
      .sort({ createdAt: 1 })
      .lean<MergeEventDoc[]>();
    let resumed = 0;
    let failed = 0;
    for (const event of stale) {
      try {
        await options.run(event);
        failures.clear(event);
        resumed++;
      } catch (err) {
        // Cancelled (conflict), still busy, or broken: reported above; picked up again next time.
        failed++;
        failures.report(event, err);
      }
    }
    return { resumed, failed };
  };
}

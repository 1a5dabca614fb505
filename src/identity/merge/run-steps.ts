/**
 * What a merge and an undo both do once their customers are locked and checked: run the direction's
 * halves in order (reporting each to `onStep`), settle, release the locks, and end the event. Locks
 * go before the status, so that no finished event ever holds one.
 */
import { finalResult, loadEvent } from './events';
import { unlock } from './locks';
import { settle, type Direction } from './steps';
import type { MergeContext, MergeEventDoc, MergeResult } from './types';

export async function runSteps(
  ctx: MergeContext,
  initial: MergeEventDoc,
  direction: Direction,
): Promise<MergeResult> {
  const { models } = ctx;
  let event = initial;
  const { _id: id, survivorId, mergedId } = event;
  for (const half of direction.halves) {
    event = (await half.run(models, event)) ?? event;
    await ctx.step(half.reported, id);
  }
  await settle(`${direction.what} ${String(id)}`, models, event, direction.halves);

  await unlock(models, id, [survivorId, mergedId]);
  await ctx.step(direction.unlocked, id);
  await models.MergeEvent.updateOne({ _id: id, status: direction.from }, { $set: direction.end() });
  await ctx.step(direction.finished, id);
  return finalResult(models, await loadEvent(models, id));
}

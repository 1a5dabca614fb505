/**
 * The erasure's Redis steps: the customer's own keys (outbox sequence, card refresh, card checks,
 * the hot state's copies, the owner pick's recent reservation)
 * and every BullMQ job that names the customer (queue-purge.ts). Idempotent, like the others.
 */
import type { Logger } from '../../logger';
import type { RedisClient } from '../../queue/connection';
import { forgetHotCustomer } from '../../identity/cache';
import { cardKeysOf } from '../../router/card-updates';
import { cardCheckKey } from '../../router/card-post';
import { pendingPostsKey } from '../../router/outbox';
import { forgetLoadCustomer } from '../../router/owner-load';
import type { Erasure } from '../models';
import { purgeQueues } from './queue-purge';
import type { SaveErasure } from './audit';

export interface RedisStepDeps {
  redis: RedisClient;
  /** QUEUE_PREFIX. */
  prefix: string;
  save: SaveErasure;
  log: Logger;
  /** How long the jobs step waits for a matching active job to finish. @defaultValue 5000 */
  activeJobWaitMs?: number;
}

/** The family's outbox sequence and Slack listing, card-refresh and card-check keys. */
export async function eraseCustomerKeys(d: RedisStepDeps, e: Erasure): Promise<void> {
  // One key a call: on a Redis Cluster the keys may sit in different slots.
  const keys = [
    ...e.customerIds.flatMap((id) => [
      `${d.prefix}:seq:${String(id)}`,
      pendingPostsKey(d.prefix, String(id)),
      ...cardKeysOf(d.prefix, String(id)),
    ]),
    ...e.slack.threads.map((t) => cardCheckKey(d.prefix, t)),
  ];
  for (const key of keys) await d.redis.del(key).catch(() => undefined);
  for (const id of e.customerIds) {
    await forgetHotCustomer(d.redis, d.prefix, String(id));
    await forgetLoadCustomer(d.redis, d.prefix, String(id));
  }
}

/** Job payloads in Redis; false while a matching job is still active (a re-run retries). */
export async function eraseJobs(d: RedisStepDeps, e: Erasure): Promise<boolean> {
  const result = await purgeQueues({
    redis: d.redis,
    prefix: d.prefix,
    // Slack thread timestamps find the agents' side (agent-events jobs carry thread_ts, not ids).
    needles: e.plan
      ? [...e.plan.needles, ...e.slack.threads.map((t) => t.ts), ...e.slack.refs.map((r) => r.ts)]
      : [],
    activeWaitMs: d.activeJobWaitMs,
  });
  e.counts.jobsRemoved = (e.counts.jobsRemoved ?? 0) + result.removed;
  await d.save(e, { 'counts.jobsRemoved': e.counts.jobsRemoved });
  if (result.active > 0) {
    d.log.info(
      { erasureId: String(e._id), active: result.active },
      'erasure: jobs still active; resuming later',
    );
    return false;
  }
  return true;
}

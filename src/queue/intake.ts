/**
 * Intake: puts canonical inbound events on the `inbound` queue exactly once per key.
 *
 * Two layers of dedupe, because providers redeliver for a long time (Meta: up to 7 days):
 * 1. A "seen" marker per event key in Redis, kept for `dedupeTtlSeconds` (default 8 days) from the
 *    add, which outlives the job (jobs are trimmed after completion).
 * 2. The BullMQ job id derived from the key, which makes a second add of a job that still exists a
 *    no-op (a redelivery racing the first one, or one that follows an interrupted first).
 *
 * The marker has two states, and a delivery walks them in this order:
 *   `SET seen pending NX EX ttl` (the claim) → `queue.add` → `SET seen done EX ttl` (the mark).
 * - The claim succeeds (no marker): the event is new; add it.
 * - The marker is `pending`: an earlier delivery claimed the key and may have died before or after
 *   its add, or is adding right now. Add again: if its job exists the add is a no-op, if it was
 *   queued, completed and removed the event is queued a second time and the downstream unique
 *   message key absorbs it. Never answered as a duplicate, so a crash can never lose an event.
 * - The marker is anything else (`done`, or the timestamp older versions wrote after the add): the
 *   event was queued; the delivery is a duplicate.
 * The provider is answered only after the add. The mark is sent but not awaited: losing it (a crash,
 * a dropped connection) leaves `pending`, which only makes a later redelivery add again, exactly as
 * a crash between add and mark would; waiting for it would cost every webhook a round trip to
 * guard against nothing more. One connection keeps a process's mark ahead of its next claim.
 *
 * Single-key commands only (no MULTI/MGET across keys), so this also works on Redis Cluster; the
 * claim is `SET NX` and not `SET NX GET` (Redis 7.0+), and the mark sets the TTL again rather than
 * keep it (`KEEPTTL`, Redis 6.0+), so Redis 5.0 is still enough (src/doctor/redis.ts): the marker's
 * value is read only when the claim fails, i.e. for redeliveries.
 */
import type { PartitionedQueue } from './partitions';
import { senderOrderKey } from './partitions';
import type { Queue } from 'bullmq';
import type { RedisClient } from './connection';
import { eventKey, sourceOf, type InboundEvent } from '../canonical';
import { UnavailableError } from '../errors';
import { withoutNul } from '../values';
import { jobIdFor } from './names';

// Every queued event is stripped of NUL characters (src/values.ts says why); tests check it by this name.
export { withoutNul };

export interface IntakeOptions {
  /** The partitioned `inbound` queue; each sender's events go to one partition, in order. */
  queue: PartitionedQueue;
  redis: RedisClient;
  /** Key prefix for the seen markers. */
  prefix: string;
  /** How long a key is remembered after first acceptance. @defaultValue 8 days */
  dedupeTtlSeconds?: number;
}

export interface IntakeResult {
  queued: InboundEvent[];
  duplicates: InboundEvent[];
}

export interface Intake {
  accept(events: InboundEvent[]): Promise<IntakeResult>;
  /** Unix ms of the last accepted customer message, per source (shared by every api replica). */
  lastInboundByChannel(): Promise<Record<string, number>>;
}

/** Events of one sender share an order key; statuses are ordered per message. */
export function orderKeyOf(event: InboundEvent): string {
  if (event.type === 'message') return senderOrderKey(event.message.from);
  return `status:${event.status.providerMessageId ?? event.status.key}`;
}

/** Marker values (see the header). Any other value is a marker an older version wrote once queued. */
const PENDING = 'pending';
const DONE = 'done';

export function createIntake({
  queue,
  redis,
  prefix,
  dedupeTtlSeconds = 8 * 24 * 3600,
}: IntakeOptions): Intake {
  const seenKey = (key: string) => `${prefix}:seen:${key}`;
  const lastInboundKey = `${prefix}:last-inbound`;
  // The shared last-inbound time is written at most once a second per source and process: it feeds
  // /readyz ("seconds since"), where a second of staleness is harmless and a write per message is not.
  const lastWritten = new Map<string, number>();
  const recordLastInbound = (source: string, now: number) => {
    if (now - (lastWritten.get(source) ?? 0) < 1_000) return;
    lastWritten.set(source, now);
    redis.hset(lastInboundKey, source, now).catch(() => lastWritten.delete(source));
  };

  /** True if the event must be added: its key is new, or an earlier delivery may not have queued it. */
  const claim = async (key: string): Promise<boolean> => {
    if ((await redis.set(seenKey(key), PENDING, 'EX', dedupeTtlSeconds, 'NX')) === 'OK') return true;
    // A marker gone between the two commands (expired, evicted) is treated as a pending one.
    const marker = await redis.get(seenKey(key));
    return marker === null || marker === PENDING;
  };

  /** Adds the events, one partition per sender (see partitions.ts); a batch with addBulk (MULTI) per partition. */
  const add = async (events: InboundEvent[]) => {
    const byPartition = new Map<Queue, InboundEvent[]>();
    for (const event of events) {
      const partition = queue.queueFor(orderKeyOf(event));
      const list = byPartition.get(partition);
      if (list) list.push(event);
      else byPartition.set(partition, [event]);
    }
    await Promise.all(
      [...byPartition].map(([q, list]) => {
        const jobs = list.map((event) => ({
          name: event.type,
          data: event,
          opts: { jobId: jobIdFor(eventKey(event)) },
        }));
        return jobs.length === 1 ? q.add(jobs[0]!.name, jobs[0]!.data, jobs[0]!.opts) : q.addBulk(jobs);
      }),
    );
  };

  return {
    async accept(received) {
      if (received.length === 0) return { queued: [], duplicates: [] };
      const events = received.map(withoutNul);
      // Keys repeated inside one batch count once: only the first is claimed.
      const unique = [...new Map(events.map((e) => [eventKey(e), e])).values()];
      try {
        const claimed = await Promise.all(unique.map((e) => claim(eventKey(e))));
        const queued = unique.filter((_, i) => claimed[i]);
        if (queued.length > 0) {
          await add(queued);
          for (const event of queued)
            redis.set(seenKey(eventKey(event)), DONE, 'EX', dedupeTtlSeconds).catch(() => undefined);
          const now = Date.now();
          for (const event of queued) {
            if (event.type === 'message')
              recordLastInbound(sourceOf(event.message.channel, event.message.provider), now);
          }
        }
        const queuedSet = new Set(queued);
        return { queued, duplicates: events.filter((e) => !queuedSet.has(e)) };
      } catch (err) {
        throw new UnavailableError('queue unavailable', { cause: err });
      }
    },
    async lastInboundByChannel() {
      const raw = await redis.hgetall(lastInboundKey);
      return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Number(v)]));
    },
  };
}

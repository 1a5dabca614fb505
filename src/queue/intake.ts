/**
 * Intake: puts canonical inbound events on the `inbound` queue exactly once per key.
 *
 * Two layers of dedupe, because providers redeliver for a long time (Meta: up to 7 days):
 * 1. A "seen" marker per event key in Redis, kept for `dedupeTtlSeconds` (default 8 days), which
 *    outlives the job (jobs are trimmed after completion).
 * 2. The BullMQ job id derived from the key, which covers a redelivery racing the first one.
 * The marker is written only *after* the job is queued: a crash in between can at worst queue the
 * event twice (the downstream unique message key absorbs that), never acknowledge a lost one.
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

  return {
    async accept(received) {
      if (received.length === 0) return { queued: [], duplicates: [] };
      const events = received.map(withoutNul);
      try {
        // Single-key commands only (no MULTI/MGET across keys), so this also works on Redis Cluster.
        const seen = await Promise.all(events.map((e) => redis.exists(seenKey(eventKey(e)))));
        const fresh = events.filter((_, i) => seen[i] === 0);
        const duplicates = events.filter((_, i) => seen[i] !== 0);
        // Keys repeated inside one batch count once.
        const unique = [...new Map(fresh.map((e) => [eventKey(e), e])).values()];
        if (unique.length > 0) {
          // One partition per sender keeps a customer's messages in order (see partitions.ts). The
          // common case is one event; a batch is added per partition, each with addBulk (MULTI).
          const byPartition = new Map<Queue, InboundEvent[]>();
          for (const event of unique) {
            const partition = queue.queueFor(orderKeyOf(event));
            byPartition.set(partition, [...(byPartition.get(partition) ?? []), event]);
          }
          await Promise.all(
            [...byPartition].map(([q, events]) => {
              const jobs = events.map((event) => ({
                name: event.type,
                data: event,
                opts: { jobId: jobIdFor(eventKey(event)) },
              }));
              return jobs.length === 1 ? q.add(jobs[0]!.name, jobs[0]!.data, jobs[0]!.opts) : q.addBulk(jobs);
            }),
          );
          const now = Date.now();
          await Promise.all(
            unique.map((event) => redis.set(seenKey(eventKey(event)), now, 'EX', dedupeTtlSeconds)),
          );
          for (const event of unique) {
            if (event.type === 'message')
              recordLastInbound(sourceOf(event.message.channel, event.message.provider), now);
          }
        }
        return { queued: unique, duplicates: [...duplicates, ...fresh.filter((e) => !unique.includes(e))] };
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

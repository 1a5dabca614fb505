/**
 * What the chaos run reports so that a rare failure can be explained from its output alone (the
 * private Redis and database are gone once it exits):
 * - dead letters: jobs BullMQ gave up on (the failed sets), per queue, with their reasons — a job
 *   given up after its attempts, or one that stalled (its worker killed) more often than allowed;
 * - for each silently lost agent reply: its send and notes in the database, and what Slack received
 *   about it (reactions, ephemeral notes, posts in its thread).
 */
import { Cluster } from 'ioredis';
import mongoose from 'mongoose';
import { createRedisConnection } from '../../src/queue/connection';
import { postKeys } from '../../src/router/coalesce';
import type { Emulators } from './world';

export interface DeadLetters {
  [queue: string]: { count: number; reasons: Record<string, number>; samples: Record<string, unknown>[] };
}

/** Every BullMQ failed set under `prefix` (partitions and cluster hash tags included). */
export async function deadLetters(redisUrl: string, prefix: string): Promise<DeadLetters> {
  const out: DeadLetters = {};
  const client = createRedisConnection(redisUrl, 'worker', { maxRetriesPerRequest: 3 });
  try {
    const nodes = client instanceof Cluster ? client.nodes('master') : [client];
    const bare = prefix.replace(/[{}]/g, '');
    for (const node of nodes) {
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await node.scan(cursor, 'MATCH', '*:failed', 'COUNT', '1000');
        cursor = next;
        keys.push(...batch.filter((k) => k.replace(/[{}]/g, '').startsWith(bare)));
      } while (cursor !== '0');
      for (const failedKey of keys) {
        const base = failedKey.slice(0, -':failed'.length);
        const queue = base.slice(base.lastIndexOf(':') + 1);
        const ids = await node.zrange(failedKey, '0', '-1');
        const entry = (out[queue] ??= { count: 0, reasons: {}, samples: [] });
        for (const id of ids) {
          const [name, reason, data, attemptsMade, stalledCounter] = await node.hmget(
            `${base}:${id}`,
            'name',
            'failedReason',
            'data',
            'atm',
            'stc',
          );
          entry.count++;
          const why = (reason ?? '?').replace(/[0-9a-f]{24}/g, '…').slice(0, 120);
          entry.reasons[why] = (entry.reasons[why] ?? 0) + 1;
          if (entry.samples.length < 5)
            entry.samples.push({ id, name, reason, attemptsMade, stalledCounter, data: slim(data ?? null) });
        }
      }
    }
  } finally {
    client.disconnect();
  }
  return out;
}

/** A job's data without bodies: ids, timestamps and keys only (what explains a path). */
function slim(data: string | null): Record<string, unknown> | undefined {
  if (!data) return undefined;
  try {
    const parsed = JSON.parse(data) as Record<string, unknown>;
    return Object.fromEntries(
      Object.entries(parsed).filter(([k]) =>
        /^(type|channel|ts|threadTs|eventId|customerId|key|user)$/.test(k),
      ),
    );
  } catch {
    return undefined;
  }
}

/** A silently lost reply's records: its send, its notes, and what Slack received about it. */
export async function explainLostReplies(
  mongoUri: string,
  emu: Emulators,
  inbox: string,
  lost: { ts: string; threadTs: string }[],
): Promise<Record<string, unknown>[]> {
  if (lost.length === 0) return [];
  const conn = await mongoose.createConnection(mongoUri, { serverSelectionTimeoutMS: 10_000 }).asPromise();
  try {
    const db = conn.db!;
    const out: Record<string, unknown>[] = [];
    for (const r of lost) {
      const key = `slack:${inbox}:${r.ts}`;
      const send = await db
        .collection('customer_sends')
        .findOne({ key }, { projection: { text: 0, media: 0 } });
      const notes = await db
        .collection('agent_posts')
        .find({ key: { $regex: `^[a-z-]+-note:${key.replace(/[.]/g, '\\.')}` } }, { projection: { text: 0 } })
        .toArray();
      const thread = await db.collection('slack_threads').findOne({ channel: inbox, ts: r.threadTs });
      const slack = emu.slack.calls
        .filter((c) => c.args.timestamp === r.ts || c.args.thread_ts === r.threadTs || c.args.ts === r.ts)
        .map((c) => ({
          method: c.method,
          at: new Date(c.at).toISOString().slice(11, 23),
          name: c.args.name,
          thread_ts: c.args.thread_ts,
          keys: postKeys((c.args.metadata as { event_payload?: unknown } | undefined)?.event_payload),
          rateLimited: c.rateLimited,
        }));
      out.push({ ts: r.ts, threadTs: r.threadTs, send, notes, thread, slack });
    }
    return out;
  } finally {
    await conn.close();
  }
}

/**
 * Jobs that stalled (their worker was killed, or lost its lock, while they ran), per queue: how many
 * stalled at least once and the most any one did. BullMQ gives a job up once it stalls more often
 * than its worker's `maxStalledCount` allows, so this shows how close a run came to that.
 */
export async function stalledJobs(
  redisUrl: string,
  prefix: string,
): Promise<Record<string, { once: number; twiceOrMore: number; max: number }>> {
  const out: Record<string, { once: number; twiceOrMore: number; max: number }> = {};
  const client = createRedisConnection(redisUrl, 'worker', { maxRetriesPerRequest: 3 });
  try {
    const nodes = client instanceof Cluster ? client.nodes('master') : [client];
    const bare = prefix.replace(/[{}]/g, '');
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, batch] = await node.scan(cursor, 'MATCH', '*', 'COUNT', '1000', 'TYPE', 'hash');
        cursor = next;
        for (const key of batch) {
          const plain = key.replace(/[{}]/g, '');
          if (!plain.startsWith(`${bare}:`) && !plain.startsWith(`${bare}-`)) continue;
          const stc = Number((await node.hget(key, 'stc')) ?? 0);
          if (stc < 1) continue;
          const parts = key.split(':');
          const queue = parts[parts.length - 2] ?? '?';
          const entry = (out[queue] ??= { once: 0, twiceOrMore: 0, max: 0 });
          if (stc === 1) entry.once++;
          else entry.twiceOrMore++;
          entry.max = Math.max(entry.max, stc);
        }
      } while (cursor !== '0');
    }
  } finally {
    client.disconnect();
  }
  return out;
}

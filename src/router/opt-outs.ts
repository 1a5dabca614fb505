/**
 * Opt-outs (STOP, START, a provider's "opted out" refusal) and the check every send to a customer
 * makes first. MongoDB stays the record (`opt_outs`, and erasure's keyed markers in
 * `erased_opt_outs`); Redis holds a copy of the whole set, so a send to a number that did not opt
 * out is proven clear by one Redis read instead of two database reads.
 *
 * Absence in Redis proves nothing by itself (Redis may be wiped, fail over, or the copy expire):
 * the copy counts only while its `complete` field is there, which a rebuild writes after a full
 * read of the database, in the same hash. One hash key (`hot:{optouts}`: one slot on a Redis
 * Cluster), so the set and its proof of completeness are lost together or not at all. Fields:
 * `complete`, `loading` (a rebuild's token), `s:<sha256 of identityKey|channel>` for a kept STOP
 * (no phone number in Redis, as the identity cache's keys), and `e:<marker id>` for an erasure's
 * marker (the same keyed HMAC as in the database).
 *
 * - A check reads `complete` and the candidate fields in one HMGET. Complete and none present:
 *   clear, no database read. Anything else — a field present, or no complete copy — answers from the
 *   database as before (so a stale field can only cost those reads, never block a customer), and a
 *   missing copy is rebuilt in the background under a lock.
 * - STOP: the field is written before and after the database write, so it is in Redis before the
 *   STOP's job completes (a worker killed in between leaves it written, or the job is retried).
 * - START: the database first, then the field is deleted. A START that races a rebuild (the rebuild
 *   read the STOP before the START wrote) can leave the field behind: that customer's sends then
 *   read the database again (and are sent) until the copy is next rebuilt, at most `TTL_S` later.
 * - Rebuild: DEL the hash and write a fresh `loading` token; read the database; add what it read
 *   and `complete` only while `loading` is still that token (a script per chunk). A STOP's field is
 *   never removed by a rebuild that read the database before the STOP was written: the rebuild
 *   only deletes at its start, before its read. Redis wiped meanwhile takes `loading` with it, and
 *   the rebuild does not complete.
 * - Erasure: adds its markers' fields, then deletes the opt-outs' `s:` fields before and after
 *   deleting the opt-outs in the database, the second time with `loading`, so a rebuild that read
 *   them first cannot write them back (src/privacy/erase/db-steps.ts `eraseOptOuts`).
 *
 * Not covered: an opt-out written into `opt_outs` behind Rapport's back while the copy is complete
 * (delete the hash after such an edit); and on a Redis Cluster, a failover that loses the shard's
 * last acknowledged writes could lose a STOP's field while its job's completion, on another shard,
 * survives (on one Redis a loss is a suffix: it takes the completion too, and the job runs again).
 */
import { createHash } from 'node:crypto';
import type { Channel } from '../canonical';
import { DeferError } from '../errors';
import type { Logger } from '../logger';
import type { RedisClient } from '../queue/connection';
import { withLock } from '../queue/lock';
import { newToken } from '../identity/cache';
import type { OptOut, RouterModels } from './models';

/** How long a complete copy counts before it is rebuilt from the database. */
const TTL_S = 24 * 3600;
/** Fields a rebuild adds per script. */
const CHUNK = 500;
const LOCK_TTL_MS = 30_000;
const CHANNELS: Channel[] = ['sms', 'whatsapp', 'messenger'];

export const optOutsKey = (prefix: string) => `${prefix}:hot:{optouts}`;
const rebuildLockKey = (prefix: string) => `${prefix}:lock:{optouts}:rebuild`;
const stopField = (identityKey: string, channel: string) =>
  `s:${createHash('sha256').update(`${identityKey}|${channel}`).digest('hex').slice(0, 40)}`;
const markerField = (markerId: string) => `e:${markerId}`;

/** A rebuild's start: the old copy goes, the rebuild's token is written. */
const BEGIN = `redis.call('del', KEYS[1]) redis.call('hset', KEYS[1], 'loading', ARGV[1]) return 1`;
/** Adds ARGV[4..] while `loading` is ARGV[1]; the last chunk (ARGV[2] = '1') marks the copy complete. */
const ADD = `if redis.call('hget', KEYS[1], 'loading') ~= ARGV[1] then return 0 end
for i = 4, #ARGV do redis.call('hset', KEYS[1], ARGV[i], '1') end
if ARGV[2] == '1' then
  redis.call('hdel', KEYS[1], 'loading')
  redis.call('hset', KEYS[1], 'complete', ARGV[1])
  redis.call('expire', KEYS[1], ARGV[3])
end
return 1`;

/** The erased-opt-out markers (src/privacy/erase): the database check and the markers' ids. */
export interface ErasedOptOuts {
  /** The database check (`erased_opt_outs`), which also re-keys a marker found under an old key. */
  isErased(identityKey: string, channel: string): Promise<boolean>;
  /** The marker ids a check looks for: one per marker key read. */
  markerIds(identityKey: string, channel: string): string[];
  /** Every marker id in the database (a rebuild). */
  allMarkerIds(): Promise<string[]>;
}

export interface OptOutsOptions {
  models: Pick<RouterModels, 'OptOut'>;
  redis: RedisClient;
  /** QUEUE_PREFIX. */
  prefix: string;
  log: Logger;
  /** Erasure's kept STOPs. @defaultValue none */
  erased?: ErasedOptOuts;
  /** Test hook: runs after a rebuild's database read, before it writes what it read. */
  onLoaded?: () => Promise<void> | void;
}

export interface OptOuts {
  /** Whether a send on `channel` to `identityKey` must not go out (a STOP kept, or erased). */
  isOptedOut(identityKey: string, channel: Channel): Promise<boolean>;
  /** A STOP on any channel of `identityKey`, kept or from an erased customer (claim codes). */
  anyOptedOut(identityKey: string): Promise<boolean>;
  /** Records a STOP (`true`) or a START (`false`): the database (the record), then Redis. */
  record(identityKey: string, channel: Channel, optedOut: boolean): Promise<void>;
  /** Rebuilds the Redis copy now; false when another process holds the rebuild or it was overtaken. */
  rebuild(): Promise<boolean>;
}

/** Erasure wrote these markers in the database: their fields, before the opt-outs are deleted. */
export async function optOutMarkersWritten(redis: RedisClient, prefix: string, markerIds: string[]) {
  if (markerIds.length > 0)
    await redis.hset(optOutsKey(prefix), ...markerIds.flatMap((m) => [markerField(m), '1']));
}

/**
 * Erasure deleted these opt-outs in the database: their fields go, and so does a running rebuild's
 * token (it may have read them before the delete; it will not complete, nor write them back).
 */
export async function optOutsErased(
  redis: RedisClient,
  prefix: string,
  optOuts: Pick<OptOut, 'identityKey' | 'channel'>[],
) {
  if (optOuts.length === 0) return;
  await redis.hdel(optOutsKey(prefix), 'loading', ...optOuts.map((x) => stopField(x.identityKey, x.channel)));
}

export function createOptOuts(o: OptOutsOptions): OptOuts {
  const { models, redis, prefix, log, erased } = o;
  const key = optOutsKey(prefix);
  let building: Promise<boolean> | undefined;

  /** 'clear': the complete copy holds none of the fields; 'ask': the database must answer. */
  async function hot(identityKey: string, channels: Channel[]): Promise<'clear' | 'ask'> {
    const fields = channels.flatMap((c) => [
      stopField(identityKey, c),
      ...(erased?.markerIds(identityKey, c) ?? []).map(markerField),
    ]);
    const [complete, ...found] = await redis.hmget(key, 'complete', ...fields);
    if (!complete) rebuildSoon();
    return complete && found.every((v) => v === null) ? 'clear' : 'ask';
  }

  function rebuildSoon(): void {
    building ??= rebuild()
      .catch((err: unknown) => {
        log.warn({ err }, 'opt-out copy rebuild failed');
        return false;
      })
      .finally(() => {
        building = undefined;
      });
  }

  async function load(token: string): Promise<boolean> {
    const stops = await models.OptOut.find({ optedOut: true }, { identityKey: 1, channel: 1 }).lean<
      OptOut[]
    >();
    const markers = erased ? await erased.allMarkerIds() : [];
    const fields = [...stops.map((s) => stopField(s.identityKey, s.channel)), ...markers.map(markerField)];
    await o.onLoaded?.();
    for (let i = 0; ; i += CHUNK) {
      const last = i + CHUNK >= fields.length;
      const chunk = fields.slice(i, i + CHUNK);
      if (!(await redis.eval(ADD, 1, key, token, last ? '1' : '0', String(TTL_S), ...chunk))) return false;
      if (last) return true;
    }
  }

  async function rebuild(): Promise<boolean> {
    try {
      return await withLock(
        redis,
        rebuildLockKey(prefix),
        LOCK_TTL_MS,
        async () => {
          const token = newToken();
          await redis.eval(BEGIN, 1, key, token);
          const done = await load(token);
          log.info({ done }, 'opt-out copy rebuilt from the database');
          return done;
        },
        { renew: true },
      );
    } catch (err) {
      if (err instanceof DeferError) return false;
      throw err;
    }
  }

  /** The database's answer for one channel (the check of versions before the Redis copy). */
  async function storedOptOut(identityKey: string, channel: Channel): Promise<boolean> {
    const optOut = await models.OptOut.findOne({ key: `${identityKey}|${channel}` }).lean<OptOut>();
    // An erased customer's STOP outlives the erasure as a keyed hash (src/privacy/erase/keys.ts);
    // a START written since (a record with optedOut false) ends it.
    if (optOut) return optOut.optedOut;
    if (!erased || !(await erased.isErased(identityKey, channel))) return false;
    // The check re-keys a marker found under an earlier key: its new id goes into the copy too, so
    // it still answers once the earlier key is no longer configured.
    const [current] = erased.markerIds(identityKey, channel);
    if (current) await redis.hset(key, markerField(current), '1');
    return true;
  }

  return {
    async isOptedOut(identityKey, channel) {
      if ((await hot(identityKey, [channel])) === 'clear') return false;
      return storedOptOut(identityKey, channel);
    },

    async anyOptedOut(identityKey) {
      if ((await hot(identityKey, CHANNELS)) === 'clear') return false;
      if (await models.OptOut.exists({ identityKey, optedOut: true })) return true;
      for (const channel of ['sms', 'whatsapp'] as const)
        if (await erased?.isErased(identityKey, channel)) return true;
      return false;
    },

    async record(identityKey, channel, optedOut) {
      const field = stopField(identityKey, channel);
      // A STOP's field goes in first too: a worker killed after the database write leaves it there.
      if (optedOut) await redis.hset(key, field, '1');
      await models.OptOut.updateOne(
        { key: `${identityKey}|${channel}` },
        { $set: { identityKey, channel, optedOut, at: new Date() } },
        { upsert: true },
      );
      // After the write too: a rebuild that started in between has deleted the first one, and may
      // have read the database before this write.
      if (optedOut) await redis.hset(key, field, '1');
      else await redis.hdel(key, field);
    },

    rebuild,
  };
}

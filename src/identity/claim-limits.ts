/**
 * Limits on claim codes, in Redis so every api and worker process shares them: Rapport must not be
 * a free SMS cannon (someone typing strangers' numbers to have us text them).
 *
 * Sliding windows, one sorted set per counter (member = the message that asked, score = time):
 * - codes per claiming sender per hour (`CLAIM_CODES_PER_SENDER_HOUR`, default 3);
 * - codes per claimed target per day (`CLAIM_CODES_PER_TARGET_DAY`, default 3);
 * - codes in total per hour and per day (`CLAIM_CODES_PER_HOUR`, `CLAIM_CODES_PER_DAY`);
 * - code attempts per claimed target per day (`CLAIM_ATTEMPTS_PER_TARGET_DAY`, default 5), across
 *   all its claims: starting a new claim does not give a guesser new attempts.
 *
 * One Lua script checks every counter of a request and records it in all of them only when all
 * allow it, so a refused request uses up nothing. The member is the message key, so a retried job
 * is recognised (admitted again without counting twice). All keys share one hash tag, so the script
 * is Redis Cluster safe. Keys hold a hash of the identity, never the phone number or email.
 */
import { createHash } from 'node:crypto';
import type { RedisClient } from '../queue/connection';

/** The configured limits (src/config.ts). */
export interface ClaimLimitsConfig {
  /** Codes one sender may cause per hour. */
  perSenderHour: number;
  /** Codes one claimed phone number may receive per day. */
  perTargetDay: number;
  /** Codes in total per hour. */
  perHour: number;
  /** Codes in total per day. */
  perDay: number;
  /** Code attempts against one claimed target per day, across all its claims. */
  attemptsPerTargetDay: number;
}

export const DEFAULT_CLAIM_LIMITS: ClaimLimitsConfig = {
  perSenderHour: 3,
  perTargetDay: 3,
  perHour: 30,
  perDay: 200,
  attemptsPerTargetDay: 5,
};

/** Which limit refused a code: the sender's, the target's, the global hourly or daily, or the target's attempts. */
export type ClaimLimitName = 'sender' | 'target' | 'hour' | 'day' | 'attempts';

export type Admission = { ok: true } | { ok: false; limit: ClaimLimitName };

export interface ClaimLimits {
  /** Counts a code for `sender` → `target` (identity keys) asked by message `id`, if every limit allows. */
  admitCode(input: { sender: string; target: string; id: string }): Promise<Admission>;
  /**
   * Counts one code attempt against `target`: `ok` false when its daily attempt budget was already
   * used up; `left` is what remains after this one.
   */
  takeAttempt(input: { target: string; id: string }): Promise<{ ok: boolean; left: number }>;
}

export interface ClaimLimitsOptions {
  redis: RedisClient;
  /** QUEUE_PREFIX. */
  prefix: string;
  limits: ClaimLimitsConfig;
  /** Clock. @defaultValue `Date.now` */
  now?: () => number;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/**
 * KEYS: the counters. ARGV: now, member, then per key its window (ms), its limit and whether to
 * record the request in it (1) or only check it (0). Returns 0 when admitted (or already admitted
 * under this member: a retried job), else the 1-based index of the first full counter.
 */
const ADMIT = `local now = tonumber(ARGV[1])
local member = ARGV[2]
if redis.call('ZSCORE', KEYS[1], member) then return 0 end
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - tonumber(ARGV[3 * i]))
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 * i + 1]) then return i end
end
for i, key in ipairs(KEYS) do
  if ARGV[3 * i + 2] == '1' then
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, tonumber(ARGV[3 * i]))
  end
end
return 0`;

/** One counter of a request: its key, window (ms), limit, and whether the request is recorded in it. */
type Counter = [key: string, windowMs: number, limit: number, record: boolean];

/** A short hash of an identity key: counters must not hold phone numbers or emails. */
function hashOf(identityKey: string): string {
  return createHash('sha256').update(`rapport/claim-limit/${identityKey}`).digest('hex').slice(0, 24);
}

/** The Redis keys of the counters (exported for tests that check what Redis holds). */
export function claimLimitKeys(prefix: string) {
  const base = `${prefix}:{claim-limits}`;
  return {
    sender: (identityKey: string) => `${base}:sender:${hashOf(identityKey)}`,
    target: (identityKey: string) => `${base}:target:${hashOf(identityKey)}`,
    attempts: (identityKey: string) => `${base}:attempts:${hashOf(identityKey)}`,
    hour: `${base}:all:hour`,
    day: `${base}:all:day`,
  };
}

export function createClaimLimits(o: ClaimLimitsOptions): ClaimLimits {
  const now = o.now ?? Date.now;
  const keys = claimLimitKeys(o.prefix);
  const { limits } = o;

  async function run(counters: Counter[], id: string): Promise<number> {
    const args = counters.flatMap(([, window, limit, record]) => [
      String(window),
      String(limit),
      record ? '1' : '0',
    ]);
    const result = await o.redis.eval(
      ADMIT,
      counters.length,
      ...counters.map(([key]) => key),
      String(now()),
      id,
      ...args,
    );
    return Number(result);
  }

  return {
    async admitCode({ sender, target, id }) {
      const names: ClaimLimitName[] = ['sender', 'target', 'hour', 'day', 'attempts'];
      const full = await run(
        [
          [keys.sender(sender), HOUR, limits.perSenderHour, true],
          [keys.target(target), DAY, limits.perTargetDay, true],
          [keys.hour, HOUR, limits.perHour, true],
          [keys.day, DAY, limits.perDay, true],
          // A target whose attempts are used up gets no new code either (checked, not recorded).
          [keys.attempts(target), DAY, limits.attemptsPerTargetDay, false],
        ],
        id,
      );
      return full === 0 ? { ok: true } : { ok: false, limit: names[full - 1] ?? 'day' };
    },
    async takeAttempt({ target, id }) {
      const key = keys.attempts(target);
      const ok = (await run([[key, DAY, limits.attemptsPerTargetDay, true]], id)) === 0;
      const used = await o.redis.zcard(key);
      return { ok, left: Math.max(0, limits.attemptsPerTargetDay - used) };
    },
  };
}

/**
 * Whether an earlier try may already have posted an agent post (so it is looked up in the thread
 * before posting again), without a database write per attempt.
 *
 * The attempt is recorded in Redis before the Slack call (`SET NX GET`: one round trip that also
 * says whether an earlier attempt was recorded). Redis can lose the marker, so it is not the only
 * reason to look: a post is also looked up when
 * - the caller knows it tried before (an in-place retry, a job that failed or stalled before);
 * - this process saw its Redis connection drop, or connected to a Redis that had just started, within
 *   the last UNSETTLED_MS: a Redis SIGKILLed with `appendfsync everysec` loses up to about a second of
 *   writes, a promoted replica what it had not replicated yet, and both show as a dropped connection
 *   or a young server to every process that uses it;
 * - the post is older than STALE_POST_MS (a marker expired, or a Redis restored from an old copy).
 * Not "older than a few seconds": under a backlog most posts are, and each would cost a
 * `conversations.replies` call (Slack allows about 50 a minute per workspace).
 */
import { createHash } from 'node:crypto';
import type { RedisClient } from '../queue/connection';

/** How long a post's attempt is remembered (a post pending longer is looked up anyway). */
const ATTEMPT_TTL_S = 24 * 3600;
/** A post pending this long is looked up before posting, whatever Redis says. */
export const STALE_POST_MS = 3600_000;
/** After a dropped Redis connection or a young Redis server, every post is looked up this long. */
export const UNSETTLED_MS = 60_000;

/** Watches one Redis client for the signs that it may have lost recent writes. */
function watchRedis(redis: RedisClient): () => boolean {
  let troubleAt = 0;
  const trouble = () => {
    troubleAt = Date.now();
  };
  const checkUptime = () => {
    redis
      .info('server')
      .then((info) => {
        const up = Number(/uptime_in_seconds:(\d+)/.exec(info)?.[1] ?? Infinity);
        if (up * 1000 < UNSETTLED_MS) troubleAt = Math.max(troubleAt, Date.now() - up * 1000);
      })
      .catch(trouble);
  };
  redis.on('close', trouble);
  // Redis Cluster: a master failed over.
  redis.on('-node', trouble);
  redis.on('node error', trouble);
  redis.on('ready', checkUptime);
  if (redis.status === 'ready') checkUptime();
  return () => Date.now() - troubleAt < UNSETTLED_MS;
}

const watches = new WeakMap<RedisClient, () => boolean>();

export function createPostAttempts(redis: RedisClient, prefix: string) {
  let unsettled = watches.get(redis);
  if (!unsettled) {
    unsettled = watchRedis(redis);
    watches.set(redis, unsettled);
  }
  const isUnsettled = unsettled;
  // Hashed: some post keys name the customer, and an erasure does not look for these.
  const attemptKey = (postKey: string) =>
    `${prefix}:post-attempt:${createHash('sha256').update(postKey).digest('base64url').slice(0, 22)}`;
  return {
    /** Redis may have lost recent writes (see above): what it lists is not to be trusted now. */
    unsettled: isUnsettled,
    /**
     * Records an attempt at the post about to be made; true when an earlier try may have posted it
     * (`triedBefore`: the caller knows of one).
     */
    async begin(post: { key: string; createdAt?: Date }, triedBefore: boolean): Promise<boolean> {
      const earlier = await redis.set(attemptKey(post.key), '1', 'EX', ATTEMPT_TTL_S, 'NX', 'GET');
      const age = post.createdAt ? Date.now() - new Date(post.createdAt).getTime() : Infinity;
      return earlier !== null || triedBefore || age > STALE_POST_MS || isUnsettled();
    },
  };
}

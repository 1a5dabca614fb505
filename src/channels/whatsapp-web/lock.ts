/**
 * One live WhatsApp Web session per number: a Redis lease with renewal.
 *
 * Two Chromiums logged into the same number fight (WhatsApp shows "opened in another window",
 * the library reports CONFLICT, RemoteAuth then deletes the saved session), so a second process
 * must not even launch one. The lease is `SET key token NX PX ttl`; the holder renews it every
 * `ttl / 3` and releases it on stop; a holder that dies loses it after `ttl`. Renewal and release
 * compare the token first (a single-key Lua script), so a process that stalled past its lease
 * cannot extend or delete a lease another process took meanwhile. Every command touches one key,
 * so this works on Redis Cluster.
 *
 * Losing the lease (renewal finds another token, or Redis stayed unreachable for a whole ttl) is
 * reported through `onLost`: the session must stop at once, because another process may already
 * be starting one.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { RedisClient } from '../../queue/connection';

const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

export interface SessionLockOptions {
  redis: RedisClient;
  /** The lease key, one per WhatsApp number (client id). */
  key: string;
  /** How long a lease lives without renewal. */
  ttlMs: number;
  /** Called once when a held lease is lost; not called on `release()`. */
  onLost: (reason: 'taken' | 'expired') => void;
}

export interface SessionLock {
  /** This process's token: `host:pid:random` (so an operator can see who holds the number). */
  readonly token: string;
  readonly held: boolean;
  /** Tries once; true if this process now holds the lease (or already did). Never throws. */
  tryAcquire(): Promise<boolean>;
  /** Stops renewing and deletes the lease if it is still ours. Never throws. */
  release(): Promise<void>;
  /** The token of whoever holds the lease now, or null. */
  holder(): Promise<string | null>;
}

export function lockKeyFor(prefix: string, clientId: string): string {
  return `${prefix}:whatsapp-web:session-lock:${clientId}`;
}

export function createSessionLock({ redis, key, ttlMs, onLost }: SessionLockOptions): SessionLock {
  const token = `${os.hostname()}:${process.pid}:${randomBytes(6).toString('hex')}`;
  let held = false;
  let lastRenewedAt = 0;
  let timer: NodeJS.Timeout | undefined;
  let renewing = false;

  const stopRenewing = () => {
    if (timer) clearInterval(timer);
    timer = undefined;
  };

  const lose = (reason: 'taken' | 'expired') => {
    if (!held) return;
    held = false;
    stopRenewing();
    onLost(reason);
  };

  const renew = async () => {
    if (!held || renewing) return;
    renewing = true;
    try {
      const result: unknown = await redis.eval(RENEW, 1, key, token, String(ttlMs));
      if (!held) return;
      if (result === 1) lastRenewedAt = Date.now();
      else lose('taken');
    } catch {
      // Redis unreachable: keep trying until the lease has certainly run out.
      if (held && Date.now() - lastRenewedAt >= ttlMs) lose('expired');
    } finally {
      renewing = false;
    }
  };

  return {
    token,
    get held() {
      return held;
    },
    async tryAcquire() {
      if (held) return true;
      try {
        const result = await redis.set(key, token, 'PX', ttlMs, 'NX');
        if (result !== 'OK') return false;
      } catch {
        return false;
      }
      held = true;
      lastRenewedAt = Date.now();
      timer = setInterval(() => void renew(), Math.max(50, Math.floor(ttlMs / 3)));
      timer.unref();
      return true;
    },
    async release() {
      const wasHeld = held;
      held = false;
      stopRenewing();
      if (!wasHeld) return;
      await redis.eval(RELEASE, 1, key, token).catch(() => undefined);
    },
    async holder() {
      return redis.get(key);
    },
  };
}

/**
 * The router's hot state in Redis: agents by id (name, status, away, backup, active), read on every
 * message to know the owner and their cover. Shared by every process; MongoDB stays the record.
 *
 * Same scheme as src/identity/cache.ts: an entry counts only while the agent's gen token is the one
 * it was filled under; the reader reads the token before the database, and every agent write
 * replaces the token after writing (`agentChanged`), so a stale read never becomes a valid entry.
 * Both keys of an agent share the `{a:<id>}` hash slot (one MGET, safe on Redis Cluster).
 */
import { mongo } from 'mongoose';
import type { RedisClient } from '../queue/connection';
import { currentToken, replaceToken } from '../identity/cache';
import type { Agent } from './models';

const TTL_S = 6 * 3600;
const genKey = (prefix: string, id: string) => `${prefix}:hot:{a:${id}}:gen`;
const docKey = (prefix: string, id: string) => `${prefix}:hot:{a:${id}}:doc`;

/** An agent's record changed (status, away, backup, name, active): call after the database write. */
export async function agentChanged(redis: RedisClient, prefix: string, id: string | { toString(): string }) {
  await replaceToken(redis, genKey(prefix, String(id)));
}

export interface HotAgents {
  /** The agent, from Redis when its entry is current, else from `load` (then cached). */
  get(id: string): Promise<Agent | undefined>;
}

export function createHotAgents(
  redis: RedisClient,
  prefix: string,
  load: (id: string) => Promise<Agent | undefined>,
): HotAgents {
  return {
    async get(id) {
      const [gen, text] = await redis.mget(genKey(prefix, id), docKey(prefix, id));
      if (gen && text) {
        const entry = mongo.BSON.EJSON.parse(text, { relaxed: false }) as { gen: string; agent: Agent | null };
        if (entry.gen === gen) return entry.agent ?? undefined;
      }
      const genBefore = gen ?? (await currentToken(redis, genKey(prefix, id)));
      const agent = await load(id);
      const entry = mongo.BSON.EJSON.stringify({ gen: genBefore, agent: agent ?? null }, { relaxed: false });
      await redis.set(docKey(prefix, id), entry, 'EX', TTL_S);
      return agent;
    },
  };
}

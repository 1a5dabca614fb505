/**
 * Database command counting for the benchmarks: the MongoDB driver's command monitoring
 * (`monitorCommands=true` in the connection string, `commandStarted` events on the client), counted
 * by command name and collection, and attributed to a pipeline stage by the collection (and, for the
 * Slack outbox, the command) it touches. Used in every process that runs Rapport during bench/e2e:
 * the api (in the benchmark's own process) and the worker children (bench/lib/role.ts, over IPC).
 *
 * The stage map is by collection, not by call site: a `find` on `customers` counts as identity even
 * when the router made it. The per-command table (`byCommand`) says exactly what was paid.
 */
import type { Connection } from 'mongoose';

export const STAGES = ['intake', 'identity', 'store', 'routing', 'slackFlush', 'other'] as const;
export type Stage = (typeof STAGES)[number];

/** Commands the driver sends on its own (handshakes, heartbeats, sessions), not per message. */
const HOUSEKEEPING = new Set(['hello', 'ismaster', 'isMaster', 'ping', 'endSessions', 'buildInfo', 'saslStart', 'saslContinue', 'killCursors']);

const COLLECTION_STAGE: Record<string, Stage> = {
  identities: 'identity',
  customers: 'identity',
  merge_events: 'identity',
  merge_locks: 'identity',
  claims: 'identity',
  claim_attempts: 'identity',
  messages: 'store',
  conversations: 'routing',
  agents: 'routing',
  current_threads: 'routing',
  opt_outs: 'routing',
  ownership_changes: 'routing',
  erasures: 'routing',
  customer_sends: 'routing',
  slack_threads: 'slackFlush',
};

/** The stage a command belongs to; `process` is 'api' or 'worker'. */
export function stageOf(processRole: 'api' | 'worker', command: string, collection: string): Stage {
  if (processRole === 'api') return 'intake';
  // The outbox row is written by routing; reading and marking it is the Slack flush.
  if (collection === 'agent_posts') return command === 'insert' ? 'routing' : 'slackFlush';
  return COLLECTION_STAGE[collection] ?? 'other';
}

/** `uri` with `monitorCommands=true` added (the driver accepts it as a connection-string option). */
export function withMonitoring(uri: string): string {
  return `${uri}${uri.includes('?') ? '&' : '?'}monitorCommands=true`;
}

/** Counts of commands by "command collection" since the last reset, and their summed time (ms). */
export interface DbCounts {
  total: number;
  byCommand: Record<string, number>;
  /** Summed driver-measured duration (`commandSucceeded`/`commandFailed`) per "command collection". */
  msByCommand?: Record<string, number>;
}

export interface DbMonitor {
  snapshot(): DbCounts;
  reset(): void;
}

/** The collection a command names (`{ find: 'customers' }`, `{ insert: 'messages' }`, …). */
function collectionOf(commandName: string, command: Record<string, unknown>): string {
  const target = command[commandName];
  return typeof target === 'string' ? target : '-';
}

/**
 * Starts counting the commands `connection`'s client sends. The client exists once `openUri` was
 * called (mongoose creates it there); call this after `app.mongo.ready`.
 */
export function monitorConnection(connection: Connection): DbMonitor {
  let counts = { total: 0, byCommand: {} as Record<string, number>, msByCommand: {} as Record<string, number> };
  // The started event names the collection; the finished one carries the duration.
  const started = new Map<number, string>();
  const client = connection.getClient();
  client.on('commandStarted', (e: { commandName: string; command: Record<string, unknown>; requestId: number }) => {
    if (HOUSEKEEPING.has(e.commandName)) return;
    const k = `${e.commandName} ${collectionOf(e.commandName, e.command)}`;
    started.set(e.requestId, k);
    counts.total++;
    counts.byCommand[k] = (counts.byCommand[k] ?? 0) + 1;
  });
  const finished = (e: { requestId: number; duration: number }) => {
    const k = started.get(e.requestId);
    if (k === undefined) return;
    started.delete(e.requestId);
    counts.msByCommand[k] = (counts.msByCommand[k] ?? 0) + e.duration;
  };
  client.on('commandSucceeded', finished);
  client.on('commandFailed', finished);
  return {
    snapshot: () => ({ total: counts.total, byCommand: { ...counts.byCommand }, msByCommand: { ...counts.msByCommand } }),
    reset: () => void (counts = { total: 0, byCommand: {}, msByCommand: {} }),
  };
}

/** Per-message figures: commands per stage and per "command collection", divided by `messages`. */
export function perMessage(
  parts: { role: 'api' | 'worker'; counts: DbCounts }[],
  messages: number,
): {
  total: number;
  stages: Record<Stage, number>;
  byCommand: Record<string, number>;
  /** Mean ms per call of each "command collection", slowest total first (where the database time goes). */
  msPerCall: Record<string, { calls: number; meanMs: number; totalMs: number }>;
  messages: number;
} {
  const stages = Object.fromEntries(STAGES.map((s) => [s, 0])) as Record<Stage, number>;
  const byCommand: Record<string, number> = {};
  const ms: Record<string, number> = {};
  let total = 0;
  for (const { role, counts } of parts) {
    for (const [k, n] of Object.entries(counts.byCommand)) {
      const [command = '', collection = ''] = k.split(' ');
      stages[stageOf(role, command, collection)] += n;
      const label = role === 'api' ? `api: ${k}` : k;
      byCommand[label] = (byCommand[label] ?? 0) + n;
      ms[label] = (ms[label] ?? 0) + (counts.msByCommand?.[k] ?? 0);
      total += n;
    }
  }
  const msPerCall = Object.fromEntries(
    Object.entries(ms)
      .sort((a, b) => b[1] - a[1])
      .map(([k, t]) => [k, { calls: byCommand[k] ?? 0, meanMs: Math.round((t / (byCommand[k] || 1)) * 10) / 10, totalMs: Math.round(t) }]),
  );
  const per = (n: number) => (messages > 0 ? Math.round((n / messages) * 100) / 100 : NaN);
  return {
    messages,
    total: per(total),
    stages: Object.fromEntries(STAGES.map((s) => [s, per(stages[s])])) as Record<Stage, number>,
    byCommand: Object.fromEntries(
      Object.entries(byCommand)
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => [k, per(n)]),
    ),
    msPerCall,
  };
}

/**
 * Database command counting for the benchmarks: every command the process's MongoDB driver sends,
 * counted by command name and collection, and attributed to a pipeline stage by the collection (and,
 * for the Slack outbox, the command) it touches. Used in the api and worker processes of bench/e2e
 * (bench/lib/role.ts, answering over IPC).
 *
 * The count wraps the driver's `Connection.prototype.command` (what its `commandStarted` event
 * reports) instead of turning command monitoring on (`monitorCommands=true`): monitoring also builds
 * a CommandSucceededEvent per reply with the reply decoded in full — for a cursor a second decode of
 * its whole batch, ~9 % of the worker's allocations in the 2026-12-07 profile — which Rapport does not
 * pay in production and which inflated the worker's RSS the benchmark reports.
 *
 * The stage map is by collection, not by call site: a `find` on `customers` counts as identity even
 * when the router made it. The per-command table (`byCommand`) says exactly what was paid.
 */
import type { RedisCounts } from './redis-monitor';

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

/** Counts of commands by "command collection" since the last reset, and their summed time (ms). */
export interface DbCounts {
  total: number;
  byCommand: Record<string, number>;
  /** The process's Redis commands over the same window (bench/lib/redis-monitor.ts). */
  redis?: RedisCounts;
  /** The process's CPU time (user + system) over the same window. */
  cpuMs?: number;
  /** Summed time from sending each command to its answer, per "command collection" (where the database time goes). */
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

type CommandFn = (this: unknown, ns: unknown, command: Record<string, unknown>, ...rest: unknown[]) => Promise<unknown>;

/**
 * The driver's Connection class (the one mongodb package of this tree; mongoose has no copy of its
 * own). An internal module, so no types and no ES import: `require` also loads it through whatever
 * module registry loaded mongoose (Jest's in the test).
 */
function driverConnection(): { prototype: { command: CommandFn } } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- an internal module without types (see above)
  return (require('mongodb/lib/cmap/connection') as { Connection: { prototype: { command: CommandFn } } }).Connection;
}

/** Starts counting the commands this process's MongoDB driver sends (once per process). */
export function monitorCommands(): DbMonitor {
  let counts = { total: 0, byCommand: {} as Record<string, number>, msByCommand: {} as Record<string, number> };
  const proto = driverConnection().prototype;
  const command = proto.command;
  proto.command = function countedCommand(ns, cmd, ...rest) {
    // The command's name is its first key (as the driver's own CommandStartedEvent takes it).
    const name = Object.keys(cmd)[0] ?? '-';
    if (HOUSEKEEPING.has(name)) return command.call(this, ns, cmd, ...rest);
    const k = `${name} ${collectionOf(name, cmd)}`;
    counts.total++;
    counts.byCommand[k] = (counts.byCommand[k] ?? 0) + 1;
    const started = performance.now();
    const into = counts; // a reset meanwhile starts a new count; this command's time goes to the old one
    const done = () => void (into.msByCommand[k] = (into.msByCommand[k] ?? 0) + performance.now() - started);
    const answer = command.call(this, ns, cmd, ...rest);
    answer.then(done, done);
    return answer;
  };
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
  /** Calls, mean and total ms of each "command collection", largest total first. */
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

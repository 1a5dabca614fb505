/**
 * Redis command counting for the benchmarks, on the client side: every command any ioredis client of
 * this process sends (BullMQ's included) is counted by name, a Lua script by the name it was defined
 * under (BullMQ's `moveToFinished`, `addStandardJob`, …; Rapport's own scripts likewise), and every
 * round trip is counted once: a command sent alone is one, a pipeline or MULTI is one for all its
 * commands. Client-side, so other benchmarks on the same Redis server do not blur the figures
 * (`INFO commandstats` is server-wide) and nothing as heavy as `MONITOR` runs during the measurement.
 *
 * `EVALSHA` commands are named from the `scriptsSet` of the client that sends them (ioredis keeps each
 * `defineCommand` script there with its sha); a script defined nowhere stays `evalsha`.
 */
import { Pipeline, Redis } from 'ioredis';

export interface RedisCounts {
  /** Commands, pipelined ones included. */
  commands: number;
  /** Request/response exchanges: a lone command is one, a pipeline or MULTI one for all of it. */
  roundTrips: number;
  /** Commands by name (scripts by their defined name, prefixed `script:`). */
  byCommand: Record<string, number>;
}

export interface RedisMonitor {
  snapshot(): RedisCounts;
  reset(): void;
}

type Sendable = { name: string; args: unknown[] };
type WithScripts = { scriptsSet?: Record<string, { sha: string }> };

const scriptNames = new Map<string, string>();

function nameOf(client: WithScripts, command: Sendable): string {
  if (command.name === 'eval') return `eval ${String(command.args[0]).replace(/\s+/g, ' ').trim().slice(0, 40)}`;
  if (command.name !== 'evalsha') return command.name;
  const sha = String(command.args[0]);
  if (!scriptNames.has(sha)) {
    for (const [name, script] of Object.entries(client.scriptsSet ?? {})) scriptNames.set(script.sha, name);
    // A script not defined on this client (a plain EVAL): named by its sha's start, looked up once.
    if (!scriptNames.has(sha)) scriptNames.set(sha, `eval ${sha.slice(0, 8)}`);
  }
  return `script:${scriptNames.get(sha) ?? command.name}`;
}

/**
 * BENCH_REDIS_CALLERS=1 (diagnosis only; costs a stack trace a command): each command is also counted
 * under the first frame of Rapport's src/ that sent it (`get @ src/identity/cache.ts:244`), or of BullMQ.
 */
const BY_CALLER = process.env.BENCH_REDIS_CALLERS === '1';
Error.stackTraceLimit = BY_CALLER ? 40 : Error.stackTraceLimit;

function callerOf(stack: string): string {
  const lines = stack.split('\n');
  const src = lines.find((l) => l.includes('/src/') && !l.includes('node_modules'));
  if (src) return /\/(src\/[^:)]+:\d+)/.exec(src)?.[1] ?? 'src';
  const bull = lines.find((l) => l.includes('node_modules/bullmq/'));
  return bull ? `bullmq ${/\/([^/]+\.js:\d+)/.exec(bull)?.[1] ?? ''}` : 'other';
}

let installed: RedisMonitor | undefined;

/** Starts counting (once per process; later calls answer the same monitor). */
export function monitorRedis(): RedisMonitor {
  if (installed) return installed;
  let counts: RedisCounts = { commands: 0, roundTrips: 0, byCommand: {} };
  const proto = Redis.prototype as unknown as {
    sendCommand: (this: WithScripts, command: Sendable, stream?: unknown) => unknown;
  };
  const send = proto.sendCommand;
  proto.sendCommand = function (command, stream) {
    // `stream` is set when a pipeline writes its commands together: counted as one trip by exec.
    const name = nameOf(this, command);
    // A script's NOSCRIPT retry re-sends as `eval`: one more exchange, but the same command.
    counts.commands++;
    if (stream === undefined) counts.roundTrips++;
    counts.byCommand[name] = (counts.byCommand[name] ?? 0) + 1;
    if (BY_CALLER) {
      const at = callerOf(new Error().stack ?? '');
      counts.byCommand[`${name} @ ${at}`] = (counts.byCommand[`${name} @ ${at}`] ?? 0) + 1;
    }
    return send.call(this, command, stream);
  };
  const pipeline = Pipeline.prototype as unknown as { exec: (...a: unknown[]) => unknown };
  const exec = pipeline.exec;
  pipeline.exec = function (this: unknown, ...a: unknown[]) {
    counts.roundTrips++;
    return exec.apply(this, a);
  };
  installed = {
    snapshot: () => ({ ...counts, byCommand: { ...counts.byCommand } }),
    reset: () => void (counts = { commands: 0, roundTrips: 0, byCommand: {} }),
  };
  return installed;
}

/** Per-message figures over several processes' counts. */
export function redisPerMessage(parts: RedisCounts[], messages: number) {
  const per = (n: number) => (messages > 0 ? Math.round((n / messages) * 100) / 100 : NaN);
  const byCommand: Record<string, number> = {};
  for (const p of parts) for (const [k, n] of Object.entries(p.byCommand)) byCommand[k] = (byCommand[k] ?? 0) + n;
  return {
    messages,
    commands: per(parts.reduce((a, p) => a + p.commands, 0)),
    roundTrips: per(parts.reduce((a, p) => a + p.roundTrips, 0)),
    byCommand: Object.fromEntries(
      Object.entries(byCommand)
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => [k, per(n)]),
    ),
  };
}

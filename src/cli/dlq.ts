/**
 * `rapport dlq list|show|replay|drop`: dead letters (failed jobs), the same operations as
 * `/api/dead-letters` (it calls that API in-process, so the two cannot drift).
 *   rapport dlq list [--queue <name>] [--limit N] [--json]
 *   rapport dlq show <queue> <jobId> [--data] [--json]
 *   rapport dlq replay <queue> <jobId>
 *   rapport dlq replay --all [--queue <name>]     every dead letter, queue by queue, with progress
 *   rapport dlq drop <queue> <jobId>
 * `<queue>` is a queue or partition name as `list` prints it (`to-agent`, `inbound-3`, …); for
 * `--queue`, `inbound` means every inbound partition. `--data` shows the job's data, which is
 * customer data: use it only when you need it.
 */
import { cliAdminToken } from './token';
import type { CliCommand, CliContext } from './types';
import type { DeadLetterJson } from '../http/admin-dlq';

const BOOLEAN_FLAGS = new Set(['all', 'data']);

function parseArgs(args: string[]): {
  positional: string[];
  values: Record<string, string>;
  on: Set<string>;
} {
  const positional: string[] = [];
  const values: Record<string, string> = {};
  const on = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--')) positional.push(a);
    else if (BOOLEAN_FLAGS.has(a.slice(2))) on.add(a.slice(2));
    else values[a.slice(2)] = args[++i] ?? '';
  }
  return { positional, values, on };
}

interface ApiResult {
  status: number;
  body: Record<string, unknown>;
}

/** Calls the admin API of an in-process app, on a loopback port that lives for the command. */
async function adminClient(ctx: CliContext) {
  const app = await ctx.app();
  const server = app.http.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as { port: number };
  return {
    async call(method: string, path: string): Promise<ApiResult> {
      const res = await fetch(`http://127.0.0.1:${port}/api${path}`, {
        method,
        headers: { authorization: `Bearer ${cliAdminToken(ctx.config)}` },
      });
      const text = await res.text();
      return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const when = (ms: number | null | undefined) =>
  ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '-';
const path = (queue: string, id: string) =>
  `/dead-letters/${encodeURIComponent(queue)}/${encodeURIComponent(id)}`;

export const dlqCommand: CliCommand = {
  summary: 'list, show, replay and drop dead letters (same as /api/dead-letters)',
  usage:
    'rapport dlq list [--queue q] [--limit N] | show <queue> <id> [--data] | replay <queue> <id> | replay --all [--queue q] | drop <queue> <id>',
  help: [
    '  list [--queue <name>] [--limit N] [--json]',
    '  show <queue> <jobId> [--data] [--json]   (--data shows customer data: only when needed)',
    '  replay <queue> <jobId> | replay --all [--queue <name>]',
    '  drop <queue> <jobId>',
    '<queue> is a queue or partition name as `list` prints it (to-agent, inbound-3, …).',
  ],
  async run(args, ctx) {
    const [sub, ...rest] = args;
    const { positional, values, on } = parseArgs(rest);
    const [queue, id] = positional;
    const valid =
      sub === 'list' ||
      (sub === 'replay' && (on.has('all') || (queue && id))) ||
      ((sub === 'show' || sub === 'drop') && queue && id);
    if (!valid) {
      ctx.err(`Usage: ${dlqCommand.usage}`);
      return 2;
    }
    const run: Run = { api: await adminClient(ctx), ctx };
    try {
      if (sub === 'list') return await listLetters(run, values);
      if (sub === 'show') return await showLetter(run, queue!, id!, on.has('data'));
      if (sub === 'drop') return await dropLetter(run, queue!, id!);
      if (!on.has('all')) return await replayLetter(run, queue!, id!);
      return await replayAll(run, values.queue);
    } finally {
      await run.api.close();
    }
  },
};

/** What each subcommand works with: the in-process admin API and the CLI's output. */
interface Run {
  api: Awaited<ReturnType<typeof adminClient>>;
  ctx: CliContext;
}

/** Prints the API's error; the command's exit code. */
function failed({ ctx }: Run, res: ApiResult): number {
  const error = res.body.error as { message?: string } | undefined;
  ctx.err(`Failed (${res.status}): ${error?.message ?? JSON.stringify(res.body)}`);
  return 1;
}

async function listLetters(run: Run, values: Record<string, string>): Promise<number> {
  const { api, ctx } = run;
  const q = new URLSearchParams({
    limit: values.limit ?? '50',
    ...(values.queue ? { queue: values.queue } : {}),
  });
  const res = await api.call('GET', `/dead-letters?${q.toString()}`);
  if (res.status >= 400) return failed(run, res);
  if (ctx.json) {
    ctx.out(JSON.stringify(res.body, null, 2));
    return 0;
  }
  const letters = (res.body.deadLetters ?? []) as DeadLetterJson[];
  for (const d of letters) {
    ctx.out(
      `${when(d.finishedOn)}  ${d.queue.padEnd(13)} ${d.id.padEnd(28)} ${d.name.padEnd(14)} ${String(d.attemptsMade).padStart(2)}×  ${d.failedReason}`,
    );
  }
  const total = Number(res.body.total ?? 0);
  ctx.out(
    total === 0
      ? 'No dead letters.'
      : `${letters.length} shown of ${total} dead letter${total === 1 ? '' : 's'}.`,
  );
  return 0;
}

async function showLetter(run: Run, queue: string, id: string, withData: boolean): Promise<number> {
  const { api, ctx } = run;
  const res = await api.call('GET', `${path(queue, id)}${withData ? '?include=data' : ''}`);
  if (res.status >= 400) return failed(run, res);
  const d = res.body as unknown as DeadLetterJson;
  if (ctx.json) ctx.out(JSON.stringify(d, null, 2));
  else {
    ctx.out(`${d.queue} / ${d.id} (${d.name})`);
    ctx.out(`  queued    ${when(d.timestamp)}`);
    ctx.out(`  started   ${when(d.processedOn)}`);
    ctx.out(
      `  failed    ${when(d.finishedOn)} after ${d.attemptsMade} attempt${d.attemptsMade === 1 ? '' : 's'}`,
    );
    ctx.out(`  reason    ${d.failedReason}`);
    for (const line of (d.stacktrace ?? []).slice(-1).flatMap((s) => s.split('\n').slice(0, 8)))
      ctx.out(`  ${line}`);
    if (d.data !== undefined) ctx.out(`  data      ${JSON.stringify(d.data)}`);
  }
  return 0;
}

async function dropLetter(run: Run, queue: string, id: string): Promise<number> {
  const res = await run.api.call('DELETE', path(queue, id));
  if (res.status >= 400) return failed(run, res);
  run.ctx.out(`Dropped ${queue} / ${id}.`);
  return 0;
}

async function replayLetter(run: Run, queue: string, id: string): Promise<number> {
  const res = await run.api.call('POST', `${path(queue, id)}/replay`);
  if (res.status >= 400) return failed(run, res);
  run.ctx.out(`Replayed ${queue} / ${id}: it is back on its queue.`);
  return 0;
}

/** Bulk replay, one queue at a time so progress can be shown. */
async function replayAll(run: Run, queue: string | undefined): Promise<number> {
  const { api, ctx } = run;
  const listed = await api.call(
    'GET',
    `/dead-letters?limit=1${queue ? `&queue=${encodeURIComponent(queue)}` : ''}`,
  );
  if (listed.status >= 400) return failed(run, listed);
  const counts = Object.entries((listed.body.counts ?? {}) as Record<string, number>).filter(
    ([, n]) => n > 0,
  );
  const total = counts.reduce((sum, [, n]) => sum + n, 0);
  if (total === 0) {
    ctx.out('No dead letters to replay.');
    return 0;
  }
  let done = 0;
  for (const [name, n] of counts) {
    const res = await api.call('POST', `/dead-letters/replay?queue=${encodeURIComponent(name)}`);
    if (res.status >= 400) return failed(run, res);
    done += Number(res.body.replayed ?? 0);
    ctx.out(
      `  ${name.padEnd(13)} ${String(res.body.replayed ?? 0).padStart(5)} of ${n} replayed   [${done}/${total}]`,
    );
  }
  if (ctx.json) ctx.out(JSON.stringify({ replayed: done }));
  else ctx.out(`Replayed ${done} dead letter${done === 1 ? '' : 's'}.`);
  return 0;
}

/**
 * `rapport agents add|list|update`: the same operations as `/api/agents`.
 *   rapport agents add --slack U123 --name Alex --channel C123 [--capacity 50] [--backup <agentId>] [--role agent|lead|admin]
 *   rapport agents list [--json]
 *   rapport agents update <agentId> [--name …] [--channel …] [--capacity N] [--status available|away|offline] [--role agent|lead|admin] [--active false]
 *   rapport agents import <file.csv>   header: slackUserId,name,inboxChannelId[,capacity]; progress on stderr
 */
import { readFileSync } from 'node:fs';
import { cliAdminToken } from './token';
import type { CliCommand } from './types';

function flags(args: string[]): { positional: string[]; values: Record<string, string> } {
  const positional: string[] = [];
  const values: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith('--')) values[a.slice(2)] = args[++i] ?? '';
    else positional.push(a);
  }
  return { positional, values };
}

async function call(ctx: Parameters<CliCommand['run']>[1], method: string, path: string, body?: unknown) {
  const app = await ctx.app();
  // The admin API in-process: same validation, same side effects (handoffs on deactivation).
  const server = app.http.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as { port: number };
  try {
    const res = await fetch(`http://127.0.0.1:${port}/api${path}`, {
      method,
      headers: { authorization: `Bearer ${cliAdminToken(ctx.config)}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  } finally {
    server.close();
  }
}

export const agentsCommand: CliCommand = {
  summary: 'add, list and update agents (same as /api/agents)',
  usage:
    'rapport agents add --slack U… --name … --channel C… [--capacity N] [--backup id] [--role agent|lead|admin] | list | update <id> [--status …] [--role …] [--active false] | import <file.csv>',
  help: [
    '  add --slack U123 --name Alex --channel C123 [--capacity 50] [--backup <agentId>] [--role agent|lead|admin]',
    '  list [--json]',
    '  update <agentId> [--name …] [--channel …] [--capacity N] [--status available|away|offline] [--role …] [--active false]',
    '  import <file.csv>   header: slackUserId,name,inboxChannelId[,capacity]; progress on stderr',
  ],
  async run(args, ctx) {
    const [sub, ...rest] = args;
    const { positional, values } = flags(rest);
    let res;
    if (sub === 'list') res = await call(ctx, 'GET', '/agents');
    else if (sub === 'add') {
      res = await call(ctx, 'POST', '/agents', {
        slackUserId: values.slack,
        name: values.name,
        inboxChannelId: values.channel,
        ...(values.capacity ? { capacity: Number(values.capacity) } : {}),
        ...(values.backup ? { backupAgentId: values.backup } : {}),
        ...(values.role ? { role: values.role } : {}),
      });
    } else if (sub === 'import' && positional[0]) {
      return importCsv(positional[0], ctx);
    } else if (sub === 'update' && positional[0]) {
      const patch: Record<string, unknown> = {};
      if (values.name) patch.name = values.name;
      if (values.channel) patch.inboxChannelId = values.channel;
      if (values.capacity) patch.capacity = Number(values.capacity);
      if (values.status) patch.status = values.status;
      if (values.role) patch.role = values.role;
      if (values.backup) patch.backupAgentId = values.backup === 'none' ? null : values.backup;
      if (values.active) patch.active = values.active === 'true';
      res = await call(ctx, 'PATCH', `/agents/${positional[0]}`, patch);
    } else {
      ctx.err(`Usage: ${agentsCommand.usage}`);
      return 2;
    }
    if (res.status >= 400) {
      const error = res.body.error as { message?: string } | undefined;
      ctx.err(`Failed (${res.status}): ${error?.message ?? JSON.stringify(res.body)}`);
      return 1;
    }
    if (ctx.json) ctx.out(JSON.stringify(res.body, null, 2));
    else if (sub === 'list') {
      const agents = (res.body.agents ?? []) as {
        id: string;
        name: string;
        slackUserId: string;
        inboxChannelId: string;
        status: string;
        role?: string;
        active: boolean;
        openCustomers: number;
        capacity: number;
      }[];
      for (const a of agents)
        ctx.out(
          `${a.id}  ${a.name.padEnd(16)} ${a.slackUserId.padEnd(12)} ${a.inboxChannelId.padEnd(12)} ${(a.role ?? 'agent').padEnd(6)} ${a.active ? a.status : 'inactive'}  ${a.openCustomers}/${a.capacity} open`,
        );
      if (agents.length === 0)
        ctx.out('No agents yet. Add one: rapport agents add --slack U… --name … --channel C…');
    } else
      ctx.out(
        `${sub === 'add' ? 'Added' : 'Updated'} agent ${String(res.body.id)} (${String(res.body.name)}).`,
      );
    return 0;
  },
};

/** Parses a simple CSV (no quoted commas): a header row, then one agent per row. */
export function parseAgentsCsv(text: string): { rows: Record<string, string>[]; problems: string[] } {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = (lines.shift() ?? '').split(',').map((h) => h.trim());
  const problems: string[] = [];
  for (const required of ['slackUserId', 'name', 'inboxChannelId']) {
    if (!header.includes(required)) problems.push(`the header has no ${required} column`);
  }
  const rows = lines.map((line) =>
    Object.fromEntries(line.split(',').map((v, i) => [header[i] ?? `col${i}`, v.trim()])),
  );
  return { rows, problems };
}

async function importCsv(file: string, ctx: Parameters<CliCommand['run']>[1]): Promise<number> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    ctx.err(`Cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
  const { rows, problems } = parseAgentsCsv(text);
  if (problems.length > 0) {
    ctx.err(`${file}: ${problems.join('; ')}`);
    return 2;
  }
  let added = 0;
  const failed: string[] = [];
  for (const [i, row] of rows.entries()) {
    const res = await call(ctx, 'POST', '/agents', {
      slackUserId: row.slackUserId,
      name: row.name,
      inboxChannelId: row.inboxChannelId,
      ...(row.capacity ? { capacity: Number(row.capacity) } : {}),
    });
    if (res.status === 201) added++;
    else
      failed.push(
        `line ${i + 2}: ${(res.body.error as { message?: string } | undefined)?.message ?? res.status}`,
      );
    ctx.err(`[${i + 1}/${rows.length}] ${res.status === 201 ? 'added' : 'failed'} ${row.name ?? ''}`);
  }
  ctx.out(`Imported ${added} of ${rows.length} agents.${failed.length ? `\n${failed.join('\n')}` : ''}`);
  return failed.length > 0 ? 1 : 0;
}

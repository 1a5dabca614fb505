/**
 * `rapport customers export|erase`: the same functions as `GET /api/customers/:id/export` and
 * `DELETE /api/customers/:id` (src/privacy), called in-process.
 *   rapport customers export <id> [--out file.json]   JSON to stdout or a file; progress on stderr
 *   rapport customers erase <id> --yes                 erase (idempotent; re-run to continue)
 *   rapport customers name <id> <name…>                name or correct the name (as PATCH /api/customers/:id)
 */
import { writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { isAppError } from '../errors';
import { createErasureService, markerKeysOf } from '../privacy/erase';
import { exportCustomer } from '../privacy/export';
import { parseCustomerId } from '../identity/merge';
import type { CliCommand, CliContext } from './types';

function flags(args: string[]): { positional: string[]; values: Record<string, string> } {
  const positional: string[] = [];
  const values: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--yes') values.yes = 'true';
    else if (a.startsWith('--')) values[a.slice(2)] = args[++i] ?? '';
    else positional.push(a);
  }
  return { positional, values };
}

function actor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}

async function runExport(id: string, out: string | undefined, ctx: CliContext): Promise<number> {
  const app = await ctx.app();
  let lastShown = 0;
  const data = await exportCustomer(app.models, id, {
    onProgress: ({ done, total }) => {
      // Every 10% (and at the end) for big histories; silent for small ones.
      if (total < 1000) return;
      const pct = Math.floor((done / total) * 100);
      if (pct >= lastShown + 10 || done === total) {
        lastShown = pct;
        ctx.err(`exporting messages: ${done}/${total} (${pct}%)`);
      }
    },
  });
  const json = JSON.stringify(data, null, 2);
  app.log.info(
    { actor: actor(), action: 'customer.export', customerId: data.customer.id },
    'customer exported',
  );
  if (out) {
    await writeFile(out, json, { mode: 0o600 });
    ctx.err(
      `Exported customer ${data.customer.id}: ${data.identities.length} identities, ${data.messages.length} messages → ${out}`,
    );
  } else ctx.out(json);
  return 0;
}

async function runErase(id: string, ctx: CliContext): Promise<number> {
  const app = await ctx.app();
  const erasures = createErasureService({
    models: app.models,
    slack: app.slack,
    redis: app.redis,
    prefix: ctx.config.queuePrefix,
    ...markerKeysOf(ctx.config),
    defaultRegion: ctx.config.defaultRegion,
    log: app.log.child({ component: 'erasure' }),
    // Nobody waits on an HTTP answer here: give Slack more time before leaving it to the worker.
    slackBudgetMs: 120_000,
  });
  const who = actor();
  const erasure = await erasures.erase(id, who);
  app.log.info(
    { actor: who, action: 'customer.erase', customerId: id, erasureId: erasure.id, status: erasure.status },
    'customer erase',
  );
  if (ctx.json) ctx.out(JSON.stringify({ erasure }, null, 2));
  else {
    const c = erasure.counts;
    ctx.out(
      `${erasure.status === 'done' ? 'Erased' : 'Erasing'} customer ${id} (erasure ${erasure.id}): ${c.customers} customer record(s), ` +
        `${c.identities} identities, ${c.messages} messages blanked, ${c.slackDeleted} Slack messages deleted` +
        (c.slackHumanRemaining
          ? `, ${c.slackHumanRemaining} agent replies left in Slack (a notice is in each thread)`
          : '') +
        (erasure.slackSkipped ? ` (Slack: ${erasure.slackSkipped})` : '') +
        '.',
    );
    if (erasure.status !== 'done')
      ctx.out(
        `Still to do: ${erasure.pending.join(', ')}. The worker finishes it, or run this command again.`,
      );
  }
  return 0;
}

/** The same as `PATCH /api/customers/:id` `{ displayName }`: the Slack card follows. */
async function runName(id: string, name: string, ctx: CliContext): Promise<number> {
  const app = await ctx.app();
  const customer = await app.router.naming.rename(parseCustomerId(id), name, 'admin', actor());
  if (ctx.json) ctx.out(JSON.stringify({ id: String(customer._id), displayName: customer.displayName }));
  else ctx.out(`Customer ${String(customer._id)} is now named "${customer.displayName ?? ''}".`);
  return 0;
}

export const customersCommand: CliCommand = {
  summary:
    'export, erase or name a customer (same as /api/customers/:id/export, DELETE and PATCH /api/customers/:id)',
  usage: 'rapport customers export <id> [--out file.json] | erase <id> --yes | name <id> <name…>',
  async run(args, ctx) {
    const [sub, ...rest] = args;
    if (sub === 'name') {
      const [id, ...words] = rest;
      if (!id || words.length === 0) {
        ctx.err(`Usage: ${customersCommand.usage}`);
        return 2;
      }
      return runName(id, words.join(' '), ctx).catch((err: unknown) => {
        if (!isAppError(err)) throw err;
        ctx.err(`Failed (${err.status}): ${err.message}`);
        return 1;
      });
    }
    const { positional, values } = flags(rest);
    const id = positional[0];
    if (!id || (sub !== 'export' && sub !== 'erase')) {
      ctx.err(`Usage: ${customersCommand.usage}`);
      return 2;
    }
    if (sub === 'erase' && values.yes !== 'true') {
      ctx.err(
        `This permanently erases customer ${id}'s data (and Rapport's messages about them in Slack). Add --yes to confirm.`,
      );
      return 2;
    }
    try {
      return sub === 'export' ? await runExport(id, values.out || undefined, ctx) : await runErase(id, ctx);
    } catch (err) {
      if (isAppError(err)) {
        ctx.err(`Failed (${err.status}): ${err.message}`);
        return 1;
      }
      throw err;
    }
  },
};

/**
 * `rapport customers export|erase`: the same functions as `GET /api/customers/:id/export` and
 * `DELETE /api/customers/:id` (src/privacy), called in-process. A customer is named by id, email or
 * phone number (lookup.ts).
 *   rapport customers export <customer> [--out file.json]   JSON to stdout or a file; progress on stderr
 *   rapport customers erase <customer> --yes                 erase (idempotent; re-run to continue)
 */
import { writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { isAppError } from '../errors';
import { createErasureService, markerKeysOf } from '../privacy/erase';
import { exportCustomer } from '../privacy/export';
import { resolveCustomer } from './lookup';
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

async function runExport(ref: string, out: string | undefined, ctx: CliContext): Promise<number> {
  const app = await ctx.app();
  const id = await resolveCustomer(ref, app);
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

async function runErase(ref: string, ctx: CliContext): Promise<number> {
  const app = await ctx.app();
  const id = await resolveCustomer(ref, app);
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
async function runName(ref: string, name: string, ctx: CliContext): Promise<number> {
  const app = await ctx.app();
  const id = await resolveCustomer(ref, app);
  const customer = await app.router.naming.rename(parseCustomerId(id), name, 'admin', actor());
  if (ctx.json) ctx.out(JSON.stringify({ id: String(customer._id), displayName: customer.displayName }));
  else ctx.out(`Customer ${String(customer._id)} is now named "${customer.displayName ?? ''}".`);
  return 0;
}

export const customersCommand: CliCommand = {
  summary: 'export or erase a customer (same as /api/customers/:id/export, DELETE /api/customers/:id)',
  usage: 'rapport customers export <customer> [--out file.json] | erase <customer> --yes',
  help: [
    '<customer> is a customer id, an email address or a phone number (+1 415 555 0123).',
    '  export <customer> [--out file.json]   everything Rapport holds about them, as JSON',
    "  erase <customer> --yes                erase them (and Rapport's messages about them in Slack)",
  ],
  async run(args, ctx) {
    if (args[0] === 'name') {
      const [, ref, ...words] = args;
      if (!ref || words.length === 0) {
        ctx.err('Usage: rapport customers name <customer> <name…>');
        return 2;
      }
      return runName(ref, words.join(' '), ctx).catch((err: unknown) => {
        if (!isAppError(err)) throw err;
        ctx.err(`Failed (${err.status}): ${err.message}`);
        return 1;
      });
    }
    const [sub, ...rest] = args;
    const { positional, values } = flags(rest);
    const id = positional[0];
    if (!id || (sub !== 'export' && sub !== 'erase')) {
      ctx.err(`Usage: ${customersCommand.usage}`);
      return 2;
    }
    if (sub === 'erase' && values.yes !== 'true') {
      ctx.err(
        `This permanently erases the data of customer ${id} (and Rapport's messages about them in Slack). Add --yes to confirm.`,
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

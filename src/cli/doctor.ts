/**
 * `rapport doctor [--json] [--timeout 5s]`: checks the configuration, Redis, MongoDB, PUBLIC_URL and
 * each configured provider's credentials, and prints the webhook URLs to paste into each console.
 * Exit code 1 when anything required fails (see src/doctor/). It works on a broken configuration
 * (that is when it is most needed), so src/cli/index.ts runs it before loading the configuration.
 */
import { formatReport } from '../doctor/format';
import { runDoctor } from '../doctor/run';
import type { CliCommand } from './types';

export interface DoctorIo {
  out(line: string): void;
  err(line: string): void;
}

const USAGE = 'rapport doctor [--json] [--timeout <ms|Ns>]';

/** `5s`, `2500ms`, `2500` (ms) → milliseconds; undefined when malformed. */
export function parseTimeout(value: string | undefined): number | undefined {
  const m = /^(\d+)(ms|s)?$/.exec(value?.trim() ?? '');
  if (!m) return undefined;
  const ms = Number(m[1]) * (m[2] === 's' ? 1000 : 1);
  return ms >= 100 && ms <= 120_000 ? ms : undefined;
}

/** Runs doctor on `env` (not on a loaded Config: an invalid configuration is something to report). */
export async function runDoctorCli(
  args: string[],
  io: DoctorIo,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  let json = false;
  let timeoutMs = 5_000;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--json') json = true;
    else if (a === '-h' || a === '--help') {
      io.out(`Usage: ${USAGE}`);
      for (const line of doctorCommand.help ?? []) io.out(line);
      return 0;
    } else if (a === '--timeout' || a.startsWith('--timeout=')) {
      const raw = a.includes('=') ? a.slice(a.indexOf('=') + 1) : args[++i];
      const parsed = parseTimeout(raw);
      if (parsed === undefined) {
        io.err(`--timeout takes a duration from 100ms to 120s, e.g. 5s or 2500ms. Usage: ${USAGE}`);
        return 2;
      }
      timeoutMs = parsed;
    } else {
      io.err(`Unknown option "${a}". Usage: ${USAGE}`);
      return 2;
    }
  }
  const report = await runDoctor(env, { timeoutMs });
  if (json) io.out(JSON.stringify(report, null, 2));
  else for (const line of formatReport(report)) io.out(line);
  return report.exitCode;
}

export const doctorCommand: CliCommand = {
  summary: 'check configuration, Redis, MongoDB, PUBLIC_URL and provider credentials; print webhook URLs',
  usage: USAGE,
  help: [
    'Checks the configuration (.env and the environment), Redis, MongoDB, PUBLIC_URL and each',
    'configured provider, and prints the webhook URLs to paste. With SANDBOX=true it checks the',
    'sandbox instead: every channel emulated, and whether the page answers on PORT.',
  ],
  run(args, ctx) {
    return runDoctorCli(ctx.json ? [...args, '--json'] : args, ctx);
  },
};

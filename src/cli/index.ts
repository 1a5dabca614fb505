/**
 * Operator commands: `rapport <command> …`. Each command builds the same app (role `api`, not
 * listening) and calls the same functions as the admin API, so the CLI and the API cannot drift.
 * Output is for people; `--json` prints machine-readable JSON where a command supports it.
 */
import { buildApp, type RapportApp } from '../app';
import { loadConfig, type Config } from '../config';
import { agentsCommand } from './agents';
import { customersCommand } from './customers';
import { dlqCommand } from './dlq';
import { doctorCommand, runDoctorCli } from './doctor';
import { CliTokenError } from './token';
import type { CliCommand, CliContext } from './types';

export type { CliCommand, CliContext } from './types';

/** Every command, by name. Add new ones here. */
const commands = new Map<string, CliCommand>([
  ['agents', agentsCommand],
  ['dlq', dlqCommand],
  ['customers', customersCommand],
  ['doctor', doctorCommand],
]);

const HELP = ['help', '--help', '-h'];

export function isCliCommand(name: string | undefined): boolean {
  return name !== undefined && (commands.has(name) || HELP.includes(name));
}

function showHelp(out: (line: string) => void): void {
  out('Usage: rapport [api|worker|whatsapp-web|all] [--reset]   run Rapport (default: all)');
  out('       rapport <command> [options]                      operator commands:');
  for (const [n, c] of commands) out(`  ${n.padEnd(10)} ${c.summary}`);
  out('');
  out('`rapport <command> --help` explains a command. Settings come from the environment and from');
  out('.env in the working directory (the environment wins), as `npm start` uses them.');
}

function showCommandHelp(name: string, command: CliCommand, out: (line: string) => void): void {
  out(`rapport ${name}: ${command.summary}`);
  out(`Usage: ${command.usage}`);
  for (const line of command.help ?? []) out(line);
  out('Add --json for machine-readable output where the command supports it.');
}

export async function runCli(
  argv: string[],
  io = {
    out: (l: string) => process.stdout.write(`${l}\n`),
    err: (l: string) => process.stderr.write(`${l}\n`),
  },
): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || HELP.includes(name)) {
    const command = rest[0] === undefined ? undefined : commands.get(rest[0]);
    if (command) showCommandHelp(rest[0]!, command, io.out);
    else showHelp(io.out);
    return 0;
  }
  const command = commands.get(name);
  if (!command) {
    io.err(`Unknown command "${name}". Run \`rapport help\`.`);
    return 2;
  }
  // `-h`/`--help` anywhere after the command (`rapport agents list --help`): no config needed.
  if (rest.some((a) => HELP.includes(a) && a !== 'help')) {
    showCommandHelp(name, command, io.out);
    return 0;
  }
  // doctor reports an invalid configuration instead of failing on it, so it runs before loadConfig.
  if (name === 'doctor') return runDoctorCli(rest, io);
  const json = rest.includes('--json');
  const args = rest.filter((a) => a !== '--json');
  const config = loadConfig();
  let app: RapportApp | undefined;
  const ctx: CliContext = {
    config,
    json,
    out: io.out,
    err: io.err,
    async app() {
      if (!app) {
        app = buildApp({ ...config, logLevel: 'silent' } as Config, { role: 'api' });
        await app.mongo.ready;
      }
      return app;
    },
  };
  try {
    return await command.run(args, ctx);
  } catch (err) {
    if (!(err instanceof CliTokenError)) throw err;
    io.err(err.message);
    return 2;
  } finally {
    await app?.close();
  }
}

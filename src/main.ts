/**
 * Entry point: `rapport [api|worker|all] [--reset]` (default `all`). Reads config (exiting with
 * every problem listed if it is wrong), builds the app, logs one "listening on http://…" line with
 * the role and the enabled channels, and shuts down gracefully on SIGTERM/SIGINT. `--reset` (or
 * `SANDBOX_RESET=true`) starts a sandbox clean; it is refused outside sandbox mode.
 */
import { buildApp, type RapportApp, type Role } from './app';
import { ConfigError, channelStates, loadConfig, type Config } from './config';
import type { Logger } from './logger';
import { isCliCommand, runCli } from './cli';
import { loadEnvFile } from './env-file';
import { sandboxRequested, sandboxResetRequested, startSandbox, type Sandbox } from './sandbox';

const ROLES: Role[] = ['api', 'worker', 'whatsapp-web', 'all'];

export async function main(argv: string[] = process.argv.slice(2)): Promise<void> {
  loadEnvFile();
  if (isCliCommand(argv[0])) {
    process.exitCode = await runCliCommand(argv);
    return;
  }
  const resetFlag = argv.includes('--reset');
  const role = roleOf(argv.filter((a) => a !== '--reset'));
  const { config, sandbox, opened } = await configure(role, resetFlag);
  const app = buildApp(config, { role });
  const log = app.log.child({ component: 'main' });
  const enabled = logChannels(log, config);
  if (opened) log.info(opened);
  if (!sandbox && enabled.length === 0) {
    log.warn(
      'no channel is configured: set SANDBOX=true to try Rapport with emulated providers (README, "Sandbox")',
    );
  }
  const channels = enabled.join(', ') || 'no channel';
  if (sandbox) {
    const port = await sandbox.serve(app);
    log.warn(
      { port, role, channels: enabled },
      `SANDBOX MODE: Twilio, Meta and Slack are emulated in this process on 127.0.0.1; nothing leaves this machine. Open http://localhost:${port}/sandbox`,
    );
    log.info(
      { port, role, channels: enabled },
      `listening on http://localhost:${port} (role ${role}; ${channels})`,
    );
  } else {
    // Every role listens: worker and whatsapp-web processes serve /healthz, /readyz and /metrics.
    const port = await app.listen(config.port);
    const what = role === 'api' || role === 'all' ? '' : ', health and metrics only';
    log.info(
      { port, role, channels: enabled },
      `listening on http://localhost:${port} (role ${role}${what}; ${channels})`,
    );
  }
  stopOnSignals(app, log, sandbox);
}

/** Runs a CLI command; its exit code (1 with every problem listed when the config is wrong). */
async function runCliCommand(argv: string[]): Promise<number> {
  try {
    return await runCli(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`Rapport cannot start.\n${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

/** The role named on the command line (default `all`); exits 2 on anything else. */
function roleOf(positional: string[]): Role {
  const role = (positional[0] ?? 'all') as Role;
  if (!ROLES.includes(role) || positional.length > 1) {
    process.stderr.write(
      `Unknown role "${positional.join(' ')}". Usage: rapport [${ROLES.join('|')}] [--reset]\n`,
    );
    process.exit(2);
  }
  return role;
}

/** The config (with the sandbox's emulators when SANDBOX=true); exits 1 listing every problem. */
async function configure(
  role: Role,
  resetFlag: boolean,
): Promise<{ config: Config; sandbox?: Sandbox; opened?: string }> {
  let sandbox: Sandbox | undefined;
  try {
    const reset = resetFlag || sandboxResetRequested();
    if (sandboxRequested()) {
      if (role !== 'all')
        throw new ConfigError([`SANDBOX=true runs every role in one process: use \`all\`, not \`${role}\``]);
      sandbox = await startSandbox();
    } else if (reset) {
      throw new ConfigError(['--reset and SANDBOX_RESET only start a sandbox clean: SANDBOX is not true']);
    }
    const config = loadConfig({ ...process.env, ...sandbox?.env });
    const opened = await sandbox?.open(config, { reset });
    return { config, sandbox, opened };
  } catch (err) {
    await sandbox?.close();
    if (err instanceof ConfigError) {
      process.stderr.write(`Rapport cannot start.\n${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

/** Logs which channels are on and why the others are off; returns the enabled ones. */
function logChannels(log: Logger, config: Config): string[] {
  const states = Object.entries(channelStates(config));
  for (const [channel, state] of states) {
    log.debug(
      { channel, enabled: state.enabled, reason: state.reason },
      `channel ${channel} ${state.enabled ? 'enabled' : 'disabled'}`,
    );
  }
  const enabled = states.filter(([, s]) => s.enabled).map(([c]) => c);
  const disabled = states.filter(([, s]) => !s.enabled).map(([c, s]) => `${c} (${s.reason ?? 'off'})`);
  if (disabled.length > 0) log.info({ disabled }, `channels disabled: ${disabled.join(', ')}`);
  return enabled;
}

/** SIGTERM/SIGINT close the app (and the sandbox) gracefully, once; then the process exits. */
function stopOnSignals(app: RapportApp, log: Logger, sandbox: Sandbox | undefined): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    app
      .close()
      .then(() => sandbox?.close())
      .then(() => {
        log.info('stopped');
        process.exit(0);
      })
      .catch((err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
}

if (require.main === module) {
  void main();
}

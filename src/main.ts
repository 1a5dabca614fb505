/**
 * Entry point: `rapport [api|worker|all]` (default `all`). Reads config (exiting with every problem
 * listed if it is wrong), builds the app, and shuts down gracefully on SIGTERM/SIGINT.
 */
import { buildApp, type Role } from './app';
import { ConfigError, channelStates, loadConfig } from './config';
import { isCliCommand, runCli } from './cli';
import { sandboxRequested, startSandbox, type Sandbox } from './sandbox';

const ROLES: Role[] = ['api', 'worker', 'whatsapp-web', 'all'];

export async function main(argv: string[] = process.argv.slice(2)): Promise<void> {
  if (isCliCommand(argv[0])) {
    try {
      process.exitCode = await runCli(argv);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`Rapport cannot start.\n${err.message}\n`);
        process.exitCode = 1;
        return;
      }
      throw err;
    }
    return;
  }
  const role = (argv[0] ?? 'all') as Role;
  if (!ROLES.includes(role)) {
    process.stderr.write(`Unknown role "${argv[0]}". Usage: rapport [${ROLES.join('|')}]\n`);
    process.exit(2);
  }

  let config;
  let sandbox: Sandbox | undefined;
  try {
    if (sandboxRequested()) {
      if (role !== 'all')
        throw new ConfigError([`SANDBOX=true runs every role in one process: use \`all\`, not \`${role}\``]);
      sandbox = await startSandbox();
    }
    config = loadConfig({ ...process.env, ...sandbox?.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`Rapport cannot start.\n${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }

  const app = buildApp(config, { role });
  const log = app.log.child({ component: 'main' });
  for (const [channel, state] of Object.entries(channelStates(config))) {
    log.info(
      { channel, enabled: state.enabled, reason: state.reason },
      `channel ${channel} ${state.enabled ? 'enabled' : 'disabled'}`,
    );
  }
  if (!sandbox && !Object.values(channelStates(config)).some((s) => s.enabled)) {
    log.warn(
      'no channel is configured: set SANDBOX=true to try Rapport with emulated providers (README, "Sandbox")',
    );
  }
  if (sandbox) {
    const port = await sandbox.serve(app);
    log.warn(
      { port },
      `SANDBOX MODE: Twilio, Meta and Slack are emulated in this process on 127.0.0.1; nothing leaves this machine. Open http://localhost:${port}/sandbox`,
    );
  } else {
    // Every role listens: worker and whatsapp-web processes serve /healthz, /readyz and /metrics.
    const port = await app.listen(config.port);
    log.info(
      { port, role },
      role === 'api' || role === 'all' ? 'rapport listening' : 'rapport started (health and metrics only)',
    );
  }

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

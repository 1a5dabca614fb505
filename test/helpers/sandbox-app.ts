/**
 * A sandbox and the app it runs, started the way `npm run sandbox` starts them: emulators, the
 * sandbox's database opened (restored or started clean), the app built with every role and served
 * on a free port once its indexes are built.
 */
import type { DestinationStream } from 'pino';
import { buildApp, type RapportApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { deletePrefixedKeys } from '../../src/queue/connection';
import { startSandbox, type Sandbox } from '../../src/sandbox';

export interface SandboxApp {
  sandbox: Sandbox;
  app: RapportApp;
  port: number;
  /** What `sandbox.open` said (restored, empty, started clean). */
  opened: string;
  /** Closes the app and the sandbox, keeping the data (a restart). */
  stop(): Promise<void>;
  /** Drops the database and the queue keys, then stops. */
  destroy(): Promise<void>;
}

export async function startSandboxApp(
  env: NodeJS.ProcessEnv,
  options: { reset?: boolean; logDestination?: DestinationStream } = {},
): Promise<SandboxApp> {
  const sandbox = await startSandbox(env);
  const config = loadConfig({ ...env, ...sandbox.env });
  const opened = await sandbox.open(config, { reset: options.reset ?? false });
  const app = buildApp(config, { role: 'all', logDestination: options.logDestination });
  // Indexes are built once the connection opens; wait, as a user's `rapport doctor` after
  // `npm start` would find them built.
  await app.mongo.ready;
  const port = await sandbox.serve(app, { port: 0 });
  const stop = async () => {
    await app.close();
    await sandbox.close();
  };
  return {
    sandbox,
    app,
    port,
    opened,
    stop,
    async destroy() {
      await app.mongo.connection.dropDatabase().catch(() => undefined);
      await deletePrefixedKeys(app.redis, app.config.queuePrefix);
      await stop();
    },
  };
}

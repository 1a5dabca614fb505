/**
 * Builds a real Rapport app for a test file: real Redis (own key prefix), real MongoDB-protocol
 * server (own database), real HTTP on a free port. `stop()` closes it and removes what it wrote.
 */
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { buildApp, type AppOptions, type RapportApp, type Role } from '../../src/app';
import { loadConfig } from '../../src/config';
import { deletePrefixedKeys } from '../../src/queue/connection';

import { testEnv } from './env';

export * from './env';

export interface TestApp {
  app: RapportApp;
  baseUrl: string;
  /** Every log line the app wrote, for checks that nothing sensitive is logged. */
  logs: string[];
  stop(): Promise<void>;
}

export async function startTestApp(
  overrides: Record<string, string | undefined> = {},
  options: { role?: Role; waitForMongo?: boolean } & Pick<AppOptions, 'whatsappWebClient'> = {},
): Promise<TestApp> {
  const config = loadConfig(testEnv(overrides));
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const app = buildApp(config, {
    role: options.role ?? 'all',
    logDestination: destination,
    ...(options.whatsappWebClient ? { whatsappWebClient: options.whatsappWebClient } : {}),
  });
  if (app.redis.status !== 'ready') await once(app.redis, 'ready');
  const port = await app.listen(0);
  if (options.waitForMongo !== false) await app.mongo.ready;
  return {
    app,
    baseUrl: `http://127.0.0.1:${port}`,
    logs,
    async stop() {
      // Workers first: FerretDB v1 can crash (SIGBUS) when a database is dropped under live writes.
      await Promise.all(app.workers.map((w) => w.close()));
      await app.whatsappWeb?.stop();
      await app.mongo.connection.dropDatabase().catch(() => undefined);
      await deletePrefixedKeys(app.redis, config.queuePrefix);
      await app.close();
    },
  };
}

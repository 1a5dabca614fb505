/**
 * Runs a Rapport app (role `api`: nothing consumes the queues) in its own process for the fuzz
 * test, so the app and the load generator each get a core. Configured from the environment like
 * `rapport api`; prints `{"port":N}` on stdout once listening and writes its log lines to stderr.
 * On SIGTERM it removes what it wrote (its database and its Redis keys) and exits.
 */
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { buildApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { deletePrefixedKeys } from '../../src/queue/connection';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logs = new Writable({
    write(chunk: Buffer, _enc, done) {
      process.stderr.write(chunk, () => done());
    },
  });
  const app = buildApp(config, { role: 'api', logDestination: logs });
  if (app.redis.status !== 'ready') await once(app.redis, 'ready');
  await app.mongo.ready;
  const port = await app.listen(0);
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  process.once('SIGTERM', () => {
    void (async () => {
      await app.mongo.connection.dropDatabase().catch(() => undefined);
      await deletePrefixedKeys(app.redis, config.queuePrefix);
      await app.close();
      process.exit(0);
    })();
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

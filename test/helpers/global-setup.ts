/**
 * Runs once before the suite: the tests need the real Redis and MongoDB-protocol server that
 * `scripts/dev-services.sh` starts (`npm test` runs it first). Fail early with a clear message.
 */
import { createConnection } from 'node:net';

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port, timeout: 1_000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

export default async function globalSetup(): Promise<void> {
  // A Redis Cluster is a comma-separated list of nodes: check the first.
  const redis = new URL((process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379').split(',')[0]!);
  const mongo = new URL(process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017');
  const missing: string[] = [];
  if (!(await reachable(redis.hostname, Number(redis.port || 6379)))) missing.push(`Redis at ${redis.host}`);
  if (!(await reachable(mongo.hostname, Number(mongo.port || 27017))))
    missing.push(`MongoDB/FerretDB at ${mongo.host}`);
  if (missing.length > 0) {
    throw new Error(
      `${missing.join(' and ')} not reachable: run \`npm run services\` (or \`npm test\`, which does it).`,
    );
  }
}

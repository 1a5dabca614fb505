/**
 * The sandbox's memory in MongoDB, so that what the page showed is still there after a restart:
 * the emulated Slack workspace, every message Rapport sent to an emulated phone, and the page's own
 * people and what they wrote. One document per record in `sandbox_records` (`_id` = kind:id), its
 * content kept as JSON text (provider payloads may carry keys MongoDB will not store as field names).
 *
 * Writes go one after another (one process writes; a record is replaced whole), so the last write
 * of a record wins and nothing depends on transactions. Records are read back in the order they
 * were first written (`seq`, set on insert only).
 *
 * The sandbox never runs on half of its memory: `openSandboxStore` refuses a database that holds
 * Rapport's customers and threads but no sandbox records (they point at Slack messages that no
 * longer exist), and forgets sandbox records when Rapport's own data is gone. `resetSandboxData`
 * (`npm start -- --reset`, `SANDBOX_RESET=true`) starts both clean, on purpose.
 */
import mongoose, { type Connection } from 'mongoose';
import { ConfigError } from '../config';
import type { Logger } from '../logger';
import { createRedisConnection, deletePrefixedKeys } from '../queue/connection';
import type { EmulatorJournal, JournalRecord } from './emulators/journal';

export const SANDBOX_COLLECTION = 'sandbox_records';
/** Collections whose documents point at Slack messages and phones the sandbox emulates. */
const RAPPORT_COLLECTIONS = ['customers', 'slack_threads', 'agents'];

interface StoredRecord {
  _id: string;
  kind: string;
  seq: number;
  json: string;
}

export interface SandboxStore extends EmulatorJournal {
  /** Every kept record, oldest first. */
  records: readonly JournalRecord[];
  close(): Promise<void>;
}

export interface SandboxStoreOptions {
  mongodbUri: string;
  log: Logger;
}

async function connect(uri: string): Promise<Connection> {
  return mongoose.createConnection(uri, { serverSelectionTimeoutMS: 10_000, autoIndex: false }).asPromise();
}

async function countRapportData(connection: Connection): Promise<number> {
  const counts = await Promise.all(
    RAPPORT_COLLECTIONS.map((name) => connection.collection(name).estimatedDocumentCount()),
  );
  return counts.reduce((a, b) => a + b, 0);
}

/** Reads back the sandbox's records, checking they and Rapport's data belong together. */
export async function openSandboxStore(o: SandboxStoreOptions): Promise<SandboxStore> {
  const connection = await connect(o.mongodbUri);
  const collection = connection.collection<StoredRecord>(SANDBOX_COLLECTION);
  try {
    const stored = await collection.find({}).sort({ seq: 1, _id: 1 }).toArray();
    const rapportData = await countRapportData(connection);
    if (stored.length === 0 && rapportData > 0) {
      throw new ConfigError([
        'SANDBOX: the database has Rapport customers, agents or threads but no sandbox history ' +
          '(an older sandbox did not keep it), so its threads would point at Slack messages that ' +
          'no longer exist. Start clean with `npm start -- --reset` (or SANDBOX_RESET=true): it ' +
          "deletes this sandbox's data",
      ]);
    }
    let records: JournalRecord[] = stored.map((r) => ({
      kind: r.kind,
      id: r._id.slice(r.kind.length + 1),
      doc: JSON.parse(r.json) as unknown,
    }));
    if (stored.length > 0 && rapportData === 0) {
      await collection.deleteMany({});
      records = [];
      o.log.warn("sandbox: Rapport's database is empty, so the sandbox's old history was dropped too");
    }
    return storeOn(connection, records, (stored.at(-1)?.seq ?? 0) + 1, o.log);
  } catch (err) {
    await connection.close();
    throw err;
  }
}

function storeOn(connection: Connection, records: JournalRecord[], firstSeq: number, log: Logger) {
  const collection = connection.collection<StoredRecord>(SANDBOX_COLLECTION);
  let seq = firstSeq;
  let queue: Promise<void> = Promise.resolve();
  /** One write at a time, in call order; a failure is logged and reported to that caller only. */
  function serial(step: () => Promise<unknown>): Promise<void> {
    const run = queue.then(step).then(() => undefined);
    queue = run.catch((err: unknown) => log.error({ err }, 'sandbox: could not keep a record'));
    return run;
  }
  const store: SandboxStore = {
    records,
    write: (kind, id, doc) =>
      serial(() =>
        collection.updateOne(
          { _id: `${kind}:${id}` },
          { $set: { kind, json: JSON.stringify(doc) }, $setOnInsert: { seq: seq++ } },
          { upsert: true },
        ),
      ),
    remove: (kind, id) => serial(() => collection.deleteOne({ _id: `${kind}:${id}` })),
    async close() {
      await queue;
      await connection.close();
    },
  };
  return store;
}

/**
 * Starts the sandbox clean: drops its MongoDB database (Rapport's data and the sandbox's history
 * together) and deletes Rapport's Redis keys under `queuePrefix`. Sandbox mode only.
 */
export async function resetSandboxData(o: {
  mongodbUri: string;
  redisUrl: string;
  queuePrefix: string;
}): Promise<{ database: string; redisKeys: number }> {
  const connection = await connect(o.mongodbUri);
  const database = connection.name;
  try {
    await connection.dropDatabase();
  } finally {
    await connection.close();
  }
  // Commands wait for the connection (a producer connection would fail them until it is up).
  const redis = createRedisConnection(o.redisUrl, 'worker', { maxRetriesPerRequest: 3 });
  try {
    return { database, redisKeys: await deletePrefixedKeys(redis, o.queuePrefix) };
  } finally {
    await redis.quit().catch(() => redis.disconnect());
  }
}

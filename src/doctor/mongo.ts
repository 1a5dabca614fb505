/**
 * MongoDB (or a MongoDB-protocol server such as FerretDB): reachable, its version (`buildInfo`), and
 * the unique indexes Rapport's correctness rests on (one customer per identity, each message and
 * each post stored once). The expected indexes are read from the app's own mongoose models, so the
 * list cannot drift from the code. Read-only: nothing is created (`autoIndex`/`autoCreate` off).
 */
import mongoose, { type Model } from 'mongoose';
import { registerIdentityModels } from '../identity/models';
import { registerRouterModels } from '../router/models';
import { withTimeout } from '../storage/mongo';
import { messageOf, redactUrl, type DoctorCheck } from './types';

export interface ExpectedIndex {
  collection: string;
  /** Field → direction, in order. */
  key: Record<string, number>;
}

/** `identities.key`, `slack_threads.{channel,ts}`, … */
export function indexName(i: ExpectedIndex): string {
  const fields = Object.keys(i.key);
  return `${i.collection}.${fields.length === 1 ? fields[0] : `{${fields.join(',')}}`}`;
}

/** Every unique index the models declare (field-level `unique: true` and `schema.index(…, {unique})`). */
export function uniqueIndexesOf(models: Model<unknown>[]): ExpectedIndex[] {
  const out: ExpectedIndex[] = [];
  for (const model of models) {
    for (const [fields, options] of model.schema.indexes()) {
      if (options?.unique !== true) continue;
      const key: Record<string, number> = {};
      for (const [field, dir] of Object.entries(fields)) key[field] = typeof dir === 'number' ? dir : 1;
      out.push({ collection: model.collection.collectionName, key });
    }
  }
  return out;
}

export interface PresentIndex {
  key: Record<string, unknown>;
  unique?: boolean;
}

/** Same fields, same order, same directions, and unique. */
export function indexMatches(expected: ExpectedIndex, present: PresentIndex): boolean {
  if (present.unique !== true) return false;
  const a = Object.entries(expected.key);
  const b = Object.entries(present.key);
  return a.length === b.length && a.every(([f, d], i) => b[i]?.[0] === f && Number(b[i]?.[1]) === d);
}

/**
 * The index check (pure): `present` maps each existing collection to its indexes. A missing index on
 * a collection that does not exist yet is a warning (Rapport builds them when it first connects); on
 * an existing collection it is a failure (the build failed, usually on duplicate documents).
 */
export function indexCheck(expected: ExpectedIndex[], present: Map<string, PresentIndex[]>): DoctorCheck {
  const missing = expected.filter((e) => !(present.get(e.collection) ?? []).some((p) => indexMatches(e, p)));
  const broken = missing.filter((e) => present.has(e.collection));
  const notYet = missing.filter((e) => !present.has(e.collection));
  const base = { id: 'mongodb.indexes', section: 'services' as const, title: 'MongoDB unique indexes' };
  if (broken.length > 0) {
    return {
      ...base,
      status: 'fail',
      detail: `missing on existing collections: ${broken.map(indexName).join(', ')}`,
      fix:
        'Rapport builds them at start; look for "mongodb connect failed" in its log. A unique index cannot be built ' +
        'over duplicate documents: remove the duplicates, then restart Rapport.',
    };
  }
  if (notYet.length > 0) {
    return {
      ...base,
      status: 'warn',
      detail: `not built yet (${notYet.length} of ${expected.length}; the database looks new): ${notYet.map(indexName).join(', ')}`,
      fix: 'Start Rapport once (it builds the indexes when it connects), then run `rapport doctor` again.',
    };
  }
  return {
    ...base,
    status: 'ok',
    detail: `all ${expected.length} present: ${expected.map(indexName).join(', ')}`,
  };
}

/** Connects once, reads buildInfo and the indexes, disconnects. */
export async function checkMongo(uri: string, timeoutMs: number): Promise<DoctorCheck[]> {
  const connection = mongoose.createConnection();
  const where = redactUrl(uri);
  try {
    await openReadOnly(connection, uri, timeoutMs);
  } catch (err) {
    await connection.close(true).catch(() => undefined);
    return [
      {
        id: 'mongodb.reachable',
        section: 'services',
        status: 'fail',
        title: 'MongoDB',
        detail: `cannot reach ${where}: ${messageOf(err).split('\n')[0]}`,
        fix: 'Start MongoDB or correct MONGODB_URI (`npm run services` starts FerretDB on this machine; `docker compose up mongo` MongoDB).',
      },
    ];
  }
  try {
    const checks = await serverChecks(connection.db!, uri, where, timeoutMs);
    const models = [
      ...Object.values(registerIdentityModels(connection)),
      ...Object.values(registerRouterModels(connection)),
    ] as Model<unknown>[];
    const expected = uniqueIndexesOf(models);
    checks.push(indexCheck(expected, await presentIndexes(connection.db!, expected, timeoutMs)));
    return checks;
  } catch (err) {
    return [
      {
        id: 'mongodb.query',
        section: 'services',
        status: 'fail',
        title: 'MongoDB',
        detail: `connected to ${where}, but reading server info failed: ${messageOf(err)}`,
        fix: 'Check that the MONGODB_URI user may run buildInfo, listCollections and listIndexes on the database.',
      },
    ];
  } finally {
    await connection.close(true).catch(() => undefined);
  }
}

/** Opens the connection creating nothing (no indexes, no collections), within the timeout. */
async function openReadOnly(connection: mongoose.Connection, uri: string, timeoutMs: number): Promise<void> {
  await withTimeout(
    connection.openUri(uri, {
      serverSelectionTimeoutMS: timeoutMs,
      connectTimeoutMS: timeoutMs,
      autoIndex: false,
      autoCreate: false,
      bufferCommands: false,
    }),
    timeoutMs + 500,
    `no answer within ${timeoutMs} ms`,
  );
}

/** The server's version (buildInfo), and a warning when MONGODB_URI names no database. */
async function serverChecks(db: mongoose.mongo.Db, uri: string, where: string, timeoutMs: number) {
  const checks: DoctorCheck[] = [];
  const info = await withTimeout(db.admin().command({ buildInfo: 1 }), timeoutMs, 'buildInfo timed out');
  const ferret = typeof info.ferretdbVersion === 'string' ? ` (FerretDB ${info.ferretdbVersion})` : '';
  checks.push({
    id: 'mongodb.version',
    section: 'services',
    status: 'ok',
    title: 'MongoDB',
    detail: `reachable, version ${String(info.version)}${ferret}, database "${db.databaseName}" at ${where}`,
  });
  if (!/^mongodb(\+srv)?:\/\/[^/]+\/[^/?]+/.test(uri)) {
    checks.push({
      id: 'mongodb.database',
      section: 'services',
      status: 'warn',
      title: 'MongoDB database',
      detail: `MONGODB_URI names no database, so data goes to "${db.databaseName}"`,
      fix: 'Put the database name in MONGODB_URI, e.g. mongodb://host:27017/rapport.',
    });
  }
  return checks;
}

/** The indexes of each expected collection that exists (collections that do not are left out). */
async function presentIndexes(
  db: mongoose.mongo.Db,
  expected: ExpectedIndex[],
  timeoutMs: number,
): Promise<Map<string, PresentIndex[]>> {
  const existing = new Set(
    (
      await withTimeout(
        db.listCollections({}, { nameOnly: true }).toArray(),
        timeoutMs,
        'listCollections timed out',
      )
    ).map((c) => c.name),
  );
  const present = new Map<string, PresentIndex[]>();
  for (const name of new Set(expected.map((e) => e.collection))) {
    if (!existing.has(name)) continue;
    const indexes = await withTimeout(
      db.collection(name).indexes(),
      timeoutMs,
      `listIndexes ${name} timed out`,
    );
    present.set(
      name,
      indexes.map((i) => ({ key: i.key as Record<string, unknown>, unique: i.unique === true })),
    );
  }
  return present;
}

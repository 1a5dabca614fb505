/**
 * The RemoteAuth session store on the real MongoDB-protocol server (FerretDB here): a session zip
 * survives a round trip byte for byte across many chunks, a new save replaces the old one without
 * leaving its chunks behind, and damaged chunks are refused instead of restoring a corrupt profile.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createMongoRemoteAuthStore } from '../../src/channels/whatsapp-web/store';
import { createLogger } from '../../src/logger';
import { connectMongo, type MongoHandle } from '../../src/storage/mongo';
import { uniqueName } from '../helpers/env';

describe('whatsapp-web RemoteAuth store on MongoDB', () => {
  let mongo: MongoHandle;
  let dataPath: string;
  const session = 'RemoteAuth-store-test';

  beforeAll(async () => {
    mongo = connectMongo(
      `${process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017'}/rapport_${uniqueName('wwebstore')}`,
      createLogger({ level: 'silent' }),
    );
    await mongo.ready;
    dataPath = mkdtempSync(path.join(os.tmpdir(), 'rapport-wweb-store-'));
  });
  afterAll(async () => {
    await mongo.connection.dropDatabase().catch(() => undefined);
    await mongo.close();
    rmSync(dataPath, { recursive: true, force: true });
  });

  const store = () =>
    createMongoRemoteAuthStore({ connection: mongo.connection, dataPath, chunkBytes: 64 * 1024 });
  const chunkCollection = () => mongo.connection.collection('whatsapp_web_blob_chunks');

  it('saves the zip RemoteAuth wrote in dataPath and extracts it byte for byte where RemoteAuth asks', async () => {
    const zip = randomBytes(300 * 1024 + 17);
    writeFileSync(path.join(dataPath, `${session}.zip`), zip);
    const s = store();
    expect(await s.sessionExists({ session })).toBe(false);
    await s.save({ session });
    expect(await s.sessionExists({ session })).toBe(true);
    expect(await chunkCollection().countDocuments({ blob: `session:${session}` })).toBe(5);

    // Another host: a fresh store, a directory that does not exist yet.
    const target = path.join(dataPath, 'elsewhere', `${session}.zip`);
    await store().extract({ session, path: target });
    expect(readFileSync(target).equals(zip)).toBe(true);
  });

  it('replaces the previous save and removes its chunks', async () => {
    const second = randomBytes(70 * 1024);
    writeFileSync(path.join(dataPath, `${session}.zip`), second);
    await store().save({ session });
    expect(await chunkCollection().countDocuments({ blob: `session:${session}` })).toBe(2);
    const target = path.join(dataPath, 'again.zip');
    await store().extract({ session, path: target });
    expect(readFileSync(target).equals(second)).toBe(true);
  });

  it('refuses to restore a session whose chunks were damaged', async () => {
    await chunkCollection().updateOne(
      { blob: `session:${session}`, n: 1 },
      { $set: { data: Buffer.from('garbage') } },
    );
    await expect(store().extract({ session, path: path.join(dataPath, 'bad.zip') })).rejects.toThrow(
      /do not match/,
    );
  });

  it('deletes a session completely, after which extracting it fails', async () => {
    await store().delete({ session });
    expect(await store().sessionExists({ session })).toBe(false);
    expect(await chunkCollection().countDocuments({ blob: `session:${session}` })).toBe(0);
    await expect(store().extract({ session, path: path.join(dataPath, 'gone.zip') })).rejects.toThrow(
      /no saved/,
    );
  });
});

/**
 * A fresh database on the shared MongoDB-protocol server (FerretDB in CI) for one test file, with the
 * identity models registered and their indexes built as the app builds them, plus the identity
 * store over them. `drop()` removes the database and closes the connection (for afterAll).
 */
import { randomBytes } from 'node:crypto';
import mongoose, { type Connection, type ConnectOptions } from 'mongoose';
import type { Address, Channel, InboundMessage, Provider } from '../../src/canonical';
import { registerIdentityModels, type IdentityModels } from '../../src/identity/models';
import { createIdentityStore, type IdentityStore } from '../../src/identity/resolve';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';

export interface IdentityDb {
  conn: Connection;
  models: IdentityModels;
  store: IdentityStore;
  /** Drops the database (errors ignored) and closes the connection. */
  drop(): Promise<void>;
}

export interface IdentityDbOptions {
  /** Appended to the connection URL after `?`, e.g. `monitorCommands=true`. */
  query?: string;
  connect?: ConnectOptions;
}

/** `name` becomes part of the database name (`rapport_<name>_<random>`), one per test file. */
export async function identityDb(name: string, options: IdentityDbOptions = {}): Promise<IdentityDb> {
  const query = options.query ? `?${options.query}` : '';
  const conn = mongoose.createConnection(
    `${MONGO}/rapport_${name}_${randomBytes(4).toString('hex')}${query}`,
    options.connect,
  );
  await conn.asPromise();
  const models = registerIdentityModels(conn);
  await Promise.all(Object.values(conn.models).map((m) => m.createIndexes()));
  return {
    conn,
    models,
    store: createIdentityStore(models, { defaultRegion: 'US' }),
    async drop() {
      await conn.dropDatabase().catch(() => undefined);
      await conn.close();
    },
  };
}

let seq = 0;

/** A canonical inbound text message from `from` (SMS over Twilio unless told), sent and received now unless told. */
export function inboundMessage(
  from: Address,
  opts: {
    channel?: Channel;
    provider?: Provider;
    id?: string;
    profileName?: string;
    text?: string;
    sentAt?: string;
    receivedAt?: string;
  } = {},
): InboundMessage {
  const providerMessageId = opts.id ?? `m${++seq}-${randomBytes(4).toString('hex')}`;
  const provider = opts.provider ?? 'twilio';
  const now = new Date().toISOString();
  const text = opts.text ?? 'hello';
  return {
    key: `${provider}:${providerMessageId}`,
    channel: opts.channel ?? 'sms',
    provider,
    providerMessageId,
    from,
    to: '+15550001111',
    text,
    parts: [{ kind: 'text', text }],
    profileName: opts.profileName,
    sentAt: opts.sentAt ?? now,
    receivedAt: opts.receivedAt ?? now,
  };
}

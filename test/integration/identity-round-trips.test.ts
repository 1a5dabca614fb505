/**
 * Identity resolution's database round trips, counted with the MongoDB driver's command monitoring
 * on a real MongoDB-protocol server (issue 22: ≤ 4 commands per returning message, ≤ 8 per new one,
 * for the whole pipeline). resolveCustomer costs 2 for a first contact (identity upsert, customer
 * upsert — no read of a customer that cannot exist) and 2 for a returning customer (identity
 * upsert-touch, customer touched and returned in one conditional update); and what it decides is
 * unchanged: last seen never moves backwards, a tombstone is never touched and the live customer is
 * returned, a missing display name is still filled in.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Connection } from 'mongoose';
import { identityChanging, withHotIdentity } from '../../src/identity/cache';
import type { InboundMessage } from '../../src/canonical';
import type { IdentityModels } from '../../src/identity/models';
import type { IdentityStore } from '../../src/identity/resolve';
import { identityDb, type IdentityDb } from '../helpers/identity-db';

let db: IdentityDb;
let conn: Connection;
let models: IdentityModels;
let store: IdentityStore;
let commands: string[] = [];

beforeAll(async () => {
  // autoIndex off: the indexes are built once (in identityDb), not again in the background while commands are counted.
  db = await identityDb('idrt', { query: 'monitorCommands=true', connect: { autoIndex: false } });
  ({ conn, models, store } = db);
  conn.getClient().on('commandStarted', (e: { commandName: string; command: Record<string, unknown> }) => {
    if (!['hello', 'ismaster', 'endSessions', 'ping'].includes(e.commandName))
      commands.push(`${e.commandName} ${String(e.command[e.commandName])}`);
  });
});

const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });

afterAll(async () => {
  await db.drop();
  redis.disconnect();
});

let seq = 0;
function inbound(e164: string, sentAt: Date, profileName?: string): InboundMessage {
  const id = `rt${++seq}-${randomBytes(4).toString('hex')}`;
  return {
    key: `twilio:${id}`,
    channel: 'sms',
    provider: 'twilio',
    providerMessageId: id,
    from: { kind: 'phone', e164 },
    to: '+15550001111',
    text: 'hello',
    parts: [{ kind: 'text', text: 'hello' }],
    profileName,
    sentAt: sentAt.toISOString(),
    receivedAt: sentAt.toISOString(),
  };
}

/** resolveCustomer, and the commands it sent. */
async function resolveCounted(message: InboundMessage) {
  commands = [];
  const result = await store.resolveCustomer(message);
  return { result, commands: [...commands] };
}

const number = () => `+1415${String(3_000_000 + Math.floor(Math.random() * 999_999)).padStart(7, '0')}`;

describe('identity resolution round trips', () => {
  it('a first contact costs 2 commands: the identity upsert and the customer upsert, no read', async () => {
    const at = new Date();
    const { result, commands: sent } = await resolveCounted(inbound(number(), at, 'Ada'));
    expect(sent).toEqual(['findAndModify identities', 'findAndModify customers']);
    expect(result.created).toBe(true);
    expect(result.customer._id.equals(result.identity.customerId)).toBe(true);
    expect(result.customer).toMatchObject({ displayName: 'Ada', lastChannel: 'sms' });
    expect(result.customer.lastSeenAt.getTime()).toBe(at.getTime());
  });

  it('a returning customer costs 2 commands and last seen moves forward', async () => {
    const from = number();
    const t0 = new Date(Date.now() - 60_000);
    const first = await store.resolveCustomer(inbound(from, t0, 'Bo'));
    const t1 = new Date(t0.getTime() + 5_000);
    const { result, commands: sent } = await resolveCounted(inbound(from, t1, 'Bo'));
    expect(sent).toEqual(['findAndModify identities', 'findAndModify customers']);
    expect(result.created).toBe(false);
    expect(String(result.customer._id)).toBe(String(first.customer._id));
    expect(result.customer.lastSeenAt.getTime()).toBe(t1.getTime());
    expect((await models.Customer.findById(first.customer._id).lean())?.lastSeenAt.getTime()).toBe(
      t1.getTime(),
    );
  });

  it('an older (out-of-order) message finds the customer and does not move last seen backwards', async () => {
    const from = number();
    const t1 = new Date(Date.now() - 10_000);
    const first = await store.resolveCustomer(inbound(from, t1));
    const { result } = await resolveCounted(inbound(from, new Date(t1.getTime() - 5_000)));
    expect(result.created).toBe(false);
    expect(String(result.customer._id)).toBe(String(first.customer._id));
    expect((await models.Customer.findById(first.customer._id).lean())?.lastSeenAt.getTime()).toBe(
      t1.getTime(),
    );
  });

  it('an identity still pointing at a merged-away customer resolves to the live one and never touches the tombstone', async () => {
    const from = number();
    const t0 = new Date(Date.now() - 60_000);
    const merged = await store.resolveCustomer(inbound(from, t0));
    const survivor = await store.resolveCustomer(inbound(number(), t0));
    // Mid-merge: the tombstone is written, the identity not moved yet.
    await models.Customer.updateOne(
      { _id: merged.customer._id },
      { $set: { mergedInto: survivor.customer._id } },
    );
    const t1 = new Date(t0.getTime() + 5_000);
    const { result } = await resolveCounted(inbound(from, t1));
    expect(String(result.customer._id)).toBe(String(survivor.customer._id));
    expect(result.customer.lastSeenAt.getTime()).toBe(t1.getTime());
    expect((await models.Customer.findById(merged.customer._id).lean())?.lastSeenAt.getTime()).toBe(
      t0.getTime(),
    );
  });

  it('a returning customer without a display name gets the profile name', async () => {
    const from = number();
    const t0 = new Date(Date.now() - 60_000);
    const first = await store.resolveCustomer(inbound(from, t0));
    expect(first.customer.displayName ?? null).toBeNull();
    const { result } = await resolveCounted(inbound(from, new Date(t0.getTime() + 1_000), 'Cy'));
    expect(result.customer.displayName).toBe('Cy');
    expect((await models.Customer.findById(first.customer._id).lean())?.displayName).toBe('Cy');
  });
});

describe('storing a first contact behind the hot cache', () => {
  const prefix = `idrt${randomBytes(4).toString('hex')}`;

  /** Resolves (a miss: a first contact) and stores; the commands of the store step. */
  async function firstContactStored(between?: () => Promise<void>) {
    const hot = withHotIdentity(store, redis, prefix, 'US');
    const message = inbound(number(), new Date(), 'Di');
    const resolved = await hot.resolveCustomer(message);
    await between?.();
    commands = [];
    const { customerId } = await hot.storeInbound(message, resolved.customer._id, resolved.identity.key, resolved.unmoved);
    return { commands: [...commands], customerId, resolved };
  }

  it('costs only the insert: the epoch read before resolution proves nothing moved the identity', async () => {
    const { commands: sent, customerId, resolved } = await firstContactStored();
    expect(sent).toEqual(['insert messages']);
    expect(customerId).toBe(String(resolved.customer._id));
  });

  it('checks the database when a merge, undo, link or erasure started meanwhile (the epoch changed)', async () => {
    const { commands: sent } = await firstContactStored(() => identityChanging(redis, prefix));
    expect(sent).toEqual(['insert messages', 'find identities', 'find customers']);
  });
});

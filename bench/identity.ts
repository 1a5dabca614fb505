/**
 * bench/identity: how fast does `resolveCustomer` turn an inbound message into (customer, identity),
 * next to the floor set by the same database?
 *
 * In one run, on the same MongoDB-protocol server (own throwaway database):
 *   baseline  — a bare mongoose `findOne` by a unique key, plus an `insert` when it is missing;
 *   rapport   — `resolveCustomer` (identity upsert with touches, customer read/create, follow
 *               tombstones, last-seen touch) for NEW identities (first contact) and for RETURNING
 *               ones (the common case).
 * Each phase runs the same number of operations at the same concurrency. Prints ops/s, mean
 * latency and the ratio. Figures vary run to run on a shared 2-core machine; compare within a run.
 *
 * Usage: node -r @swc-node/register bench/identity.ts [--count 1000] [--concurrency 8]
 * Needs a MongoDB-protocol server on MONGODB_URL (default mongodb://127.0.0.1:27017).
 */
import { randomBytes } from 'node:crypto';
import mongoose, { Schema } from 'mongoose';
import type { InboundMessage } from '../src/canonical';
import { registerIdentityModels } from '../src/identity/models';
import { createIdentityStore } from '../src/identity/resolve';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const COUNT = Number(args.get('count') ?? 1000);
const CONCURRENCY = Number(args.get('concurrency') ?? 8);
const URL = process.env.MONGODB_URL ?? 'mongodb://127.0.0.1:27017';

interface Figure {
  label: string;
  ops: number;
  ms: number;
}

async function run(label: string, count: number, op: (i: number) => Promise<unknown>): Promise<Figure> {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) await op(next++);
    }),
  );
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  return { label, ops: count, ms };
}

const rate = (f: Figure) => (f.ops / f.ms) * 1000;
const line = (f: Figure) =>
  `${f.label.padEnd(34)} ${rate(f).toFixed(0).padStart(6)} /s   mean ${((f.ms * CONCURRENCY) / f.ops).toFixed(1).padStart(6)} ms`;

function message(i: number, run: string): InboundMessage {
  const at = new Date().toISOString();
  const id = `${run}-${i}-${randomBytes(3).toString('hex')}`;
  return {
    key: `twilio:${id}`,
    channel: 'sms',
    provider: 'twilio',
    providerMessageId: id,
    from: { kind: 'phone', e164: `+1415${String(2_000_000 + i).padStart(7, '0')}` },
    to: '+15550001111',
    parts: [],
    sentAt: at,
    receivedAt: at,
  };
}

async function main(): Promise<void> {
  const conn = mongoose.createConnection(`${URL}/rapport_bench_identity_${randomBytes(4).toString('hex')}`, {
    maxPoolSize: CONCURRENCY * 2,
  });
  await conn.asPromise();
  try {
    const models = registerIdentityModels(conn);
    const Bare = conn.model(
      'BareIdentity',
      new Schema({ key: { type: String, required: true, unique: true }, customerId: Schema.Types.ObjectId }),
    );
    await Promise.all(Object.values(conn.models).map((m) => m.createIndexes()));
    const store = createIdentityStore(models, { defaultRegion: 'US' });

    // Warm up connections and caches (not measured).
    await run('warm-up', 50, (i) => store.resolveCustomer(message(900_000 + i, 'w')));

    const bareKey = (i: number) => `phone:+1415${String(2_000_000 + i).padStart(7, '0')}`;
    const bareNew = await run('baseline findOne + insert (new)', COUNT, async (i) => {
      const found = await Bare.findOne({ key: bareKey(i) }).lean();
      if (!found) await Bare.create({ key: bareKey(i), customerId: new mongoose.Types.ObjectId() });
    });
    const bareReturning = await run('baseline findOne (returning)', COUNT, (i) =>
      Bare.findOne({ key: bareKey(i) }).lean(),
    );
    const fresh = await run('resolveCustomer, new identity', COUNT, (i) =>
      store.resolveCustomer(message(i, 'n')),
    );
    const returning = await run('resolveCustomer, returning', COUNT, (i) =>
      store.resolveCustomer(message(i, 'r')),
    );

    console.log(`\nbench/identity — ${COUNT} operations per phase, concurrency ${CONCURRENCY}, ${URL}\n`);
    for (const f of [bareNew, fresh, bareReturning, returning]) console.log(line(f));
    console.log(
      `\nnew identity:       rapport / baseline = ${(rate(fresh) / rate(bareNew)).toFixed(2)}` +
        `\nreturning identity: rapport / baseline = ${(rate(returning) / rate(bareReturning)).toFixed(2)}` +
        `\n(baseline for returning is one findOne; resolveCustomer also writes last address, messaging` +
        `\n window and last seen, 2 writes + 1 read)`,
    );
  } finally {
    await conn.dropDatabase().catch(() => undefined);
    await conn.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

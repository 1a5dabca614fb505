/**
 * bench/lib/db-monitor.ts counts database commands by wrapping the driver's `Connection.command`
 * instead of turning command monitoring on (monitoring decodes every reply a second time, which
 * inflated the benchmarked processes' memory). The count must stay the one monitoring reports:
 * compared here, command by command, on the real MongoDB-protocol server.
 */
import mongoose from 'mongoose';
import { monitorCommands } from '../../bench/lib/db-monitor';
import { uniqueName } from '../helpers/env';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const HOUSEKEEPING = ['hello', 'ismaster', 'isMaster', 'ping', 'endSessions', 'buildInfo', 'saslStart', 'saslContinue', 'killCursors'];

let connection: mongoose.Connection;

beforeAll(async () => {
  connection = await mongoose
    .createConnection(`${MONGO}/rapport_${uniqueName('dbmon')}?monitorCommands=true`, { autoIndex: false })
    .asPromise();
});
afterAll(async () => {
  await connection.dropDatabase().catch(() => undefined);
  await connection.close();
});

it("counts what the driver's commandStarted reports, command by command, cursors' getMore included", async () => {
  const monitored: Record<string, number> = {};
  connection.getClient().on('commandStarted', (e: { commandName: string; command: Record<string, unknown> }) => {
    if (HOUSEKEEPING.includes(e.commandName)) return;
    // As the benchmark names them: a getMore names its cursor (a Long), not a collection.
    const target = e.command[e.commandName];
    const k = `${e.commandName} ${typeof target === 'string' ? target : '-'}`;
    monitored[k] = (monitored[k] ?? 0) + 1;
  });
  const counter = monitorCommands();
  const items = connection.collection('items');
  await items.insertMany(Array.from({ length: 5 }, (_, i) => ({ i })));
  await items.findOneAndUpdate({ i: 1 }, { $set: { seen: true } });
  await items.updateOne({ i: 2 }, { $set: { seen: true } });
  await items.find({}, { batchSize: 2 }).toArray();
  await items.aggregate([{ $group: { _id: null, n: { $sum: 1 } } }]).toArray();
  await items.deleteMany({ i: { $gte: 3 } });

  const counted = counter.snapshot();
  expect(counted.byCommand).toEqual(monitored);
  expect(counted.byCommand['getMore -']).toBeGreaterThanOrEqual(2);
  expect(counted.total).toBe(Object.values(monitored).reduce((a, b) => a + b, 0));
});

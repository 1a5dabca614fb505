import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { deadLetters } from '../lib/diagnostics';
(async () => {
  const prefix = `rapport-dlcheck${Date.now()}`;
  const connection = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
  const q = new Queue('agent-events', { connection, prefix });
  await q.add('thread_reply', { type: 'thread_reply', ts: '1.2', text: 'secret' }, { attempts: 1 });
  const w = new Worker('agent-events', async () => { throw new Error('boom'); }, { connection: new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: null }), prefix });
  await new Promise((r) => w.on('failed', r));
  await new Promise((r) => setTimeout(r, 200));
  console.log(JSON.stringify(await deadLetters('redis://127.0.0.1:6379', prefix)));
  await w.close(); await q.obliterate({ force: true }); await q.close(); connection.disconnect();
})();

/**
 * Scale-out on a Redis Cluster: the real executable (`src/main.ts`) as 2 api and 3 worker processes,
 * a private 3-master/3-replica Redis Cluster, the shared MongoDB-protocol server, and the Slack and
 * Twilio emulators. Customers write through both api processes (with provider redeliveries to the
 * other one); every message must reach Slack once, in each customer's order, in one owner's inbox —
 * also while a Redis master is SIGKILLed and its replica takes over.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { startSlackEmulator, type SlackEmulator } from '../emulators/slack';
import { startTwilioEmulator, type TwilioEmulator } from '../emulators/twilio';
import { TEST_ADMIN_TOKEN, TEST_TWILIO, testEnv, uniqueName } from '../helpers/env';
import { startPrivateCluster, type PrivateCluster } from '../helpers/redis-cluster';
import { rapportProcess } from '../helpers/process';
import { postKeys } from '../../src/router/coalesce';
import { listenablePort } from '../helpers/services';
import { formBody, twilioHeaders } from '../helpers/signing';

jest.setTimeout(240_000);

const PUBLIC_URL = 'https://rapport.example.test';
const INBOXES = ['C0SCALEA', 'C0SCALEB'];

interface Proc {
  role: 'api' | 'worker';
  child: ChildProcess;
  port: number;
  output: string[];
}

let cluster: PrivateCluster;
let slack: SlackEmulator;
let twilio: TwilioEmulator;
let env: NodeJS.ProcessEnv;
const procs: Proc[] = [];
const run = uniqueName('scale');

async function startProcess(role: Proc['role']): Promise<Proc> {
  const port = await listenablePort();
  const r = rapportProcess([role]);
  const child = spawn(process.execPath, r.args, {
    cwd: r.cwd,
    env: { PATH: process.env.PATH, ...r.env, ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (d: Buffer) => output.push(d.toString()) > 200 && output.shift();
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const proc = { role, child, port, output };
  procs.push(proc);
  return proc;
}

async function ready(proc: Proc): Promise<void> {
  await until(
    async () => {
      const status = await fetch(`http://127.0.0.1:${proc.port}/readyz`).then(
        (r) => r.status,
        () => 0,
      );
      if (status !== 200)
        throw new Error(`${proc.role} on ${proc.port}: /readyz ${status}\n${proc.output.join('')}`);
    },
    60_000,
    250,
  );
}

/** Retries `check` until it stops throwing or `timeoutMs` passes (then its last error is the failure). */
async function until(
  check: () => void | Promise<void>,
  timeoutMs: number,
  intervalMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}

const apis = () => procs.filter((p) => p.role === 'api');

interface Sent {
  customer: number;
  index: number;
  sid: string;
}

/** One inbound SMS to the api process `api`, retried as Twilio would on a 5xx or a refused connection. */
async function deliver(api: Proc, customer: number, sid: string, text: string): Promise<void> {
  const form = {
    MessageSid: sid,
    SmsMessageSid: sid,
    AccountSid: TEST_TWILIO.accountSid,
    From: `+1415${String(5_000_000 + customer).padStart(7, '0')}`,
    To: '+15550001111',
    Body: text,
    NumMedia: '0',
  };
  const url = `${PUBLIC_URL}/webhooks/twilio`;
  for (let attempt = 1; ; attempt++) {
    const status = await fetch(`http://127.0.0.1:${api.port}/webhooks/twilio`, {
      method: 'POST',
      headers: twilioHeaders(url, form),
      body: formBody(form),
    }).then(
      (r) => r.status,
      () => 0,
    );
    if (status >= 200 && status < 300) return;
    if ((status !== 0 && status < 500) || attempt >= 60) throw new Error(`webhook answered ${status}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * `customers` customers write `perCustomer` messages each, in order, alternating between the api
 * processes; the second message of each is also redelivered to the other api. `during` runs once
 * `triggerAfter` messages have been accepted.
 */
async function converse(
  label: string,
  customers: number,
  perCustomer: number,
  first: number,
  during?: { triggerAfter: number; action: () => Promise<void> },
): Promise<Sent[]> {
  const sent: Sent[] = [];
  let accepted = 0;
  let triggered: Promise<void> | undefined;
  await Promise.all(
    Array.from({ length: customers }, async (_, k) => {
      const customer = first + k;
      for (let index = 0; index < perCustomer; index++) {
        const sid = `SM${`${run}${label}${customer}x${index}`.padEnd(32, '0').slice(0, 32)}`;
        const api = apis()[(customer + index) % 2]!;
        await deliver(api, customer, sid, `message ${index} from customer ${customer}`);
        if (index === 1)
          await deliver(
            apis()[(customer + index + 1) % 2]!,
            customer,
            sid,
            `message ${index} from customer ${customer}`,
          );
        sent.push({ customer, index, sid });
        accepted++;
        if (during && !triggered && accepted >= during.triggerAfter) triggered = during.action();
      }
    }),
  );
  await triggered;
  return sent;
}

/**
 * What Slack holds (calls that failed, e.g. with a 429, posted nothing), each inbox in post order:
 * one entry per outbox key (a post that coalesced several messages carries each one's key).
 */
function slackPosts() {
  return INBOXES.flatMap((channel) =>
    slack.messages(channel).flatMap((m) => {
      const keys = postKeys(m.metadata?.event_payload);
      const payload = (m.metadata?.event_payload ?? {}) as Record<string, string>;
      return (keys.length > 0 ? keys : [undefined]).map((key) => ({
        type: m.metadata?.event_type,
        key,
        payload,
        channel,
      }));
    }),
  );
}

/** Every sent message posted once, in each customer's order, all of a customer's posts in one inbox. */
async function expectDeliveredOnceInOrder(sent: Sent[]): Promise<void> {
  const keys = new Set(sent.map((s) => `twilio:${s.sid}`));
  await until(
    () => {
      const have = new Set(slackPosts().map((p) => p.key));
      const missing = [...keys].filter((k) => !have.has(k));
      if (missing.length) throw new Error(`${missing.length} of ${keys.size} messages not posted yet`);
    },
    180_000,
    500,
  );
  await new Promise((r) => setTimeout(r, 1_000)); // late duplicates would show up now
  const posts = slackPosts().filter((p) => p.type === 'rapport_post' && keys.has(p.key!));
  const count = new Map<string, number>();
  for (const p of posts) count.set(p.key!, (count.get(p.key!) ?? 0) + 1);
  expect([...count.values()].filter((n) => n > 1)).toEqual([]);
  expect(count.size).toBe(keys.size);

  const bySid = new Map(sent.map((s) => [`twilio:${s.sid}`, s]));
  const seen = new Map<number, { indexes: number[]; channels: Set<string> }>();
  for (const p of posts) {
    const s = bySid.get(p.key!)!;
    const entry = seen.get(s.customer) ?? { indexes: [], channels: new Set<string>() };
    entry.indexes.push(s.index);
    entry.channels.add(p.channel);
    seen.set(s.customer, entry);
  }
  for (const [customer, { indexes, channels }] of seen) {
    expect({ customer, indexes }).toEqual({ customer, indexes: [...indexes].sort((a, b) => a - b) });
    expect({ customer, inboxes: channels.size }).toEqual({ customer, inboxes: 1 });
  }
  // One card (one thread) per customer.
  const cards = slackPosts().filter((p) => p.type === 'rapport_card');
  const cardsPerCustomer = new Map<string, number>();
  for (const c of cards)
    cardsPerCustomer.set(c.payload.customerId!, (cardsPerCustomer.get(c.payload.customerId!) ?? 0) + 1);
  expect([...cardsPerCustomer.values()].filter((n) => n > 1)).toEqual([]);
}

beforeAll(async () => {
  cluster = await startPrivateCluster();
  slack = await startSlackEmulator({ token: 'xoxb-test-token' });
  twilio = await startTwilioEmulator(TEST_TWILIO);
  env = testEnv({
    REDIS_URL: cluster.url,
    LOG_LEVEL: 'warn',
    PUBLIC_URL,
    SLACK_BOT_TOKEN: slack.token,
    SLACK_SIGNING_SECRET: 'test-slack-signing-secret',
    SLACK_API_URL: slack.url,
    TWILIO_API_BASE_URL: twilio.url,
    META_GRAPH_BASE_URL: 'http://127.0.0.1:9/',
    REPLY_UNDO_SECONDS: '0',
  });
  for (const role of ['api', 'api', 'worker', 'worker', 'worker'] as const) await startProcess(role);
  await Promise.all(procs.map(ready));
  for (const [i, inbox] of INBOXES.entries()) {
    const res = await fetch(`http://127.0.0.1:${apis()[i]!.port}/api/agents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        slackUserId: `U0SCALE${i}`,
        name: `Agent ${i}`,
        inboxChannelId: inbox,
        capacity: 1000,
      }),
    });
    expect(res.status).toBe(201);
  }
});

afterAll(async () => {
  await Promise.all(
    procs.map(async (p) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      const exited = once(p.child, 'exit');
      p.child.kill('SIGTERM');
      const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }),
  );
  // The processes' database and keys: drop through a direct connection.
  const { default: mongoose } = await import('mongoose');
  const conn = await mongoose.createConnection(String(env.MONGODB_URI)).asPromise();
  await conn.dropDatabase().catch(() => undefined);
  await conn.close();
  await cluster?.stop();
  await slack?.close();
  await twilio?.close();
});

describe('2 api and 3 worker processes on a Redis Cluster', () => {
  it('spreads the queues over the masters, each queue in one hash slot', async () => {
    await converse('spread', 8, 1, 0);
    const masters = (await cluster.nodes()).filter((n) => n.role === 'master');
    const tagsOn = new Map<string, Set<number>>();
    for (const m of masters) {
      const r = new Redis({ host: '127.0.0.1', port: m.port });
      let cursor = '0';
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `{${String(env.QUEUE_PREFIX)}-*`, 'COUNT', 1000);
        for (const k of keys) {
          const tag = k.slice(0, k.indexOf('}') + 1);
          (tagsOn.get(tag) ?? tagsOn.set(tag, new Set()).get(tag)!).add(m.port);
        }
        cursor = next;
      } while (cursor !== '0');
      r.disconnect();
    }
    expect(tagsOn.size).toBeGreaterThan(3);
    for (const [tag, ports] of tagsOn) expect({ tag, nodes: ports.size }).toEqual({ tag, nodes: 1 });
    const used = new Set([...tagsOn.values()].flatMap((s) => [...s]));
    expect(used.size).toBeGreaterThanOrEqual(2);
  });

  it('keeps per-customer order, dedupe and one owner across processes', async () => {
    const sent = await converse('order', 24, 4, 100);
    await expectDeliveredOnceInOrder(sent);
  });

  it("honours one process's Slack 429 in every process (the channel's wait is in Redis)", async () => {
    const inbox = INBOXES[0]!;
    const before = slack.callsTo('chat.postMessage').length;
    slack.failNext('chat.postMessage', { status: 429, retryAfterSec: 4 }, { channel: inbox });
    const sent = await converse('ratelimit', 12, 2, 300);
    await expectDeliveredOnceInOrder(sent);
    const toInbox = slack
      .callsTo('chat.postMessage')
      .slice(before)
      .filter((c) => c.args.channel === inbox);
    const limited = toInbox[0]!.at;
    // Calls already under way when the 429 was answered may land just after it; after that, no
    // process calls that channel until Retry-After has passed.
    const during = toInbox.filter((c) => c.at > limited + 1_000 && c.at < limited + 4_000);
    expect(during).toEqual([]);
    expect(toInbox.filter((c) => c.at >= limited + 4_000).length).toBeGreaterThan(0);
  });

  it('loses and doubles nothing while a Redis master is killed and its replica takes over', async () => {
    const victim = (await cluster.nodes()).find((n) => n.role === 'master' && n.slots.length > 0)!;
    const sent = await converse('failover', 16, 4, 200, {
      triggerAfter: 16,
      action: async () => {
        await cluster.kill(victim.port);
        await cluster.waitOk(60_000);
      },
    });
    const after = await cluster.nodes();
    expect(after.find((n) => n.port === victim.port)).toBeUndefined();
    expect(after.filter((n) => n.role === 'master' && n.slots.length > 0)).toHaveLength(3);
    await expectDeliveredOnceInOrder(sent);
    // The killed node comes back as a replica of the promoted one.
    await cluster.restart();
    await cluster.waitOk();
  });
});

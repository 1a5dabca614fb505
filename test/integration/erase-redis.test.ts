/**
 * What an erasure leaves in Redis, read from Redis itself: a customer writes (SMS and Twilio
 * WhatsApp), an agent answers, a send fails with a provider error that quotes the number, and a
 * job in a queue Rapport did not name in advance fails with the number in its failedReason. Every
 * key under the app's prefix is dumped (strings, hashes, lists, sets, sorted sets, streams) and
 * searched for the number, the texts and the customer id: present before the erasure (the scan
 * works), absent after. A dead letter of the customer queued before the erasure is refused on
 * replay. Without DATA_KEY, erase answers 503 and erases nothing.
 */
import { Queue, Worker } from 'bullmq';
import { eventually } from '../helpers/eventually';
import { startTestApp, testEnv, TEST_DATA_KEY } from '../helpers/app';
import { loadConfig } from '../../src/config';
import { createErasureService, markerKeysOf } from '../../src/privacy/erase';
import { startWorld, type World } from '../helpers/world';
import type { RedisClient } from '../../src/queue/connection';
import { createRedisConnection, scanKeys } from '../../src/queue/connection';

const AGENT = { slackUserId: 'U0ERASER', name: 'Ezra', inboxChannelId: 'C0ERASER' };
const PHONE = '+14155550199';
const TEXT = 'quokka marmalade 5512';
const REPLY = 'wombat reply 7781';

/** Every value under `prefix`, as one string per key (`key => value`). */
async function dumpRedis(redis: RedisClient, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const key of await scanKeys(redis, `${prefix}*`)) {
    const type = await redis.type(key);
    let value: unknown;
    if (type === 'string') value = await redis.get(key);
    else if (type === 'hash') value = await redis.hgetall(key);
    else if (type === 'list') value = await redis.lrange(key, 0, -1);
    else if (type === 'set') value = await redis.smembers(key);
    else if (type === 'zset') value = await redis.zrange(key, '0', '-1');
    else if (type === 'stream') value = await redis.xrange(key, '-', '+');
    out.push(`${key} => ${JSON.stringify(value)}`);
  }
  return out;
}

describe('erasure in Redis', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld();
    await w.addAgent(AGENT);
  });
  afterAll(() => w.stop());

  const prefix = () => w.t.app.config.queuePrefix;
  const needles = (customerId: string) => [PHONE, PHONE.slice(1), '4155550199', TEXT, REPLY, customerId];
  const leaks = async (customerId: string) => {
    const dump = await dumpRedis(w.t.app.redis, prefix());
    return needles(customerId).flatMap((n) =>
      dump.filter((line) => line.includes(n)).map((line) => `${n}: ${line.slice(0, 160)}`),
    );
  };

  it('removes the customer from every queue (any state, data and failedReason) and the duplicate guard', async () => {
    await w.sms(PHONE, TEXT);
    await w.twilioWhatsApp(PHONE, `${TEXT} on whatsapp`);
    const card = await eventually(
      async () =>
        w.slack
          .messages(AGENT.inboxChannelId)
          .find((c) => w.slack.thread(AGENT.inboxChannelId, c.ts).some((m) => m.text.includes(TEXT))),
      Boolean,
    );
    expect(card).toBeDefined();
    // A send the provider refuses with an error that quotes the number.
    w.twilio.failNext(
      { status: 400, code: 21211, message: `The 'To' number ${PHONE} is not a valid phone number.` },
      { to: PHONE },
    );
    await w.agentReply(AGENT.inboxChannelId, card!.ts, AGENT.slackUserId, REPLY);
    const customerId = String(
      (await w.t.app.models.Identity.findOne({ key: `phone:${PHONE}` }).lean())!.customerId,
    );
    // A queue nobody listed in advance, with a dead letter whose failedReason names the number.
    const probe = new Queue('probe', { connection: w.t.app.redis, prefix: prefix() });
    await probe.add('x', { note: 'no personal data' });
    await probe.add('y', { customerId, to: PHONE });
    const failerRedis = createRedisConnection(w.t.app.config.redisUrl, 'worker');
    const failer = new Worker(
      'probe',
      async (job) => {
        if (job.name === 'y') throw new Error(`cannot reach ${PHONE}`);
      },
      { connection: failerRedis, prefix: prefix() },
    );
    await eventually(
      async () => (await probe.getFailedCount()) + (await probe.getCompletedCount()),
      (n) => n === 2,
    );
    await failer.close();
    failerRedis.disconnect();
    // A delayed job too.
    await w.t.app.queues.timers.add('probe-delayed', { customerId }, { delay: 3_600_000 });

    // Let the flow settle, then check the scan finds the customer (so "absent" below means something).
    await new Promise((r) => setTimeout(r, 1_000));
    const before = await leaks(customerId);
    for (const n of [PHONE.slice(1), TEXT, customerId])
      expect(before.some((l) => l.startsWith(`${n}:`))).toBe(true);
    expect(
      (await dumpRedis(w.t.app.redis, prefix())).some(
        (l) => l.includes(':probe:') && l.includes(`cannot reach ${PHONE}`),
      ),
    ).toBe(true);

    const res = await w.admin('DELETE', `/customers/${customerId}`);
    expect(res.status).toBe(200);
    expect(res.body.erasure.counts.jobsRemoved).toBeGreaterThanOrEqual(3);

    expect(await leaks(customerId)).toEqual([]);
    // Jobs of other people stay.
    expect(await probe.getCompletedCount()).toBe(1);
    await probe.close();
  });

  it('refuses to replay a dead letter queued before the customer was erased', async () => {
    const phone = '+14155550198';
    await w.sms(phone, 'first words 198');
    const id = await eventually(
      async () => (await w.t.app.models.Identity.findOne({ key: `phone:${phone}` }).lean())?.customerId,
      Boolean,
    );
    // The inbound job as it was queued before the erasure, failed while the erasure ran: stop the
    // inbound workers so that it stays a dead letter here.
    const inbound = w.t.app.queues.inbound.partitions[0]!;
    for (const worker of w.t.app.workers.filter((x) => x.name.startsWith('inbound'))) await worker.close();
    const queuedAt = Date.now() - 1_000;
    const erased = await w.admin('DELETE', `/customers/${String(id)}`);
    expect(erased.status).toBe(200);
    const event = {
      type: 'message',
      message: {
        key: 'twilio:SMdeadletter198',
        channel: 'sms',
        from: { kind: 'phone', e164: phone },
        text: 'first words 198',
        receivedAt: new Date(queuedAt).toISOString(),
      },
    };
    await inbound.add('message', event, { jobId: 'k~deadletter198', timestamp: queuedAt, attempts: 1 });
    const takerRedis = createRedisConnection(w.t.app.config.redisUrl, 'worker');
    const taker = new Worker(inbound.name, null, {
      connection: takerRedis,
      prefix: (inbound.opts as { prefix?: string }).prefix,
      autorun: false,
    });
    const job = (await taker.getNextJob('tok'))!;
    expect(job.id).toBe('k~deadletter198');
    await job.moveToFailed(new Error('mongo unavailable'), 'tok', false);
    await taker.close();
    takerRedis.disconnect();

    const one = await w.admin('POST', `/dead-letters/${inbound.name}/k~deadletter198/replay`);
    expect(one.status).toBe(409);
    expect(one.body.error.code).toBe('erased_customer');
    const all = await w.admin('POST', '/dead-letters/replay');
    expect(all.body).toMatchObject({ replayed: 0, refused: 1 });
    expect(await (await inbound.getJob('k~deadletter198'))!.getState()).toBe('failed');
    // A new message from that number afterwards is a new customer, and is not refused.
    expect(await w.t.app.models.Identity.countDocuments({ key: `phone:${phone}` })).toBe(0);
  });
});

describe('erasure without DATA_KEY', () => {
  it('answers 503 data_key_missing and erases nothing', async () => {
    const t = await startTestApp({ DATA_KEY: undefined }, { role: 'api' });
    try {
      const res = await fetch(`${t.baseUrl}/api/customers/65a000000000000000000009`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${t.app.config.adminToken}` },
      });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('data_key_missing');
      expect(await t.app.mongo.connection.db!.collection('erasures').countDocuments()).toBe(0);
    } finally {
      await t.stop();
    }
  });
});

describe('erased opt-outs and DATA_KEY', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld();
    await w.addAgent({ slackUserId: 'U0STOPPER', name: 'Stan', inboxChannelId: 'C0STOPPER' });
  });
  afterAll(() => w.stop());

  /** The erasure service another deployment of the same database would build from `env`. */
  const serviceFor = (env: Record<string, string | undefined>) =>
    createErasureService({
      models: w.t.app.models,
      redis: w.t.app.redis,
      prefix: w.t.app.config.queuePrefix,
      log: w.t.app.log,
      ...markerKeysOf(loadConfig(testEnv(env))),
    });

  it('does not recreate an erased customer when a job queued before the erasure is retried behind the API (dashboard retry)', async () => {
    const phone = '+14155550196';
    await w.sms(phone, 'before erasure 196');
    const id = await eventually(
      async () => (await w.t.app.models.Identity.findOne({ key: `phone:${phone}` }).lean())?.customerId,
      Boolean,
    );
    // The identity is written before its customer (resolve.ts): wait for the customer too.
    await eventually(() => w.t.app.models.Customer.exists({ _id: id }), Boolean);
    const queuedAt = Date.now() - 120_000;
    expect((await w.admin('DELETE', `/customers/${String(id)}`)).status).toBe(200);
    // What bull-board's retry puts back on the queue: the old job, with its old timestamp.
    const inbound = w.t.app.queues.inbound.partitions[1]!;
    const job = await inbound.add(
      'message',
      {
        type: 'message',
        message: {
          key: 'twilio:SMretried196',
          channel: 'sms',
          provider: 'twilio',
          providerMessageId: 'SMretried196',
          from: { kind: 'phone', e164: phone },
          to: '+15550001111',
          text: 'before erasure 196',
          parts: [],
          sentAt: new Date(queuedAt).toISOString(),
          receivedAt: new Date(queuedAt).toISOString(),
        },
      } as never,
      { jobId: 'k~retried196', timestamp: queuedAt, attempts: 1 },
    );
    const state = await eventually(
      () => job.getState(),
      (s) => s === 'completed' || s === 'failed',
      10_000,
    );
    expect(state).toBe('completed');
    expect(await w.t.app.models.Identity.countDocuments({ key: `phone:${phone}` })).toBe(0);
    expect(await w.t.app.models.Message.countDocuments({ key: 'twilio:SMretried196' })).toBe(0);
    // Its data is gone too.
    expect(JSON.stringify((await inbound.getJob('k~retried196'))?.data)).not.toContain('4155550196');
  });

  it("keeps an erased customer's STOP across an ADMIN_TOKEN rotation, and across a DATA_KEY rotation with DATA_KEY_PREVIOUS", async () => {
    const phone = '+14155550197';
    await w.sms(phone, 'hello');
    await w.sms(phone, 'STOP');
    await eventually(
      () => w.t.app.models.OptOut.findOne({ identityKey: `phone:${phone}`, optedOut: true }).lean(),
      Boolean,
    );
    const id = (await w.t.app.models.Identity.findOne({ key: `phone:${phone}` }).lean())!.customerId;
    const erased = await w.admin('DELETE', `/customers/${String(id)}`);
    expect(erased.body.erasure.counts.optOutMarkers).toBe(1);
    const key = `phone:${phone}`;

    // A new admin token (same DATA_KEY): the STOP is still known. (Keyed by ADMIN_TOKEN, it was lost.)
    expect(
      await serviceFor({ ADMIN_TOKEN: 'a-completely-new-admin-token-42' }).isOptOutErased(key, 'sms'),
    ).toBe(true);
    // A new DATA_KEY without the old one: lost (and `rapport doctor` fails on it; see doctor.test.ts).
    const NEW = 'the-rotated-data-key-0123456789abcdef';
    expect(await serviceFor({ DATA_KEY: NEW }).isOptOutErased(key, 'sms')).toBe(false);
    // With the old key in DATA_KEY_PREVIOUS: found, and re-written under the new key…
    expect(
      await serviceFor({ DATA_KEY: NEW, DATA_KEY_PREVIOUS: TEST_DATA_KEY }).isOptOutErased(key, 'sms'),
    ).toBe(true);
    // …so the new key alone now knows it.
    expect(await serviceFor({ DATA_KEY: NEW }).isOptOutErased(key, 'sms')).toBe(true);
  });
});

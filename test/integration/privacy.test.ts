/**
 * Export and erasure end to end: customers created by signed webhooks, their messages posted into
 * Slack (emulator) and answered by an agent, merged through the admin API; then the privacy routes,
 * mounted as the app mounts the admin API (rate limit, audit log, adminAuth, express.json), export
 * and erase them. Afterwards every collection of the database is searched for the customer's phone
 * number (every spelling), name and message texts.
 */
import express from 'express';
import request from 'supertest';
import type { Types } from 'mongoose';
import { adminAuth } from '../../src/http/admin-auth';
import { adminAudit } from '../../src/http/admin-audit';
import { adminRateLimit } from '../../src/http/admin-rate-limit';
import { privacyRoutes } from '../../src/http/admin-privacy';
import { errorHandler, notFound } from '../../src/http/errors';
import { createErasureService, markerKeysOf, type ErasureService } from '../../src/privacy/erase';
import { eventually } from '../helpers/eventually';
import { TEST_ADMIN_TOKEN } from '../helpers/env';
import { startWorld, type World } from '../helpers/world';

const ALEX = { slackUserId: 'U0ALEX', name: 'Alex', inboxChannelId: 'C0ALEX' };
const auth = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` };

let w: World;
let http: express.Express;
let erasures: ErasureService;

function mount(service: ErasureService, limit = { perMinute: 10_000, prefix: '' }): express.Express {
  const { app } = w.t;
  const server = express();
  const api = express.Router();
  api.use(
    adminRateLimit({
      redis: app.redis,
      prefix: `${app.config.queuePrefix}${limit.prefix}`,
      perMinute: limit.perMinute,
      log: app.log,
    }),
  );
  api.use(adminAudit({ log: app.log.child({ component: 'admin' }) }));
  api.use(adminAuth({ tokens: app.config.adminTokens, redis: app.redis, prefix: app.config.queuePrefix }));
  api.use(express.json());
  api.use(
    privacyRoutes({ models: app.models, erasures: service, log: app.log.child({ component: 'admin' }) }),
  );
  server.use('/api', api);
  server.use(notFound());
  server.use(errorHandler(app.log));
  return server;
}

function service(extra: Partial<Parameters<typeof createErasureService>[0]> = {}): ErasureService {
  const { app } = w.t;
  return createErasureService({
    models: app.models,
    slack: app.slack,
    redis: app.redis,
    prefix: app.config.queuePrefix,
    ...markerKeysOf(app.config),
    log: app.log.child({ component: 'erasure' }),
    ...extra,
  });
}

/** Every document of every collection (raw driver) that contains one of `needles`. */
async function findEverywhere(needles: string[]): Promise<string[]> {
  const db = w.t.app.mongo.connection.db!;
  const hits: string[] = [];
  for (const { name } of await db.listCollections().toArray()) {
    if (name.startsWith('system.')) continue;
    for (const doc of await db.collection(name).find({}).toArray()) {
      const json = JSON.stringify(doc);
      for (const n of needles)
        if (json.includes(n)) hits.push(`${name} contains "${n}": ${json.slice(0, 300)}`);
    }
  }
  return hits;
}

const idOfKey = async (key: string) => (await w.t.app.models.Identity.findOne({ key }).lean())?.customerId;
/** The bot's messages in these threads once they stop changing (two reads 500 ms apart agree). */
async function botMessagesIn(threads: { channel: string; ts: string }[]) {
  const read = () =>
    threads.flatMap((t) =>
      w.slack
        .thread(t.channel, t.ts)
        .filter((m) => m.bot_id)
        .map((m) => ({ channel: m.channel, ts: m.ts })),
    );
  let last = read();
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const now = read();
    if (now.length === last.length) return now;
    last = now;
  }
  return last;
}

const settled = () =>
  eventually(
    async () => w.t.app.models.AgentPost.countDocuments({ state: 'pending' }),
    (n) => n === 0,
  );

beforeAll(async () => {
  w = await startWorld();
  await w.addAgent(ALEX);
  erasures = service();
  http = mount(erasures);
});
afterAll(() => w.stop());

describe('export and erasure of a merged customer', () => {
  const PHONE = '+14155550201';
  const NAME = 'Quintessa Vole';
  const PSID = '7000000000000201';
  const TEXTS = [
    'first sms ALPHA-201',
    'on whatsapp BRAVO-201',
    'from messenger CHARLIE-201',
    'Agent answer DELTA-201',
  ];
  let survivorId: string;
  let mergedId: string;
  let botMessages: { channel: string; ts: string }[] = [];
  let humanReplyTs: string;

  beforeAll(async () => {
    const { models } = w.t.app;
    // WhatsApp first, SMS last (one after the other): the agent's reply then goes out by SMS.
    expect((await w.cloudWhatsApp(PHONE.slice(1), TEXTS[1]!, { name: NAME })).status).toBe(200);
    await eventually(
      async () => models.AgentPost.countDocuments({ state: 'posted' }),
      (n) => n >= 1,
    );
    expect((await w.sms(PHONE, TEXTS[0]!)).status).toBe(200);
    expect((await w.messenger(PSID, TEXTS[2]!)).status).toBe(200);
    const phoneCustomer = await eventually(() => idOfKey(`phone:${PHONE}`), Boolean);
    const psidCustomer = await eventually(() => idOfKey(`psid:${'100000000000001'}:${PSID}`), Boolean);
    await eventually(
      async () => models.AgentPost.countDocuments({ state: 'posted' }),
      (n) => n >= 3,
    );
    await settled();

    // The agent answers in the phone customer's thread (a person's message: the bot cannot delete it).
    const thread = await eventually(() => models.CurrentThread.findById(phoneCustomer).lean(), Boolean);
    const reply = await w.agentReply(thread!.channel, thread!.ts, ALEX.slackUserId, TEXTS[3]!);
    humanReplyTs = reply.ts;
    const sent = await eventually(
      async () => w.twilio.messages().filter((m) => m.body === TEXTS[3]),
      (m) => m.length === 1,
      40_000,
    );
    expect((await w.twilioStatus(sent[0]!.sid, 'delivered')).status).toBe(200);
    await eventually(
      () => models.Message.findOne({ providerMessageId: sent[0]!.sid, 'status.state': 'delivered' }).lean(),
      Boolean,
    );

    const merged = await w.admin('POST', `/customers/${String(phoneCustomer)}/merge`, {
      otherId: String(psidCustomer),
    });
    expect(merged.status).toBe(200);
    survivorId = merged.body.merge.survivorId;
    mergedId = merged.body.merge.mergedId;

    // The customer opts out of SMS: the opt-out must outlive the erasure (as a marker).
    await w.sms(PHONE, 'STOP');
    await eventually(
      () => models.OptOut.findOne({ identityKey: `phone:${PHONE}`, optedOut: true }).lean(),
      Boolean,
    );
    await settled();

    const threads = await models.SlackThread.find({ customerId: { $in: [survivorId, mergedId] } }).lean();
    expect(threads.length).toBeGreaterThanOrEqual(2);
    botMessages = await botMessagesIn(threads);
    expect(botMessages.length).toBeGreaterThanOrEqual(threads.length + 3);
  }, 120_000);

  it('exports every message and identity of both merged customers, with the merge and owner history', async () => {
    for (const id of [survivorId, mergedId]) {
      const res = await request(http).get(`/api/customers/${id}/export`).set(auth);
      expect(res.status).toBe(200);
      const data = res.body;
      expect(data.customer.id).toBe(survivorId);
      expect(data.mergedCustomers.map((c: { id: string }) => c.id)).toEqual([mergedId]);
      expect(data.identities.map((i: { key: string }) => i.key).sort()).toEqual(
        [`phone:${PHONE}`, `psid:100000000000001:${PSID}`].sort(),
      );
      const texts = data.messages.map((m: { text: string | null }) => m.text);
      for (const t of TEXTS) expect(texts).toContain(t);
      expect(texts).toContain('STOP');
      // Both directions, with statuses for the outbound ones.
      expect(new Set(data.messages.map((m: { direction: string }) => m.direction))).toEqual(
        new Set(['in', 'out']),
      );
      const out = data.messages.find((m: { text: string }) => m.text === TEXTS[3]);
      expect(out.direction).toBe('out');
      expect(out.status.state).toBe('delivered');
      expect(out.statusHistory.map((h: { state: string }) => h.state)).toContain('delivered');
      expect(data.merges).toHaveLength(1);
      expect(data.merges[0]).toMatchObject({ survivorId, mergedId, status: 'done' });
      expect(data.ownerHistory.length).toBeGreaterThanOrEqual(1);
      expect(data.sends.some((s: { text: string; slack: unknown }) => s.text === TEXTS[3] && s.slack)).toBe(
        true,
      );
      expect(data.optOuts).toEqual([
        expect.objectContaining({ identityKey: `phone:${PHONE}`, channel: 'sms', optedOut: true }),
      ]);
      expect(data.slack.threads.length).toBeGreaterThanOrEqual(2);
      expect(data.slack.posts.some((p: { text: string }) => p.text.includes('CHARLIE-201'))).toBe(true);
      expect(data.customer.displayName).toBe(NAME);
    }
  });

  it('erases the customer from every collection and deletes every Slack message the bot posted for them', async () => {
    const needles = [
      PHONE,
      PHONE.slice(1),
      PHONE.slice(2),
      '(415) 555-0201',
      '415-555-0201',
      PSID,
      NAME,
      'Quintessa',
      ...TEXTS.map((t) => t.split(' ').pop()!),
    ];
    // The search can fail: before erasure it finds them.
    expect((await findEverywhere(needles)).length).toBeGreaterThan(0);
    // What the bot posted, read again now that everything has settled (a note queued by the STOP
    // after the first look, e.g. the opt-out notice, is the bot's too and is deleted with the rest).
    await settled();
    const threads = await w.t.app.models.SlackThread.find({
      customerId: { $in: [survivorId, mergedId] },
    }).lean();
    botMessages = await botMessagesIn(threads);
    // A rate limit in the middle is waited out in-line.
    w.slack.failNext('chat.delete', { status: 429, retryAfterSec: 1 });

    const res = await request(http).delete(`/api/customers/${mergedId}`).set(auth);
    expect(res.status).toBe(200);
    const { erasure } = res.body;
    expect(erasure).toMatchObject({ status: 'done', actor: 'admin', pending: [] });
    expect(erasure.customerIds.sort()).toEqual([survivorId, mergedId].sort());
    expect(erasure.counts).toMatchObject({
      customers: 2,
      identities: 2,
      optOutMarkers: 1,
      slackFailed: 0,
      slackHumanRemaining: 1,
    });
    expect(erasure.counts.messages).toBeGreaterThanOrEqual(6);
    expect(erasure.counts.slackDeleted).toBe(botMessages.length);

    expect(await findEverywhere(needles)).toEqual([]);

    const deleted = new Set(
      w.slack.callsTo('chat.delete').map((c) => `${String(c.args.channel)}/${String(c.args.ts)}`),
    );
    for (const m of botMessages) {
      expect(deleted).toContain(`${m.channel}/${m.ts}`);
      expect(w.slack.messages(m.channel).some((x) => x.ts === m.ts)).toBe(false);
    }
    // The agent's own reply cannot be deleted by a bot token: a notice in the thread says so.
    const remaining = w.slack.messages(ALEX.inboxChannelId);
    expect(remaining.some((m) => m.ts === humanReplyTs)).toBe(true);
    expect(
      remaining.filter((m) => m.bot_id && m.text.includes('data was erased')).length,
    ).toBeGreaterThanOrEqual(1);
    expect(remaining.filter((m) => m.bot_id).every((m) => !m.text.includes('201'))).toBe(true);

    // The opt-out is still known, by keyed hash only.
    expect(await erasures.isOptOutErased(`phone:${PHONE}`, 'sms')).toBe(true);
    expect(await erasures.isOptOutErased('phone:+14155550299', 'sms')).toBe(false);
    // The audit log lines name actor and ids, never the person.
    const mine = w.t.logs.filter(
      (l) => l.includes('customer.erase') || l.includes('"admin request"') || l.includes('erasure'),
    );
    expect(mine.some((l) => l.includes('"actor":"admin"') && l.includes(mergedId))).toBe(true);
    for (const l of mine) for (const n of needles) expect(l).not.toContain(n);
  });

  it('answers a second erase with the same finished erasure, and an export with 410', async () => {
    const again = await request(http).delete(`/api/customers/${survivorId}`).set(auth);
    expect(again.status).toBe(200);
    expect(again.body.erasure.status).toBe('done');
    const first = await request(http).get(`/api/customers/${mergedId}/erasure`).set(auth);
    expect(again.body.erasure.id).toBe(first.body.erasure.id);
    const exported = await request(http).get(`/api/customers/${survivorId}/export`).set(auth);
    expect(exported.status).toBe(410);
    expect(exported.body.error.code).toBe('erased');
    expect(await w.t.app.mongo.connection.db!.collection('erasures').countDocuments()).toBe(1);
  });

  it('starts a fresh customer when the same number writes again', async () => {
    await w.sms(PHONE, 'hello again ECHO-201');
    const fresh = await eventually(() => idOfKey(`phone:${PHONE}`), Boolean);
    expect(String(fresh)).not.toBe(survivorId);
    expect(String(fresh)).not.toBe(mergedId);
    // The identity names its new customer before the customer and the message are written: wait for them.
    const res = await eventually(
      () =>
        request(http)
          .get(`/api/customers/${String(fresh)}/export`)
          .set(auth),
      (r) => r.status === 200 && Array.isArray(r.body.messages) && r.body.messages.length > 0,
    );
    const customer = await w.t.app.models.Customer.findById(fresh).lean();
    expect(customer?.mergedInto).toBeUndefined();
    expect(res.body.messages.map((m: { text: string }) => m.text)).toContain('hello again ECHO-201');
    expect(res.body.messages.some((m: { text: string }) => (m.text ?? '').includes('ALPHA'))).toBe(false);
  });
});

describe('an erasure interrupted midway', () => {
  it('converges when re-run after a crash, and finishes its Slack part later when Slack rate-limits for long', async () => {
    const PHONE = '+14155550202';
    const { models } = w.t.app;
    await w.sms(PHONE, 'crash test FOXTROT-202');
    const id = (await eventually(() => idOfKey(`phone:${PHONE}`), Boolean)) as Types.ObjectId;
    await eventually(
      async () => models.AgentPost.countDocuments({ customerId: id, state: 'posted' }),
      (n) => n >= 1,
    );
    await settled();
    const card = (await models.CurrentThread.findById(id).lean())!;

    const crashing = service({
      onStep: (step) => {
        if (step === 'messages') throw new Error('simulated crash');
      },
    });
    await expect(crashing.erase(String(id), 'admin')).rejects.toThrow('simulated crash');
    expect(await models.Identity.countDocuments({ customerId: id })).toBe(0);
    expect((await crashing.find(String(id)))?.status).toBe('in_progress');

    // Re-run: Slack answers 429 with a Retry-After longer than the in-line budget, so the database
    // part finishes and Slack is left for resume().
    w.slack.failNext('chat.delete', { status: 429, retryAfterSec: 2 });
    const impatient = service({ slackBudgetMs: 500 });
    const partial = await request(mount(impatient))
      .delete(`/api/customers/${String(id)}`)
      .set(auth);
    expect(partial.status).toBe(202);
    expect(partial.body.erasure.pending).toEqual(['slack']);
    expect(await findEverywhere([PHONE, PHONE.slice(1), 'FOXTROT-202'])).toEqual([]);
    expect(w.slack.messages(card.channel).some((m) => m.ts === card.ts)).toBe(true);

    await new Promise((r) => setTimeout(r, 2_100));
    expect(await erasures.resume({ olderThanMs: 0 })).toEqual({ resumed: 1, failed: 0 });
    const done = await erasures.find(String(id));
    expect(done?.status).toBe('done');
    expect(w.slack.messages(card.channel).some((m) => m.ts === card.ts)).toBe(false);
    expect(await findEverywhere([PHONE, PHONE.slice(1), 'FOXTROT-202'])).toEqual([]);
  });
});

describe("admin API guard (the app as built: buildApp's /api)", () => {
  const api = (method: string, path: string, headers: Record<string, string> = {}) =>
    fetch(`${w.t.baseUrl}/api${path}`, { method, headers });

  it('rejects a missing or wrong token with 401 and erases nothing', async () => {
    const id = '65a000000000000000000001';
    for (const [method, path] of [
      ['GET', `/customers/${id}/export`],
      ['DELETE', `/customers/${id}`],
    ] as const) {
      const missing = await api(method, path);
      expect(missing.status).toBe(401);
      expect(missing.headers.get('www-authenticate')).toContain('Bearer');
      const wrong = await api(method, path, { authorization: 'Bearer not-the-admin-token-at-all' });
      expect(wrong.status).toBe(401);
    }
    expect(
      await w.t.app.mongo.connection.db!.collection('erasures').countDocuments({ requestedId: id }),
    ).toBe(0);
    // The same calls with the token reach the routes (so the 401s above came from the guard).
    expect((await api('GET', `/customers/${id}/export`, auth)).status).toBe(404);
  });

  it('answers 429 with Retry-After once a client fails authentication too often', async () => {
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let i = 0; i < 12; i++) {
      last = await api('GET', '/customers/65a000000000000000000002/export', {
        authorization: `Bearer wrong-${i}`,
      });
      statuses.push(last.status);
    }
    // Four failures above already counted for this peer in this window (or not, if a minute turned).
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
    expect(statuses.slice(-2)).toEqual([429, 429]);
    expect(Number(last!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(last!.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    // Clear this peer's count so later tests in this file are not blocked.
    for (const key of await w.t.app.redis.keys(`${w.t.app.config.queuePrefix}:admin-auth-fail:*`))
      await w.t.app.redis.del(key);
  });
});

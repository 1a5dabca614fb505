/**
 * The opt-out check before every send answers from Redis (src/router/opt-outs.ts) without a
 * database read, and it stays impossible to send to a number that opted out: a STOP is honoured
 * by the next reply and acknowledgement even when the Redis copy was lost in between (and the copy
 * is rebuilt), START lets replies through again, an erased customer's STOP still holds, a STOP
 * recorded by another process counts at once, and a rebuild racing a STOP, a START, an erasure or a
 * Redis wipe never leaves a copy that hides a STOP. Counted with the MongoDB driver's command
 * monitoring, as first-contact-commands.test.ts does.
 */
import { createHash, randomBytes } from 'node:crypto';
import { eventually } from '../helpers/eventually';
import { uniqueName } from '../helpers/env';
import { startWorld, type World } from '../helpers/world';
import { createErasureService, markerKeysOf } from '../../src/privacy/erase';
import { createRedisConnection } from '../../src/queue/connection';
import type { RedisClient } from '../../src/queue/connection';
import { createOptOuts, optOutsErased, optOutsKey, type OptOutsOptions } from '../../src/router/opt-outs';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const AGENT = { slackUserId: 'U0OPTHOT', name: 'Olga', inboxChannelId: 'C0OPTHOT' };

let w: World;
let other: RedisClient;
const seen: string[] = [];

beforeAll(async () => {
  w = await startWorld({ MONGODB_URI: `${MONGO}/rapport_${uniqueName('opthot')}?monitorCommands=true` });
  await w.t.app.mongo.ready;
  await w.addAgent(AGENT);
  // Another process's Redis connection (its own client, the same Redis).
  other = createRedisConnection(w.t.app.config.redisUrl, 'worker');
  w.t.app.mongo.connection
    .getClient()
    .on('commandStarted', (e: { commandName: string; command: Record<string, unknown> }) => {
      seen.push(`${e.commandName} ${String(e.command[e.commandName])}`);
    });
});
afterAll(async () => {
  other.disconnect();
  await w.stop();
});

const prefix = () => w.t.app.config.queuePrefix;
const copyKey = () => optOutsKey(prefix());
/** The Redis copy is lost (a restart without persistence, a failover): only this test's key. */
const loseCopy = () => w.t.app.redis.del(copyKey());
const complete = async () => (await w.t.app.redis.hget(copyKey(), 'complete')) !== null;
/** The copy is complete (rebuilt here if no check of the app has started it yet). */
async function built() {
  if (!(await complete())) await anotherProcess().rebuild();
  expect(await eventually(complete, Boolean)).toBe(true);
}
const optOutReads = () => seen.filter((c) => c === 'find opt_outs' || c === 'find erased_opt_outs').length;

const erasuresOf = () =>
  createErasureService({
    models: w.t.app.models,
    redis: other,
    prefix: prefix(),
    log: w.t.app.log,
    ...markerKeysOf(w.t.app.config),
  });

/** What another process builds: its own opt-outs over the same Redis and database. */
function anotherProcess(over: Partial<OptOutsOptions> = {}) {
  const erasures = erasuresOf();
  return createOptOuts({
    models: w.t.app.models,
    redis: other,
    prefix: prefix(),
    log: w.t.app.log,
    erased: {
      isErased: (k, c) => erasures.isOptOutErased(k, c),
      markerIds: (k, c) => erasures.optOutMarkerIds(k, c),
      allMarkerIds: () => erasures.erasedOptOutIds(),
    },
    ...over,
  });
}

async function threadWith(text: string): Promise<{ channel: string; ts: string }> {
  const channel = AGENT.inboxChannelId;
  const card = await eventually(
    async () =>
      w.slack
        .messages(channel)
        .filter((m) => m.metadata?.event_type === 'rapport_card')
        .find((c) => w.slack.thread(channel, c.ts).some((r) => r.text.includes(text))),
    Boolean,
  );
  if (!card) throw new Error(`no thread shows "${text}"`);
  return { channel, ts: card.ts };
}

const noteIn = (thread: { channel: string; ts: string }, text: string) =>
  eventually(
    async () => w.slack.thread(thread.channel, thread.ts).some((m) => m.text.includes(text)),
    Boolean,
  );

/** The agent replies; the settled send, and the opt-out reads the reply cost. */
async function agentReplies(thread: { channel: string; ts: string }, text: string) {
  seen.length = 0;
  const reply = await w.agentReply(thread.channel, thread.ts, AGENT.slackUserId, text);
  expect(reply.res.status).toBe(200);
  const key = `slack:${thread.channel}:${reply.ts}`;
  const send = await eventually(
    () => w.t.app.models.CustomerSend.findOne({ key }).lean(),
    (s) => !!s && ['sent', 'failed'].includes(s.state),
  );
  return { send, reads: optOutReads() };
}

const textsTo = (phone: string, body?: string) =>
  w.twilio.messages().filter((m) => m.to === phone && (body === undefined || m.body === body));

const newSid = () => `SM${randomBytes(16).toString('hex')}`;

/** The acknowledgement of the message with Twilio sid `sid`, once it has settled. */
const ackOf = (sid: string) =>
  eventually(
    () => w.t.app.models.CustomerSend.findOne({ key: `ack:twilio:${sid}` }).lean(),
    (s) => !!s && ['sent', 'failed'].includes(s.state),
  );

/** A customer writes by SMS; their thread, once the acknowledgement (if one is due) has settled. */
async function writes(phone: string, text: string, ack = true) {
  const sid = newSid();
  expect((await w.sms(phone, text, sid)).status).toBe(200);
  const thread = await threadWith(text);
  if (ack) await ackOf(sid);
  expect(await eventually(complete, Boolean)).toBe(true);
  return thread;
}

describe('opt-outs answered from Redis', () => {
  it('a reply reads no opt-out from the database; after a STOP it is not sent, even with the Redis copy lost in between', async () => {
    const phone = '+14155550701';
    const thread = await writes(phone, `hello ${uniqueName('')}`);
    const before = await agentReplies(thread, 'Reply 701 a');
    expect(before.send?.state).toBe('sent');
    expect(before.reads).toBe(0);

    await w.sms(phone, 'STOP');
    await noteIn(thread, 'opted out of SMS');
    await loseCopy();
    const after = await agentReplies(thread, 'Reply 701 b');
    expect(after.send).toMatchObject({ state: 'failed', failure: { reason: 'opted_out' } });
    // Without the copy the database answered, and the copy was rebuilt with the STOP in it.
    expect(after.reads).toBeGreaterThanOrEqual(1);
    expect(await eventually(complete, Boolean)).toBe(true);
    const rebuilt = await agentReplies(thread, 'Reply 701 c');
    expect(rebuilt.send).toMatchObject({ state: 'failed', failure: { reason: 'opted_out' } });
    expect(textsTo(phone, 'Reply 701 b')).toHaveLength(0);
    expect(textsTo(phone, 'Reply 701 c')).toHaveLength(0);
  });

  it('a number that opted out before it ever wrote gets no acknowledgement, the copy lost or not', async () => {
    for (const [phone, lose] of [
      ['+14155550702', false],
      ['+14155550703', true],
    ] as const) {
      // A claim code to it was refused by the provider as opted out (delivery.ts `refused`).
      await anotherProcess().record(`phone:${phone}`, 'sms', true);
      await built();
      if (lose) await loseCopy();
      const sid = newSid();
      expect((await w.sms(phone, `hello ${uniqueName('')}`, sid)).status).toBe(200);
      expect(await ackOf(sid)).toMatchObject({ state: 'failed', failure: { reason: 'opted_out' } });
      expect(textsTo(phone)).toHaveLength(0);
    }
  });

  it('START lets replies through again, answered from Redis', async () => {
    const phone = '+14155550704';
    const thread = await writes(phone, `hello ${uniqueName('')}`);
    await w.sms(phone, 'STOP');
    await noteIn(thread, 'opted out of SMS');
    expect((await agentReplies(thread, 'Reply 704 a')).send?.state).toBe('failed');
    await w.sms(phone, 'START');
    await noteIn(thread, 'opted back in');
    const back = await agentReplies(thread, 'Reply 704 b');
    expect(back.send?.state).toBe('sent');
    expect(back.reads).toBe(0);
    expect(textsTo(phone, 'Reply 704 b')).toHaveLength(1);
  });

  it("an erased customer's STOP still holds when the number writes again, and after the copy is rebuilt", async () => {
    const phone = '+14155550705';
    const thread = await writes(phone, `hello ${uniqueName('')}`);
    await w.sms(phone, 'STOP');
    await noteIn(thread, 'opted out of SMS');
    const identity = await w.t.app.models.Identity.findOne({ key: `phone:${phone}` }).lean();
    const erased = await w.admin('DELETE', `/customers/${String(identity!.customerId)}`);
    expect(erased.body.erasure.counts.optOutMarkers).toBe(1);
    // The copy holds the marker's keyed hash (as the database does), not the number.
    const [marker] = erasuresOf().optOutMarkerIds(`phone:${phone}`, 'sms');
    const fields = Object.keys(await w.t.app.redis.hgetall(copyKey()));
    expect(fields).toContain(`e:${marker}`);
    expect(fields.some((f) => f.includes('4155550705'))).toBe(false);
    // Nor the plain hash of its STOP, which a number could be found from.
    const plain = createHash('sha256').update(`phone:${phone}|sms`).digest('hex').slice(0, 40);
    expect(fields).not.toContain(`s:${plain}`);

    for (const lose of [false, true]) {
      await built();
      if (lose) {
        await loseCopy();
        await anotherProcess().rebuild();
      }
      // The first time a new customer (acknowledged, or rather not), then a returning one.
      const newThread = await writes(phone, `again ${uniqueName('')}`, !lose);
      const reply = await agentReplies(newThread, `Reply 705 ${String(lose)}`);
      expect(reply.send).toMatchObject({ state: 'failed', failure: { reason: 'opted_out' } });
      // Told from the database (the copy only says where to look): the kept STOP was found there.
      expect(reply.reads).toBeGreaterThanOrEqual(1);
    }
    expect(textsTo(phone).filter((m) => m.body?.startsWith('Reply 705'))).toHaveLength(0);
  });

  it('a STOP recorded by another process counts at once', async () => {
    const phone = '+14155550706';
    const thread = await writes(phone, `hello ${uniqueName('')}`);
    await anotherProcess().record(`phone:${phone}`, 'sms', true);
    const reply = await agentReplies(thread, 'Reply 706');
    expect(reply.send).toMatchObject({ state: 'failed', failure: { reason: 'opted_out' } });
    expect(textsTo(phone, 'Reply 706')).toHaveLength(0);
  });
});

describe('a rebuild of the Redis copy', () => {
  const key = (n: number) => `phone:+1415555${String(n).padStart(4, '0')}`;

  it('racing a STOP and a START: the STOP holds, the START is answered by the database (never blocked)', async () => {
    const writer = anotherProcess();
    await writer.record(key(801), 'sms', true);
    await loseCopy();
    const rebuilding = anotherProcess({
      // After the rebuild read the database: a STOP and a START written meanwhile.
      onLoaded: async () => {
        await writer.record(key(802), 'sms', true);
        await writer.record(key(801), 'sms', false);
      },
    });
    expect(await rebuilding.rebuild()).toBe(true);
    expect(await complete()).toBe(true);
    expect(await rebuilding.isOptedOut(key(802), 'sms')).toBe(true);
    expect(await anotherProcess().isOptedOut(key(801), 'sms')).toBe(false);
  });

  it('does not complete when Redis is wiped or an erasure deletes opt-outs while it runs', async () => {
    const writer = anotherProcess();
    await writer.record(key(803), 'sms', true);
    for (const meanwhile of [
      // Wiped after the read, and a STOP written after the wipe.
      async () => {
        await loseCopy();
        await writer.record(key(804), 'sms', true);
      },
      async () => optOutsErased(other, prefix(), [{ identityKey: key(803), channel: 'sms' }]),
    ]) {
      await loseCopy();
      const rebuilding = anotherProcess({ onLoaded: meanwhile });
      expect(await rebuilding.rebuild()).toBe(false);
      expect(await complete()).toBe(false);
      // Until a rebuild completes, the database answers (and the check starts one).
      seen.length = 0;
      const checking = anotherProcess();
      expect(await checking.isOptedOut(key(803), 'sms')).toBe(true);
      expect(await checking.isOptedOut(key(804), 'sms')).toBe(true);
      expect(optOutReads()).toBeGreaterThanOrEqual(2);
      expect(await eventually(complete, Boolean)).toBe(true);
      await eventually(
        async () => other.exists(`${prefix()}:lock:{optouts}:rebuild`),
        (n) => n === 0,
      );
    }
    seen.length = 0;
    expect(await anotherProcess().isOptedOut(key(804), 'sms')).toBe(true);
    expect(await anotherProcess().isOptedOut(key(805), 'sms')).toBe(false);
    expect(optOutReads()).toBe(1);
  });
});

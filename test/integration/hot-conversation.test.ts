/**
 * The router's hot copy of the conversation (src/router/hot-state.ts `createHotConversations`),
 * through the public paths on real Redis and the real MongoDB-protocol server: a returning
 * customer's message reads and writes no conversation command, and every other writer of the
 * conversation — an agent's reply, close, a handoff — is seen by the very next message (the SLA
 * clock starts again, the conversation reopens, the new owner is recorded); the quiet-period
 * acknowledgement is measured from the last message, not from the lagging stored one.
 */
import { eventually } from '../helpers/eventually';
import { uniqueName } from '../helpers/env';
import { startWorld, type World } from '../helpers/world';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const ANA = { slackUserId: 'U0CONANA', name: 'Ana', inboxChannelId: 'C0CONANA' };
const BEN = { slackUserId: 'U0CONBEN', name: 'Ben', inboxChannelId: 'C0CONBEN' };
/** Short enough to wait out in a test; the messages below keep seconds of margin either side. */
const QUIET_MS = 8_000;

let w: World;
const seen: string[] = [];

beforeAll(async () => {
  w = await startWorld({
    MONGODB_URI: `${MONGO}/rapport_${uniqueName('hotconv')}?monitorCommands=true`,
    ACK_QUIET_PERIOD: `${QUIET_MS / 1000}s`,
  });
  await w.t.app.mongo.ready;
  await w.addAgent(ANA);
  await w.addAgent(BEN);
  w.t.app.mongo.connection
    .getClient()
    .on('commandStarted', (e: { commandName: string; command: Record<string, unknown> }) =>
      seen.push(`${e.commandName} ${String(e.command[e.commandName])}`),
    );
});
afterAll(() => w.stop());

const models = () => w.t.app.models;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends an SMS and waits until it is routed (stored, and no inbound job left). */
async function sms(from: string, text: string): Promise<string> {
  expect((await w.sms(from, text)).status).toBe(200);
  const m = await eventually(() => models().Message.findOne({ text }).lean(), Boolean);
  await eventually(
    async () =>
      Object.values(await w.t.app.queues.inbound.getJobCounts('active', 'waiting', 'delayed', 'prioritized')),
    (n) => n.every((c) => c === 0),
  );
  return String(m!.customerId);
}

/** The inbox channel and thread the post showing `text` went to, once posted. */
async function threadOf(text: string): Promise<{ channel: string; ts: string; agent: typeof ANA }> {
  const post = await eventually(
    async () =>
      (await models().AgentPost.find({ state: 'posted' }).lean()).find((p) => p.text.includes(text))?.slack,
    Boolean,
  );
  const channel = post!.channel;
  const ts = await eventually(
    async () => w.slack.messages(channel).find((m) => m.text.includes(text))?.thread_ts,
    Boolean,
  );
  return { channel, ts: ts!, agent: channel === ANA.inboxChannelId ? ANA : BEN };
}

const conversation = (id: string) => models().Conversation.findById(id).lean();
const acks = (id: string) => models().CustomerSend.countDocuments({ customerId: id, origin: 'auto' });

describe("the router's hot conversation", () => {
  it("a returning customer's message sends no conversation command", async () => {
    const c = await sms('+14155550501', `first ${uniqueName('')}`);
    seen.length = 0;
    await sms('+14155550501', `again ${uniqueName('')}`);
    expect(seen.filter((s) => s.endsWith(' conversations'))).toEqual([]);
    // MongoDB stays the record of what Rapport decides with.
    expect(await conversation(c)).toMatchObject({ open: true, awaitingSince: expect.any(Date) });
  });

  it("a returning customer's message takes the conversation lock with its copy, and files the copy as it releases: two Redis exchanges", async () => {
    const c = await sms('+14155550521', `first ${uniqueName('')}`);
    // Every exchange of the process's Redis client (a MULTI…EXEC is one) and the keys it names.
    const sent: string[][] = [];
    const client = w.t.app.redis as unknown as {
      sendCommand: (cmd: { name: string; args: unknown[] }, s?: unknown) => unknown;
    };
    const send = client.sendCommand;
    let batch: string[] | undefined;
    client.sendCommand = function (this: unknown, cmd: { name: string; args: unknown[] }, s?: unknown) {
      const words = [cmd.name, ...cmd.args.map(String)];
      if (cmd.name === 'multi') sent.push((batch = words));
      else if (batch) batch.push(...words);
      else sent.push(words);
      if (cmd.name === 'exec') batch = undefined;
      return send.call(this, cmd, s);
    };
    try {
      await sms('+14155550521', `again ${uniqueName('')}`);
    } finally {
      client.sendCommand = send;
    }
    const conversationKey = (k: string) => k.includes(c) && /conversation|:conv$|:cgen$/.test(k);
    const exchanges = sent.filter((e) => e.some(conversationKey));
    // Lock + copy read (one script), then the copy filed by the script that releases the lock.
    expect(exchanges.map((e) => e[0])).toEqual([
      expect.stringMatching(/^eval/),
      expect.stringMatching(/^eval/),
    ]);
    // No MULTI on this connection at all (the lock's nor the Slack outbox listing's): ioredis builds
    // each as a Pipeline copying BullMQ's ~50 script methods, the worker's largest source of garbage
    // outliving the young generation (src/queue/lock.ts `TAKE_AND_READ`).
    expect(sent.filter((e) => e[0] === 'multi')).toEqual([]);
  });

  it("an agent's reply, then a new customer message: the customer is waiting again and the SLA clock restarts", async () => {
    const first = `reply first ${uniqueName('')}`;
    const c = await sms('+14155550511', first);
    const { channel, ts, agent } = await threadOf(first);
    await w.agentReply(channel, ts, agent.slackUserId, 'On it');
    await eventually(
      async () => (await conversation(c))?.awaitingSince,
      (a) => a == null,
    );
    const repliedAt = Date.now();
    await sms('+14155550511', `after reply ${uniqueName('')}`);
    const since = (await conversation(c))?.awaitingSince;
    expect(since?.getTime()).toBeGreaterThanOrEqual(repliedAt - 1000);
    const jobs = await w.t.app.queues.timers.getJobs(['delayed', 'waiting', 'active', 'completed']);
    expect(jobs.map((j) => j.id)).toContain(`sla~remind~${c}~${since!.getTime()}`);
  });

  it('a close, then a message: the conversation reopens', async () => {
    const first = `close first ${uniqueName('')}`;
    const c = await sms('+14155550521', first);
    const { channel, agent } = await threadOf(first);
    expect((await w.command(agent.slackUserId, channel, `close ${c}`)).status).toBe(200);
    await eventually(
      async () => (await conversation(c))?.open,
      (o) => o === false,
    );
    await sms('+14155550521', `reopen ${uniqueName('')}`);
    expect(await conversation(c)).toMatchObject({ open: true, awaitingSince: expect.any(Date) });
  });

  it('a handoff, then a message: the conversation records the new owner', async () => {
    const first = `handoff first ${uniqueName('')}`;
    const c = await sms('+14155550531', first);
    const { channel, agent } = await threadOf(first);
    const to = agent === ANA ? BEN : ANA;
    const toId = String((await models().Agent.findOne({ slackUserId: to.slackUserId }).lean())!._id);
    expect((await w.command(agent.slackUserId, channel, `handoff <@${to.slackUserId}> ${c}`)).status).toBe(
      200,
    );
    await eventually(
      async () => (await conversation(c))?.ownerAgentId,
      (o) => o === toId,
    );
    await sms('+14155550531', `after handoff ${uniqueName('')}`);
    expect((await conversation(c))?.ownerAgentId).toBe(toId);
  });

  it('acknowledges the first message after a quiet period once, measured from the last message', async () => {
    const phone = '+14155550541';
    const c = await sms(phone, `quiet 1 ${uniqueName('')}`);
    expect(await acks(c)).toBe(1);
    // Two more messages less than the quiet period apart (the third is more than it after the
    // first, whose time is the stored one): no acknowledgement.
    await sleep(QUIET_MS / 2 + 500);
    await sms(phone, `quiet 2 ${uniqueName('')}`);
    await sleep(QUIET_MS / 2 + 500);
    await sms(phone, `quiet 3 ${uniqueName('')}`);
    expect(await acks(c)).toBe(1);
    await sleep(QUIET_MS + 1000);
    await sms(phone, `quiet 4 ${uniqueName('')}`);
    expect(await acks(c)).toBe(2);
    await eventually(
      async () => w.twilio.messages().filter((m) => m.to === phone).length,
      (n) => n === 2,
    );
  });
});

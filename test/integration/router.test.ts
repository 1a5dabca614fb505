/**
 * Owner routing and the agents' Slack side, end to end: signed webhooks in, the real queues and
 * database, the real @slack/web-api and twilio SDKs against local emulators, signed Slack events back.
 */
import { eventually } from '../helpers/eventually';
import { ESCALATION, startWorld, type World } from '../helpers/world';
import { signSlackRequest } from '../../src/channels/slack/signature';
import { conversationChanged } from '../../src/router/hot-state';

const ALEX = { slackUserId: 'U0ALEX', name: 'Alex', inboxChannelId: 'C0ALEX' };
const SAM = { slackUserId: 'U0SAM', name: 'Sam', inboxChannelId: 'C0SAM' };

describe('owner routing and Slack threads', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ SLA_FIRST_RESPONSE: '3s', SLA_ESCALATE: '5s' });
    await w.addAgent(ALEX);
    await w.addAgent(SAM);
  });
  afterAll(() => w.stop());

  const threadIn = (channel: string) =>
    w.slack.messages(channel).filter((m) => m.metadata?.event_type === 'rapport_card');
  const repliesOf = (channel: string, ts: string) => w.slack.thread(channel, ts).slice(1);
  const cardsFor = async (customerText: string) => {
    for (const channel of [ALEX.inboxChannelId, SAM.inboxChannelId]) {
      for (const card of threadIn(channel)) {
        if (repliesOf(channel, card.ts).some((r) => r.text.includes(customerText))) return { channel, card };
      }
    }
    return undefined;
  };

  it('posts SMS then WhatsApp from one number into one thread, in order, after one card', async () => {
    expect((await w.sms('+14155550101', 'first on sms')).status).toBe(200);
    expect((await w.twilioWhatsApp('+14155550101', 'then on whatsapp')).status).toBe(200);
    const found = await eventually(
      () => cardsFor('first on sms'),
      (f) =>
        !!f &&
        repliesOf(f.channel, f.card.ts).filter((r) => r.metadata?.event_type === 'rapport_post').length >= 2,
    );
    expect(found).toBeDefined();
    const posts = repliesOf(found!.channel, found!.card.ts).filter(
      (r) => r.text.includes('on sms') || r.text.includes('on whatsapp'),
    );
    expect(posts.map((p) => p.text)).toEqual([
      expect.stringContaining('*[SMS]* first on sms'),
      expect.stringMatching(/now writing on WhatsApp[\s\S]*\*\[WhatsApp\]\* then on whatsapp/),
    ]);
    // The customer's name (as WhatsApp reported it) or "Customer" labels the posts.
    expect(posts[1]?.username).toMatch(/\(WhatsApp\)$/);
    // One card for this customer across every inbox.
    const cards = [...threadIn(ALEX.inboxChannelId), ...threadIn(SAM.inboxChannelId)].filter((c) =>
      repliesOf(c.channel, c.ts).some((r) => r.text.includes('on sms')),
    );
    expect(cards).toHaveLength(1);
    // The first message was acknowledged once, naming the owner, on the app the customer used.
    const acks = await eventually(
      async () => w.twilio.messages().filter((m) => m.to === '+14155550101'),
      (m) => m.length >= 1,
    );
    const owner = found!.channel === ALEX.inboxChannelId ? 'Alex' : 'Sam';
    expect(acks).toHaveLength(1);
    expect(acks[0]?.body).toContain(`${owner} will reply here`);
  });

  it('assigns new customers to the least-loaded available agent and keeps a returning one with their owner', async () => {
    await w.sms('+14155550102', 'hello from 102');
    await w.sms('+14155550103', 'hello from 103');
    const a = await eventually(() => cardsFor('hello from 102'), Boolean);
    const b = await eventually(() => cardsFor('hello from 103'), Boolean);
    // 101 went to one agent; 102 to the other; 103 to whoever then had fewer (a tie: the older agent, Alex).
    const first = await cardsFor('first on sms');
    expect(first).toBeDefined();
    expect(a!.channel).not.toBe(first!.channel);
    expect(b!.channel).toBe(ALEX.inboxChannelId);
    const agents = (await w.admin('GET', '/agents')).body.agents as { name: string; openCustomers: number }[];
    const loads = agents.map((x) => x.openCustomers).sort();
    expect(loads[1]! - loads[0]!).toBeLessThanOrEqual(1);
    await w.sms('+14155550102', 'back again from 102');
    const again = await eventually(() => cardsFor('back again from 102'), Boolean);
    expect(again?.channel).toBe(a!.channel);
    expect(again?.card.ts).toBe(a!.card.ts);
  });

  it('hands a customer off with a command: a new thread for the new owner, a note in the old one, and the customer is told', async () => {
    await w.sms('+14155550104', 'please help 104');
    const before = await eventually(() => cardsFor('please help 104'), Boolean);
    const from = before!.channel === ALEX.inboxChannelId ? ALEX : SAM;
    const to = from === ALEX ? SAM : ALEX;
    const res = await w.command(
      from.slackUserId,
      before!.channel,
      `handoff <@${to.slackUserId}|${to.name.toLowerCase()}>`,
      before!.card.ts,
    );
    expect(res.status).toBe(200);
    expect(res.text).toContain(`now belongs to ${to.name}`);
    // The old thread says where the customer went (this waited without checking before).
    expect(
      await eventually(
        async () => repliesOf(before!.channel, before!.card.ts).some((r) => r.text.includes('Handed off')),
        Boolean,
      ),
    ).toBe(true);
    const told = await eventually(
      async () =>
        w.twilio
          .messages()
          .filter(
            (m) => m.to === '+14155550104' && (m.body ?? '').includes(`${to.name} will take care of you`),
          ),
      (m) => m.length === 1,
    );
    expect(told).toHaveLength(1);
    await w.sms('+14155550104', 'after handoff 104');
    const after = await eventually(() => cardsFor('after handoff 104'), Boolean);
    expect(after?.channel).toBe(to.inboxChannelId);
  });

  it('turns a signed thread reply into exactly one send; a replayed event, a bot message and a note add none', async () => {
    await w.sms('+14155550105', 'question 105');
    const { channel, card } = (await eventually(() => cardsFor('question 105'), Boolean))!;
    const agent = channel === ALEX.inboxChannelId ? ALEX : SAM;
    const reply = await w.agentReply(channel, card.ts, agent.slackUserId, 'Here is your answer');
    expect(reply.res.status).toBe(200);
    // Slack retries the same event (same event_id): nothing more is queued.
    const replay = await w.slackEvent(reply.body);
    expect(replay.status).toBe(200);
    // Our own bot's post in the thread, and an internal note.
    const botBody = w.eventBody(
      {
        type: 'message',
        subtype: 'bot_message',
        bot_id: w.slack.botId,
        channel,
        text: 'bot says',
        ts: '1800000000.000001',
        thread_ts: card.ts,
      },
      'EvBOT0001',
    );
    expect((await w.slackEvent(botBody)).status).toBe(200);
    await w.agentReply(channel, card.ts, agent.slackUserId, 'note: customer seems upset');
    await w.agentReply(channel, card.ts, agent.slackUserId, `<@${SAM.slackUserId}> can you check this?`);

    const sent = await eventually(
      async () =>
        w.twilio.messages().filter((m) => m.to === '+14155550105' && m.body === 'Here is your answer'),
      (m) => m.length >= 1,
    );
    await new Promise((r) => setTimeout(r, 1000));
    expect(
      w.twilio.messages().filter((m) => m.to === '+14155550105' && m.body === 'Here is your answer'),
    ).toHaveLength(1);
    expect(sent[0]?.from).toBe('+15550001111');
    expect(
      w.twilio
        .messages()
        .filter((m) => (m.body ?? '').includes('upset') || (m.body ?? '').includes('check this')),
    ).toHaveLength(0);
    // Visible in Slack: 📤 on the sent reply, 📝 on the notes.
    const thread = await eventually(
      async () => w.slack.thread(channel, card.ts),
      (t) => t.some((m) => m.ts === reply.ts && m.reactions.includes('outbox_tray')),
    );
    expect(thread.find((m) => m.ts === reply.ts)?.reactions).toContain('outbox_tray');
    expect(thread.find((m) => m.text === 'note: customer seems upset')?.reactions).toContain('memo');
  });

  it('rejects Slack requests with a bad signature (403) or a stale timestamp (403), and unsigned ones (401)', async () => {
    const body = JSON.stringify({
      type: 'event_callback',
      event_id: 'EvX',
      team_id: 'T',
      event: { type: 'message' },
    });
    expect((await w.slackEvent(body, signSlackRequest('wrong-secret', body))).status).toBe(403);
    expect(
      (await w.slackEvent(body, signSlackRequest('test-slack-signing-secret', body, Date.now() / 1000 - 600)))
        .status,
    ).toBe(403);
    const unsigned = await fetch(`${w.t.baseUrl}/slack/events`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    expect(unsigned.status).toBe(401);
    const challenge = JSON.stringify({ token: 'x', challenge: 'abc123', type: 'url_verification' });
    const verified = await w.slackEvent(challenge);
    expect(await verified.text()).toBe('abc123');
  });

  it('reminds the owner, then escalates, when nobody answers; a reply cancels both', async () => {
    await w.sms('+14155550106', 'waiting 106');
    const { channel, card } = (await eventually(() => cardsFor('waiting 106'), Boolean))!;
    const owner = channel === ALEX.inboxChannelId ? ALEX : SAM;
    const reminded = await eventually(
      async () => repliesOf(channel, card.ts).filter((r) => r.text.includes(':alarm_clock:')),
      (r) => r.length > 0,
    );
    expect(reminded[0]?.text).toContain(`<@${owner.slackUserId}>`);
    const escalated = await eventually(
      async () =>
        w.slack.messages(ESCALATION).filter((m) => m.text.includes('has waited') && m.text.includes(card.ts)),
      (m) => m.length > 0,
    );
    expect(escalated.filter((m) => m.text.includes(card.ts))).toHaveLength(1);

    await w.sms('+14155550107', 'waiting 107');
    const other = (await eventually(() => cardsFor('waiting 107'), Boolean))!;
    const agent = other.channel === ALEX.inboxChannelId ? ALEX : SAM;
    await w.agentReply(other.channel, other.card.ts, agent.slackUserId, 'On it!');
    await new Promise((r) => setTimeout(r, 6000));
    expect(repliesOf(other.channel, other.card.ts).some((r) => r.text.includes(':alarm_clock:'))).toBe(false);
    expect(
      w.slack
        .messages(ESCALATION)
        .some((m) => m.text.includes('waited') && m.text.includes(String(other.card.ts))),
    ).toBe(false);
  });

  it('waits out a 429 on one Slack channel without delaying another channel', async () => {
    // New customers until one thread is in each inbox (least-loaded assignment alternates them).
    const byChannel = new Map<string, { number: string; card: { ts: string } }>();
    for (let n = 108; n < 114 && byChannel.size < 2; n++) {
      const number = `+14155550${n}`;
      await w.sms(number, `warm ${n}`);
      const found = (await eventually(() => cardsFor(`warm ${n}`), Boolean))!;
      if (!byChannel.has(found.channel)) byChannel.set(found.channel, { number, card: found.card });
    }
    expect([...byChannel.keys()].sort()).toEqual([ALEX.inboxChannelId, SAM.inboxChannelId].sort());
    const [[aChannel, aFirst], [bChannel, bFirst]] = [...byChannel.entries()] as [
      [string, { number: string; card: { ts: string } }],
      [string, { number: string; card: { ts: string } }],
    ];
    const a = { channel: aChannel, card: aFirst.card };
    const b = { channel: bChannel, card: bFirst.card };
    // Retry-After long enough that the free channel's post, even on a loaded machine, lands first.
    w.slack.failNext('chat.postMessage', { status: 429, retryAfterSec: 8 }, { channel: a.channel });
    const started = Date.now();
    await w.sms(aFirst.number, 'limited a');
    await w.sms(bFirst.number, 'free b');
    await eventually(
      async () => repliesOf(b.channel, b.card.ts).some((r) => r.text.includes('free b')),
      Boolean,
    );
    const freeAt = Date.now() - started;
    await eventually(
      async () => repliesOf(a.channel, a.card.ts).some((r) => r.text.includes('limited a')),
      Boolean,
    );
    const limitedAt = Date.now() - started;
    expect(limitedAt).toBeGreaterThanOrEqual(7_500);
    expect(freeAt).toBeLessThan(limitedAt);
    expect(repliesOf(a.channel, a.card.ts).filter((r) => r.text.includes('limited a'))).toHaveLength(1);
  }, 60_000);
});

describe('verified claims across apps', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld();
    await w.addAgent(ALEX);
  });
  afterAll(() => w.stop());

  it('links a Messenger customer to their phone only after the code sent by SMS comes back on Messenger', async () => {
    // The phone number is already a customer (wrote by SMS).
    await w.sms('+14155550150', 'sms history');
    await eventually(
      async () => w.slack.messages(ALEX.inboxChannelId).length,
      (n) => n >= 1,
    );
    await w.messenger('7000000000000150', 'my number is +1 415 555 0150');
    const code = await eventually(
      async () =>
        w.twilio.messages().find((m) => m.to === '+14155550150' && /\d{6} is your code/.test(m.body ?? '')),
      Boolean,
    );
    const digits = /(\d{6}) is your code/.exec(code!.body!)![1]!;
    // A wrong code merges nothing.
    await w.messenger('7000000000000150', '000000' === digits ? '111111' : '000000');
    await new Promise((r) => setTimeout(r, 1500));
    const { Customer, Identity } = w.t.app.models;
    const psid = await Identity.findOne({ kind: 'psid' }).lean();
    const phone = await Identity.findOne({ key: 'phone:+14155550150' }).lean();
    expect(String(psid?.customerId)).not.toBe(String(phone?.customerId));
    // The right code links them: one customer with both identities.
    await w.messenger('7000000000000150', digits);
    const merged = await eventually(async () => {
      const p = await Identity.findOne({ kind: 'psid' }).lean();
      const q = await Identity.findOne({ key: 'phone:+14155550150' }).lean();
      return p && q && String(p.customerId) === String(q.customerId) ? p.customerId : undefined;
    }, Boolean);
    expect(merged).toBeDefined();
    const live = await Customer.find({ mergedInto: null }).lean();
    expect(live).toHaveLength(1);
    const res = await w.admin('GET', `/customers?phone=${encodeURIComponent('+14155550150')}`);
    expect(res.body.customers).toHaveLength(1);
    expect(res.body.customers[0].identities.map((i: { kind: string }) => i.kind).sort()).toEqual([
      'phone',
      'psid',
    ]);
  });
});

describe('away owners and deactivation', () => {
  let w: World;
  let alexId: string;
  beforeAll(async () => {
    w = await startWorld();
    const sam = await w.addAgent(SAM);
    alexId = (await w.addAgent({ ...ALEX, backupAgentId: sam.id })).id;
  });
  afterAll(() => w.stop());

  it('keeps the owner while away: the customer hears when they are back and who covers, the backup is mentioned, and back gives a summary', async () => {
    // Sam is busy with nobody; make Alex the owner by giving Sam a full load first.
    await w.admin(
      'PATCH',
      `/agents/${(await w.admin('GET', '/agents')).body.agents.find((a: { name: string }) => a.name === 'Sam').id}`,
      { capacity: 1 },
    );
    await w.sms('+14155550401', 'to sam');
    await eventually(
      async () => w.slack.messages(SAM.inboxChannelId).length,
      (n) => n >= 1,
    );
    await w.sms('+14155550402', 'hello alex');
    const card = (await eventually(async () => w.slack.messages(ALEX.inboxChannelId)[0], Boolean))!;
    expect((await w.command(ALEX.slackUserId, ALEX.inboxChannelId, 'away 23:59')).text).toContain(
      'You are away',
    );
    // Quiet period passed: the next message is acknowledged again, now with the away text.
    await w.t.app.models.Conversation.updateMany(
      {},
      { $set: { lastCustomerMessageAt: new Date(Date.now() - 13 * 3600_000) } },
    );
    // Written behind the app's back: the router's hot copies must stop counting (hot-state.ts).
    for (const c of await w.t.app.models.Conversation.find({}, { _id: 1 }).lean())
      await conversationChanged(w.t.app.redis, w.t.app.config.queuePrefix, c._id);
    await w.sms('+14155550402', 'are you there?');
    const away = await eventually(
      async () =>
        w.twilio
          .messages()
          .filter((m) => m.to === '+14155550402' && (m.body ?? '').includes('is away until')),
      (m) => m.length === 1,
    );
    expect(away[0]?.body).toContain('Sam can help you');
    await eventually(
      async () =>
        w.slack
          .thread(ALEX.inboxChannelId, card.ts)
          .some((m) => m.text.includes(`<@${SAM.slackUserId}>`) && m.text.includes('covering')),
      Boolean,
    );
    // Ownership stayed with Alex.
    const owner = await w.t.app.models.Customer.findOne({ ownerAgentId: alexId }).lean();
    expect(owner).not.toBeNull();
    const back = await w.command(ALEX.slackUserId, ALEX.inboxChannelId, 'back');
    expect(back.text).toMatch(/Welcome back, Alex\. While you were away: \d+ customer messages?/);
  });

  it("sends a covering teammate's reply in the owner's thread under the teammate's name, and ownership stays", async () => {
    const card = w.slack
      .messages(ALEX.inboxChannelId)
      .find((m) => m.metadata?.event_type === 'rapport_card')!;
    // The backup covers while the owner is away (README "Permissions").
    expect((await w.command(ALEX.slackUserId, ALEX.inboxChannelId, 'away')).text).toContain('Sam');
    await w.agentReply(ALEX.inboxChannelId, card.ts, SAM.slackUserId, 'Alex is out, I can help');
    const sent = await eventually(
      async () =>
        w.twilio
          .messages()
          .filter((m) => m.to === '+14155550402' && (m.body ?? '').startsWith('Alex is out')),
      (m) => m.length === 1,
    );
    expect(sent[0]?.body).toBe('Alex is out, I can help\n— Sam');
    expect(await w.t.app.models.Customer.countDocuments({ ownerAgentId: alexId })).toBeGreaterThan(0);
  });

  it('hands every customer of a deactivated agent to another agent and tells each customer', async () => {
    const res = await w.admin('PATCH', `/agents/${alexId}`, { active: false });
    expect(res.status).toBe(200);
    expect(res.body.reassignedCustomers).toBeGreaterThanOrEqual(1);
    const told = await eventually(
      async () =>
        w.twilio
          .messages()
          .filter((m) => m.to === '+14155550402' && (m.body ?? '').includes('Sam will take care of you')),
      (m) => m.length === 1,
    );
    expect(told).toHaveLength(1);
    expect(await w.t.app.models.Customer.countDocuments({ ownerAgentId: alexId })).toBe(0);
  });

  it('refuses admin requests without the bearer token and explains bad bodies', async () => {
    const unauth = await fetch(`${w.t.baseUrl}/api/agents`);
    expect(unauth.status).toBe(401);
    const bad = await w.admin('POST', '/agents', { slackUserId: 'nope', name: '' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/slackUserId/);
    expect((await w.admin('PATCH', '/agents/000000000000000000000000', { capacity: 3 })).status).toBe(404);
  });
});

describe('outbox sweep', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld();
    await w.addAgent(ALEX);
  });
  afterAll(() => w.stop());

  it('posts an item whose flush job was lost (a dead letter) when the sweep re-queues its outbox', async () => {
    await w.sms('+14155550501', 'before the outage');
    const card = (await eventually(async () => w.slack.messages(ALEX.inboxChannelId)[0], Boolean))!;
    const customer = await w.t.app.models.Customer.findOne({}).lean();
    // An item left pending with no flush job queued for it (as after a flush that gave up).
    await w.t.app.models.AgentPost.create({
      key: 'orphan-note-501',
      customerId: customer!._id,
      seq: 1_000_000,
      kind: 'note',
      text: 'left behind by a failed flush',
      state: 'pending',
    });
    await new Promise((r) => setTimeout(r, 500));
    expect(w.slack.thread(ALEX.inboxChannelId, card.ts).some((m) => m.text.includes('left behind'))).toBe(
      false,
    );
    expect(await w.t.app.router.sweepStale(0)).toBe(1);
    const posted = await eventually(
      async () => w.slack.thread(ALEX.inboxChannelId, card.ts).filter((m) => m.text.includes('left behind')),
      (m) => m.length === 1,
    );
    expect(posted).toHaveLength(1);
  });
});

/**
 * Who may act in Slack, through the public interface: signed `/rapport` commands, signed block
 * actions (the card's buttons, answered through `response_url`) and signed thread replies, against
 * the real app, with what the Slack and Twilio emulators recorded, the database and `/metrics`.
 *
 * The cast: Alex owns the customers; Sam is Alex's backup; Kim is another agent; Lee is a lead; Dee
 * was deactivated; U0STRANGER is a workspace member who is no agent at all.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Types } from 'mongoose';
import { REFUSAL_TEXT } from '../../src/router/authorize';
import { fixtureBytes } from '../helpers/fixtures';
import { eventually } from '../helpers/eventually';
import { startWorld, type World } from '../helpers/world';

const ALEX = { slackUserId: 'U0ALEX', name: 'Alex', inboxChannelId: 'C0ALEX' };
const SAM = { slackUserId: 'U0SAM', name: 'Sam', inboxChannelId: 'C0SAM' };
const KIM = { slackUserId: 'U0KIM', name: 'Kim', inboxChannelId: 'C0KIM' };
const LEE = { slackUserId: 'U0LEE', name: 'Lee', inboxChannelId: 'C0LEE' };
const DEE = { slackUserId: 'U0DEE', name: 'Dee', inboxChannelId: 'C0DEE' };
const STRANGER = 'U0STRANGER';

const NOT_AGENT = `:no_entry: ${REFUSAL_TEXT.not_agent}`;
const NOT_PERMITTED = `:no_entry: ${REFUSAL_TEXT.not_permitted}`;
const NOT_OWNER_OF_BOTH = `:no_entry: ${REFUSAL_TEXT.not_owner_of_both}`;

/** Records what Rapport posts to a button press's `response_url`. */
async function startResponseRecorder(): Promise<{ url: string; posts: unknown[]; server: Server }> {
  const posts: unknown[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/actions/T0/1/secret`, posts, server };
}

describe('who may act in Slack', () => {
  let w: World;
  let recorder: Awaited<ReturnType<typeof startResponseRecorder>>;
  let alexId: string;
  /** Alex's customers: `a` (+14155550701) and `b` (+14155550702, handed to Kim below). */
  const customer = { a: '', b: '' };
  const card = { a: '' };

  const cardOf = async (text: string) =>
    eventually(
      async () =>
        w.slack
          .messages(ALEX.inboxChannelId)
          .find(
            (m) =>
              m.metadata?.event_type === 'rapport_card' &&
              w.slack.thread(ALEX.inboxChannelId, m.ts).some((r) => r.text.includes(text)),
          ),
      Boolean,
    );
  const idOf = async (phone: string) =>
    String((await w.t.app.models.Identity.findOne({ key: `phone:${phone}` }).lean())?.customerId);
  const sentTo = (phone: string, text: string) =>
    w.twilio.messages().filter((m) => m.to === phone && (m.body ?? '').includes(text));
  const reactions = (channel: string, ts: string) =>
    w.slack
      .callsTo('reactions.add')
      .filter((c) => c.args.channel === channel && c.args.timestamp === ts)
      .map((c) => c.args.name);

  beforeAll(async () => {
    recorder = await startResponseRecorder();
    w = await startWorld();
    alexId = (await w.addAgent(ALEX)).id;
    await w.sms('+14155550701', 'hello from a');
    await w.sms('+14155550702', 'hello from b');
    card.a = (await cardOf('hello from a'))!.ts;
    await cardOf('hello from b');
    customer.a = await idOf('+14155550701');
    customer.b = await idOf('+14155550702');
    const sam = await w.addAgent(SAM);
    await w.admin('PATCH', `/agents/${alexId}`, { backupAgentId: sam.id });
    await w.addAgent(KIM);
    expect((await w.admin('POST', '/agents', { ...LEE, role: 'lead' })).body.role).toBe('lead');
    const dee = await w.addAgent(DEE);
    await w.admin('PATCH', `/agents/${dee.id}`, { active: false });
    // Alex gives b to Kim (Alex owns b, so this is allowed).
    const given = await w.command(
      ALEX.slackUserId,
      ALEX.inboxChannelId,
      `handoff <@${KIM.slackUserId}> ${customer.b}`,
    );
    expect(given.text).toContain('now belongs to Kim');
  });
  afterAll(async () => {
    await w.stop();
    await new Promise((r) => recorder.server.close(r));
  });

  it('the role is part of the agent record: default agent, set by POST and PATCH /api/agents, validated', async () => {
    const agents = (await w.admin('GET', '/agents')).body.agents as { name: string; role: string }[];
    expect(Object.fromEntries(agents.map((a) => [a.name, a.role]))).toMatchObject({
      Alex: 'agent',
      Lee: 'lead',
    });
    const bad = await w.admin('PATCH', `/agents/${alexId}`, { role: 'owner' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/role/);
  });

  it('a workspace member who is not an agent is refused every subcommand, with one answer whether or not the customer exists', async () => {
    const missing = new Types.ObjectId().toHexString();
    for (const sub of ['whois', 'close', 'template', 'link +14155550799', `handoff <@${STRANGER}>`]) {
      const real = await w.command(STRANGER, 'C0RANDOM', `${sub} ${customer.a}`);
      const none = await w.command(STRANGER, 'C0RANDOM', `${sub} ${missing}`);
      expect({ sub, text: real.text }).toEqual({ sub, text: NOT_AGENT });
      expect(none.text).toBe(real.text);
    }
    // In the customer's own thread too, and for away/back.
    expect((await w.command(STRANGER, ALEX.inboxChannelId, 'whois', card.a)).text).toBe(NOT_AGENT);
    expect((await w.command(STRANGER, ALEX.inboxChannelId, 'away')).text).toBe(NOT_AGENT);
    // Nothing happened: still Alex's, still open.
    const c = await w.t.app.models.Customer.findById(customer.a).lean();
    expect(c?.ownerAgentId).toBe(alexId);
    expect((await w.t.app.models.Conversation.findById(customer.a).lean())?.open).toBe(true);
  });

  it('a deactivated agent is refused like a non-agent', async () => {
    expect((await w.command(DEE.slackUserId, ALEX.inboxChannelId, 'whois', card.a)).text).toBe(NOT_AGENT);
    expect((await w.command(DEE.slackUserId, DEE.inboxChannelId, `close ${customer.a}`)).text).toBe(
      NOT_AGENT,
    );
    expect((await w.command(DEE.slackUserId, DEE.inboxChannelId, 'away')).text).toBe(NOT_AGENT);
  });

  it("an agent acting on another agent's customer is refused exactly as for a customer that does not exist", async () => {
    const missing = new Types.ObjectId().toHexString();
    const theirs = await w.command(KIM.slackUserId, KIM.inboxChannelId, `whois ${customer.a}`);
    const none = await w.command(KIM.slackUserId, KIM.inboxChannelId, `whois ${missing}`);
    expect(theirs.text).toBe(NOT_PERMITTED);
    expect(none.text).toBe(NOT_PERMITTED);
    expect(theirs.text).not.toContain('14155550701');
    const handoff = await w.command(
      KIM.slackUserId,
      ALEX.inboxChannelId,
      `handoff <@${KIM.slackUserId}>`,
      card.a,
    );
    expect(handoff.text).toBe(NOT_PERMITTED);
    expect((await w.t.app.models.Customer.findById(customer.a).lean())?.ownerAgentId).toBe(alexId);
    // The backup does not cover while the owner is available.
    expect((await w.command(SAM.slackUserId, ALEX.inboxChannelId, 'whois', card.a)).text).toBe(NOT_PERMITTED);
    // The owner may.
    expect((await w.command(ALEX.slackUserId, ALEX.inboxChannelId, 'whois', card.a)).text).toContain(
      'phone:+14155550701',
    );
  });

  it('a lead acts on any customer: whois, close and handoff of a customer they do not own', async () => {
    const whois = await w.command(LEE.slackUserId, LEE.inboxChannelId, `whois ${customer.b}`);
    expect(whois.text).toContain('phone:+14155550702');
    const close = await w.command(LEE.slackUserId, LEE.inboxChannelId, `close ${customer.b}`);
    expect(close.text).toMatch(/^Closed\./);
    expect((await w.t.app.models.Conversation.findById(customer.b).lean())?.open).toBe(false);
    const handoff = await w.command(
      LEE.slackUserId,
      LEE.inboxChannelId,
      `handoff <@${SAM.slackUserId}> ${customer.b}`,
    );
    expect(handoff.text).toContain('now belongs to Sam');
    expect((await w.t.app.models.Customer.findById(customer.b).lean())?.ownerAgentId).not.toBe(alexId);
    const missing = await w.command(
      LEE.slackUserId,
      LEE.inboxChannelId,
      `whois ${new Types.ObjectId().toHexString()}`,
    );
    expect(missing.text).toBe(`:no_entry: ${REFUSAL_TEXT.unknown_customer}`);
  });

  it("a reply from a non-agent, another agent or an idle backup is never sent: ⛔ and an ephemeral note instead; the owner's, a covering backup's and a lead's are", async () => {
    const tries = [
      { user: STRANGER, text: 'stranger says hi' },
      { user: DEE.slackUserId, text: 'dee says hi' },
      { user: KIM.slackUserId, text: 'kim says hi' },
      { user: SAM.slackUserId, text: 'sam says hi while alex is here' },
    ];
    for (const t of tries) {
      const { ts } = await w.agentReply(ALEX.inboxChannelId, card.a, t.user, t.text);
      const marked = await eventually(
        async () => reactions(ALEX.inboxChannelId, ts),
        (r) => r.length > 0,
      );
      expect({ who: t.user, marked }).toEqual({ who: t.user, marked: ['no_entry_sign'] });
      const notes = w.slack.callsTo('chat.postEphemeral').filter((c) => c.args.user === t.user);
      expect(notes.length).toBeGreaterThanOrEqual(1);
      expect(String(notes.at(-1)?.args.text)).toContain('Your reply was not sent to the customer.');
      expect(String(notes.at(-1)?.args.thread_ts)).toBe(card.a);
    }
    // The refusal note is not lost with Slack's answer: a failed ephemeral is tried again.
    const strangerNotes = () =>
      w.slack
        .callsTo('chat.postEphemeral')
        .filter((c) => c.args.user === STRANGER && c.args.thread_ts === card.a);
    const before = strangerNotes().length;
    w.slack.failNext('chat.postEphemeral', { status: 500 });
    const { ts: again } = await w.agentReply(ALEX.inboxChannelId, card.a, STRANGER, 'stranger tries again');
    // The emulator records the failed call too: a second one is the retry that reached the author.
    const told = await eventually(
      async () => strangerNotes().length - before,
      (n) => n >= 2,
    );
    expect(told).toBeGreaterThanOrEqual(2);
    expect(await reactions(ALEX.inboxChannelId, again)).toEqual(['no_entry_sign']);
    // The owner's reply, sent after the refused ones: when it arrives, none of those was sent.
    await w.agentReply(ALEX.inboxChannelId, card.a, ALEX.slackUserId, 'alex answers');
    await eventually(
      async () => sentTo('+14155550701', 'alex answers'),
      (m) => m.length === 1,
    );
    for (const t of tries) expect(sentTo('+14155550701', t.text)).toEqual([]);
    // Alex goes away: now Sam covers, and a lead may always answer; both are attributed.
    await w.command(ALEX.slackUserId, ALEX.inboxChannelId, 'away');
    await w.agentReply(ALEX.inboxChannelId, card.a, SAM.slackUserId, 'sam covers');
    await w.agentReply(ALEX.inboxChannelId, card.a, LEE.slackUserId, 'lee helps');
    const covered = await eventually(
      async () => [...sentTo('+14155550701', 'sam covers'), ...sentTo('+14155550701', 'lee helps')],
      (m) => m.length === 2,
    );
    expect(covered.map((m) => m.body).sort()).toEqual(['lee helps\n— Lee', 'sam covers\n— Sam']);
    await w.command(ALEX.slackUserId, ALEX.inboxChannelId, 'back');
  });

  it('the backup covers an offline owner too, and stops covering when the owner is available again', async () => {
    await w.admin('PATCH', `/agents/${alexId}`, { status: 'offline' });
    expect((await w.command(SAM.slackUserId, SAM.inboxChannelId, `whois ${customer.a}`)).text).toContain(
      'phone:+14155550701',
    );
    await w.admin('PATCH', `/agents/${alexId}`, { status: 'available' });
    expect((await w.command(SAM.slackUserId, SAM.inboxChannelId, `whois ${customer.a}`)).text).toBe(
      NOT_PERMITTED,
    );
  });

  it("the card's buttons obey the same rule: a stranger's Close is refused through response_url, the owner's works", async () => {
    const press = async (user: string) => {
      const payload = JSON.parse(
        new URLSearchParams(fixtureBytes('slack/block-actions.form').toString('utf8')).get('payload')!,
      );
      payload.user = {
        id: user,
        username: user.toLowerCase(),
        name: user.toLowerCase(),
        team_id: w.slack.teamId,
      };
      payload.team = { id: w.slack.teamId, domain: 'rapport-test' };
      payload.channel = { id: ALEX.inboxChannelId, name: 'alex-inbox' };
      payload.container = {
        type: 'message',
        message_ts: card.a,
        channel_id: ALEX.inboxChannelId,
        is_ephemeral: false,
      };
      payload.message = { ...payload.message, ts: card.a, thread_ts: card.a };
      payload.response_url = recorder.url;
      payload.actions = [
        {
          type: 'button',
          action_id: 'rapport_close',
          block_id: `rapport_card_${customer.a}`,
          value: customer.a,
          action_ts: '1.2',
        },
      ];
      const before = recorder.posts.length;
      const res = await w.interaction(payload);
      expect(res.status).toBe(200);
      const posts = await eventually(
        async () => recorder.posts.slice(before),
        (p) => p.length > 0,
      );
      return posts[0] as { text: string; response_type: string };
    };
    await w.sms('+14155550701', 'a writes again');
    await eventually(
      async () => (await w.t.app.models.Conversation.findById(customer.a).lean())?.open,
      (open) => open === true,
    );
    expect(await press(STRANGER)).toEqual({
      response_type: 'ephemeral',
      replace_original: false,
      text: NOT_AGENT,
    });
    expect(await press(KIM.slackUserId)).toMatchObject({ text: NOT_PERMITTED });
    expect((await w.t.app.models.Conversation.findById(customer.a).lean())?.open).toBe(true);
    expect((await press(ALEX.slackUserId)).text).toMatch(/^Closed\./);
    expect((await w.t.app.models.Conversation.findById(customer.a).lean())?.open).toBe(false);
  });

  it('/rapport link merges only for a lead or the owner of both customers', async () => {
    // Alex owns a; b (+14155550702) is now Sam's: Alex may not merge it into a, nor Kim into a.
    const alex = await w.command(ALEX.slackUserId, ALEX.inboxChannelId, 'link +14155550702', card.a);
    expect(alex.text).toBe(NOT_OWNER_OF_BOTH);
    const kim = await w.command(KIM.slackUserId, KIM.inboxChannelId, `link +14155550702 ${customer.a}`);
    expect(kim.text).toBe(NOT_PERMITTED);
    expect((await w.t.app.models.Customer.findById(customer.b).lean())?.mergedInto).toBeFalsy();
    // A backup covering for an away owner still may not merge.
    await w.command(ALEX.slackUserId, ALEX.inboxChannelId, 'away');
    const sam = await w.command(SAM.slackUserId, ALEX.inboxChannelId, 'link +14155550799', card.a);
    expect(sam.text).toBe(NOT_OWNER_OF_BOTH);
    await w.command(ALEX.slackUserId, ALEX.inboxChannelId, 'back');
    // The owner may attach a number nobody has; a lead may merge.
    const own = await w.command(ALEX.slackUserId, ALEX.inboxChannelId, 'link +14155550798', card.a);
    expect(own.text).toMatch(/^linked \+14155550798/);
    const lee = await w.command(LEE.slackUserId, LEE.inboxChannelId, `link +14155550702 ${customer.a}`);
    expect(lee.text).toMatch(/merged into this one/);
    expect(String((await w.t.app.models.Customer.findById(customer.b).lean())?.mergedInto)).toBe(customer.a);
  });

  it('counts every refusal by action and reason, and logs it with ids only', async () => {
    const metrics = await (await fetch(`${w.t.baseUrl}/metrics`)).text();
    const count = (action: string, reason: string) =>
      Number(
        new RegExp(`rapport_slack_refusals_total\\{action="${action}",reason="${reason}"\\} (\\d+)`).exec(
          metrics,
        )?.[1] ?? 0,
      );
    expect(count('whois', 'not_agent')).toBeGreaterThanOrEqual(3);
    expect(count('whois', 'inactive')).toBe(1);
    expect(count('whois', 'not_permitted')).toBeGreaterThanOrEqual(3);
    expect(count('whois', 'unknown_customer')).toBe(2);
    // The stranger's first reply, and the one whose note failed once: it was handled twice (the
    // event is re-run so the note is retried), and each handling counts.
    expect(count('reply', 'not_agent')).toBe(3);
    expect(count('reply', 'not_permitted')).toBe(2);
    expect(count('close', 'not_agent')).toBeGreaterThanOrEqual(2);
    expect(count('link', 'not_owner_of_both')).toBe(2);
    const refusals = w.t.logs.filter((l) => l.includes('slack action refused'));
    expect(refusals.length).toBeGreaterThan(10);
    for (const line of refusals) {
      expect(line).not.toMatch(/141555507|hello from|says hi/);
      expect(JSON.parse(line)).toMatchObject({ slackUserId: expect.any(String), action: expect.any(String) });
    }
  });
});

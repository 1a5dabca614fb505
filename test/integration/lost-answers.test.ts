/**
 * Exactly once when an answer is lost: the provider (or Slack) carried out the call, then the
 * connection dropped before its answer arrived (the emulators' `loseNext` / `{ lost: true }`).
 * Each case goes through the public interface — signed webhooks, signed Slack events and button
 * presses — and checks what the emulators recorded: the customer gets the reply once, or the agent
 * is told it is uncertain and may press "Send again" (an explicit, recorded second send).
 */
import { randomBytes } from 'node:crypto';
import { signSlackRequest } from '../../src/channels/slack/signature';
import { eventually } from '../helpers/eventually';
import { SLACK_SECRET, startWorld, type World } from '../helpers/world';

const ALEX = { slackUserId: 'U0ALEX', name: 'Alex', inboxChannelId: 'C0ALEX' };
type Thread = { channel: string; ts: string };

const cardsIn = (w: World, channel: string) =>
  w.slack.messages(channel).filter((m) => m.metadata?.event_type === 'rapport_card');

async function threadWith(w: World, text: string): Promise<Thread> {
  const channel = ALEX.inboxChannelId;
  const found = await eventually(
    // Replies only: the card itself quotes recent messages.
    async () =>
      cardsIn(w, channel).find((c) =>
        w.slack
          .thread(channel, c.ts)
          .slice(1)
          .some((r) => r.text.includes(text)),
      ),
    Boolean,
  );
  if (!found) throw new Error(`no thread shows "${text}"`);
  return { channel, ts: found.ts };
}

/** The "Send again" button of the note about `sendKey`, as Slack would show it. */
function sendAgainButton(w: World, thread: Thread, sendKey: string) {
  for (const m of w.slack.thread(thread.channel, thread.ts)) {
    for (const block of (m.blocks ?? []) as {
      type: string;
      elements?: { action_id: string; value: string }[];
    }[]) {
      const button = block.elements?.find((e) => e.action_id === 'rapport_send_again' && e.value === sendKey);
      if (button) return { note: m, button };
    }
  }
  return undefined;
}

/** An agent presses a button in the thread: a signed block_actions interaction. */
async function press(
  w: World,
  thread: Thread,
  noteTs: string,
  user: string,
  actionId: string,
  value: string,
) {
  const payload = {
    type: 'block_actions',
    user: { id: user, team_id: w.slack.teamId },
    team: { id: w.slack.teamId },
    container: { type: 'message', message_ts: noteTs, channel_id: thread.channel, thread_ts: thread.ts },
    channel: { id: thread.channel },
    message: { ts: noteTs, thread_ts: thread.ts },
    actions: [{ action_id: actionId, value, type: 'button', action_ts: String(Date.now() / 1000) }],
  };
  const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
  const res = await fetch(`${w.t.baseUrl}/slack/interactions`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...signSlackRequest(SLACK_SECRET, body) },
  });
  expect(res.status).toBe(200);
}

describe('lost answers: each reply reaches the customer once, or the agent is told', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld();
    await w.addAgent(ALEX);
  });
  afterAll(() => w.stop());

  async function agentReplies(thread: Thread, text: string) {
    const reply = await w.agentReply(thread.channel, thread.ts, ALEX.slackUserId, text);
    expect(reply.res.status).toBe(200);
    const key = `slack:${thread.channel}:${reply.ts}`;
    const send = await eventually(
      () => w.t.app.models.CustomerSend.findOne({ key }).lean(),
      (s) => !!s && ['sent', 'failed'].includes(s.state),
    );
    return { ts: reply.ts, key, send };
  }

  it('Twilio: the lost message is found in the account list; sent once, not resent', async () => {
    const phone = '+14155550801';
    expect((await w.sms(phone, 'twilio lost 801')).status).toBe(200);
    const thread = await threadWith(w, 'twilio lost 801');
    await eventually(
      async () => w.twilio.messages().filter((m) => m.to === phone),
      (m) => m.length >= 1,
    ); // the ack
    w.twilio.loseNext({ to: phone });
    const { send } = await agentReplies(thread, 'Answer whose answer is lost');
    const got = w.twilio.messages().filter((m) => m.to === phone && m.body === 'Answer whose answer is lost');
    expect(got).toHaveLength(1);
    expect(send).toMatchObject({ state: 'sent', attempts: 1, providerMessageId: got[0]?.sid });
  });

  it('WhatsApp Cloud: uncertain, not resent; the agent is told with Send again, which sends it once more', async () => {
    const waId = '14155550802';
    expect((await w.cloudWhatsApp(waId, 'cloud lost 802')).status).toBe(200);
    const thread = await threadWith(w, 'cloud lost 802');
    w.graph.loseNext({ path: /\/messages$/ });
    const { ts, key, send } = await agentReplies(thread, 'Cloud reply lost');
    const sentTexts = () =>
      w.graph.whatsappMessages().filter((m) => JSON.stringify(m.body).includes('Cloud reply lost'));
    expect(sentTexts()).toHaveLength(1);
    expect(send).toMatchObject({ state: 'failed', attempts: 1, failure: { reason: 'uncertain' } });
    const shown = await eventually(async () => sendAgainButton(w, thread, key), Boolean);
    expect(shown?.note.text).toMatch(/Delivery uncertain on WhatsApp/);
    await eventually(
      async () => w.slack.thread(thread.channel, thread.ts).find((m) => m.ts === ts)?.reactions ?? [],
      (r) => r.includes('grey_question'),
    );

    await press(w, thread, shown!.note.ts, ALEX.slackUserId, 'rapport_send_again', key);
    const again = await eventually(
      () => w.t.app.models.CustomerSend.findOne({ key: `${key}:again` }).lean(),
      (s) => s?.state === 'sent',
    );
    expect(again).toMatchObject({ resendOf: key, agentSlackUserId: ALEX.slackUserId, state: 'sent' });
    expect(sentTexts()).toHaveLength(2);
    // Pressing again (or Slack delivering the click twice) sends nothing more.
    await press(w, thread, shown!.note.ts, ALEX.slackUserId, 'rapport_send_again', key);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(sentTexts()).toHaveLength(2);
  });

  it('Send again is refused to someone who is not an agent', async () => {
    const waId = '14155550803';
    expect((await w.cloudWhatsApp(waId, 'cloud lost 803')).status).toBe(200);
    const thread = await threadWith(w, 'cloud lost 803');
    w.graph.loseNext({ path: /\/messages$/ });
    const { key } = await agentReplies(thread, 'Another lost reply 803');
    const shown = await eventually(async () => sendAgainButton(w, thread, key), Boolean);
    await press(w, thread, shown!.note.ts, 'U0STRANGER', 'rapport_send_again', key);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await w.t.app.models.CustomerSend.findOne({ key: `${key}:again` }).lean()).toBeNull();
  });

  it('Messenger: uncertain, not resent, the agent is told', async () => {
    const psid = '7000000000000804';
    expect((await w.messenger(psid, 'messenger lost 804')).status).toBe(200);
    const thread = await threadWith(w, 'messenger lost 804');
    w.graph.loseNext({ path: /\/messages$/ });
    const { key, send } = await agentReplies(thread, 'Messenger reply lost');
    expect(w.graph.messengerMessages().filter((m) => m.message.text === 'Messenger reply lost')).toHaveLength(
      1,
    );
    expect(send).toMatchObject({ state: 'failed', failure: { reason: 'uncertain' } });
    expect(await eventually(async () => sendAgainButton(w, thread, key), Boolean)).toBeTruthy();
  });

  it('a multi-part send whose second part is lost: no part twice, and Send again resumes after the accepted part', async () => {
    const waId = '14155550805';
    expect((await w.cloudWhatsApp(waId, 'parts 805')).status).toBe(200);
    const thread = await threadWith(w, 'parts 805');
    const customer = await w.t.app.models.Identity.findOne({ key: `phone:+${waId}` }).lean();
    const media = ['p1', 'p2', 'p3'].map((n) => ({
      url: `https://cdn.example.test/${n}-805.jpg`,
      contentType: 'image/jpeg',
    }));
    const key = `parts-805-${randomBytes(3).toString('hex')}`;
    w.graph.loseNext({ path: /\/messages$/, skip: 1 });
    await w.t.app.router.outbox.sendToCustomer(customer!.customerId, {
      key,
      origin: 'agent',
      text: 'Three photos',
      media,
    });
    const send = await eventually(
      () => w.t.app.models.CustomerSend.findOne({ key }).lean(),
      (s) => s?.state === 'failed',
    );
    expect(send).toMatchObject({ failure: { reason: 'uncertain' } });
    expect(send?.parts).toHaveLength(1);
    const links = () =>
      w.graph
        .whatsappMessages()
        .map((m) => (m.body.image as { link?: string } | undefined)?.link)
        .filter((l) => l?.includes('-805'));
    expect(links()).toEqual([media[0]!.url, media[1]!.url]); // the second was taken, its answer lost
    const shown = await eventually(async () => sendAgainButton(w, thread, key), Boolean);
    expect(shown?.note.text).toMatch(/1 part\(s\) of it were accepted/);
    await press(w, thread, shown!.note.ts, ALEX.slackUserId, 'rapport_send_again', key);
    await eventually(
      () => w.t.app.models.CustomerSend.findOne({ key: `${key}:again` }).lean(),
      (s) => s?.state === 'sent',
    );
    // The agent chose to repeat the uncertain part; the accepted first part is not sent again.
    expect(links()).toEqual([media[0]!.url, media[1]!.url, media[1]!.url, media[2]!.url]);
  });

  it("a lost answer to the card's chat.postMessage: one card, its thread recorded, and a reply in it is sent", async () => {
    const phone = '+14155550806';
    w.slack.failNext('chat.postMessage', { lost: true }, { channel: ALEX.inboxChannelId });
    expect((await w.sms(phone, 'card lost 806')).status).toBe(200);
    const thread = await threadWith(w, 'card lost 806');
    const cards = cardsIn(w, ALEX.inboxChannelId).filter((c) =>
      w.slack.thread(ALEX.inboxChannelId, c.ts).some((r) => r.text.includes('card lost 806')),
    );
    expect(cards).toHaveLength(1);
    const customerCards = cardsIn(w, ALEX.inboxChannelId).filter(
      (c) => c.metadata?.event_payload.customerId === cards[0]?.metadata?.event_payload.customerId,
    );
    expect(customerCards).toHaveLength(1);
    expect(
      await w.t.app.models.SlackThread.findOne({ channel: thread.channel, ts: thread.ts }).lean(),
    ).toBeTruthy();
    const { send } = await agentReplies(thread, 'Reply in the lost-answer card thread');
    expect(send).toMatchObject({ state: 'sent' });
    expect(
      w.twilio.messages().filter((m) => m.to === phone && m.body === 'Reply in the lost-answer card thread'),
    ).toHaveLength(1);
  });

  it('a flush keeps going through lost answers and 5xx: each message posted once, and no flush job fails', async () => {
    const phone = '+14155550808';
    expect((await w.sms(phone, 'flush opener 808')).status).toBe(200);
    const thread = await threadWith(w, 'flush opener 808');
    // Every other Slack call of the next ones fails: two answers lost after the post was made, a
    // 5xx before it, and the look-up that follows a lost answer fails once too.
    w.slack.failNext('chat.postMessage', { lost: true }, { channel: thread.channel });
    w.slack.failNext('conversations.replies', { status: 500 });
    const texts = ['flush 808 a', 'flush 808 b', 'flush 808 c', 'flush 808 d', 'flush 808 e'];
    for (const [i, text] of texts.entries()) {
      if (i === 2) w.slack.failNext('chat.postMessage', { status: 500 }, { channel: thread.channel });
      if (i === 3) w.slack.failNext('chat.postMessage', { lost: true }, { channel: thread.channel });
      expect((await w.sms(phone, text)).status).toBe(200);
    }
    const replies = () => w.slack.thread(thread.channel, thread.ts).slice(1);
    await eventually(
      async () => texts.every((t) => replies().some((r) => r.text.endsWith(t))),
      Boolean,
    );
    for (const t of texts) expect(replies().filter((r) => r.text.endsWith(t))).toHaveLength(1);
    // Transient failures were tried again in place: no flush job failed and backed off.
    // (BullMQ keeps one stack trace per failed run of a job.)
    const jobs = await w.t.app.queues['to-agent'].getJobs(['completed', 'failed', 'delayed', 'wait']);
    const failedRuns = jobs.reduce((sum, job) => sum + (job.stacktrace ?? []).length, 0);
    expect(failedRuns).toBe(0);
  });

  it('a card that went out but was never recorded (the process died in between): a reply under it is sent', async () => {
    const phone = '+14155550807';
    expect((await w.sms(phone, 'orphan card 807')).status).toBe(200);
    await threadWith(w, 'orphan card 807');
    const identity = await w.t.app.models.Identity.findOne({ key: `phone:${phone}` }).lean();
    const customerId = String(identity!.customerId);
    // The card as Rapport posts it, with its metadata, but no thread record written.
    const res = await fetch(`${w.slack.url}chat.postMessage`, {
      method: 'POST',
      headers: { authorization: `Bearer ${w.slack.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        channel: ALEX.inboxChannelId,
        text: 'card',
        metadata: { event_type: 'rapport_card', event_payload: { customerId, key: `${customerId}:orphan` } },
      }),
    });
    const { ts } = (await res.json()) as { ts: string };
    const orphan = { channel: ALEX.inboxChannelId, ts };
    const { send } = await agentReplies(orphan, 'Reply under an unrecorded card');
    expect(send).toMatchObject({ state: 'sent' });
    expect(
      w.twilio.messages().filter((m) => m.to === phone && m.body === 'Reply under an unrecorded card'),
    ).toHaveLength(1);
    expect(await w.t.app.models.SlackThread.findOne(orphan).lean()).toMatchObject({
      customerId: identity!.customerId,
    });
  });

  it('a reply in an inbox thread that belongs to no customer: the agent is told privately', async () => {
    const stray = w.slack.postAsUser(ALEX.inboxChannelId, {
      user: ALEX.slackUserId,
      text: 'a stray top-level post',
    });
    const reply = await w.agentReply(ALEX.inboxChannelId, stray.ts, ALEX.slackUserId, 'answer to nobody');
    expect(reply.res.status).toBe(200);
    const told = await eventually(
      async () => w.slack.callsTo('chat.postEphemeral').find((c) => c.args.thread_ts === stray.ts),
      Boolean,
      30_000,
    );
    expect(told?.args).toMatchObject({ channel: ALEX.inboxChannelId, user: ALEX.slackUserId });
    expect(String(told?.args.text)).toMatch(/NOT sent/);
  }, 40_000);
});

/**
 * Log hygiene: a whole flow at debug level — a customer writes by SMS, Twilio WhatsApp, WhatsApp
 * Cloud and Messenger, an agent replies from Slack, Twilio calls back with delivery statuses — and
 * not one log line holds the customer's phone number (in any spelling), name, message text, the
 * agent's reply, or any token or secret. `DUMP_LOGS=/tmp/logs.jsonl` writes what was logged, to look at.
 */
import { writeFileSync } from 'node:fs';
import { eventually } from '../helpers/eventually';
import { startWorld, SLACK_SECRET, type World } from '../helpers/world';
import { TEST_ADMIN_TOKEN, TEST_META, TEST_TWILIO } from '../helpers/env';

const AGENT = { slackUserId: 'U0HYGIENE', name: 'Hana', inboxChannelId: 'C0HYGIENE' };
const PHONE = '+14155550177';
const PSID = '7300000000000177';
const NAME = 'Zebulon Quixote';
const BODIES = {
  sms: 'purple elephant sms 7731',
  twilioWhatsApp: 'purple elephant twilio whatsapp 7732',
  cloud: 'purple elephant cloud 7733',
  messenger: 'purple elephant messenger 7734',
};
const REPLY = 'tangerine reply 8842';

describe('log hygiene', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld(); // LOG_LEVEL=debug
    await w.addAgent(AGENT);
  });
  afterAll(() => w.stop());

  const postsWith = (text: string) =>
    w.slack
      .messages(AGENT.inboxChannelId)
      .flatMap((card) => w.slack.thread(AGENT.inboxChannelId, card.ts))
      .filter((m) => m.text.includes(text));

  it('writes no phone number, name, message text, reply or secret to the logs during a full flow', async () => {
    // SMS last, so the agent's reply goes out by SMS (the channel the customer wrote on last).
    const send: [keyof typeof BODIES, () => Promise<Response>][] = [
      ['cloud', () => w.cloudWhatsApp(PHONE.slice(1), BODIES.cloud, { name: NAME })],
      ['messenger', () => w.messenger(PSID, BODIES.messenger)],
      ['twilioWhatsApp', () => w.twilioWhatsApp(PHONE, BODIES.twilioWhatsApp)],
      ['sms', () => w.sms(PHONE, BODIES.sms)],
    ];
    for (const [kind, post] of send) {
      expect((await post()).status).toBe(200);
      expect(
        await eventually(
          async () => postsWith(BODIES[kind]).length,
          (n) => n > 0,
        ),
      ).toBeGreaterThan(0);
    }

    // The agent answers in the customer's thread; the reply goes out through Twilio.
    const card = w.slack
      .messages(AGENT.inboxChannelId)
      .find((c) => w.slack.thread(AGENT.inboxChannelId, c.ts).some((m) => m.text.includes(BODIES.sms)));
    expect(card).toBeDefined();
    expect((await w.agentReply(AGENT.inboxChannelId, card!.ts, AGENT.slackUserId, REPLY)).res.status).toBe(
      200,
    );
    const sent = await eventually(
      async () => w.twilio.messages().filter((m) => (m.body ?? '').includes(REPLY)),
      (m) => m.length > 0,
    );
    expect(sent.map((m) => m.to)).toEqual([PHONE]);

    // Twilio reports delivery, then a failure of the same message.
    expect((await w.twilioStatus(sent[0]!.sid, 'delivered')).status).toBe(200);
    expect((await w.twilioStatus(sent[0]!.sid, 'undelivered', '30003')).status).toBe(200);
    // A send the provider refuses with an error text that quotes the number, as Twilio's do.
    const logged = w.t.logs.length;
    w.twilio.failNext(
      { status: 400, code: 21211, message: `The 'To' number ${PHONE} is not a valid phone number.` },
      { to: PHONE },
    );
    expect(
      (await w.agentReply(AGENT.inboxChannelId, card!.ts, AGENT.slackUserId, `${REPLY} again`)).res.status,
    ).toBe(200);
    await eventually(
      async () =>
        w.t.logs.slice(logged).some((l) => l.includes('21211') || l.includes('recipient cannot receive')),
      Boolean,
      10_000,
    );
    // Some refused requests too: their errors are logged.
    expect(
      (
        await w.slackEvent('{"type":"event_callback"', {
          'x-slack-signature': 'v0=00',
          'x-slack-request-timestamp': '1',
        })
      ).status,
    ).toBe(401);
    await eventually(
      async () => w.t.logs.filter((l) => l.includes('delivery status applied')).length,
      (n) => n >= 2,
      5_000,
    );
    // Let the workers finish what the status callbacks started.
    await new Promise((r) => setTimeout(r, 1_000));

    // Controls: the capture sees the app's log lines, and a stray object with customer data in it
    // (the mistake this test guards against) is redacted by the logger.
    w.t.app.log.info({ note: 'hygiene-canary' }, 'control');
    w.t.app.log.info(
      { message: { from: PHONE, text: BODIES.sms }, profileName: NAME },
      'stray customer object',
    );
    expect(w.t.logs.some((l) => l.includes('hygiene-canary'))).toBe(true);
    const logs = w.t.logs.join('\n');
    if (process.env.DUMP_LOGS) writeFileSync(process.env.DUMP_LOGS, logs);
    expect(w.t.logs.length).toBeGreaterThan(20);
    const digits = PHONE.slice(1);
    const forbidden: Record<string, string[]> = {
      phone: [
        PHONE,
        digits,
        digits.slice(1),
        '415-555-0177',
        '(415) 555-0177',
        `whatsapp:${PHONE}`,
        encodeURIComponent(PHONE),
      ],
      psid: [PSID],
      name: [NAME, 'Zebulon', 'Quixote'],
      bodies: [...Object.values(BODIES), 'purple elephant', 'purple+elephant'],
      reply: [REPLY, 'tangerine'],
      secrets: [
        TEST_TWILIO.authToken,
        TEST_META.appSecret,
        TEST_META.verifyToken,
        TEST_ADMIN_TOKEN,
        SLACK_SECRET,
        w.slack.token,
        'test-cloud-token',
        'test-page-token',
      ],
    };
    const leaks = Object.entries(forbidden).flatMap(([kind, needles]) =>
      needles
        .filter((n) => logs.includes(n))
        .map((n) => `${kind}: "${n}" in ${w.t.logs.find((l) => l.includes(n))}`),
    );
    expect(leaks).toEqual([]);
  });
});

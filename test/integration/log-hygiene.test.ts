/**
 * Log hygiene: a whole flow at debug level — a customer writes by SMS, Twilio WhatsApp, WhatsApp
 * Cloud and Messenger, an agent replies from Slack, Twilio calls back with delivery statuses — and
 * not one log line holds the customer's phone number (in any spelling), name, message text, the
 * agent's reply, or any token or secret. `DUMP_LOGS=/tmp/logs.jsonl` writes what was logged, to look at.
 *
 * Ids that embed the person are checked too: the Cloud message carries a realistic wamid (base64 of
 * the structure WhatsApp uses, holding the number — the shape of Meta's own example,
 * `wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=`, in the messages webhook reference:
 * developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages),
 * and a whatsapp-web message (key `whatsapp-web:false_<number>@c.us_<id>`, normalised by the real
 * normaliser) goes through the intake, router and Slack. A canary line holding those ids unhashed
 * proves the scan would catch them.
 */
import { writeFileSync } from 'node:fs';
import { normalizeWhatsAppWebMessage } from '../../src/channels/whatsapp-web/normalize';
import { fakeMessage } from '../fakes/whatsapp-web-client';
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
const WWEB_BODY = 'purple elephant whatsapp web 7735';
/** A wamid as WhatsApp builds them (see header): 1c 18 0b <number> 15 02 00 12 18 14 <20-char id> 00. */
const WAMID = `wamid.${Buffer.concat([
  Buffer.from([0x1c, 0x18, 0x0b]),
  Buffer.from(PHONE.slice(1)),
  Buffer.from([0x15, 0x02, 0x00, 0x12, 0x18, 0x14]),
  Buffer.from('3A4A6599AEE03810144F'),
  Buffer.from([0x00]),
]).toString('base64')}`;
const WWEB_JID = `${PHONE.slice(1)}@c.us`;

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
      ['cloud', () => w.cloudWhatsApp(PHONE.slice(1), BODIES.cloud, { name: NAME, id: WAMID })],
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

    // A whatsapp-web message, as the session hands it to the intake.
    const wweb = normalizeWhatsAppWebMessage(fakeMessage({ from: WWEB_JID, body: WWEB_BODY }), {
      receivedAt: new Date(),
    });
    expect(wweb?.key).toContain(WWEB_JID);
    await w.t.app.intake.accept([{ type: 'message', message: wweb! }]);
    expect(
      await eventually(
        async () => postsWith(WWEB_BODY).length,
        (n) => n > 0,
      ),
    ).toBeGreaterThan(0);

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
    // Ids in fields the logger does not know as ids are not hashed: this line must trip the scan.
    w.t.app.log.info({ note: `${WAMID} ${wweb!.key}` }, 'leak-canary');
    w.t.app.log.info(
      { message: { from: PHONE, text: BODIES.sms }, profileName: NAME },
      'stray customer object',
    );
    expect(w.t.logs.some((l) => l.includes('hygiene-canary'))).toBe(true);
    const canary = w.t.logs.filter((l) => l.includes('leak-canary'));
    expect(canary).toHaveLength(1);
    const lines = w.t.logs.filter((l) => !l.includes('leak-canary'));
    // The ids were logged, hashed: the scan below is not vacuous for them.
    expect(lines.some((l) => /"key":"whatsapp-web:#[0-9a-f]{12}"/.test(l))).toBe(true);
    const logs = lines.join('\n');
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
      ids: [WAMID, WAMID.slice('wamid.'.length, 30), WWEB_JID, PHONE.slice(2)],
      name: [NAME, 'Zebulon', 'Quixote'],
      bodies: [...Object.values(BODIES), WWEB_BODY, 'purple elephant', 'purple+elephant'],
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
    const scan = (text: string, source: string[]) =>
      Object.entries(forbidden).flatMap(([kind, needles]) =>
        needles
          .filter((n) => text.includes(n))
          .map((n) => `${kind}: "${n}" in ${source.find((l) => l.includes(n))}`),
      );
    // The canary (ids logged raw) is caught: the wamid and the whatsapp-web number.
    expect(scan(canary.join('\n'), canary)).toEqual(
      expect.arrayContaining([
        expect.stringContaining(`ids: "${WAMID}"`),
        expect.stringContaining(`ids: "${WWEB_JID}"`),
      ]),
    );
    expect(scan(logs, lines)).toEqual([]);
  });
});

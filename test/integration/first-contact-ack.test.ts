/**
 * A first contact's acknowledgement and card take shortcuts (issue 22): the acknowledgement's send
 * job carries its route instead of reading the customer, the outbox and the identity back
 * (src/router/delivery.ts `sendCarried`), and the first card is recorded as posted instead of being
 * refreshed from the database once its thread opens (card-updates.ts `recordFirstCard`). What each
 * shortcut must keep: an opted-out number still gets no acknowledgement, a lost answer is still not
 * resent, and a change that arrives before the card is posted still reaches the card. Real Redis, the
 * MongoDB-protocol server, and the Twilio, Graph and Slack emulators.
 */
import { eventually } from '../helpers/eventually';
import { uniqueName } from '../helpers/env';
import { startWorld, type World } from '../helpers/world';
import { cardKeysOf } from '../../src/router/card-updates';
import { channelWaitKey } from '../../src/router/slack-delivery';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const ALEX = { slackUserId: 'U0FCACK', name: 'Alex', inboxChannelId: 'C0FCACK' };
const CHANNEL = ALEX.inboxChannelId;
const ACK = 'Thanks for your message';

let w: World;

beforeAll(async () => {
  w = await startWorld({ MONGODB_URI: `${MONGO}/rapport_${uniqueName('fcack')}` });
  await w.t.app.mongo.ready;
  await w.addAgent(ALEX);
});
afterAll(() => w.stop());

const models = () => w.t.app.models;
const redis = () => w.t.app.redis;
const prefix = () => w.t.app.config.queuePrefix;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The customer's message, posted in their thread; returns the thread (the card's ts). */
async function threadWith(text: string): Promise<{ channel: string; ts: string }> {
  const card = await eventually(
    async () =>
      w.slack
        .messages(CHANNEL)
        .filter((m) => m.metadata?.event_type === 'rapport_card')
        .find((c) => w.slack.thread(CHANNEL, c.ts).some((r) => r.text.includes(text))),
    Boolean,
  );
  if (!card) throw new Error(`no thread shows "${text}"`);
  return { channel: CHANNEL, ts: card.ts };
}

/** The acknowledgement send of the message with provider key `key`, once it has settled. */
const ackSend = (key: string) =>
  eventually(
    () =>
      models()
        .CustomerSend.findOne({ key: `ack:${key}` })
        .lean(),
    (s) => !!s && ['sent', 'failed'].includes(s.state),
  );

describe("a first contact's acknowledgement", () => {
  it('is not sent to a number that opted out before it ever wrote, nor after a STOP as its first word', async () => {
    // A claim code to this number was refused by Twilio as opted out (21610): the opt-out is on record
    // although the number never wrote (delivery.ts `refused`).
    const phone = '+14155550901';
    await models().OptOut.create({
      key: `phone:${phone}|sms`,
      identityKey: `phone:${phone}`,
      channel: 'sms',
      optedOut: true,
      at: new Date(),
    });
    expect((await w.sms(phone, 'hello 901', 'SM' + 'a901'.repeat(8))).status).toBe(200);
    await threadWith('hello 901');
    expect(await ackSend(`twilio:SM${'a901'.repeat(8)}`)).toMatchObject({
      state: 'failed',
      failure: { reason: 'opted_out' },
    });

    const other = '+14155550902';
    expect((await w.sms(other, 'STOP', 'SM' + 'a902'.repeat(8))).status).toBe(200);
    await threadWith('STOP');
    expect(await ackSend(`twilio:SM${'a902'.repeat(8)}`)).toMatchObject({
      state: 'failed',
      failure: { reason: 'opted_out' },
    });
    await sleep(500);
    expect(w.twilio.messages().filter((m) => m.to === phone || m.to === other)).toEqual([]);
  });

  it('whose WhatsApp Cloud answer is lost is not sent again, and the agent is told', async () => {
    const waId = '14155550903';
    w.graph.loseNext({ path: /\/messages$/ });
    expect((await w.cloudWhatsApp(waId, 'hello 903', { id: 'wamid.fcack903' })).status).toBe(200);
    const thread = await threadWith('hello 903');
    expect(await ackSend('whatsapp-cloud:wamid.fcack903')).toMatchObject({
      state: 'failed',
      attempts: 1,
      failure: { reason: 'uncertain' },
    });
    const note = await eventually(
      async () =>
        w.slack.thread(thread.channel, thread.ts).find((m) => m.text.includes('Delivery uncertain')),
      Boolean,
    );
    expect(note).toBeDefined();
    await sleep(1_000);
    const acks = w.graph
      .whatsappMessages()
      .filter((m) => m.waId === waId && JSON.stringify(m.body).includes(ACK));
    expect(acks).toHaveLength(1);
  });
});

describe("a first contact's card, recorded as posted instead of refreshed", () => {
  it('shows who the customer is, and a channel they wrote on before the card was posted', async () => {
    const waId = '14155550904';
    // Slack rate-limits the inbox, so the card waits while the customer writes again, by SMS.
    const wait = channelWaitKey(prefix(), CHANNEL);
    await redis().set(wait, '1', 'PX', 3_000);
    expect((await w.cloudWhatsApp(waId, 'hello 904')).status).toBe(200);
    const customerId = String(
      (await eventually(
        () =>
          models()
            .Identity.findOne({ key: `phone:+${waId}` })
            .lean(),
        Boolean,
      ))!.customerId,
    );
    await eventually(() => models().AgentPost.exists({ customerId, text: /hello 904/ }), Boolean);
    expect((await w.sms(`+${waId}`, 'by sms 904')).status).toBe(200);
    // The refresh that second message asked for runs while there is no thread yet (it finds none):
    // the Slack wait is held until it has, then lifted.
    const early = cardKeysOf(prefix(), customerId)[3]!;
    const ran = await eventually(
      async () => {
        await redis().set(wait, '1', 'PX', 2_000);
        return redis().exists(early);
      },
      (n) => n === 1,
    );
    expect(ran).toBe(1);
    await redis().del(wait);

    const thread = await threadWith('hello 904');
    const card = await eventually(
      async () => w.slack.messages(CHANNEL).find((m) => m.ts === thread.ts)?.text ?? '',
      (t) => t.includes('(WhatsApp, SMS)'),
    );
    expect(card).toContain('*Cloud Customer*');
    expect(card).toContain(`+${waId} (WhatsApp, SMS)`);
    expect(card).toContain('*Last channel:* SMS');
    expect(card).toContain('*Owner:* Alex');
    expect(card).toContain('WhatsApp window open');
  });
});

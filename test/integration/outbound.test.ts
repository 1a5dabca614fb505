/**
 * Outbound delivery end to end: an agent's Slack thread reply (a signed Slack event) reaches the
 * customer on the app they last used, through the real twilio SDK, fetch (WhatsApp Cloud) and
 * messaging-api-messenger against the Twilio and Graph emulators; retries, permanent errors,
 * messaging windows, templates, delivery receipts, opt-outs and the undo window, each checked by
 * what the provider received and what the agent sees in Slack.
 */
import { randomBytes } from 'node:crypto';
import { cloudChange, slackChange, slackMessage } from '../../src/sandbox/wire-builders';
import { signSlackRequest } from '../../src/channels/slack/signature';
import { eventually } from '../helpers/eventually';
import { CLOUD_ACCOUNT, CLOUD_PHONE_ID, SLACK_SECRET, startWorld, type World } from '../helpers/world';

const ALEX = { slackUserId: 'U0ALEX', name: 'Alex', inboxChannelId: 'C0ALEX' };
const SMS_FROM = '+15550001111';
const WA_FROM = 'whatsapp:+15550002222';
const CLOUD_TEMPLATE = 'rapport_followup';
const CONTENT_SID = 'HX' + 'b2'.repeat(16);
const HOUR = 3600_000;

/** Finds the customer's thread in the agent's inbox: the card whose replies include `text`. */
async function threadWith(w: World, text: string): Promise<{ channel: string; ts: string }> {
  const channel = ALEX.inboxChannelId;
  const found = await eventually(
    async () =>
      w.slack
        .messages(channel)
        .filter((m) => m.metadata?.event_type === 'rapport_card')
        .find((card) => w.slack.thread(channel, card.ts).some((r) => r.text.includes(text))),
    Boolean,
  );
  if (!found) throw new Error(`no thread shows "${text}"`);
  return { channel, ts: found.ts };
}

/** The bot's notes in a thread (replies posted by Rapport, not the customer's messages). */
const notesIn = (w: World, thread: { channel: string; ts: string }) =>
  w.slack
    .thread(thread.channel, thread.ts)
    .slice(1)
    .map((m) => m.text);

const reactionsOn = (w: World, thread: { channel: string; ts: string }, ts: string) =>
  w.slack.thread(thread.channel, thread.ts).find((m) => m.ts === ts)?.reactions ?? [];

const twilioTo = (w: World, to: string, body?: string) =>
  w.twilio.messages().filter((m) => m.to === to && (body === undefined || m.body === body));
const twilioRequestsWith = (w: World, body: string) =>
  w.twilio.requests.filter((r) => r.method === 'POST' && r.params.Body === body);
const graphRequestsWith = (w: World, text: string) =>
  w.graph.requests.filter((r) => JSON.stringify(r.body ?? {}).includes(text));

const settle = () => new Promise((r) => setTimeout(r, 1_500));

describe('outbound delivery: agent replies reach the customer', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      WHATSAPP_TEMPLATE_CONTENT_SID: CONTENT_SID,
      WHATSAPP_CLOUD_TEMPLATE: CLOUD_TEMPLATE,
    });
    await w.addAgent(ALEX);
  });
  afterAll(() => w.stop());

  /** The customer writes; returns their thread once the message is in it (and the ack went out). */
  async function customerWrites(send: () => Promise<Response>, text: string) {
    expect((await send()).status).toBe(200);
    return threadWith(w, text);
  }

  /** The agent replies in the thread; returns the stored send once it has settled. */
  async function agentReplies(thread: { channel: string; ts: string }, text: string) {
    const reply = await w.agentReply(thread.channel, thread.ts, ALEX.slackUserId, text);
    expect(reply.res.status).toBe(200);
    const key = `slack:${thread.channel}:${reply.ts}`;
    const send = await eventually(
      () => w.t.app.models.CustomerSend.findOne({ key }).lean(),
      (s) => !!s && ['sent', 'failed', 'cancelled'].includes(s.state),
    );
    return { ts: reply.ts, send };
  }

  async function storedOut(provider: string, id: string | undefined) {
    return w.t.app.models.Message.findOne({ key: `${provider}:${id}` }).lean();
  }

  it('sends an SMS reply from TWILIO_SMS_FROM to the E.164 number and stores the provider id', async () => {
    const thread = await customerWrites(() => w.sms('+14155550201', 'hello by sms 201'), 'hello by sms 201');
    const { ts, send } = await agentReplies(thread, 'Answer by SMS');
    const sent = await eventually(
      async () => twilioTo(w, '+14155550201', 'Answer by SMS'),
      (m) => m.length >= 1,
    );
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ from: SMS_FROM, to: '+14155550201', body: 'Answer by SMS' });
    expect(twilioRequestsWith(w, 'Answer by SMS')[0]?.params).toMatchObject({
      To: '+14155550201',
      From: SMS_FROM,
      StatusCallback: 'https://rapport.example.test/webhooks/twilio/status',
    });
    expect(send).toMatchObject({
      state: 'sent',
      provider: 'twilio',
      channel: 'sms',
      providerMessageId: sent[0]?.sid,
    });
    expect(await storedOut('twilio', sent[0]?.sid)).toMatchObject({
      direction: 'out',
      channel: 'sms',
      text: 'Answer by SMS',
    });
    await eventually(
      async () => reactionsOn(w, thread, ts),
      (r) => r.includes('outbox_tray'),
    );
    expect(reactionsOn(w, thread, ts)).toContain('outbox_tray');
  });

  it('sends a Twilio WhatsApp reply with whatsapp: on both addresses', async () => {
    const thread = await customerWrites(
      () => w.twilioWhatsApp('+14155550202', 'hello by wa 202'),
      'hello by wa 202',
    );
    const { send } = await agentReplies(thread, 'Answer on WhatsApp');
    const sent = await eventually(
      async () => twilioTo(w, 'whatsapp:+14155550202', 'Answer on WhatsApp'),
      (m) => m.length >= 1,
    );
    expect(sent).toHaveLength(1);
    expect(sent[0]?.from).toBe(WA_FROM);
    expect(send).toMatchObject({
      state: 'sent',
      provider: 'twilio',
      channel: 'whatsapp',
      providerMessageId: sent[0]?.sid,
    });
    expect(await storedOut('twilio', sent[0]?.sid)).toMatchObject({ direction: 'out', channel: 'whatsapp' });
  });

  it('sends a WhatsApp Cloud reply to /v21.0/{phone_number_id}/messages with a + on the recipient', async () => {
    const thread = await customerWrites(
      () => w.cloudWhatsApp('14155550203', 'hello by cloud 203'),
      'hello by cloud 203',
    );
    const { send } = await agentReplies(thread, 'Answer on Cloud');
    const requests = await eventually(
      async () => graphRequestsWith(w, 'Answer on Cloud'),
      (r) => r.length >= 1,
    );
    expect(requests).toHaveLength(1);
    expect(requests[0]?.path).toBe(`/v21.0/${CLOUD_PHONE_ID}/messages`);
    expect(requests[0]?.headers.authorization).toBe('Bearer test-cloud-token');
    expect(requests[0]?.body).toEqual({
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: '+14155550203',
      type: 'text',
      text: { body: 'Answer on Cloud', preview_url: false },
    });
    const id = w.graph.whatsappMessages().find((m) => JSON.stringify(m.body).includes('Answer on Cloud'))?.id;
    expect(send).toMatchObject({
      state: 'sent',
      provider: 'whatsapp-cloud',
      channel: 'whatsapp',
      providerMessageId: id,
    });
    expect(await storedOut('whatsapp-cloud', id)).toMatchObject({ direction: 'out', channel: 'whatsapp' });
  });

  it('sends a Messenger reply as RESPONSE to the PSID', async () => {
    const psid = '7000000000000204';
    const thread = await customerWrites(
      () => w.messenger(psid, 'hello by messenger 204'),
      'hello by messenger 204',
    );
    const { send } = await agentReplies(thread, 'Answer on Messenger');
    const sent = await eventually(
      async () => w.graph.messengerMessages().filter((m) => m.message.text === 'Answer on Messenger'),
      (m) => m.length >= 1,
    );
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ recipientId: psid, messagingType: 'RESPONSE' });
    expect(sent[0]?.tag).toBeUndefined();
    expect(graphRequestsWith(w, 'Answer on Messenger')[0]?.path).toBe('/v21.0/me/messages');
    expect(send).toMatchObject({
      state: 'sent',
      provider: 'messenger',
      channel: 'messenger',
      providerMessageId: sent[0]?.messageId,
    });
    expect(await storedOut('messenger', sent[0]?.messageId)).toMatchObject({
      direction: 'out',
      channel: 'messenger',
    });
  });

  it('answers on the app the customer used last: SMS, then Twilio WhatsApp, then Cloud, then SMS again', async () => {
    const phone = '+14155550205';
    const thread = await customerWrites(() => w.sms(phone, 'first by sms 205'), 'first by sms 205');
    await agentReplies(thread, 'reply 205 a');
    expect(twilioTo(w, phone, 'reply 205 a')).toHaveLength(1);

    await w.twilioWhatsApp(phone, 'now on twilio wa 205');
    await threadWith(w, 'now on twilio wa 205');
    await agentReplies(thread, 'reply 205 b');
    expect(twilioTo(w, `whatsapp:${phone}`, 'reply 205 b')).toHaveLength(1);

    await w.cloudWhatsApp(phone.slice(1), 'now on cloud 205');
    await threadWith(w, 'now on cloud 205');
    await agentReplies(thread, 'reply 205 c');
    expect(graphRequestsWith(w, 'reply 205 c')).toHaveLength(1);
    expect(twilioRequestsWith(w, 'reply 205 c')).toHaveLength(0);

    await w.sms(phone, 'back on sms 205');
    await threadWith(w, 'back on sms 205');
    await agentReplies(thread, 'reply 205 d');
    expect(twilioTo(w, phone, 'reply 205 d')).toHaveLength(1);
    expect(graphRequestsWith(w, 'reply 205 d')).toHaveLength(0);

    // `whatsapp:` picks WhatsApp again, and on the provider the customer used there last (Cloud),
    // even though their latest Twilio message was an SMS.
    await agentReplies(thread, 'whatsapp: reply 205 e');
    expect(graphRequestsWith(w, 'reply 205 e')).toHaveLength(1);
    expect(twilioRequestsWith(w, 'reply 205 e')).toHaveLength(0);
  });

  it('retries two 503s and sends exactly one message', async () => {
    const phone = '+14155550301';
    const thread = await customerWrites(() => w.sms(phone, 'retry me 301'), 'retry me 301');
    await eventually(
      async () => twilioTo(w, phone),
      (m) => m.length >= 1,
    ); // the acknowledgement
    w.twilio.failNext({ status: 503 }, { times: 2, to: phone });
    const { ts, send } = await agentReplies(thread, 'Sent despite 503s');
    expect(send).toMatchObject({ state: 'sent', attempts: 3 });
    expect(twilioRequestsWith(w, 'Sent despite 503s')).toHaveLength(3);
    expect(twilioTo(w, phone, 'Sent despite 503s')).toHaveLength(1);
    await eventually(
      async () => reactionsOn(w, thread, ts),
      (r) => r.includes('outbox_tray'),
    );
    expect(reactionsOn(w, thread, ts)).not.toContain('x');
  });

  it('fails fast on a 400 (Twilio 21211): nothing is sent and the agent sees why and ❌', async () => {
    const phone = '+14155550302';
    const thread = await customerWrites(() => w.sms(phone, 'bad number 302'), 'bad number 302');
    await eventually(
      async () => twilioTo(w, phone),
      (m) => m.length >= 1,
    );
    w.twilio.failNext({ status: 400, code: 21211, message: "Invalid 'To' Phone Number" }, { to: phone });
    const { ts, send } = await agentReplies(thread, 'Never arrives 302');
    expect(send).toMatchObject({
      state: 'failed',
      attempts: 1,
      failure: { reason: 'invalid_recipient', code: '21211' },
    });
    expect(twilioRequestsWith(w, 'Never arrives 302')).toHaveLength(1);
    expect(twilioTo(w, phone, 'Never arrives 302')).toHaveLength(0);
    const notes = await eventually(
      async () => notesIn(w, thread),
      (n) => n.some((t) => t.includes('21211')),
    );
    expect(notes.find((t) => t.includes('21211'))).toMatch(
      /Not delivered on SMS.*cannot receive messages.*provider code 21211/s,
    );
    await eventually(
      async () => reactionsOn(w, thread, ts),
      (r) => r.includes('x'),
    );
    expect(reactionsOn(w, thread, ts)).toContain('x');
  });

  it('sends no free text outside the 24 h WhatsApp window; the agent is told, and a template or sms: works', async () => {
    const phone = '+14155550401';
    const thread = await customerWrites(
      () => w.cloudWhatsApp(phone.slice(1), 'old chat 401'),
      'old chat 401',
    );
    await eventually(
      async () => w.graph.whatsappMessages().filter((m) => m.to === phone),
      (m) => m.length >= 1,
    );
    await w.t.app.models.Identity.updateOne(
      { key: `phone:${phone}` },
      { $set: { 'lastInboundAt.whatsapp': new Date(Date.now() - 25 * HOUR) } },
    );

    const { ts, send } = await agentReplies(thread, 'Too late free text 401');
    expect(send).toMatchObject({ state: 'failed', failure: { reason: 'window_closed' } });
    expect(graphRequestsWith(w, 'Too late free text 401')).toHaveLength(0);
    expect(twilioRequestsWith(w, 'Too late free text 401')).toHaveLength(0);
    const notes = await eventually(
      async () => notesIn(w, thread),
      (n) => n.some((t) => t.includes('window is closed')),
    );
    expect(notes.find((t) => t.includes('window is closed'))).toMatch(
      /last wrote 25 hours ago.*\/rapport template.*sms:/s,
    );
    await eventually(
      async () => reactionsOn(w, thread, ts),
      (r) => r.includes('x'),
    );

    const command = await w.command(ALEX.slackUserId, thread.channel, 'template', thread.ts);
    expect(command.text).toContain('template is on its way');
    const templates = await eventually(
      async () => w.graph.whatsappMessages().filter((m) => m.to === phone && m.type === 'template'),
      (m) => m.length >= 1,
    );
    expect(templates).toHaveLength(1);
    expect(templates[0]?.body.template).toMatchObject({ name: CLOUD_TEMPLATE, language: { code: 'en' } });

    await agentReplies(thread, 'sms: Texting you instead 401');
    const texted = await eventually(
      async () => twilioTo(w, phone, 'Texting you instead 401'),
      (m) => m.length >= 1,
    );
    expect(texted).toHaveLength(1);
    expect(texted[0]?.from).toBe(SMS_FROM);
  });

  it('sends the Twilio Content SID template to a Twilio WhatsApp customer whose window closed', async () => {
    const phone = '+14155550402';
    const thread = await customerWrites(
      () => w.twilioWhatsApp(phone, 'old twilio chat 402'),
      'old twilio chat 402',
    );
    await eventually(
      async () => twilioTo(w, `whatsapp:${phone}`),
      (m) => m.length >= 1,
    );
    await w.t.app.models.Identity.updateOne(
      { key: `phone:${phone}` },
      { $set: { 'lastInboundAt.whatsapp': new Date(Date.now() - 30 * HOUR) } },
    );
    const { send } = await agentReplies(thread, 'Too late 402');
    expect(send?.state).toBe('failed');
    expect(twilioRequestsWith(w, 'Too late 402')).toHaveLength(0);
    await w.command(ALEX.slackUserId, thread.channel, 'template', thread.ts);
    const templates = await eventually(
      async () => twilioTo(w, `whatsapp:${phone}`).filter((m) => m.contentSid !== undefined),
      (m) => m.length >= 1,
    );
    expect(templates).toHaveLength(1);
    expect(templates[0]).toMatchObject({ contentSid: CONTENT_SID, from: WA_FROM });
    expect(templates[0]?.body).toBeUndefined();
  });

  it("maps the provider's own window error (Graph 131047) to the same explanation", async () => {
    const phone = '+14155550403';
    const thread = await customerWrites(
      () => w.cloudWhatsApp(phone.slice(1), 'window says meta 403'),
      'window says meta 403',
    );
    await eventually(
      async () => w.graph.whatsappMessages().filter((m) => m.to === phone),
      (m) => m.length >= 1,
    );
    w.graph.closeWindowFor(phone);
    const { ts, send } = await agentReplies(thread, 'Meta refuses 403');
    expect(send).toMatchObject({ state: 'failed', failure: { reason: 'window_closed', code: '131047' } });
    expect(
      w.graph.whatsappMessages().filter((m) => JSON.stringify(m.body).includes('Meta refuses 403')),
    ).toHaveLength(0);
    const notes = await eventually(
      async () => notesIn(w, thread),
      (n) => n.some((t) => t.includes('131047')),
    );
    expect(notes.find((t) => t.includes('131047'))).toMatch(
      /window is closed.*\/rapport template.*provider code 131047/s,
    );
    await eventually(
      async () => reactionsOn(w, thread, ts),
      (r) => r.includes('x'),
    );
    expect(reactionsOn(w, thread, ts)).toContain('x');
  });

  it("maps Messenger's window error (10/2018278) to a Messenger explanation", async () => {
    const psid = '7000000000000404';
    const thread = await customerWrites(() => w.messenger(psid, 'fb window 404'), 'fb window 404');
    await eventually(
      async () => w.graph.messengerMessages().filter((m) => m.recipientId === psid),
      (m) => m.length >= 1,
    );
    w.graph.closeWindowFor(psid);
    const { send } = await agentReplies(thread, 'Too late on Messenger 404');
    expect(send).toMatchObject({ state: 'failed', failure: { reason: 'window_closed' } });
    expect(
      w.graph.messengerMessages().filter((m) => m.message.text === 'Too late on Messenger 404'),
    ).toHaveLength(0);
    const notes = await eventually(
      async () => notesIn(w, thread),
      (n) => n.some((t) => t.includes('Messenger window is closed')),
    );
    expect(notes.find((t) => t.includes('Messenger window is closed'))).toContain('10/2018278');
  });

  it('shows Twilio status callbacks on the stored message and as reactions: ✅ delivered, 👀 read, ❌ failed with a note', async () => {
    const phone = '+14155550501';
    const thread = await customerWrites(() => w.twilioWhatsApp(phone, 'receipts 501'), 'receipts 501');
    const first = await agentReplies(thread, 'Receipt me 501');
    const sid = first.send?.providerMessageId as string;
    expect((await w.twilioStatus(sid, 'sent')).status).toBe(200);
    expect((await w.twilioStatus(sid, 'delivered')).status).toBe(200);
    await eventually(
      async () => reactionsOn(w, thread, first.ts),
      (r) => r.includes('white_check_mark'),
    );
    expect(reactionsOn(w, thread, first.ts)).toContain('white_check_mark');
    expect((await storedOut('twilio', sid))?.status?.state).toBe('delivered');
    expect((await w.twilioStatus(sid, 'read')).status).toBe(200);
    await eventually(
      async () => reactionsOn(w, thread, first.ts),
      (r) => r.includes('eyes'),
    );
    expect(reactionsOn(w, thread, first.ts)).toContain('eyes');
    const read = await eventually(
      () => storedOut('twilio', sid),
      (m) => m?.status?.state === 'read',
    );
    expect(read?.status?.state).toBe('read');
    expect(read?.statusHistory.map((s) => s.state)).toEqual(
      expect.arrayContaining(['sent', 'delivered', 'read']),
    );

    const second = await agentReplies(thread, 'This one bounces 501');
    const sid2 = second.send?.providerMessageId as string;
    expect((await w.twilioStatus(sid2, 'failed', '63016')).status).toBe(200);
    await eventually(
      async () => reactionsOn(w, thread, second.ts),
      (r) => r.includes('x'),
    );
    expect(reactionsOn(w, thread, second.ts)).toContain('x');
    const failed = await eventually(
      () => storedOut('twilio', sid2),
      (m) => m?.status?.state === 'failed',
    );
    expect(failed?.status?.providerErrors[0]?.code).toBe('63016');
    const notes = await eventually(
      async () => notesIn(w, thread),
      (n) => n.some((t) => t.includes('63016')),
    );
    expect(notes.find((t) => t.includes('63016'))).toMatch(
      /could not deliver your reply\..*window is closed/s,
    );
  });

  it('shows WhatsApp Cloud statuses[] on the stored message and as reactions', async () => {
    const phone = '+14155550502';
    const thread = await customerWrites(
      () => w.cloudWhatsApp(phone.slice(1), 'cloud receipts 502'),
      'cloud receipts 502',
    );
    const reply = await agentReplies(thread, 'Cloud receipt 502');
    const id = reply.send?.providerMessageId as string;
    const status = (state: string) =>
      w.metaWebhook(
        cloudChange(CLOUD_ACCOUNT, {
          statuses: [
            {
              id,
              status: state,
              timestamp: String(Math.floor(Date.now() / 1000)),
              recipient_id: phone.slice(1),
              ...(state === 'sent'
                ? {
                    conversation: { id: randomBytes(8).toString('hex'), origin: { type: 'service' } },
                    pricing: { billable: true, pricing_model: 'CBP', category: 'service' },
                  }
                : {}),
            },
          ],
        }),
      );
    expect((await status('delivered')).status).toBe(200);
    await eventually(
      async () => reactionsOn(w, thread, reply.ts),
      (r) => r.includes('white_check_mark'),
    );
    expect(reactionsOn(w, thread, reply.ts)).toContain('white_check_mark');
    expect((await status('read')).status).toBe(200);
    await eventually(
      async () => reactionsOn(w, thread, reply.ts),
      (r) => r.includes('eyes'),
    );
    const stored = await eventually(
      () => storedOut('whatsapp-cloud', id),
      (m) => m?.status?.state === 'read',
    );
    expect(stored?.status?.state).toBe('read');
  });

  it('records STOP, tells the agent, never messages the number, and START re-enables', async () => {
    const phone = '+14155550601';
    const thread = await customerWrites(() => w.sms(phone, 'hello 601'), 'hello 601');
    await eventually(
      async () => twilioTo(w, phone),
      (m) => m.length >= 1,
    );
    await w.sms(phone, 'STOP');
    const notes = await eventually(
      async () => notesIn(w, thread),
      (n) => n.some((t) => t.includes('opted out of SMS')),
    );
    expect(notes.some((t) => t.includes('opted out of SMS'))).toBe(true);

    const { ts, send } = await agentReplies(thread, 'Are you there 601?');
    expect(send).toMatchObject({ state: 'failed', failure: { reason: 'opted_out' } });
    await eventually(
      async () => notesIn(w, thread),
      (n) => n.some((t) => t.includes('has opted out')),
    );
    await eventually(
      async () => reactionsOn(w, thread, ts),
      (r) => r.includes('x'),
    );
    await settle();
    expect(twilioRequestsWith(w, 'Are you there 601?')).toHaveLength(0);
    expect(w.twilio.requests.filter((r) => r.params.To === phone && r.params.Body !== undefined).length).toBe(
      twilioTo(w, phone).length,
    );

    await w.sms(phone, 'START');
    await eventually(
      async () => notesIn(w, thread),
      (n) => n.some((t) => t.includes('opted back in')),
    );
    await agentReplies(thread, 'Welcome back 601');
    expect(twilioTo(w, phone, 'Welcome back 601')).toHaveLength(1);
  });

  it('treats Twilio error 21610 as an opt-out: the agent is told and later replies are not attempted', async () => {
    const phone = '+14155550602';
    const thread = await customerWrites(() => w.sms(phone, 'hello 602'), 'hello 602');
    await eventually(
      async () => twilioTo(w, phone),
      (m) => m.length >= 1,
    );
    w.twilio.optOut(phone);
    const { send } = await agentReplies(thread, 'Blocked 602');
    expect(send).toMatchObject({ state: 'failed', failure: { reason: 'opted_out', code: '21610' } });
    const notes = await eventually(
      async () => notesIn(w, thread),
      (n) => n.some((t) => t.includes('21610')),
    );
    expect(notes.find((t) => t.includes('21610'))).toMatch(/opted out/);
    const again = await agentReplies(thread, 'Blocked again 602');
    expect(again.send?.state).toBe('failed');
    expect(twilioRequestsWith(w, 'Blocked again 602')).toHaveLength(0);
  });
});

describe('the undo window', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ REPLY_UNDO_SECONDS: '2' });
    await w.addAgent(ALEX);
  });
  afterAll(() => w.stop());

  function deleteEvent(channel: string, ts: string, threadTs: string, text: string): string {
    return w.eventBody(
      slackChange({ channel, before: { user: ALEX.slackUserId, text, ts, thread_ts: threadTs } }),
      `EvDEL${randomBytes(4).toString('hex').toUpperCase()}`,
    );
  }

  it('cancels a reply deleted in Slack within the undo window; one that is kept goes out', async () => {
    const phone = '+14155550701';
    await w.sms(phone, 'undo me 701');
    const thread = await threadWith(w, 'undo me 701');
    await eventually(
      async () => twilioTo(w, phone),
      (m) => m.length >= 1,
    );

    const regretted = await w.agentReply(
      thread.channel,
      thread.ts,
      ALEX.slackUserId,
      'Oops wrong customer 701',
    );
    await eventually(
      async () => reactionsOn(w, thread, regretted.ts),
      (r) => r.includes('hourglass_flowing_sand'),
    );
    const body = deleteEvent(thread.channel, regretted.ts, thread.ts, 'Oops wrong customer 701');
    expect((await w.slackEvent(body, signSlackRequest(SLACK_SECRET, body))).status).toBe(200);

    const kept = await w.agentReply(thread.channel, thread.ts, ALEX.slackUserId, 'The right answer 701');
    await eventually(
      async () => twilioTo(w, phone, 'The right answer 701'),
      (m) => m.length >= 1,
    );
    await settle();
    expect(twilioRequestsWith(w, 'Oops wrong customer 701')).toHaveLength(0);
    expect(twilioTo(w, phone, 'The right answer 701')).toHaveLength(1);
    const cancelled = await w.t.app.models.CustomerSend.findOne({
      key: `slack:${thread.channel}:${regretted.ts}`,
    }).lean();
    expect(cancelled?.state).toBe('cancelled');
    // Deleting a reply that already went out cannot unsend it: the agent is told so.
    const late = deleteEvent(thread.channel, kept.ts, thread.ts, 'The right answer 701');
    expect((await w.slackEvent(late)).status).toBe(200);
    const notes = await eventually(
      async () => notesIn(w, thread),
      (n) => n.some((t) => t.includes('already been sent')),
    );
    expect(notes.some((t) => t.includes('already been sent'))).toBe(true);
  });

  it('cancels a reply whose deletion reaches Rapport before the reply itself', async () => {
    const phone = '+14155550702';
    await w.sms(phone, 'race 702');
    const thread = await threadWith(w, 'race 702');
    await eventually(
      async () => twilioTo(w, phone),
      (m) => m.length >= 1,
    );
    // Slack does not promise event order: the deletion arrives first.
    const stored = w.slack.postAsUser(thread.channel, {
      user: ALEX.slackUserId,
      text: 'Deleted at once 702',
      threadTs: thread.ts,
    });
    const del = deleteEvent(thread.channel, stored.ts, thread.ts, 'Deleted at once 702');
    expect((await w.slackEvent(del)).status).toBe(200);
    const reply = w.eventBody(
      slackMessage({
        channel: thread.channel,
        user: ALEX.slackUserId,
        text: 'Deleted at once 702',
        ts: stored.ts,
        threadTs: thread.ts,
      }),
      `EvLATE${randomBytes(4).toString('hex').toUpperCase()}`,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect((await w.slackEvent(reply)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 3_500));
    expect(twilioRequestsWith(w, 'Deleted at once 702')).toHaveLength(0);
  });
});

/**
 * Webhook to stored history through the real pipeline: signed webhooks over HTTP, the real inbound
 * queue and worker, identity resolution and storage in the real MongoDB-protocol server.
 */
import { cloudText, signedMeta } from '../../src/sandbox/wire-builders';
import { eventually } from '../helpers/eventually';
import { startTestApp, type TestApp } from '../helpers/app';
import { TEST_META } from '../helpers/env';
import { twilioFixture } from '../helpers/fixtures';
import { formBody, twilioHeaders } from '../helpers/signing';

const PUBLIC_URL = 'https://rapport.example.test';

/** The SMS fixture as sent from `from`, with a MessageSid of its own. */
function smsFrom(from: string, sid: string) {
  return { ...twilioFixture('sms').form, From: from, MessageSid: sid, SmsSid: sid };
}

describe('inbound pipeline', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ PUBLIC_URL });
  });
  afterAll(() => t.stop());

  const postTwilio = (form: Record<string, string | string[]>) =>
    fetch(`${t.baseUrl}/webhooks/twilio`, {
      method: 'POST',
      body: formBody(form),
      headers: twilioHeaders(`${PUBLIC_URL}/webhooks/twilio`, form),
    });

  it('files SMS and WhatsApp from one number, and a WhatsApp Cloud message, under one customer', async () => {
    const sms = smsFrom('+14155550199', 'SM' + '1'.repeat(32));
    const whatsapp = {
      ...twilioFixture('whatsapp-media').form,
      From: 'whatsapp:+14155550199',
      WaId: '14155550199',
      MessageSid: 'MM' + '2'.repeat(32),
      SmsSid: 'MM' + '2'.repeat(32),
    };
    expect((await postTwilio(sms)).status).toBe(200);
    expect((await postTwilio(whatsapp)).status).toBe(200);
    const cloud = cloudText(
      { wabaId: '118273645509182', phoneNumberId: '106540352242922', displayPhoneNumber: '15550002222' },
      { waId: '14155550199', name: 'Dana', text: 'me again', id: 'wamid.PIPELINE1', timestamp: 1795440000 },
    );
    const request = signedMeta(TEST_META.appSecret, cloud);
    const res = await fetch(`${t.baseUrl}${request.path}`, {
      method: 'POST',
      body: request.body,
      headers: request.headers,
    });
    expect(res.status).toBe(200);

    const { Message, Customer, Identity } = t.app.models;
    const messages = await eventually(
      () => Message.find({}).sort({ receivedAt: 1 }).lean(),
      (m) => m.length === 3,
    );
    expect(messages.map((m) => m.key)).toEqual([
      `twilio:SM${'1'.repeat(32)}`,
      `twilio:MM${'2'.repeat(32)}`,
      'whatsapp-cloud:wamid.PIPELINE1',
    ]);
    expect(new Set(messages.map((m) => String(m.customerId))).size).toBe(1);
    expect(await Customer.countDocuments({})).toBe(1);
    expect(await Identity.find({}).lean()).toEqual([expect.objectContaining({ key: 'phone:+14155550199' })]);
  });

  it('stores a redelivered message once', async () => {
    const form = smsFrom('+14155550177', 'SM' + '3'.repeat(32));
    expect((await postTwilio(form)).status).toBe(200);
    expect((await postTwilio(form)).status).toBe(200);
    const { Message } = t.app.models;
    await eventually(
      () => Message.countDocuments({ key: `twilio:SM${'3'.repeat(32)}` }),
      (n) => n === 1,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(await Message.countDocuments({ key: `twilio:SM${'3'.repeat(32)}` })).toBe(1);
  });

  it('stores a message whose body holds NUL characters, without them', async () => {
    const form = { ...smsFrom('+14155550166', 'SM' + '5'.repeat(32)), Body: 'hello\u0000 there\u0000' };
    expect((await postTwilio(form)).status).toBe(200);
    const { Message } = t.app.models;
    const stored = await eventually(
      () => Message.findOne({ key: `twilio:SM${'5'.repeat(32)}` }).lean<{ text?: string }>(),
      (m) => m !== null,
    );
    expect(stored?.text).toBe('hello there');
  });

  it('keeps a message from an impossible number as a failed job, not a crash or a retry loop', async () => {
    const form = smsFrom('+999', 'SM' + '4'.repeat(32));
    expect((await postTwilio(form)).status).toBe(200);
    const failed = await eventually(
      () => t.app.queues.inbound.getFailed(),
      (jobs) => jobs.length === 1,
    );
    expect(failed[0]?.attemptsMade).toBe(1);
    expect(failed[0]?.failedReason).toMatch(/invalid_payload/);
  });

  it('logged no phone number, name or message text along the way', () => {
    const logs = t.logs.join('\n');
    expect(logs).toContain('inbound message stored');
    for (const secret of [
      '4155550199',
      '4155550177',
      'me again',
      'Dana',
      'has not arrived',
      TEST_META.appSecret,
    ]) {
      expect(logs).not.toContain(secret);
    }
  });
});

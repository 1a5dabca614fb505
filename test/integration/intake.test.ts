/**
 * Intake over real HTTP and real Redis: the provider is answered only once the event is queued,
 * redeliveries never queue twice (even after the first job completed and was removed), and bad input
 * gets a clear 4xx (Redis down: 503) without queueing anything.
 */
import { Worker } from 'bullmq';
import { createRedisConnection } from '../../src/queue/connection';
import { jobIdFor } from '../../src/queue/names';
import { startTestApp, type TestApp } from '../helpers/app';
import { twilioFixture } from '../helpers/fixtures';
import { formBody, twilioHeaders } from '../helpers/signing';
import { privateRedis } from '../helpers/services';

const PUBLIC_URL = 'https://rapport.example.test';
const SMS_KEY = 'twilio:SM1f0e3c2b1a09f8e7d6c5b4a3f2e1d0c9';

describe('Twilio intake', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ PUBLIC_URL, WEBHOOK_MAX_BYTES: '4096' }, { role: 'api', waitForMongo: false });
  });
  afterAll(() => t.stop());
  afterEach(async () => {
    await t.app.queues.inbound.obliterate({ force: true });
    const keys = await t.app.redis.keys(`${t.app.config.queuePrefix}:seen:*`);
    if (keys.length) await t.app.redis.del(...keys);
  });

  const post = (body: string | Buffer, headers: Record<string, string>, path = '/webhooks/twilio') =>
    fetch(`${t.baseUrl}${path}`, { method: 'POST', body, headers });

  it('answers a signed SMS with empty TwiML and puts the canonical message on the inbound queue', async () => {
    const { raw, form } = twilioFixture('sms');
    const res = await post(raw, twilioHeaders(`${PUBLIC_URL}/webhooks/twilio`, form));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/xml/);
    expect(await res.text()).toBe('<?xml version="1.0" encoding="UTF-8"?><Response></Response>');
    const job = await t.app.queues.inbound.getJob(jobIdFor(SMS_KEY));
    expect(job?.name).toBe('message');
    expect(job?.data).toMatchObject({
      type: 'message',
      message: {
        key: SMS_KEY,
        channel: 'sms',
        from: { kind: 'phone', e164: '+14155550123' },
        text: 'Hi, my order #42 has not arrived',
      },
    });
  });

  it('checks the signature against PUBLIC_URL, so it works behind a TLS-terminating proxy', async () => {
    const { raw, form } = twilioFixture('sms');
    // Signed for the address Twilio called (https, public host), received by us over plain http.
    const res = await post(raw, twilioHeaders(`${t.baseUrl}/webhooks/twilio`, form));
    expect(res.status).toBe(403);
  });

  it('queues a message delivered twice, and again after the first job completed and was removed, once', async () => {
    const { raw, form } = twilioFixture('sms');
    const headers = twilioHeaders(`${PUBLIC_URL}/webhooks/twilio`, form);
    const [a, b] = await Promise.all([post(raw, headers), post(raw, headers)]);
    expect([a.status, b.status]).toEqual([200, 200]);

    const connection = createRedisConnection(t.app.config.redisUrl, 'worker');
    const processed: string[] = [];
    // The inbound queue is partitioned by sender; consume the partition this sender's events go to.
    const partition = (await t.app.queues.inbound.getJob(jobIdFor(SMS_KEY)))!.queueName;
    const worker = new Worker(
      partition,
      async (job) => {
        processed.push(job.id!);
      },
      { connection, prefix: t.app.config.queuePrefix, removeOnComplete: { count: 0 } },
    );
    try {
      for (let i = 0; i < 50 && processed.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 200));
      // Retention removes completed jobs; do now what it would do later.
      await (await t.app.queues.inbound.getJob(jobIdFor(SMS_KEY)))!.remove();
      expect(await t.app.queues.inbound.getJob(jobIdFor(SMS_KEY))).toBeUndefined();

      const late = await post(raw, headers);
      expect(late.status).toBe(200);
      await new Promise((r) => setTimeout(r, 300));
      expect(processed).toEqual([jobIdFor(SMS_KEY)]);
      expect(await t.app.queues.inbound.count()).toBe(0);
    } finally {
      await worker.close();
      connection.disconnect();
    }
  });

  it('records status callbacks as status events', async () => {
    const { raw, form } = twilioFixture('status-delivered');
    const res = await post(
      raw,
      twilioHeaders(`${PUBLIC_URL}/webhooks/twilio/status`, form),
      '/webhooks/twilio/status',
    );
    expect(res.status).toBe(200);
    const job = await t.app.queues.inbound.getJob(
      jobIdFor('twilio:SM9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a:delivered'),
    );
    expect(job?.data).toMatchObject({ type: 'status', status: { state: 'delivered', channel: 'sms' } });
  });

  it.each([
    ['a JSON body', 'application/json', '{"MessageSid":"SM1"}', 415],
    ['no content type', '', 'x', 415],
  ])('refuses %s with %i', async (_label, contentType, body, status) => {
    const headers: Record<string, string> = contentType ? { 'content-type': contentType } : {};
    const res = await post(body, headers);
    expect(res.status).toBe(status);
    expect(await t.app.queues.inbound.count()).toBe(0);
  });

  it('refuses a body over WEBHOOK_MAX_BYTES with 413', async () => {
    const form = { ...twilioFixture('sms').form, Body: 'x'.repeat(5000) };
    const res = await post(formBody(form), twilioHeaders(`${PUBLIC_URL}/webhooks/twilio`, form));
    expect(res.status).toBe(413);
    expect(await t.app.queues.inbound.count()).toBe(0);
  });

  it('refuses a signed but malformed message with 400', async () => {
    const { MessageSid: _a, SmsSid: _b, SmsMessageSid: _c, ...form } = twilioFixture('sms').form;
    const res = await post(formBody(form), twilioHeaders(`${PUBLIC_URL}/webhooks/twilio`, form));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { code: 'invalid_payload', message: 'missing MessageSid' } });
  });

  it('answers 200 and queues nothing for a signed message from an unsupported Twilio channel', async () => {
    const form = { ...twilioFixture('sms').form, From: 'messenger:1234567890' };
    const res = await post(formBody(form), twilioHeaders(`${PUBLIC_URL}/webhooks/twilio`, form));
    expect(res.status).toBe(200);
    expect(await t.app.queues.inbound.count()).toBe(0);
    const metrics = await (await fetch(`${t.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(
      /rapport_inbound_events_total\{channel="twilio",kind="ignored",outcome="ignored"\} 1/,
    );
  });
});

describe('Twilio intake logs', () => {
  // Trace level: every line the intake path can write is written, so "not in the logs" means something.
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ PUBLIC_URL, LOG_LEVEL: 'trace' }, { role: 'api', waitForMongo: false });
  });
  afterAll(() => t.stop());

  it('never logs the phone number, the message body or the signature, even at trace level', async () => {
    const { raw, form } = twilioFixture('sms');
    const headers = twilioHeaders(`${PUBLIC_URL}/webhooks/twilio`, form);
    const before = t.logs.length;
    expect((await fetch(`${t.baseUrl}/webhooks/twilio`, { method: 'POST', body: raw, headers })).status).toBe(
      200,
    );
    // A tampered copy is refused, and its refusal is logged too.
    const tampered = { ...headers, 'x-twilio-signature': 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=' };
    expect(
      (await fetch(`${t.baseUrl}/webhooks/twilio`, { method: 'POST', body: raw, headers: tampered })).status,
    ).toBe(403);
    const lines = t.logs.slice(before);
    // The scan has something to read: the accepted webhook and the refusal were both logged.
    expect(lines.some((l) => l.includes('webhook accepted'))).toBe(true);
    expect(lines.some((l) => l.includes('"status":403') || l.includes('signature'))).toBe(true);
    const logs = lines.join('\n');
    expect(logs).not.toContain('4155550123');
    expect(logs).not.toContain(form.Body!);
    expect(logs).not.toContain(headers['x-twilio-signature']!);
  });
});

describe('Twilio intake while Redis is down', () => {
  it('answers 503 so Twilio retries, and accepts the retry once Redis is back', async () => {
    const redis = privateRedis();
    await redis.start();
    const t = await startTestApp({ PUBLIC_URL, REDIS_URL: redis.url }, { role: 'api', waitForMongo: false });
    try {
      await redis.stop();
      const { raw, form } = twilioFixture('sms');
      const headers = twilioHeaders(`${PUBLIC_URL}/webhooks/twilio`, form);
      const res = await fetch(`${t.baseUrl}/webhooks/twilio`, { method: 'POST', body: raw, headers });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');

      await redis.start();
      let retry = 0;
      // Until the producer has reconnected (its backoff reaches 2 s; slower on a loaded machine).
      for (let i = 0; i < 150 && retry !== 200; i++) {
        await new Promise((r) => setTimeout(r, 200));
        retry = (await fetch(`${t.baseUrl}/webhooks/twilio`, { method: 'POST', body: raw, headers })).status;
      }
      expect(retry).toBe(200);
      expect(await t.app.queues.inbound.getJob(jobIdFor(SMS_KEY))).toBeDefined();
    } finally {
      await t.app.close();
      await redis.destroy();
    }
  });
});

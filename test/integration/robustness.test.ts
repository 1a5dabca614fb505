/**
 * Bad input never yields a 5xx or a queued job: mutated, truncated, mis-typed and random bodies,
 * signed and unsigned, against every inbound route; plus Meta's handshake and unknown objects.
 */
import { randomBytes } from 'node:crypto';
import { signMetaPayload } from '../../src/channels/meta/signature';
import { startTestApp, type TestApp } from '../helpers/app';
import { TEST_META } from '../helpers/env';
import { fixtureBytes, twilioFixture } from '../helpers/fixtures';
import { formBody, twilioHeaders } from '../helpers/signing';

const PUBLIC_URL = 'https://rapport.example.test';
const ACCEPTABLE = new Set([200, 400, 401, 403, 413, 415]);

/** Deterministic pseudo-random numbers, so a failure can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function mutate(input: Buffer, random: () => number): Buffer {
  const bytes = Buffer.from(input);
  switch (Math.floor(random() * 5)) {
    case 0: // flip some bytes
      for (let i = 0; i < 1 + random() * 5; i++)
        bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      return bytes;
    case 1: // truncate
      return bytes.subarray(0, Math.floor(random() * bytes.length));
    case 2: // duplicate a slice
      return Buffer.concat([bytes, bytes.subarray(0, Math.floor(random() * bytes.length))]);
    case 3: // random bytes
      return randomBytes(Math.floor(random() * 2048));
    default: // swap structural characters
      return Buffer.from(
        bytes.toString('latin1').replace(/[{}[\]"&=]/g, (c) => (random() < 0.2 ? '' : c)),
        'latin1',
      );
  }
}

describe('robustness of the inbound routes', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ PUBLIC_URL }, { role: 'api', waitForMongo: false });
  });
  afterAll(() => t.stop());
  beforeEach(async () => {
    await t.app.queues.inbound.obliterate({ force: true });
    await t.app.redis.del(`${t.app.config.queuePrefix}:last-inbound`);
  });

  const post = (path: string, body: Buffer, headers: Record<string, string>) =>
    fetch(`${t.baseUrl}${path}`, { method: 'POST', body, headers });

  it('answers 400 rather than 5xx for signed mutations of Meta payloads, and queues nothing invalid', async () => {
    const random = rng(42);
    const fixtures = ['messenger-batch', 'whatsapp-statuses', 'whatsapp-text', 'messenger-postback'].map(
      (f) => fixtureBytes(`meta/${f}.json`),
    );
    const statuses = new Map<number, number>();
    for (let i = 0; i < 400; i++) {
      const body = mutate(fixtures[i % fixtures.length]!, random);
      const signed = random() < 0.7;
      const res = await post('/webhooks/meta', body, {
        'content-type': 'application/json',
        ...(signed ? { 'x-hub-signature-256': signMetaPayload(TEST_META.appSecret, body) } : {}),
      });
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (!ACCEPTABLE.has(res.status))
        throw new Error(`status ${res.status} for body ${body.toString('base64')}`);
      if (!signed) expect(res.status).toBe(401);
    }
    expect(statuses.get(400)).toBeGreaterThan(0);
  });

  it('answers 4xx rather than 5xx for signed mutations of Twilio forms', async () => {
    const random = rng(7);
    const { raw } = twilioFixture('whatsapp-media');
    for (let i = 0; i < 300; i++) {
      const body = mutate(Buffer.from(raw), random);
      const form = Object.fromEntries(new URLSearchParams(body.toString('latin1')));
      const res = await post('/webhooks/twilio', body, twilioHeaders(`${PUBLIC_URL}/webhooks/twilio`, form));
      if (!ACCEPTABLE.has(res.status))
        throw new Error(`status ${res.status} for body ${body.toString('base64')}`);
    }
    // Whatever was accepted is a well-formed canonical message.
    const jobs = await t.app.queues.inbound.getJobs(['waiting']);
    for (const job of jobs)
      expect(job.data).toMatchObject({ type: 'message', message: { provider: 'twilio' } });
  });

  it('ignores an unknown Meta object with 200, and counts it', async () => {
    const body = Buffer.from(
      JSON.stringify({ object: 'instagram', entry: [{ id: '1', time: 1, messaging: [] }] }),
    );
    const res = await post('/webhooks/meta', body, {
      'content-type': 'application/json',
      'x-hub-signature-256': signMetaPayload(TEST_META.appSecret, body),
    });
    expect(res.status).toBe(200);
    const metrics = await (await fetch(`${t.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(
      /rapport_inbound_events_total\{channel="meta",kind="ignored",outcome="ignored"\} 1/,
    );
  });

  it('answers the Meta subscription handshake only with the right verify token', async () => {
    const ok = await fetch(
      `${t.baseUrl}/webhooks/meta?hub.mode=subscribe&hub.verify_token=${TEST_META.verifyToken}&hub.challenge=1158201444`,
    );
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('1158201444');
    const wrong = await fetch(
      `${t.baseUrl}/webhooks/meta?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1`,
    );
    expect(wrong.status).toBe(403);
  });

  it('shows the time since the last inbound message per channel in /readyz', async () => {
    const { raw, form } = twilioFixture('sms');
    expect(
      (await post('/webhooks/twilio', Buffer.from(raw), twilioHeaders(`${PUBLIC_URL}/webhooks/twilio`, form)))
        .status,
    ).toBe(200);
    const ready = (await (await fetch(`${t.baseUrl}/readyz`)).json()) as {
      channels: Record<string, { secondsSinceLastInbound?: number }>;
    };
    expect(ready.channels.sms?.secondsSinceLastInbound).toBeGreaterThanOrEqual(0);
    expect(ready.channels.messenger?.secondsSinceLastInbound).toBeUndefined();
  });

  it('refuses a form-encoded body on the Meta route with 415', async () => {
    const { form } = twilioFixture('sms');
    const res = await post('/webhooks/meta', Buffer.from(formBody(form)), {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(res.status).toBe(415);
  });
});

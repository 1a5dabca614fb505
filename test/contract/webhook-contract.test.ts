/**
 * One contract, run against every webhook adapter over real HTTP and real Redis: a validly signed
 * real-format request is accepted and every event in it is queued; a tampered body, a wrong secret
 * or a missing signature is refused and queues nothing.
 */
import { startTestApp, type TestApp } from '../helpers/app';
import { TEST_META, TEST_TWILIO } from '../helpers/env';
import { fixtureBytes } from '../helpers/fixtures';
import { signTwilioRequest } from '../../src/channels/twilio/signature';
import { parseForm } from '../../src/channels/twilio/adapter';
import { signMetaPayload } from '../../src/channels/meta/signature';
import { jobIdFor } from '../../src/queue/names';

interface ContractCase {
  name: string;
  path: string;
  fixture: string;
  contentType: string;
  signatureHeader: string;
  sign(body: Buffer, url: string, secret?: string): string;
  expectedKeys: string[];
}

const twilioCase = (fixture: string, path: string, expectedKeys: string[]): ContractCase => ({
  name: `twilio ${fixture}`,
  path,
  fixture: `twilio/${fixture}.form`,
  contentType: 'application/x-www-form-urlencoded',
  signatureHeader: 'x-twilio-signature',
  sign: (body, url, secret = TEST_TWILIO.authToken) => signTwilioRequest(secret, url, parseForm(body)),
  expectedKeys,
});

const metaCase = (fixture: string, expectedKeys: string[]): ContractCase => ({
  name: `meta ${fixture}`,
  path: '/webhooks/meta',
  fixture: `meta/${fixture}.json`,
  contentType: 'application/json',
  signatureHeader: 'x-hub-signature-256',
  sign: (body, _url, secret = TEST_META.appSecret) => signMetaPayload(secret, body),
  expectedKeys,
});

const CASES: ContractCase[] = [
  twilioCase('sms', '/webhooks/twilio', ['twilio:SM1f0e3c2b1a09f8e7d6c5b4a3f2e1d0c9']),
  twilioCase('whatsapp-media', '/webhooks/twilio', ['twilio:MM7c9a2f4e6b8d0c1e3f5a7b9c2d4e6f80']),
  twilioCase('status-failed', '/webhooks/twilio/status', [
    'twilio:SM0a1b2c3d4e5f60718293a4b5c6d7e8f9:failed',
  ]),
  metaCase('messenger-text', [
    'messenger:m_5Fq2kLr8vXzN1hPcT9wYbJ3eGaRd7uMsQ0oKiVnB4tH6yWxZcL2fAjE8gSpDmU1rOqN5vTk3hYbXw7eIaF9sGdQ',
  ]),
  metaCase('messenger-batch', [
    'messenger:m_Ae1bC2dE3fG4hI5jK6lM7nO8pQ9rS0tU1vW2xY3zA4bC5dE6fG7hI8jK9lM0nO1pQ2rS3tU4vW5xY6zA7bC8dE9f',
    'messenger:m_Lc9kD2sW7qP4xN1vB8mZ3tR6yH0gF5jA2eU9iO4oK7lM1nQ8bV3cX6zS0dT5wY2rE9uI4pA7hG1fJ6kL3mN8oB5q',
    'messenger:reaction:m_Rq7vB2nX9kL4tW1yPc8hZd3gJs6aEu0iMf5oQk2BwR7tYn4XlC1vS9hDgA6pEjF3mUcO8kNwRb0sLy5TqHx2eIdVm:react:1718883001101',
    'messenger:m_Zx8yW7vU6tS5rQ4pO3nM2lK1jI0hG9fE8dC7bA6zY5xW4vU3tS2rQ1pO0nM9lK8jI7hG6fE5dC4bA3zY2xW1vU0t',
    'messenger:m_Kp3xW8qZ1vN6rT0yLb5hJc2dGs9aEu4iMf7oQk3BwR8tYn1XlC6vS0hDgA5pEjF9mUcO2kNwRb7sLy4TqHx3eIdVg:delivered',
    'messenger:watermark:104857392018374:6841203957712046:read:1718883001500',
  ]),
  metaCase('messenger-echo', []),
  metaCase('whatsapp-text', [
    'whatsapp-cloud:wamid.HBgNNDkxNTExMjM0NTY3OBUCABIYFjNFQjBCMEQ3RjA0QTlGMkQ2QjE4N0YA',
  ]),
  metaCase('whatsapp-statuses', [
    'whatsapp-cloud:wamid.HBgNNDkxNTExMjM0NTY3OBUCABEYEjk0QzFBN0UzRjI4QjYwRDU3OQA=:sent',
    'whatsapp-cloud:wamid.HBgNNDkxNTExMjM0NTY3OBUCABEYEjk0QzFBN0UzRjI4QjYwRDU3OQA=:delivered',
    'whatsapp-cloud:wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgSQjM4RTdGMkE5QzE0RDA1NkIA:failed',
  ]),
  metaCase('whatsapp-unsupported', [
    'whatsapp-cloud:wamid.HBgNNDkxNTExMjM0NTY3OBUCABIYFjNFQjA1RDlBMkM3RjQxRTgwQjNBNjEA',
    'whatsapp-cloud:wamid.HBgNNDkxNTExMjM0NTY3OBUCABIYFjNFQjBGN0MyOUE0RDE2QjVFOEMzMjIA',
  ]),
];

function tamper(body: Buffer, contentType: string): Buffer {
  if (contentType === 'application/json') return Buffer.from(body.toString('utf8').replace(/"(\d)/, '"9$1'));
  return Buffer.from(`${body.toString('utf8')}&Injected=1`);
}

describe.each(CASES)('webhook contract: $name', (c) => {
  let t: TestApp;
  const publicUrl = 'https://rapport.example.test';
  beforeAll(async () => {
    t = await startTestApp({ PUBLIC_URL: publicUrl }, { role: 'api', waitForMongo: false });
  });
  afterAll(() => t.stop());

  async function post(body: Buffer, headers: Record<string, string>) {
    return fetch(`${t.baseUrl}${c.path}`, {
      method: 'POST',
      body,
      headers: { 'content-type': c.contentType, ...headers },
    });
  }
  async function queuedKeys(): Promise<string[]> {
    const jobs = await t.app.queues.inbound.getJobs(['waiting', 'delayed', 'active', 'completed']);
    return jobs.map((j) => j.id!).sort();
  }

  it('refuses a request without a signature (401) and queues nothing', async () => {
    const res = await post(fixtureBytes(c.fixture), {});
    expect(res.status).toBe(401);
    expect(await queuedKeys()).toEqual([]);
  });

  it('refuses a signature made with the wrong secret (403)', async () => {
    const body = fixtureBytes(c.fixture);
    const res = await post(body, { [c.signatureHeader]: c.sign(body, publicUrl + c.path, 'not-the-secret') });
    expect(res.status).toBe(403);
    expect(await queuedKeys()).toEqual([]);
  });

  it('refuses a tampered body (403)', async () => {
    const body = fixtureBytes(c.fixture);
    const signature = c.sign(body, publicUrl + c.path);
    const res = await post(tamper(body, c.contentType), { [c.signatureHeader]: signature });
    expect(res.status).toBe(403);
    expect(await queuedKeys()).toEqual([]);
  });

  it('accepts a validly signed request and queues every event in it, once', async () => {
    const body = fixtureBytes(c.fixture);
    const headers = { [c.signatureHeader]: c.sign(body, publicUrl + c.path) };
    const first = await post(body, headers);
    expect(first.status).toBe(200);
    expect(await queuedKeys()).toEqual(c.expectedKeys.map(jobIdFor).sort());
    const again = await post(body, headers);
    expect(again.status).toBe(200);
    expect(await queuedKeys()).toEqual(c.expectedKeys.map(jobIdFor).sort());
  });
});

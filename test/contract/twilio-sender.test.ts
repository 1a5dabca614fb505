/**
 * The Twilio sender, through the real `twilio` SDK, against the local Twilio emulator: the exact
 * Messages API request each kind of reply becomes, and how Twilio's failures reach the agent.
 */
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { inspect, promisify } from 'node:util';
import { createTwilioSender, type TwilioSenderOptions } from '../../src/channels/twilio/send';
import { OutboundError, type OutboundMessage } from '../../src/channels/sender';
import { startTwilioEmulator, type TwilioEmulator } from '../emulators/twilio';
import { expectNoneOf, failureOf, hangingServer, outbound } from '../helpers/outbound';

const ACCOUNT_SID = 'AC' + 'b2'.repeat(16);
const AUTH_TOKEN = 'twilio-secret-auth-token-42';
const STATUS_URL = 'https://rapport.example.test/webhooks/twilio/status';
const CUSTOMER = '+14155550100';

let emulator: TwilioEmulator;

beforeAll(async () => {
  emulator = await startTwilioEmulator({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN });
});
afterEach(() => emulator.reset());
afterAll(() => emulator.close());

function sender(overrides: Partial<TwilioSenderOptions> = {}) {
  return createTwilioSender({
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    smsFrom: '+15550001111',
    whatsappFrom: 'whatsapp:+15550002222',
    apiBaseUrl: emulator.url,
    statusCallbackUrl: STATUS_URL,
    ...overrides,
  });
}

const sms = (overrides: Partial<OutboundMessage> = {}) =>
  outbound({ channel: 'sms', provider: 'twilio', to: CUSTOMER }, overrides);

const expectNoSecret = (err: OutboundError) =>
  expectNoneOf(err, [AUTH_TOKEN, Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString('base64')]);

describe('Twilio sender: requests', () => {
  it('sends an SMS from the configured number with the status callback and returns the SM sid', async () => {
    const result = await sender().send(sms());

    expect(emulator.requests).toHaveLength(1);
    const [request] = emulator.requests;
    expect(request).toMatchObject({
      method: 'POST',
      path: `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`,
      authUser: ACCOUNT_SID,
    });
    expect(request?.params).toEqual({
      To: CUSTOMER,
      From: '+15550001111',
      Body: 'Hello from Ana',
      StatusCallback: STATUS_URL,
    });
    expect(result.provider).toBe('twilio');
    expect(result.providerMessageId).toMatch(/^SM[0-9a-f]{32}$/);
    expect(emulator.messages()[0]?.sid).toBe(result.providerMessageId);
  });

  it('replies from the business number the customer wrote to when the message names it', async () => {
    await sender().send(sms({ from: '+15559998888' }));
    expect(emulator.requests[0]?.params.From).toBe('+15559998888');
  });

  it('adds whatsapp: to both addresses of a WhatsApp reply', async () => {
    await sender({ whatsappFrom: '+15550002222' }).send(sms({ channel: 'whatsapp' }));
    expect(emulator.requests[0]?.params).toMatchObject({
      To: `whatsapp:${CUSTOMER}`,
      From: 'whatsapp:+15550002222',
    });
  });

  it('does not double the whatsapp: prefix', async () => {
    await sender().send(
      sms({ channel: 'whatsapp', to: `whatsapp:${CUSTOMER}`, from: 'whatsapp:+15550003333' }),
    );
    expect(emulator.requests[0]?.params).toMatchObject({
      To: `whatsapp:${CUSTOMER}`,
      From: 'whatsapp:+15550003333',
    });
  });

  it('sends a template as ContentSid and ContentVariables, without a Body', async () => {
    await sender().send(
      sms({
        channel: 'whatsapp',
        text: 'ignored',
        template: { id: 'HX' + 'c3'.repeat(16), variables: { '1': 'Ana', '2': 'Tuesday' } },
      }),
    );
    const params = emulator.requests[0]?.params;
    expect(params).toMatchObject({
      ContentSid: 'HX' + 'c3'.repeat(16),
      ContentVariables: '{"1":"Ana","2":"Tuesday"}',
    });
    expect(params).not.toHaveProperty('Body');
  });

  it('sends MMS media as repeated MediaUrl fields with the text as Body', async () => {
    await sender().send(
      sms({ media: [{ url: 'https://cdn.example.test/a.jpg' }, { url: 'https://cdn.example.test/b.png' }] }),
    );
    expect(emulator.requests).toHaveLength(1);
    expect(emulator.requests[0]?.params).toMatchObject({
      Body: 'Hello from Ana',
      MediaUrl: ['https://cdn.example.test/a.jpg', 'https://cdn.example.test/b.png'],
    });
  });

  it('sends WhatsApp media one item per message, the text with the first, and returns the first sid', async () => {
    const result = await sender().send(
      sms({
        channel: 'whatsapp',
        media: [{ url: 'https://cdn.example.test/a.jpg' }, { url: 'https://cdn.example.test/b.pdf' }],
      }),
    );
    expect(emulator.requests.map((r) => r.params)).toEqual([
      expect.objectContaining({ Body: 'Hello from Ana', MediaUrl: 'https://cdn.example.test/a.jpg' }),
      expect.not.objectContaining({ Body: expect.anything() }),
    ]);
    expect(emulator.requests[1]?.params.MediaUrl).toBe('https://cdn.example.test/b.pdf');
    expect(result.providerMessageId).toBe(emulator.messages()[0]?.sid);
  });

  it('refuses a message with no text, media or template without calling Twilio', async () => {
    const err = await failureOf(sender().send(sms({ text: undefined })));
    expect(err).toMatchObject({ reason: 'unsupported', retryable: false });
    expect(emulator.requests).toHaveLength(0);
  });

  it('refuses a Messenger message', async () => {
    const err = await failureOf(sender().send(sms({ channel: 'messenger' })));
    expect(err.reason).toBe('unsupported');
  });
});

describe('Twilio sender: failures', () => {
  it('a 503 is unavailable and retryable', async () => {
    emulator.failNext({ status: 503 });
    const err = await failureOf(sender().send(sms()));
    expect(err).toMatchObject({
      reason: 'unavailable',
      retryable: true,
      providerCode: '20500',
      provider: 'twilio',
    });
  });

  it('a 429 with Retry-After is rate_limited with retryAfterMs', async () => {
    emulator.failNext({ status: 429, code: 20429, message: 'Too Many Requests', retryAfterSec: 2 });
    const err = await failureOf(sender().send(sms()));
    expect(err).toMatchObject({
      reason: 'rate_limited',
      retryable: true,
      retryAfterMs: 2_000,
      providerCode: '20429',
    });
  });

  it('63016 is window_closed and not retried', async () => {
    emulator.failNext({
      status: 400,
      code: 63016,
      message: 'Failed to send freeform message because you are outside the allowed window.',
    });
    const err = await failureOf(sender().send(sms({ channel: 'whatsapp' })));
    expect(err).toMatchObject({ reason: 'window_closed', retryable: false, providerCode: '63016' });
  });

  it('a customer who sent STOP is opted_out (21610)', async () => {
    emulator.optOut(CUSTOMER);
    const err = await failureOf(sender().send(sms()));
    expect(err).toMatchObject({ reason: 'opted_out', providerCode: '21610' });
    expect(err.message).not.toContain(CUSTOMER);
  });

  it('an invalid number is invalid_recipient (21211)', async () => {
    const err = await failureOf(sender().send(sms({ to: '12' })));
    expect(err).toMatchObject({ reason: 'invalid_recipient', providerCode: '21211' });
  });

  it('a wrong auth token is auth (20003) and the token appears nowhere in the error', async () => {
    const err = await failureOf(sender({ authToken: 'wrong-token-value' }).send(sms()));
    expect(err).toMatchObject({ reason: 'auth', retryable: false, providerCode: '20003' });
    expect(inspect(err, { depth: 10 })).not.toContain('wrong-token-value');
  });

  it('only the failing recipient fails when a failure is aimed at one number', async () => {
    emulator.failNext({ status: 400, code: 21610 }, { to: '+14155550199' });
    await expect(sender().send(sms())).resolves.toMatchObject({ provider: 'twilio' });
    await expect(sender().send(sms({ to: '+14155550199' }))).rejects.toMatchObject({ reason: 'opted_out' });
  });

  it('concurrent sends on one sender each get their own Retry-After', async () => {
    emulator.failNext({ status: 429, retryAfterSec: 5 }, { to: '+14155550101' });
    emulator.failNext({ status: 503 }, { to: '+14155550102' });
    const s = sender();
    const [limited, down, ok] = await Promise.allSettled([
      s.send(sms({ to: '+14155550101' })),
      s.send(sms({ to: '+14155550102' })),
      s.send(sms({ to: '+14155550103' })),
    ]);
    expect(limited).toMatchObject({
      status: 'rejected',
      reason: { reason: 'rate_limited', retryAfterMs: 5_000 },
    });
    expect(down).toMatchObject({
      status: 'rejected',
      reason: { reason: 'unavailable', retryAfterMs: undefined },
    });
    expect(ok).toMatchObject({ status: 'fulfilled' });
  });

  it('no error of any kind carries the auth token', async () => {
    const errors: OutboundError[] = [];
    for (const failure of [
      { status: 503 },
      { status: 429, retryAfterSec: 1 },
      { status: 400, code: 63016 },
    ]) {
      emulator.failNext(failure);
      errors.push(await failureOf(sender().send(sms())));
    }
    emulator.optOut(CUSTOMER);
    errors.push(await failureOf(sender().send(sms())));
    errors.forEach(expectNoSecret);
  });
});

describe('Twilio sender: no answer', () => {
  const hanging = hangingServer();

  it('a timeout whose lookup cannot answer either is uncertain and not retried, without the token', async () => {
    const err = await failureOf(
      sender({ apiBaseUrl: hanging(), timeoutMs: 200, lookupDelayMs: 0 }).send(sms()),
    );
    expect(err).toMatchObject({ reason: 'uncertain', retryable: false, providerCode: 'timeout' });
    expectNoSecret(err);
  });

  it('a refused connection is unavailable and retryable (nothing was written)', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await failureOf(sender({ apiBaseUrl: `http://127.0.0.1:${port}` }).send(sms()));
    expect(err).toMatchObject({ reason: 'unavailable', retryable: true, providerCode: 'refused' });
    expectNoSecret(err);
  });
});

describe('Twilio sender: lost answers are looked up, not resent', () => {
  it('a lost answer: the sender lists the messages to that number and returns the one Twilio took', async () => {
    emulator.loseNext();
    const result = await sender({ lookupDelayMs: 0 }).send(sms({ text: 'Lost but sent' }));
    const stored = emulator.messages();
    expect(stored).toHaveLength(1);
    expect(result.providerMessageId).toBe(stored[0]?.sid);
    const posts = emulator.requests.filter((r) => r.method === 'POST');
    expect(posts).toHaveLength(1);
    const lists = emulator.requests.filter((r) => r.method === 'GET' && r.path.endsWith('/Messages.json'));
    expect(lists[0]?.params).toMatchObject({ To: CUSTOMER, From: '+15550001111' });
  });

  it('an earlier identical message is not taken for the lost one (it was created before the attempt)', async () => {
    await sender().send(sms({ text: 'Same words' }));
    await new Promise((r) => setTimeout(r, 1_100)); // date_created has whole seconds
    emulator.failNext({ status: 502, code: 20500 });
    const err = await failureOf(sender({ lookupDelayMs: 0 }).send(sms({ text: 'Same words' })));
    expect(err).toMatchObject({ reason: 'unavailable', retryable: true });
  });

  it('a WhatsApp message with three media and a lost answer on the second: each part exactly once', async () => {
    emulator.loseNext({ skip: 1 });
    const done: string[] = [];
    const media = ['a', 'b', 'c'].map((n) => ({ url: `https://cdn.example.test/${n}.jpg` }));
    await sender({ lookupDelayMs: 0 }).send(sms({ channel: 'whatsapp', media }), {
      done,
      onPart: async (_i, id) => void done.push(id),
    });
    const stored = emulator.messages();
    expect(stored.map((m) => m.mediaUrls[0])).toEqual(media.map((m) => m.url));
    expect(done).toEqual(stored.map((m) => m.sid));
  });

  it('a dropped connection whose message Twilio does not list was not taken: retryable', async () => {
    // POSTs are dropped unprocessed; the list answers (empty) as Twilio would.
    const dropping = createServer((req, res) => {
      if (req.method === 'POST') return req.socket.destroy();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ messages: [], next_page_uri: null, page: 0, page_size: 20, uri: req.url }));
    });
    await new Promise<void>((resolve) => dropping.listen(0, '127.0.0.1', resolve));
    const { port } = dropping.address() as AddressInfo;
    const err = await failureOf(
      sender({ apiBaseUrl: `http://127.0.0.1:${port}`, lookupDelayMs: 0 }).send(sms()),
    );
    await new Promise<void>((resolve) => dropping.close(() => resolve()));
    expect(err).toMatchObject({ reason: 'unavailable', retryable: true });
    expectNoSecret(err);
  });

  it('a timeout whose message Twilio does not list (yet) stays uncertain: it may still be in flight', async () => {
    const slow = createServer((req, res) => {
      if (req.method === 'POST') return; // never answers: the sender times out
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ messages: [], next_page_uri: null, page: 0, page_size: 20, uri: req.url }));
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const { port } = slow.address() as AddressInfo;
    const err = await failureOf(
      sender({ apiBaseUrl: `http://127.0.0.1:${port}`, timeoutMs: 200, lookupDelayMs: 0 }).send(sms()),
    );
    slow.closeAllConnections();
    await new Promise<void>((resolve) => slow.close(() => resolve()));
    expect(err).toMatchObject({ reason: 'uncertain', retryable: false, providerCode: 'timeout' });
  });
});

describe('Twilio sender: the process around it', () => {
  // AsyncLocalStorage (how the sender once carried a 429's headers) switches promise hooks on for
  // the whole process, for good: every promise of the worker then carries an async id, its trigger
  // and the store — the worker's RSS was mostly such short-lived garbage. A fresh process shows it.
  it('a send that meets a 429 still reads its Retry-After, and leaves no async context on the process\'s promises', async () => {
    emulator.failNext({ status: 429, code: 20429, message: 'Too Many Requests', retryAfterSec: 3 });
    const root = path.join(__dirname, '../..');
    const script = `
      const { createTwilioSender } = require(${JSON.stringify(path.join(root, 'src/channels/twilio/send.ts'))});
      const sender = createTwilioSender(JSON.parse(process.env.SENDER));
      const message = { channel: 'sms', provider: 'twilio', to: '${CUSTOMER}', text: 'Hello' };
      sender.send(message).catch((err) => err.retryAfterMs).then(async (retryAfterMs) => {
        await sender.send(message);
        const symbols = Object.getOwnPropertySymbols(Promise.resolve()).map(String);
        process.stdout.write(JSON.stringify({ retryAfterMs, symbols }));
      });`;
    const options = { accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN, smsFrom: '+15550001111', apiBaseUrl: emulator.url };
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['-r', require.resolve('@swc-node/register'), '-e', script],
      { env: { ...process.env, SENDER: JSON.stringify(options) }, cwd: root, timeout: 60_000 },
    );
    expect(JSON.parse(stdout)).toEqual({ retryAfterMs: 3_000, symbols: [] });
    expect(emulator.messages()).toHaveLength(1);
  }, 90_000);
});

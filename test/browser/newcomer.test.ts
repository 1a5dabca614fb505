/**
 * Issue 21, the newcomer's path in a real browser, across a restart of the Rapport PROCESS: the real
 * executable (src/main.ts) in sandbox mode, the /sandbox page driven with playwright-core through
 * Debian's chromium (loopback only). First start, seed, one customer writing on SMS and then on
 * WhatsApp, an agent's reply; then the process is stopped and started again, the same customer and a
 * new one write: each lands in their own thread and each reply reaches the right phone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Browser, Page } from 'playwright-core';
import mongoose from 'mongoose';
import { Redis } from 'ioredis';
import { TEST_ADMIN_TOKEN, uniqueName } from '../helpers/env';
import { eventually } from '../helpers/eventually';
import { rapportProcess } from '../helpers/process';
import { launchChromium, newCustomer, openCustomerThread, writeAsCustomer } from '../helpers/sandbox-page';
import { listenablePort } from '../helpers/services';

jest.setTimeout(180_000);

const REDIS = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const name = uniqueName('newcomer');
const MONGODB_URI = `${process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017'}/rapport_${name}`;

type Thread = { ts: string; text: string; replies: { text: string }[] };
type State = {
  people: { id: string; name: string }[];
  agents: { name: string }[];
  slack: { channels: { id: string; agent: string | null; threads: Thread[] }[] };
  phone: { messages: { from: string; text: string }[] } | null;
};

describe('a newcomer’s first hour, across a restart of the Rapport process', () => {
  let port = 0;
  let rapport: ChildProcess | undefined;
  let output = '';
  let browser: Browser;
  let page: Page;

  async function start(): Promise<void> {
    const r = rapportProcess([]);
    output = '';
    rapport = spawn(process.execPath, r.args, {
      cwd: r.cwd,
      env: {
        PATH: process.env.PATH,
        ...r.env,
        SANDBOX: 'true',
        PORT: String(port),
        ADMIN_TOKEN: TEST_ADMIN_TOKEN,
        REDIS_URL: REDIS,
        MONGODB_URI,
        QUEUE_PREFIX: `rapport-${name}`,
        REPLY_UNDO_SECONDS: '0',
        INBOUND_PARTITIONS: '2',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    rapport.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    rapport.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    await eventually(
      async () => output,
      (o) => o.includes('listening on http://localhost:'),
      60_000,
    );
  }
  async function stop(): Promise<void> {
    if (!rapport || rapport.exitCode !== null) return;
    rapport.kill('SIGTERM');
    const [code] = await once(rapport, 'exit');
    expect(code).toBe(0);
  }
  const base = () => `http://127.0.0.1:${port}/sandbox`;
  async function state(person?: string, app = 'sms'): Promise<State> {
    const q = person ? `?person=${person}&app=${app}` : '';
    return (await (await fetch(`${base()}/api/state${q}`)).json()) as State;
  }
  const threads = async () =>
    (await state()).slack.channels.flatMap((c) => c.threads.map((t) => ({ ...t, channel: c.id })));
  const threadWith = async (text: string) =>
    (await threads()).filter((t) => t.replies.some((r) => r.text.includes(text)));

  const write = (app: string, text: string) => writeAsCustomer(page, app, text);
  async function replyInThreadOf(customerText: string, reply: string): Promise<void> {
    const thread = await openCustomerThread(page);
    await thread.filter({ hasText: customerText }).waitFor();
    await page.fill('#slack-text', reply);
    await page.press('#slack-text', 'Enter');
    await thread.locator('.msg.human', { hasText: reply }).waitFor();
  }
  const newPerson = (who: string, phone: string) => newCustomer(page, who, phone);

  beforeAll(async () => {
    port = await listenablePort();
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await stop().catch(() => undefined);
    const connection = await mongoose.createConnection(MONGODB_URI).asPromise();
    await connection.dropDatabase();
    await connection.close();
    const redis = new Redis(REDIS);
    const keys = await redis.keys(`rapport-${name}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it('keeps every customer in their own thread and every reply on the right phone', async () => {
    // First start: an empty sandbox.
    await start();
    expect(output).toContain('sandbox is empty');
    page = await browser.newPage({ viewport: { width: 800, height: 900 } });
    page.setDefaultTimeout(30_000);
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    await page.goto(base());

    // Seed: the page says what it added.
    await page.click('#seed');
    await page.locator('#note', { hasText: 'Added agents Alex, Sam' }).waitFor();

    // A customer on two apps, then the owner's reply (it reaches the app they wrote from last).
    await newPerson('Robin Quinn', '+1 415 555 0199');
    await write('sms', 'Hello from SMS');
    await write('twilio-whatsapp', 'And now on WhatsApp');
    const robinThread = await eventually(
      () => threadWith('And now on WhatsApp'),
      (t) => t.length === 1 && t[0]!.replies.some((r) => r.text.includes('Hello from SMS')),
    );
    await replyInThreadOf('And now on WhatsApp', 'Thanks Robin, it ships tomorrow.');
    await page.locator('#phone-messages .bubble.theirs', { hasText: 'it ships tomorrow' }).waitFor();

    // Restart the Rapport process.
    await stop();
    await start();
    expect(output).toMatch(/sandbox restored \d+ records/);
    await page.reload();
    // The page shows what existed, with the same customer still picked.
    await page.locator('#phone-title', { hasText: 'Robin Quinn' }).waitFor();
    await page.locator('#phone-messages .bubble.theirs', { hasText: 'it ships tomorrow' }).waitFor();
    expect((await state()).agents.map((a) => a.name).sort()).toEqual(['Alex', 'Sam']);
    expect((await threads()).map((t) => t.ts)).toContain(robinThread[0]!.ts);
    await page.click('#seed');
    await page.locator('#note', { hasText: 'Already there: agents Alex, Sam' }).waitFor();

    // The same customer writes again: their old thread.
    await write('sms', 'Back after the restart');
    const again = await eventually(
      () => threadWith('Back after the restart'),
      (t) => t.length === 1,
    );
    expect(again[0]!.ts).toBe(robinThread[0]!.ts);

    // A new customer: a thread of their own, never an old one.
    await newPerson('Kim Lee', '+1 415 555 0142');
    await write('sms', 'First message from Kim');
    const kim = await eventually(
      () => threadWith('First message from Kim'),
      (t) => t.length === 1,
    );
    expect(kim[0]!.ts).not.toBe(robinThread[0]!.ts);
    expect(kim[0]!.replies.some((r) => r.text.includes('Robin') || r.text.includes('Hello from SMS'))).toBe(
      false,
    );

    // Replies reach the right phone: Kim's answer on Kim's phone only…
    await replyInThreadOf('First message from Kim', 'Hi Kim, welcome.');
    await page.locator('#phone-messages .bubble.theirs', { hasText: 'Hi Kim, welcome.' }).waitFor();
    // …and Robin's on Robin's.
    await page.selectOption('#person', { label: 'Robin Quinn · +14155550199' });
    await page.locator('#phone-title', { hasText: 'Robin Quinn' }).waitFor();
    await page.click('#apps button[data-app="sms"]');
    await replyInThreadOf('Back after the restart', 'Welcome back, Robin.');
    await page.locator('#phone-messages .bubble.theirs', { hasText: 'Welcome back, Robin.' }).waitFor();

    const people = (await state()).people;
    const robinId = people.find((p) => p.name === 'Robin Quinn')!.id;
    const kimId = people.find((p) => p.name === 'Kim Lee')!.id;
    const onPhone = async (id: string) =>
      (await state(id, 'sms')).phone!.messages.filter((m) => m.from === 'business').map((m) => m.text);
    expect((await onPhone(kimId)).join('\n')).not.toContain('Welcome back, Robin.');
    expect((await onPhone(robinId)).join('\n')).not.toContain('Hi Kim, welcome.');

    // The page talked to nothing but itself.
    expect(requested.filter((url) => !url.startsWith(base()))).toEqual([]);
    await page.close();
  });
});

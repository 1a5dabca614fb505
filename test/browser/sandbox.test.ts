/**
 * Sandbox mode in a real browser: Rapport built in-process from the sandbox environment (emulated
 * Twilio, Graph and Slack; real Redis and MongoDB-protocol server), the /sandbox page driven with
 * playwright-core through Debian's chromium (no browser download, nothing but the local page).
 * Screenshots of the customer's phone and the agents' Slack go to test-artifacts/.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Browser } from 'playwright-core';
import request from 'supertest';
import { buildApp, type RapportApp } from '../../src/app';
import { ConfigError, loadConfig } from '../../src/config';
import { deletePrefixedKeys } from '../../src/queue/connection';
import { sandboxRequested, startSandbox, type Sandbox } from '../../src/sandbox';
import { eventually } from '../helpers/eventually';
import {
  launchChromium,
  newCustomer,
  openCustomerThread,
  sandboxEnv,
  seedDemo,
  writeAsCustomer,
} from '../helpers/sandbox-page';

jest.setTimeout(60_000);

/** A 1×1 PNG (a real image: the browser must decode it). */
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64',
);

const ARTIFACTS = path.join(__dirname, '..', '..', 'test-artifacts');
describe('choosing sandbox mode', () => {
  it('is on only when SANDBOX says so, and a value that is not a boolean is a config error', () => {
    expect(sandboxRequested({ SANDBOX: 'true' })).toBe(true);
    expect(sandboxRequested({})).toBe(false);
    expect(sandboxRequested({ SANDBOX: 'false' })).toBe(false);
    expect(() => sandboxRequested({ SANDBOX: 'maybe' })).toThrow(ConfigError);
  });

  it('refuses to start next to real provider credentials, naming them', async () => {
    const attempt = startSandbox({
      SANDBOX: 'true',
      TWILIO_AUTH_TOKEN: 'real',
      SLACK_BOT_TOKEN: 'xoxb-real',
    });
    await expect(attempt).rejects.toThrow(ConfigError);
    await expect(attempt).rejects.toThrow(/TWILIO_AUTH_TOKEN, SLACK_BOT_TOKEN/);
  });
});

describe('the /sandbox page', () => {
  let sandbox: Sandbox | undefined;
  let app: RapportApp | undefined;
  let browser: Browser | undefined;
  let baseUrl = '';
  const logs: string[] = [];

  beforeAll(async () => {
    const env = sandboxEnv('sbx');
    sandbox = await startSandbox(env);
    const config = loadConfig({ ...env, ...sandbox.env });
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        logs.push(chunk.toString('utf8'));
        done();
      },
    });
    app = buildApp(config, { role: 'all', logDestination: destination });
    await app.mongo.ready;
    const port = await sandbox.serve(app, { port: 0 });
    baseUrl = `http://127.0.0.1:${port}`;
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    if (app) {
      await app.mongo.connection.dropDatabase().catch(() => undefined);
      await deletePrefixedKeys(app.redis, app.config.queuePrefix);
      await app.close();
    }
    await sandbox?.close();
  });

  it('is not part of a normal app', async () => {
    expect((await request(app!.http).get('/sandbox')).status).toBe(404);
    expect((await request(app!.http).get('/sandbox/api/state')).status).toBe(404);
  });

  it('shows SMS then WhatsApp from one number in one agent thread, and the agent’s reply on WhatsApp', async () => {
    const { slack } = sandbox!.emulators;
    const page = await browser!.newPage({ viewport: { width: 1440, height: 960 } });
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    page.setDefaultTimeout(20_000);

    await page.goto(`${baseUrl}/sandbox`);
    await seedDemo(page);

    // A new customer, with a number of their own.
    await newCustomer(page, 'Robin Quinn', '+1 415 555 0199');
    await page.locator('#phone-title', { hasText: 'Robin Quinn · +14155550199' }).waitFor();

    // First on SMS: Rapport takes the signed webhook and acknowledges on SMS.
    await writeAsCustomer(page, 'sms', 'Hello from SMS');
    await page.locator('#phone-messages .bubble.theirs', { hasText: 'will reply here' }).waitFor();

    // Then on WhatsApp (through Twilio) from the same number.
    await writeAsCustomer(page, 'twilio-whatsapp', 'And now on WhatsApp');

    // The agents' side: one thread holds both messages.
    const cardsWith = (text: string) =>
      ['C0INBOXALEX', 'C0INBOXSAM'].flatMap((channel) =>
        slack
          .messages(channel)
          .filter((m) => m.metadata?.event_type === 'rapport_card')
          .filter((card) => slack.thread(channel, card.ts).some((r) => r.text.includes(text))),
      );
    await eventually(
      async () => cardsWith('And now on WhatsApp'),
      (cards) => cards.length > 0,
    );
    const thread = await openCustomerThread(page);
    await thread.filter({ hasText: 'Hello from SMS' }).filter({ hasText: 'And now on WhatsApp' }).waitFor();
    expect(await page.locator('#threads .thread', { hasText: 'Hello from SMS' }).count()).toBe(1);
    expect(cardsWith('Hello from SMS')).toHaveLength(1);
    expect(cardsWith('Hello from SMS')[0]?.ts).toBe(cardsWith('And now on WhatsApp')[0]?.ts);

    // The owner replies in the thread (the page acts as the channel's agent).
    await page.fill('#slack-text', 'Thanks Robin, it ships tomorrow.');
    await page.press('#slack-text', 'Enter');
    await thread.locator('.msg.human', { hasText: 'it ships tomorrow' }).waitFor();

    // The customer sees it on WhatsApp, the app they wrote from last.
    const reply = page.locator('#phone-messages .bubble.theirs', {
      hasText: 'Thanks Robin, it ships tomorrow.',
    });
    await reply.waitFor();
    // Their phone reports it read: the agent's message gets 👀.
    await reply.locator('button[data-status="read"]').click();
    await thread
      .locator('.msg.human', { hasText: 'it ships tomorrow' })
      .locator('.reaction[title=":eyes:"]')
      .waitFor();

    mkdirSync(ARTIFACTS, { recursive: true });
    await thread.locator('.msg.human', { hasText: 'it ships tomorrow' }).scrollIntoViewIfNeeded();
    await page.locator('#phone-side').screenshot({ path: path.join(ARTIFACTS, 'sandbox-customer.png') });
    await page.locator('#slack').screenshot({ path: path.join(ARTIFACTS, 'sandbox-agents.png') });

    // The page talked to nothing but itself.
    expect(requested.filter((url) => !url.startsWith(`${baseUrl}/sandbox`))).toEqual([]);
    await page.close();
  });

  it('attaches photos on both sides and shows them inline on the phone and in Slack', async () => {
    const { slack, graph } = sandbox!.emulators;
    const page = await browser!.newPage({ viewport: { width: 1440, height: 960 } });
    page.setDefaultTimeout(20_000);
    await page.goto(`${baseUrl}/sandbox`);
    await seedDemo(page);
    await newCustomer(page, 'Pat Lens', '+1 415 555 0177');

    // The customer sends a photo on WhatsApp (Cloud API).
    await page.click('#apps button[data-app="whatsapp-cloud"]');
    await page.fill('#phone-text', 'my broken part');
    await page.setInputFiles('#phone-file', { name: 'part.png', mimeType: 'image/png', buffer: PNG });
    await page.click('#phone-compose button[type=submit]');
    await page.locator('#phone-messages .bubble.mine img.inline').waitFor();
    const fileIn = await eventually(
      async () =>
        ['C0INBOXALEX', 'C0INBOXSAM'].flatMap((c) => slack.messages(c).filter((m) => m.files?.length)),
      (m) => m.length > 0,
    );
    expect(slack.fileContent(fileIn[0]!.files![0]!.id)?.equals(PNG)).toBe(true);
    const thread = await openCustomerThread(page);
    await thread.locator('img.inline').first().waitFor();
    expect(
      await thread
        .locator('img.inline')
        .first()
        .evaluate((i) => (i as unknown as { naturalWidth: number }).naturalWidth),
    ).toBe(1);

    // The agent answers with a photo: it reaches the phone (uploaded to the Cloud API) and shows there.
    await page.fill('#slack-text', 'a new one is on its way');
    await page.setInputFiles('#slack-file', { name: 'new.png', mimeType: 'image/png', buffer: PNG });
    await page.click('#slack-compose button[type=submit]');
    const sent = await eventually(
      async () => graph.whatsappMessages().find((m) => m.type === 'image' && m.waId === '14155550177'),
      Boolean,
    );
    const id = (sent!.body.image as { id: string }).id;
    expect(graph.uploadedMedia(id)?.data.equals(PNG)).toBe(true);
    const shown = page.locator('#phone-messages .bubble.theirs img.inline');
    await shown.waitFor();
    expect(await shown.evaluate((i) => (i as unknown as { naturalWidth: number }).naturalWidth)).toBe(1);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page
      .locator('#phone-side')
      .screenshot({ path: path.join(ARTIFACTS, 'sandbox-media-customer.png') });
    await page.close();
  });
});

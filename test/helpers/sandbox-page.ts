/**
 * Driving the /sandbox page in a real browser (playwright-core through Debian's chromium, loopback
 * only), and the environment a sandbox under test starts from.
 */
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { privateStores, TEST_ADMIN_TOKEN, uniqueName } from './env';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
}

/** A sandbox's environment with its own database and queue prefix. */
export function sandboxEnv(prefix: string, logLevel = 'info'): NodeJS.ProcessEnv {
  return {
    PORT: '0',
    ...privateStores(uniqueName(prefix)),
    ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    LOG_LEVEL: logLevel,
    REPLY_UNDO_SECONDS: '0',
    INBOUND_PARTITIONS: '2',
  };
}

/** "Seed demo data"; resolves once the page lists the seeded agents. */
export async function seedDemo(page: Page): Promise<void> {
  await page.click('#seed');
  await page.locator('#agent option', { hasText: 'Sam' }).waitFor({ state: 'attached' });
}

/** "New customer…" on the page: `who` with `phone`, then picked. */
export async function newCustomer(page: Page, who: string, phone: string): Promise<void> {
  await page.click('#new-person');
  await page.fill('#person-name', who);
  await page.fill('#person-phone', phone);
  await page.click('#person-form button[type=submit]');
  await page.locator('#phone-title', { hasText: who }).waitFor();
}

/** The picked customer writes `text` on `app`; resolves once Rapport took it. */
export async function writeAsCustomer(page: Page, app: string, text: string): Promise<void> {
  await page.click(`#apps button[data-app="${app}"]`);
  await page.fill('#phone-text', text);
  await page.press('#phone-text', 'Enter');
  await page
    .locator('#phone-messages .bubble.mine', { hasText: text })
    .filter({ hasText: 'received by Rapport' })
    .waitFor();
}

/** "Show thread in Slack" on the customer's card, once: the open thread. */
export async function openCustomerThread(page: Page): Promise<Locator> {
  await page.locator('#profile button[data-thread]').first().click();
  const thread = page.locator('#threads .thread.on');
  await thread.waitFor();
  return thread;
}

/**
 * The real whatsapp-web.js Client with Debian's chromium, RemoteAuth on our MongoDB store, and no
 * way off this machine: every host name resolves to a closed loopback port, and Chromium's own
 * background traffic is off. Rapport must report "cannot reach WhatsApp Web" as state
 * `unreachable` with a detail — not crash, not hang — and leave no Chromium behind.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { eventually } from '../helpers/eventually';
import { createWhatsAppWebHarness, type WhatsAppWebHarness } from '../fakes/whatsapp-web-client';

/** Only loopback: any name → 127.0.0.1:9 (discard; nothing listens, so connections are refused). */
const LOOPBACK_ONLY = [
  '--host-resolver-rules=MAP * 127.0.0.1:9, EXCLUDE localhost',
  '--proxy-server=127.0.0.1:9',
  '--proxy-bypass-list=<-loopback>',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--no-sandbox',
  '--disable-gpu',
  '--headless=new',
];

/** Chromium processes started for this test: their command line names its private data directory. */
function chromiumsUsing(dir: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', dir], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

describe('whatsapp-web with the real Client and Chromium, offline', () => {
  let h: WhatsAppWebHarness;
  let dataPath: string;
  beforeAll(async () => {
    h = await createWhatsAppWebHarness('wwebchromium');
    dataPath = mkdtempSync(path.join(os.tmpdir(), 'rapport-wweb-chromium-'));
  });
  afterAll(async () => {
    await h.close();
    rmSync(dataPath, { recursive: true, force: true });
  });

  it('reports WhatsApp Web as unreachable with a clear detail, then stops without leaving Chromium running', async () => {
    const channel = h.channel({
      clientId: 'offline',
      chromiumPath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      dataPath,
      puppeteerArgs: LOOPBACK_ONLY,
      // One attempt is enough to show the state; no second Chromium during the test.
      reconnect: { initialMs: 60_000, maxMs: 60_000, alertAfter: 3 },
      startTimeoutMs: 20_000,
    });
    const started = Date.now();
    await channel.start();
    const state = await eventually(
      async () => channel.state(),
      (s) => s.state === 'unreachable' || s.state === 'failed',
      20_000,
    );
    expect(state).toMatchObject({
      state: 'unreachable',
      detail: expect.stringMatching(/^cannot reach WhatsApp Web \(net::ERR_/),
    });
    expect(Date.now() - started).toBeLessThan(20_000);
    // RemoteAuth ran: it asked our MongoDB store for a saved session, found none, made a fresh profile.
    expect(existsSync(path.join(dataPath, 'RemoteAuth-offline'))).toBe(true);
    expect(channel.readiness()).toMatchObject({ ok: false, state: 'unreachable' });
    const metrics = await h.registry.metrics();
    expect(metrics).toContain('rapport_whatsapp_web_state{client_id="offline",state="unreachable"} 1');

    await channel.stop();
    const left = await eventually(
      async () => chromiumsUsing(dataPath),
      (pids) => pids.length === 0,
      10_000,
    );
    expect(left).toEqual([]);
  }, 45_000);
});

/**
 * A process loads only the packages its role uses: bull-board (the dashboard) only where it is
 * mounted (api, all), qrcode and whatsapp-web.js only where a WhatsApp Web session runs, and no
 * process twilio's TwiML builder (xmlbuilder; the sender and the signature check import twilio's
 * REST client and webhook functions, not its index). Each is resident memory in every process that
 * loads it (bench/e2e measures the RSS per process).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { testEnv } from '../helpers/env';

const ROOT = path.join(__dirname, '../..');

/**
 * The packages of `packages` (or, as `src/…` paths without extension, Rapport's own modules) a fresh
 * process has loaded once buildApp(config, { role }) is built and ready.
 */
async function loadedBy(role: 'api' | 'worker', packages: string[]): Promise<string[]> {
  const script = `
    const { buildApp } = require(${JSON.stringify(path.join(ROOT, 'src/app.ts'))});
    const { loadConfig } = require(${JSON.stringify(path.join(ROOT, 'src/config.ts'))});
    const app = buildApp(loadConfig(process.env), { role: ${JSON.stringify(role)} });
    app.mongo.ready.then(async () => {
      const loaded = Object.keys(require.cache);
      const root = ${JSON.stringify(ROOT + '/')};
      const found = ${JSON.stringify(packages)}.filter((p) =>
        loaded.some((f) => (p.startsWith('src/') ? f.startsWith(root + p + '.') : f.includes('/node_modules/' + p + '/'))),
      );
      await app.mongo.connection.dropDatabase().catch(() => undefined);
      await app.close();
      process.stdout.write(JSON.stringify(found));
      process.exit(0);
    });`;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['-r', require.resolve('@swc-node/register'), '-e', script],
    { env: { ...process.env, ...testEnv({ LOG_LEVEL: 'error' }) }, cwd: ROOT, timeout: 60_000 },
  );
  return JSON.parse(stdout) as string[];
}

describe('modules loaded per role', () => {
  const heavy = ['@bull-board/api', '@bull-board/express', 'qrcode', 'whatsapp-web.js'];

  it('a worker loads neither the dashboard nor the WhatsApp Web session packages', async () => {
    expect(await loadedBy('worker', heavy)).toEqual([]);
  }, 90_000);

  it('an api loads the dashboard it mounts, and no session package', async () => {
    expect(await loadedBy('api', heavy)).toEqual(['@bull-board/api', '@bull-board/express']);
  }, 90_000);

  it("a worker loads none of the traffic routes: webhooks' adapters, Slack's routes, the admin API", async () => {
    const traffic = [
      'src/http/api-surface',
      'src/http/webhooks',
      'src/channels/meta/adapter',
      'src/http/slack',
      'src/http/admin-agents',
      'src/http/openapi',
    ];
    expect(await loadedBy('worker', traffic)).toEqual([]);
    expect(await loadedBy('api', traffic)).toEqual(traffic);
  }, 180_000);

  it("neither a worker nor an api loads twilio's TwiML builder (only its REST client and signature check)", async () => {
    expect(await loadedBy('worker', ['twilio', 'xmlbuilder'])).toEqual(['twilio']);
    expect(await loadedBy('api', ['twilio', 'xmlbuilder'])).toEqual(['twilio']);
  }, 180_000);
});

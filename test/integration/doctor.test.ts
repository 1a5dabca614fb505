/**
 * `rapport doctor` as an operator runs it (`runCli(['doctor', …])`, output captured), against the
 * Slack, Twilio and Graph emulators and the real Redis and MongoDB-protocol server: all green on a
 * good setup; then a wrong Slack token, a missing Meta secret and Redis down, each reported with its
 * fix and exit code 1. Every provider URL points at a local emulator: nothing leaves this machine.
 */
import { createServer } from 'node:net';
import { runCli } from '../../src/cli';
import { dataMarkerKey, markerKeyId } from '../../src/privacy/erase';
import type { DoctorCheck, DoctorReport } from '../../src/doctor/types';
import { startGraphEmulator, type GraphEmulator } from '../emulators/graph';
import { startSlackEmulator, type SlackEmulator } from '../emulators/slack';
import { startTwilioEmulator, type TwilioEmulator } from '../emulators/twilio';
import { TEST_TWILIO, startTestApp, testEnv, uniqueName, type TestApp } from '../helpers/app';
import { startPrivateCluster, type PrivateCluster } from '../helpers/redis-cluster';
import { restoreEnv } from '../helpers/cli';

const SLACK_SECRET = 'test-slack-signing-secret';
const PAGE_ID = '100000000000001';
const CLOUD_PHONE_ID = '106540352242922';

let slack: SlackEmulator;
let twilio: TwilioEmulator;
let graph: GraphEmulator;
let app: TestApp;
let goodEnv: NodeJS.ProcessEnv;

interface Run {
  code: number;
  out: string[];
  err: string[];
}

/** Runs `rapport doctor …` in-process with `env` applied over the environment (undefined = unset). */
async function doctor(env: NodeJS.ProcessEnv, args: string[] = []): Promise<Run> {
  const saved = { ...process.env };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  const out: string[] = [];
  const err: string[] = [];
  try {
    // runCli's io type is inferred from process.stdout.write, which answers a boolean.
    const io = { out: (l: string) => out.push(l) > 0, err: (l: string) => err.push(l) > 0 };
    const code = await runCli(['doctor', '--timeout', '3s', ...args], io);
    return { code, out, err };
  } finally {
    restoreEnv(saved);
  }
}

async function doctorJson(env: NodeJS.ProcessEnv): Promise<{ code: number; report: DoctorReport }> {
  const run = await doctor(env, ['--json']);
  return { code: run.code, report: JSON.parse(run.out.join('\n')) as DoctorReport };
}

const check = (report: DoctorReport, id: string): DoctorCheck => {
  const found = report.checks.find((c) => c.id === id);
  if (!found) throw new Error(`no check ${id} in ${report.checks.map((c) => c.id).join(', ')}`);
  return found;
};
const failures = (report: DoctorReport) => report.checks.filter((c) => c.status === 'fail');

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

beforeAll(async () => {
  [slack, twilio, graph] = await Promise.all([
    startSlackEmulator({ token: 'xoxb-test-token' }),
    startTwilioEmulator(TEST_TWILIO),
    startGraphEmulator({
      whatsappToken: 'test-cloud-token',
      pageToken: 'test-page-token',
      phoneNumberId: CLOUD_PHONE_ID,
      pageId: PAGE_ID,
    }),
  ]);
  const name = uniqueName('doctor');
  const shared = {
    MONGODB_URI: `${process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017'}/rapport_${name}`,
    QUEUE_PREFIX: `rapport-${name}`,
    SLACK_BOT_TOKEN: slack.token,
    SLACK_SIGNING_SECRET: SLACK_SECRET,
    SLACK_API_URL: slack.url,
    TWILIO_API_BASE_URL: twilio.url,
    META_GRAPH_BASE_URL: graph.url,
    LOG_LEVEL: 'silent',
  };
  // A running Rapport: it builds the unique indexes doctor looks for and answers PUBLIC_URL/healthz.
  app = await startTestApp(shared, { role: 'api' });
  goodEnv = testEnv({ ...shared, PUBLIC_URL: app.baseUrl });
});

afterAll(async () => {
  await app?.stop();
  await Promise.all([slack?.close(), twilio?.close(), graph?.close()]);
});

describe('rapport doctor: DATA_KEY', () => {
  it('warns without DATA_KEY, and fails when erased opt-out markers were written with a key no longer configured', async () => {
    const noKey = await doctorJson({ ...goodEnv, DATA_KEY: '' });
    expect(check(noKey.report, 'config.data-key')).toMatchObject({
      status: 'warn',
      detail: expect.stringContaining('503 data_key_missing'),
    });
    // A marker as an erasure under an earlier DATA_KEY wrote it.
    const oldKey = 'an-earlier-data-key-0123456789abcdef';
    const markers = app.app.mongo.connection.db!.collection('erased_opt_outs');
    await markers.insertOne({
      _id: 'doctor-test-marker' as never,
      kid: markerKeyId(dataMarkerKey(oldKey)),
      channel: 'sms',
      at: new Date(),
    });
    try {
      const rotated = await doctorJson(goodEnv);
      expect(check(rotated.report, 'config.data-key.markers')).toMatchObject({
        status: 'fail',
        fix: expect.stringContaining('DATA_KEY_PREVIOUS'),
      });
      expect(rotated.code).toBe(1);
      const kept = await doctorJson({ ...goodEnv, DATA_KEY_PREVIOUS: oldKey });
      expect(check(kept.report, 'config.data-key.markers').status).toBe('ok');
    } finally {
      await markers.deleteOne({ _id: 'doctor-test-marker' as never });
    }
  });
});

describe('rapport doctor', () => {
  it('is all green against the emulators and the real Redis and MongoDB, and exits 0', async () => {
    slack.reset();
    twilio.reset();
    graph.reset();
    const { code, report } = await doctorJson(goodEnv);

    expect(failures(report)).toEqual([]);
    expect(code).toBe(0);
    expect(report.exitCode).toBe(0);
    for (const id of [
      'config.valid',
      'redis.version',
      'mongodb.version',
      'mongodb.indexes',
      'public-url.reachable',
      'twilio.account',
      'graph.messenger',
      'graph.whatsapp-cloud',
      'slack.auth',
    ]) {
      expect(check(report, id).status).toBe('ok');
    }
    expect(check(report, 'mongodb.indexes').detail).toEqual(expect.stringContaining('identities.key'));
    for (const index of [
      'messages.key',
      'agent_posts.key',
      'customer_sends.key',
      'slack_threads.{channel,ts}',
    ]) {
      expect(check(report, 'mongodb.indexes').detail).toContain(index);
    }
    expect(check(report, 'slack.auth').detail).toContain(slack.botUserId);
    // http PUBLIC_URL in the test: a warning with its fix, not a failure.
    expect(check(report, 'public-url.https')).toMatchObject({
      status: 'warn',
      fix: expect.stringContaining('https://'),
    });

    expect(report.channels).toEqual(
      expect.arrayContaining([
        { channel: 'sms', enabled: true },
        { channel: 'slack', enabled: true },
        { channel: 'whatsapp-web', enabled: false, reason: 'WHATSAPP_WEB_ENABLED is false' },
      ]),
    );
    const urls = Object.fromEntries(report.webhooks.map((p) => [p.provider, p.urls.map((u) => u.value)]));
    expect(urls).toEqual({
      twilio: [`${app.baseUrl}/webhooks/twilio`, `${app.baseUrl}/webhooks/twilio/status`],
      meta: [`${app.baseUrl}/webhooks/meta`],
      slack: [
        `${app.baseUrl}/slack/events`,
        `${app.baseUrl}/slack/commands`,
        `${app.baseUrl}/slack/interactions`,
      ],
    });
    const metaNotes = report.webhooks.find((p) => p.provider === 'meta')!.notes.join('\n');
    expect(metaNotes).toContain('messages, messaging_postbacks, message_deliveries, message_reads');
    expect(metaNotes).toContain('META_VERIFY_TOKEN');

    // The harmless calls really reached the (emulated) providers, with the configured credentials.
    expect(slack.callsTo('auth.test')).toHaveLength(1);
    expect(twilio.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET /2010-04-01/Accounts/${TEST_TWILIO.accountSid}.json`,
    ]);
    expect(graph.requests.filter((r) => r.path === '/v21.0/me')).toHaveLength(2);
  });

  it('prints a readable report with marks, the webhook URLs and the summary', async () => {
    const { code, out } = await doctor(goodEnv);
    const text = out.join('\n');
    if (process.env.DOCTOR_PRINT) console.log(text);
    expect(code).toBe(0);
    expect(text).toMatch(/✓ Slack auth\.test +bot /);
    expect(text).toMatch(/! PUBLIC_URL +http:\/\/127\.0\.0\.1:\d+ is http/);
    expect(text).toContain('Webhook URLs to paste');
    expect(text).toContain(`A message comes in (Webhook, HTTP POST)  ${app.baseUrl}/webhooks/twilio`);
    expect(text).toMatch(/\d+ ok, \d+ warnings?, 0 failed/);
    // Secrets never appear in the output.
    for (const secret of [
      TEST_TWILIO.authToken,
      'test-page-token',
      'test-cloud-token',
      slack.token,
      SLACK_SECRET,
    ]) {
      expect(text).not.toContain(secret);
    }
  });

  it('reports a wrong Slack token as invalid_auth with the fix, and exits 1', async () => {
    const env = { ...goodEnv, SLACK_BOT_TOKEN: 'xoxb-not-the-right-token' };
    const { code, report } = await doctorJson(env);
    expect(code).toBe(1);
    expect(failures(report).map((c) => c.id)).toEqual(['slack.auth']);
    expect(check(report, 'slack.auth')).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('invalid_auth'),
      fix: expect.stringContaining('Bot User OAuth Token (xoxb-…)'),
    });

    const human = (await doctor(env)).out.join('\n');
    expect(human).toMatch(/✗ Slack auth\.test +refused: invalid_auth/);
    expect(human).toMatch(/FIX: SLACK_BOT_TOKEN is not a valid token/);
    expect(human).toMatch(/1 failed — fix the ✗ lines above/);
  });

  it('reports a missing Meta app secret as a configuration problem naming where to get it, and exits 1', async () => {
    const { code, report } = await doctorJson({ ...goodEnv, META_APP_SECRET: undefined });
    expect(code).toBe(1);
    const problems = failures(report);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({
      section: 'config',
      detail: expect.stringContaining('META_APP_SECRET is missing for Meta webhooks'),
      fix: expect.stringContaining('App settings → Basic → App secret'),
    });
    // The services are still checked, so one run shows everything.
    expect(check(report, 'redis.version').status).toBe('ok');
    expect(check(report, 'mongodb.version').status).toBe('ok');
  });

  it('reports Redis down with the fix, and exits 1', async () => {
    const port = await closedPort();
    const started = Date.now();
    const { code, report } = await doctorJson({ ...goodEnv, REDIS_URL: `redis://127.0.0.1:${port}` });
    expect(code).toBe(1);
    expect(failures(report).map((c) => c.id)).toEqual(['redis.reachable']);
    expect(check(report, 'redis.reachable')).toMatchObject({
      detail: expect.stringContaining(`cannot reach redis://127.0.0.1:${port}`),
      fix: expect.stringContaining('Start Redis or correct REDIS_URL'),
    });
    expect(check(report, 'mongodb.version').status).toBe('ok');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('refuses a malformed --timeout with usage and exit code 2', async () => {
    const run = await doctor(goodEnv, ['--timeout', 'soon']);
    expect(run.code).toBe(2);
    expect(run.err.join('\n')).toContain('Usage: rapport doctor');
  });
});

describe('rapport doctor on a Redis Cluster', () => {
  let cluster: PrivateCluster;
  beforeAll(async () => {
    cluster = await startPrivateCluster();
  }, 60_000);
  afterAll(() => cluster?.stop());

  it('checks every listed node and the cluster state', async () => {
    const { code, report } = await doctorJson({ ...goodEnv, REDIS_URL: cluster.url });
    const clusterChecks = report.checks.filter((c) => c.id === 'redis.cluster');
    expect(clusterChecks).toHaveLength(3);
    for (const c of clusterChecks)
      expect(c).toMatchObject({
        status: 'ok',
        detail: expect.stringContaining('cluster_state ok, 3 masters'),
      });
    expect(failures(report)).toEqual([]);
    expect(code).toBe(0);
  });

  it('fails a REDIS_URL that names one node of a cluster, with the fix', async () => {
    const one = cluster.url.split(',')[0]!;
    const { code, report } = await doctorJson({ ...goodEnv, REDIS_URL: one });
    expect(code).toBe(1);
    expect(check(report, 'redis.cluster')).toMatchObject({
      status: 'fail',
      fix: expect.stringContaining('List the cluster nodes in REDIS_URL'),
    });
  });
});

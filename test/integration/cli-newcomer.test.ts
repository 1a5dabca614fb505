/**
 * Issue 21, operator tools: the CLI reads `.env` from the working directory (as `npm start` does),
 * answers `-h`/`--help` at every level without any configuration, finds a customer by phone, and
 * `rapport doctor` understands sandbox mode and the PORT a sandbox runs on.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runDoctorCli } from '../../src/cli/doctor';
import type { DoctorReport } from '../../src/doctor/types';
import { TEST_ADMIN_TOKEN, uniqueName } from '../helpers/env';
import { eventually } from '../helpers/eventually';
import { rapportProcess } from '../helpers/process';
import { startSandboxApp, type SandboxApp } from '../helpers/sandbox-app';
import { startWorld, type World } from '../helpers/world';
import { restoreEnv, runCliCaptured } from '../helpers/cli';

jest.setTimeout(60_000);

const REDIS = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';

const cli = runCliCaptured;

describe('the rapport executable reads .env from the working directory', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rapport-dotenv-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs `agents list` with only a .env (no ADMIN_TOKEN in the environment)', async () => {
    const name = uniqueName('dotenv');
    writeFileSync(
      path.join(dir, '.env'),
      [
        '# as npm start writes it, plus where the test services are',
        `ADMIN_TOKEN=${TEST_ADMIN_TOKEN}`,
        `REDIS_URL=${REDIS}`,
        `MONGODB_URI="${MONGO}/rapport_${name}"`,
        `QUEUE_PREFIX=rapport-${name}`,
        'LOG_LEVEL=silent',
      ].join('\n'),
    );
    const r = rapportProcess(['agents', 'list'], dir);
    const child = spawn(process.execPath, r.args, {
      cwd: r.cwd,
      env: { PATH: process.env.PATH, ...r.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code] = await once(child, 'exit');
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(stdout).toContain('No agents yet');
  });
});

describe('rapport --help', () => {
  it.each([
    [['--help'], /operator commands/],
    [['-h'], /operator commands/],
    [['help', 'agents'], /Usage: rapport agents/],
    [['agents', '--help'], /Usage: rapport agents/],
    [['agents', 'list', '-h'], /Usage: rapport agents/],
    [['customers', 'export', '--help'], /phone number/],
    [['dlq', 'replay', '-h'], /Usage: rapport dlq/],
    [['doctor', '--help'], /SANDBOX=true/],
  ])('`rapport %s` explains itself with no configuration at all', async (argv, expected) => {
    const saved = process.env.ADMIN_TOKEN;
    delete process.env.ADMIN_TOKEN;
    try {
      const run = await cli(...argv);
      expect(run.err).toBe('');
      expect(run.code).toBe(0);
      expect(run.out).toMatch(expected);
    } finally {
      if (saved !== undefined) process.env.ADMIN_TOKEN = saved;
    }
  });
});

describe('rapport customers, naming the customer by phone', () => {
  let w: World;
  const saved = { ...process.env };
  beforeAll(async () => {
    w = await startWorld();
    const c = w.t.app.config;
    Object.assign(process.env, {
      ADMIN_TOKEN: c.adminToken,
      MONGODB_URI: c.mongodbUri,
      REDIS_URL: c.redisUrl,
      QUEUE_PREFIX: c.queuePrefix,
      LOG_LEVEL: 'silent',
      DEFAULT_REGION: 'US',
    });
  });
  afterAll(async () => {
    restoreEnv(saved);
    await w.stop();
  });

  it('exports the customer found by their phone in any usual format, and says when nobody has it', async () => {
    await w.sms('+14155550166', 'hello from 166');
    const found = await eventually(
      () => w.admin('GET', '/customers?phone=%2B14155550166'),
      (r) => r.body.customers?.length === 1,
    );
    const id = found.body.customers[0].id as string;
    const run = await cli('customers', 'export', '(415) 555-0166');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.out).customer.id).toBe(id);
    const byId = await cli('customers', 'export', id);
    expect(JSON.parse(byId.out).customer.id).toBe(id);
    const nobody = await cli('customers', 'export', '+14155550999');
    expect(nobody.code).toBe(1);
    expect(nobody.err).toContain('no customer has phone +14155550999');
  });
});

describe('rapport doctor in sandbox mode', () => {
  const name = uniqueName('docsbx');
  const env: NodeJS.ProcessEnv = {
    SANDBOX: 'true',
    ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    REDIS_URL: REDIS,
    MONGODB_URI: `${MONGO}/rapport_${name}`,
    QUEUE_PREFIX: `rapport-${name}`,
    LOG_LEVEL: 'silent',
    PORT: '0',
  };
  let running: SandboxApp;
  let port = 0;
  beforeAll(async () => {
    running = await startSandboxApp(env);
    port = running.port;
  });
  afterAll(() => running.destroy());

  async function doctor(extra: NodeJS.ProcessEnv): Promise<{ code: number; report: DoctorReport }> {
    const out: string[] = [];
    const code = await runDoctorCli(
      ['--json', '--timeout', '3s'],
      { out: (l) => out.push(l), err: () => undefined },
      {
        ...env,
        ...extra,
      },
    );
    return { code, report: JSON.parse(out.join('\n')) as DoctorReport };
  }

  it('reports the emulated channels and the sandbox answering on PORT', async () => {
    const { code, report } = await doctor({ PORT: String(port) });
    expect(report.channels.filter((c) => c.enabled).map((c) => c.channel)).toEqual([
      'sms',
      'twilio-whatsapp',
      'whatsapp-cloud',
      'messenger',
      'slack',
    ]);
    expect(report.channels.find((c) => c.channel === 'whatsapp-web')?.reason).toMatch(/real phone/);
    expect(report.checks.find((c) => c.id === 'sandbox.running')).toMatchObject({ status: 'ok' });
    expect(report.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(report.webhooks).toEqual([]);
    expect(code).toBe(0);
  });

  it('warns, with the command to run, when no sandbox answers on PORT', async () => {
    const { report } = await doctor({ PORT: '9' });
    expect(report.checks.find((c) => c.id === 'sandbox.running')).toMatchObject({
      status: 'warn',
      fix: expect.stringContaining('npm start'),
    });
  });
});

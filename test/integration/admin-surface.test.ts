/**
 * The admin surface as an attacker meets it, through the real app (`buildApp`, real HTTP, real
 * Redis): `/api` and `/admin/queues` share one limiter and one token check; failed authentication
 * is limited per peer (10 a minute, then 429 with Retry-After), and rotating `X-Forwarded-For` does
 * not help unless TRUST_PROXY says a proxy sets it; named tokens name the actor in the audit log;
 * the CLI presents the token it is given.
 *
 * Peers: Linux routes all of 127.0.0.0/8 to loopback, so each test binds its requests to its own
 * source address (127.0.0.x) and so is its own client.
 */
import { request as httpRequest } from 'node:http';
import { loadConfig } from '../../src/config';
import { startTestApp, testEnv, TEST_ADMIN_TOKEN, type TestApp } from '../helpers/app';
import { twilioFixture } from '../helpers/fixtures';
import { twilioHeaders } from '../helpers/signing';
import { restoreEnv, runCliCaptured } from '../helpers/cli';

const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdef00';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request from source address `peer`. */
function call(
  base: string,
  peer: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method,
        headers,
        localAddress: peer,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const basic = (password: string) => ({
  authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`,
});
const xff = (ip: string) => ({ 'x-forwarded-for': ip });

describe('admin surface (TRUST_PROXY unset)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ ADMIN_TOKENS: `alice:${ALICE},bob:${BOB}` }, { role: 'api' });
  });
  afterAll(() => t.stop());

  it('limits failed authentication per peer, however the client rotates X-Forwarded-For', async () => {
    const peer = '127.0.0.11';
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await call(t.baseUrl, peer, 'GET', '/api/agents', {
        ...bearer(`guess-${i}`),
        ...xff(`198.51.100.${i}`),
      });
      statuses.push(res.status);
    }
    expect(statuses).toEqual(Array(10).fill(401));
    const blocked = await call(t.baseUrl, peer, 'GET', '/api/agents', {
      ...bearer('guess-x'),
      ...xff('198.51.100.99'),
    });
    expect(blocked.status).toBe(429);
    expect(JSON.parse(blocked.body).error.code).toBe('rate_limited');
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(blocked.headers['retry-after'])).toBeLessThanOrEqual(60);
    // Blocked means blocked: a right token from that peer waits too (else guessing would go on).
    expect((await call(t.baseUrl, peer, 'GET', '/api/agents', bearer(ALICE))).status).toBe(429);
    // The dashboard shares the limit: same peer, same answer.
    expect((await call(t.baseUrl, peer, 'GET', '/admin/queues', basic(ALICE))).status).toBe(429);
    // Another peer is not affected.
    expect((await call(t.baseUrl, '127.0.0.12', 'GET', '/api/agents', bearer(ALICE))).status).toBe(200);
    // The count lives in Redis, per peer.
    const keys = await t.app.redis.keys(`${t.app.config.queuePrefix}:admin-auth-fail:*`);
    expect(keys.some((k) => k.includes('127.0.0.11'))).toBe(true);
    expect(keys.some((k) => k.includes('198.51.100'))).toBe(false);
  });

  it('guards /admin/queues with the same limiter and token check as /api', async () => {
    const peer = '127.0.0.13';
    const none = await call(t.baseUrl, peer, 'GET', '/admin/queues');
    expect(none.status).toBe(401);
    expect(String(none.headers['www-authenticate'])).toContain('Basic realm="rapport-admin"');
    // The generous limiter answers on the dashboard too.
    expect(none.headers['x-ratelimit-limit']).toBe('600');
    const page = await call(t.baseUrl, peer, 'GET', '/admin/queues', basic(BOB));
    expect(page.status).toBe(200);
    expect(page.body).toContain('Rapport queues');
    expect((await call(t.baseUrl, peer, 'GET', '/admin/queues/api/queues', bearer(ALICE))).status).toBe(200);
    // Failures on the dashboard and on /api add up for one peer.
    for (let i = 0; i < 4; i++) await call(t.baseUrl, peer, 'GET', '/api/agents', bearer('nope'));
    for (let i = 0; i < 5; i++) await call(t.baseUrl, peer, 'GET', '/admin/queues', basic('nope'));
    expect((await call(t.baseUrl, peer, 'GET', '/admin/queues', basic('nope'))).status).toBe(429);
  });

  it('keeps the generous limit (600 a minute) for authenticated calls, per real peer', async () => {
    const peer = '127.0.0.14';
    // The limiter counts per fixed minute (Date.now() / 60 s): 601 calls that straddle a minute's end
    // would be split over two windows, so start them in a fresh one when less than 20 s is left.
    const msLeft = 60_000 - (Date.now() % 60_000);
    if (msLeft < 20_000) await new Promise((r) => setTimeout(r, msLeft + 50));
    let last: Answer | undefined;
    const statuses = new Map<number, number>();
    for (let i = 0; i < 601; i++) {
      last = await call(t.baseUrl, peer, 'GET', '/api/no-such-route', {
        ...bearer(ALICE),
        ...xff(`203.0.113.${i % 250}`),
      });
      statuses.set(last.status, (statuses.get(last.status) ?? 0) + 1);
    }
    expect(Object.fromEntries(statuses)).toEqual({ 404: 600, 429: 1 });
    expect(Number(last!.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  }, 90_000);

  it('records the name of the token that made each call as the actor', async () => {
    const peer = '127.0.0.15';
    const created = await call(
      t.baseUrl,
      peer,
      'POST',
      '/api/agents',
      { ...bearer(BOB), 'content-type': 'application/json' },
      JSON.stringify({ slackUserId: 'U0SURFACE', name: 'Sur', inboxChannelId: 'C0SURFACE' }),
    );
    expect(created.status).toBe(201);
    // A change (reads are logged at debug since the sandbox page polls them).
    const { id } = JSON.parse(created.body) as { id: string };
    const changed = await call(
      t.baseUrl,
      peer,
      'PATCH',
      `/api/agents/${id}`,
      { ...bearer(ALICE), 'content-type': 'application/json' },
      JSON.stringify({ capacity: 7 }),
    );
    expect(changed.status).toBe(200);
    await call(t.baseUrl, peer, 'GET', '/api/agents', bearer('wrong-token-0123456789'));
    const lines = t.logs.map((l) => JSON.parse(l) as Record<string, unknown>);
    const audit = lines.filter((l) => l.msg === 'admin request' && String(l.route).startsWith('/api/agents'));
    expect(audit.map((l) => [l.method, l.status, l.actor]).slice(-3)).toEqual([
      ['POST', 201, 'bob'],
      ['PATCH', 200, 'alice'],
      ['GET', 401, 'anonymous'],
    ]);
    expect(lines.find((l) => l.msg === 'agent created')?.actor).toBe('bob');
    // No token ever reaches the log.
    expect(t.logs.join('\n')).not.toMatch(/alice-token|bob-token/);
  });
});

describe('admin surface behind a trusted proxy (TRUST_PROXY=loopback)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ TRUST_PROXY: 'loopback' }, { role: 'api' });
  });
  afterAll(() => t.stop());

  it('keys the limits on the client the proxy names, and still checks Twilio signatures against PUBLIC_URL', async () => {
    const peer = '127.0.0.21';
    for (let i = 0; i < 10; i++)
      await call(t.baseUrl, peer, 'GET', '/api/agents', { ...bearer('x'), ...xff('198.51.100.7') });
    const blocked = await call(t.baseUrl, peer, 'GET', '/api/agents', {
      ...bearer('x'),
      ...xff('198.51.100.7'),
    });
    expect(blocked.status).toBe(429);
    // Another client behind the same proxy is its own client.
    const other = await call(t.baseUrl, peer, 'GET', '/api/agents', {
      ...bearer(TEST_ADMIN_TOKEN),
      ...xff('198.51.100.8'),
    });
    expect(other.status).toBe(200);

    // Forwarded host and protocol do not change the URL a Twilio signature covers.
    const { raw, form } = twilioFixture('sms');
    const signed = twilioHeaders(`${t.app.config.publicUrl}/webhooks/twilio`, form);
    const res = await call(
      t.baseUrl,
      peer,
      'POST',
      '/webhooks/twilio',
      {
        ...signed,
        'x-forwarded-host': 'attacker.example',
        'x-forwarded-proto': 'http',
      },
      raw,
    );
    expect(res.status).toBe(200);
  });
});

describe('configuration of the admin surface', () => {
  it('refuses TRUST_PROXY=true and malformed ADMIN_TOKENS, naming each problem', async () => {
    expect(() => loadConfig(testEnv({ TRUST_PROXY: 'true', ADMIN_TOKENS: 'alice:short,bob' }))).toThrow(
      /ADMIN_TOKENS token of "alice" must be at least 16[\s\S]*ADMIN_TOKENS entry 2[\s\S]*TRUST_PROXY must be a hop count/,
    );
    const ok = loadConfig(
      testEnv({ TRUST_PROXY: '10.0.0.0/8, 192.168.1.1', ADMIN_TOKENS: `alice:${ALICE}` }),
    );
    expect(ok.trustProxy).toEqual(['10.0.0.0/8', '192.168.1.1']);
    expect(ok.adminTokens.map((x) => x.name)).toEqual(['admin', 'alice']);
    expect(loadConfig(testEnv({ TRUST_PROXY: '2' })).trustProxy).toBe(2);
    expect(loadConfig(testEnv({})).trustProxy).toBe(false);
  });
});

describe('the CLI presents the token it is given', () => {
  const env = testEnv({
    LOG_LEVEL: 'silent',
    ADMIN_TOKEN: undefined,
    ADMIN_TOKENS: `alice:${ALICE},bob:${BOB}`,
  });
  const saved = { ...process.env };
  beforeAll(() => {
    for (const [k, v] of Object.entries(env))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  });
  afterAll(() => {
    restoreEnv(saved);
  });
  const run = runCliCaptured;

  it('uses RAPPORT_ADMIN_TOKEN, refuses a wrong one, and asks which when several are configured', async () => {
    delete process.env.RAPPORT_ADMIN_TOKEN;
    const unsure = await run('agents', 'list');
    expect(unsure.code).toBe(2);
    expect(unsure.err).toContain('set RAPPORT_ADMIN_TOKEN');
    process.env.RAPPORT_ADMIN_TOKEN = 'not-a-configured-token-000';
    const wrong = await run('agents', 'list');
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain('401');
    process.env.RAPPORT_ADMIN_TOKEN = BOB;
    expect((await run('agents', 'list')).code).toBe(0);
  });
});

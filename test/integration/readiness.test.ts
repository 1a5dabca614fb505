/**
 * /healthz, /readyz and /metrics as ops see them, including a dependency going away and coming back:
 * the process stays up, /readyz names what is down, and recovers by itself.
 */
import { privateFerretDB, privateRedis, type PrivateServer } from '../helpers/services';
import { eventually } from '../helpers/eventually';
import { startTestApp, type TestApp } from '../helpers/app';

async function readyz(t: TestApp) {
  const res = await fetch(`${t.baseUrl}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { down?: string[] } };
}

describe('health endpoints with the shared Redis and FerretDB', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({
      SLACK_BOT_TOKEN: undefined,
      WHATSAPP_CLOUD_ACCESS_TOKEN: undefined,
      WHATSAPP_CLOUD_PHONE_NUMBER_ID: undefined,
    });
  });
  afterAll(() => t.stop());

  it('answers /healthz with 200', async () => {
    const res = await fetch(`${t.baseUrl}/healthz`);
    expect(res.status).toBe(200);
  });

  it('answers /readyz with 200, each dependency ok, and each channel enabled or disabled', async () => {
    const { status, body } = await readyz(t);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      status: 'ready',
      dependencies: { redis: { status: 'ok' }, mongodb: { status: 'ok' } },
      channels: {
        sms: { enabled: true },
        messenger: { enabled: true },
        'whatsapp-cloud': { enabled: false, reason: 'WhatsApp Cloud credentials not set' },
        slack: { enabled: false },
      },
      queues: { inbound: { waiting: 0 } },
    });
  });

  it('exposes default metrics and a request-duration histogram by route and status', async () => {
    await fetch(`${t.baseUrl}/healthz`);
    const text = await (await fetch(`${t.baseUrl}/metrics`)).text();
    expect(text).toContain('rapport_process_cpu_user_seconds_total');
    expect(text).toMatch(
      /rapport_http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\} \d+/,
    );
  });

  it('answers an unknown route with a JSON 404', async () => {
    const res = await fetch(`${t.baseUrl}/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { code: 'not_found', message: 'no such route' } });
  });
});

describe('readiness while dependencies fail and return', () => {
  let redis: PrivateServer;
  let mongo: PrivateServer;
  let t: TestApp;
  beforeAll(async () => {
    redis = privateRedis();
    mongo = privateFerretDB();
    await Promise.all([redis.start(), mongo.start()]);
    t = await startTestApp({ REDIS_URL: redis.url, MONGODB_URI: `${mongo.url}/rapport` });
  });
  afterAll(async () => {
    await t.app.close();
    await Promise.all([redis.destroy(), mongo.destroy()]);
  });

  it('reports Redis down with 503, stays up, and recovers when Redis returns', async () => {
    expect((await readyz(t)).status).toBe(200);
    await redis.stop();
    const down = await eventually(
      () => readyz(t),
      (r) => r.status === 503,
    );
    expect(down.status).toBe(503);
    expect(down.body.down).toEqual(['redis']);
    expect((await fetch(`${t.baseUrl}/healthz`)).status).toBe(200);
    await redis.start();
    const back = await eventually(
      () => readyz(t),
      (r) => r.status === 200,
    );
    expect(back.body).toMatchObject({ status: 'ready' });
  });

  it('reports MongoDB down with 503, stays up, and recovers when FerretDB returns', async () => {
    await mongo.stop();
    const down = await eventually(
      () => readyz(t),
      (r) => r.status === 503,
    );
    expect(down.body.down).toEqual(['mongodb']);
    expect((await fetch(`${t.baseUrl}/healthz`)).status).toBe(200);
    await mongo.start();
    const back = await eventually(
      () => readyz(t),
      (r) => r.status === 200,
      40_000,
    );
    expect(back.status).toBe(200);
  }, 60_000);
});

describe('starting while the database is unreachable', () => {
  it('starts, reports mongodb down, and connects once the database appears', async () => {
    const mongo = privateFerretDB();
    const t = await startTestApp({ MONGODB_URI: `${mongo.url}/rapport` }, { waitForMongo: false });
    try {
      const down = await readyz(t);
      expect(down.status).toBe(503);
      expect(down.body.down).toEqual(['mongodb']);
      await mongo.start();
      const back = await eventually(
        () => readyz(t),
        (r) => r.status === 200,
        30_000,
      );
      expect(back.status).toBe(200);
    } finally {
      await t.app.close();
      await mongo.destroy();
    }
  }, 60_000);
});

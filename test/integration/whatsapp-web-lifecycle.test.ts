/**
 * SessionLifecycle (src/channels/whatsapp-web/lifecycle.ts) on its own, with a real Redis lease:
 * the generation rule (events of a replaced client change nothing), the send worker following the
 * session (paused when a client is lost, resumed on ready), and stop() closing a client that is
 * still initialising and releasing the lease. The send worker and the inbound pipeline are
 * recording stand-ins for this unit; the whole channel is covered by whatsapp-web-routing.
 */
import { once } from 'node:events';
import { Registry } from 'prom-client';
import { Inflight } from '../../src/channels/whatsapp-web/inflight';
import { SessionLifecycle } from '../../src/channels/whatsapp-web/lifecycle';
import { lockKeyFor } from '../../src/channels/whatsapp-web/lock';
import { sessionMetrics } from '../../src/channels/whatsapp-web/metrics';
import { safeNotifier } from '../../src/channels/whatsapp-web/qr';
import { FailureStreak } from '../../src/channels/whatsapp-web/reconnect';
import { SessionState } from '../../src/channels/whatsapp-web/state';
import { createRedisConnection, deletePrefixedKeys, type RedisClient } from '../../src/queue/connection';
import { capturedLog, fakeClientFactory, fakeMessage, type InitPlan } from '../fakes/whatsapp-web-client';
import { eventually } from '../helpers/eventually';
import { uniqueName } from '../helpers/env';

describe('SessionLifecycle', () => {
  let redis: RedisClient;
  const prefix = `rapport-${uniqueName('wweb-lifecycle')}`;
  const stops: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    redis = createRedisConnection(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', 'producer');
    if (redis.status !== 'ready') await once(redis, 'ready');
  });
  afterAll(async () => {
    await Promise.all(stops.map((s) => s()));
    await deletePrefixedKeys(redis, prefix);
    await redis.quit();
  });

  function lifecycle(clientId: string, plan: (n: number) => InitPlan) {
    const factory = fakeClientFactory(plan);
    const { log } = capturedLog();
    const metrics = sessionMetrics(new Registry(), clientId);
    const state = new SessionState(metrics, log);
    const worker: string[] = [];
    const inbound: string[] = [];
    const l = new SessionLifecycle({
      clientId,
      log,
      state,
      metrics,
      inflight: new Inflight(),
      lock: { redis, key: lockKeyFor(prefix, clientId), ttlMs: 5_000, retryMs: 100 },
      buildClient: () => factory.create({} as never),
      startTimeoutMs: 10_000,
      streak: new FailureStreak(clientId, { initialMs: 50, maxMs: 50, alertAfter: 10 }),
      notifier: safeNotifier(undefined, log),
      qr: { show: async () => undefined },
      worker: {
        resume: async () => void worker.push('resume'),
        pause: async () => void worker.push('pause'),
        close: async () => void worker.push('close'),
      },
      inbound: {
        message: (_c, m) => void inbound.push(m.body),
        ack: () => undefined,
        enqueue: () => undefined,
      },
      catchUp: false,
    });
    stops.push(() => l.stop(1_000));
    return { l, factory, state, worker, inbound };
  }

  it('ignores every event of a client that was replaced', async () => {
    const { l, factory, state, inbound } = lifecycle('replaced', () => ({ kind: 'ready' }));
    await l.start();
    await eventually(
      async () => state.state,
      (s) => s === 'ready',
    );
    const first = factory.latest()!;
    first.disconnect('CONFLICT');
    await eventually(
      async () => factory.clients.length,
      (n) => n === 2,
    );
    const second = factory.latest()!;
    await eventually(
      async () => state.state,
      (s) => s === 'ready',
    );
    expect(l.readyClient()).toBe(second);

    first.emit('qr', '2@late-qr');
    first.emit('disconnected', 'NAVIGATION');
    first.receive(fakeMessage({ from: '15550100001@c.us', body: 'from the dead client' }));
    second.receive(fakeMessage({ from: '15550100001@c.us', body: 'from the live client' }));
    await new Promise((r) => setTimeout(r, 200));
    expect(state.state).toBe('ready');
    expect(factory.clients).toHaveLength(2);
    expect(inbound).toEqual(['from the live client']);
  });

  it('pauses the send worker when the client is lost and resumes it once ready again', async () => {
    const { l, factory, state, worker } = lifecycle('worker', () => ({ kind: 'ready' }));
    await l.start();
    await eventually(async () => worker.includes('resume'), Boolean);
    factory.latest()!.disconnect();
    await eventually(
      async () => state.state,
      (s) => s === 'disconnected',
    );
    expect(worker.at(-1)).toBe('pause');
    expect(l.readyClient()).toBeUndefined();
    await eventually(
      async () => state.state,
      (s) => s === 'ready',
    );
    expect(worker.at(-1)).toBe('resume');
  });

  it('stop() closes a client still initialising and releases the lease', async () => {
    const { l, factory, worker } = lifecycle('hung', () => ({ kind: 'hang' }));
    await l.start();
    await eventually(
      async () => factory.clients.length,
      (n) => n === 1,
    );
    expect(await redis.get(lockKeyFor(prefix, 'hung'))).not.toBeNull();
    await l.stop(1_000);
    expect(factory.latest()!.destroyed).toBeGreaterThanOrEqual(1);
    expect(worker).toContain('close');
    expect(await redis.get(lockKeyFor(prefix, 'hung'))).toBeNull();
    expect(l.idle).toBe(true);
  });
});

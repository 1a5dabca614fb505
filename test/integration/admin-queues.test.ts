/**
 * The queue dashboard (bull-board behind the admin token, bearer or Basic) and the queue metrics
 * (depth, age of the oldest waiting job, job durations), over real Redis queues with a fresh prefix.
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { adminAuth } from '../../src/http/admin-auth';
import { queueDashboard } from '../../src/http/admin-queues';
import { createMetrics } from '../../src/metrics';
import { closeQueues, createQueues, type Queues } from '../../src/queue/queues';
import {
  observeJobDurations,
  registerChannelMetrics,
  registerQueueMetrics,
} from '../../src/queue/queue-metrics';
import { createIntake } from '../../src/queue/intake';
import { TEST_ADMIN_TOKEN, uniqueName } from '../helpers/env';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('queue dashboard and queue metrics', () => {
  let redis: Redis;
  let queues: Queues;
  let prefix: string;
  let server: Server;
  let base: string;

  beforeAll(async () => {
    prefix = `rapport-${uniqueName('qm')}`;
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    queues = createQueues(redis, { prefix, inboundPartitions: 3 });
    const http = express();
    const guard = [adminAuth({ tokens: [{ name: 'admin', token: TEST_ADMIN_TOKEN }], redis, prefix, basic: true })];
    http.use(queueDashboard({ queues, guard, basePath: '/admin/queues' }));
    server = http.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.close();
    await queues.inbound.obliterate({ force: true });
    for (const n of ['to-agent', 'to-customer', 'agent-events', 'timers'] as const)
      await queues[n].obliterate({ force: true });
    await closeQueues(queues);
    redis.disconnect();
  });

  const basic = (user: string, password: string) =>
    `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  describe('/admin/queues', () => {
    it('asks a browser for the token (Basic challenge) and refuses a wrong one', async () => {
      const none = await fetch(`${base}/admin/queues`);
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toContain('Basic realm="rapport-admin"');
      expect(
        (await fetch(`${base}/admin/queues`, { headers: { authorization: basic('admin', 'wrong') } })).status,
      ).toBe(401);
      expect(
        (await fetch(`${base}/admin/queues`, { headers: { authorization: 'Bearer wrong' } })).status,
      ).toBe(401);
      expect((await fetch(`${base}/admin/queues/api/queues`)).status).toBe(401);
      // The token as a user name (no password) is not accepted either.
      expect(
        (await fetch(`${base}/admin/queues`, { headers: { authorization: basic(TEST_ADMIN_TOKEN, '') } }))
          .status,
      ).toBe(401);
    });

    it('serves the board with the token as Basic password or bearer token', async () => {
      const page = await fetch(`${base}/admin/queues`, {
        headers: { authorization: basic('admin', TEST_ADMIN_TOKEN) },
      });
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toContain('text/html');
      expect(await page.text()).toContain('Rapport queues');
      const bearer = await fetch(`${base}/admin/queues`, {
        headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
      });
      expect(bearer.status).toBe(200);
    });

    it('shows every queue, each inbound partition on its own, with its jobs', async () => {
      await queues.inbound.partitions[1]!.add('message', { n: 1 });
      const res = await fetch(`${base}/admin/queues/api/queues`, {
        headers: { authorization: basic('ops', TEST_ADMIN_TOKEN) },
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { queues: { name: string; counts: Record<string, number> }[] };
      expect(body.queues.map((q) => q.name).sort()).toEqual([
        'agent-events',
        'inbound-0',
        'inbound-1',
        'inbound-2',
        'timers',
        'to-agent',
        'to-customer',
      ]);
      expect(body.queues.find((q) => q.name === 'inbound-1')?.counts.waiting).toBe(1);
      await queues.inbound.partitions[1]!.obliterate({ force: true });
    });
  });

  describe('metrics', () => {
    const value = (text: string, series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.split(' ')[1]);
    };

    it('reports depth per queue and state, and the age of the oldest waiting job, per partition and under the base name', async () => {
      const registry = new Registry();
      registerQueueMetrics(registry, queues);
      const tenMinutesAgo = Date.now() - 600_000;
      await queues.inbound.partitions[0]!.add('message', {}, { timestamp: tenMinutesAgo });
      await queues.inbound.partitions[0]!.add('message', {});
      await queues.inbound.partitions[2]!.add('message', {}, { timestamp: Date.now() - 60_000 });
      await queues['to-agent'].add('flush', {}, { delay: 60_000 });
      await queues.timers.add('sla', {});
      const failedJob = await queues['to-customer'].add('flush', {});
      const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
      const worker = new Worker(
        'to-customer',
        async () => {
          throw new UnrecoverableError('no');
        },
        { connection, prefix },
      );
      await once(worker, 'failed');
      await worker.close();
      connection.disconnect();
      expect(await failedJob.getState()).toBe('failed');

      const text = await registry.metrics();
      expect(value(text, 'rapport_queue_jobs{queue="inbound-0",state="waiting"}')).toBe(2);
      expect(value(text, 'rapport_queue_jobs{queue="inbound-2",state="waiting"}')).toBe(1);
      expect(value(text, 'rapport_queue_jobs{queue="inbound",state="waiting"}')).toBe(3);
      expect(value(text, 'rapport_queue_jobs{queue="to-agent",state="delayed"}')).toBe(1);
      expect(value(text, 'rapport_queue_jobs{queue="to-agent",state="waiting"}')).toBe(0);
      expect(value(text, 'rapport_queue_jobs{queue="to-customer",state="failed"}')).toBe(1);
      expect(value(text, 'rapport_queue_jobs{queue="timers",state="active"}')).toBe(0);

      const oldest0 = value(text, 'rapport_queue_oldest_waiting_seconds{queue="inbound-0"}')!;
      expect(oldest0).toBeGreaterThanOrEqual(600);
      expect(oldest0).toBeLessThan(660);
      expect(value(text, 'rapport_queue_oldest_waiting_seconds{queue="inbound-2"}')).toBeGreaterThanOrEqual(
        60,
      );
      expect(value(text, 'rapport_queue_oldest_waiting_seconds{queue="inbound-2"}')).toBeLessThan(120);
      expect(value(text, 'rapport_queue_oldest_waiting_seconds{queue="inbound-1"}')).toBe(0);
      expect(value(text, 'rapport_queue_oldest_waiting_seconds{queue="inbound"}')).toBe(oldest0);
      expect(value(text, 'rapport_queue_oldest_waiting_seconds{queue="timers"}')).toBeLessThan(60);
      // A delayed job is not waiting yet.
      expect(value(text, 'rapport_queue_oldest_waiting_seconds{queue="to-agent"}')).toBe(0);

      await queues.inbound.obliterate({ force: true });
      for (const n of ['to-agent', 'to-customer', 'timers'] as const)
        await queues[n].obliterate({ force: true });
      const after = await registry.metrics();
      expect(value(after, 'rapport_queue_jobs{queue="inbound",state="waiting"}')).toBe(0);
      expect(value(after, 'rapport_queue_oldest_waiting_seconds{queue="inbound"}')).toBe(0);
    });

    it('times job runs, completed and failed, under the queue name (partitions folded into their base name)', async () => {
      const metrics = createMetrics();
      const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
      const worker = new Worker(
        'inbound-1',
        async (job) => {
          await new Promise((r) => setTimeout(r, 60));
          if (job.data.fail) throw new UnrecoverableError('no');
        },
        { connection, prefix },
      );
      observeJobDurations(worker, metrics.jobDuration);
      const settled = new Promise<void>((resolve) => {
        let n = 0;
        const done = () => ++n === 2 && resolve();
        worker.on('completed', done);
        worker.on('failed', done);
      });
      await queues.inbound.partitions[1]!.add('message', { fail: false });
      await queues.inbound.partitions[1]!.add('message', { fail: true });
      await settled;
      await worker.close();
      connection.disconnect();

      const text = await metrics.registry.metrics();
      expect(value(text, 'rapport_job_duration_seconds_count{queue="inbound"}')).toBe(2);
      expect(value(text, 'rapport_job_duration_seconds_sum{queue="inbound"}')).toBeGreaterThanOrEqual(0.1);
      await queues.inbound.obliterate({ force: true });
    });

    it('reports which channels are enabled and the time since their last inbound message, shared through Redis', async () => {
      const registry = new Registry();
      const intake = createIntake({ queue: queues.inbound, redis, prefix });
      registerChannelMetrics(registry, {
        intake,
        channels: {
          sms: { enabled: true },
          messenger: { enabled: false },
          'whatsapp-cloud': { enabled: true },
        },
      });
      // Written by another api replica two hours ago.
      await redis.hset(`${prefix}:last-inbound`, 'sms', Date.now() - 7_200_000);
      const text = await registry.metrics();
      expect(value(text, 'rapport_channel_enabled{channel="sms"}')).toBe(1);
      expect(value(text, 'rapport_channel_enabled{channel="messenger"}')).toBe(0);
      const since = value(text, 'rapport_channel_seconds_since_last_inbound{channel="sms"}')!;
      expect(since).toBeGreaterThanOrEqual(7_200);
      expect(since).toBeLessThan(7_300);
      // Never received anything: no series (so "no inbound for N hours" does not fire on day one).
      expect(
        value(text, 'rapport_channel_seconds_since_last_inbound{channel="whatsapp-cloud"}'),
      ).toBeUndefined();
      await redis.del(`${prefix}:last-inbound`);
    });

    it('has the provider error counter in the app metrics', async () => {
      const metrics = createMetrics();
      metrics.providerErrors.inc({ provider: 'slack', reason: 'rate_limited' });
      expect(await metrics.registry.metrics()).toContain(
        'rapport_provider_errors_total{provider="slack",reason="rate_limited"} 1',
      );
    });
  });
});

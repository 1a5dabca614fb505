/**
 * Dead letters through `/api/dead-letters` and `rapport dlq`, over real Redis queues (a fresh prefix
 * per file): failed jobs of every queue and every inbound partition, listed without customer data,
 * shown, replayed one by one or all at once, and dropped.
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import { UnrecoverableError, Worker, type Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { adminAuth } from '../../src/http/admin-auth';
import { dlqRoutes } from '../../src/http/admin-dlq';
import { errorHandler, notFound } from '../../src/http/errors';
import { createLogger } from '../../src/logger';
import { closeQueues, createQueues, type Queues } from '../../src/queue/queues';
import { dlqCommand } from '../../src/cli/dlq';
import type { CliContext } from '../../src/cli/types';
import type { RapportApp } from '../../src/app';
import type { Config } from '../../src/config';
import { TEST_ADMIN_TOKEN, uniqueName } from '../helpers/env';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const SECRET_BODY = 'my card number is 4111 1111 1111 1111';

describe('dead letters (admin API and CLI)', () => {
  let redis: Redis;
  let queues: Queues;
  let prefix: string;
  let http: Express;
  let server: Server;
  let base: string;

  /** Adds jobs to `queue` and fails each one for good (UnrecoverableError), as a worker would. */
  async function deadLetters(queue: Queue, jobs: { name: string; data: unknown }[]): Promise<string[]> {
    const added = await Promise.all(jobs.map((j) => queue.add(j.name, j.data)));
    const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const worker = new Worker(
      queue.name,
      async () => {
        throw new UnrecoverableError('provider said no: 21610');
      },
      { connection, prefix },
    );
    const done = new Set<string>();
    await new Promise<void>((resolve) => {
      worker.on('failed', (job) => {
        done.add(String(job?.id));
        if (added.every((j) => done.has(String(j.id)))) resolve();
      });
    });
    await worker.close();
    connection.disconnect();
    return added.map((j) => String(j.id));
  }

  const api = async (method: string, path: string, token: string | null = TEST_ADMIN_TOKEN) => {
    const res = await fetch(`${base}/api${path}`, {
      method,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const text = await res.text();
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test reads arbitrary JSON fields
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as any };
  };

  beforeAll(async () => {
    prefix = `rapport-${uniqueName('dlq')}`;
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    queues = createQueues(redis, { prefix, inboundPartitions: 3 });
    http = express();
    const router = express.Router();
    router.use(adminAuth({ tokens: [{ name: 'admin', token: TEST_ADMIN_TOKEN }], redis, prefix }));
    router.use(express.json());
    router.use(dlqRoutes({ queues }));
    http.use('/api', router);
    http.use(notFound());
    http.use(errorHandler(createLogger({ level: 'silent' })));
    server = http.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.close();
    await Promise.all([
      queues.inbound.obliterate({ force: true }),
      ...(['to-agent', 'to-customer', 'agent-events', 'timers'] as const).map((n) =>
        queues[n].obliterate({ force: true }),
      ),
    ]);
    await closeQueues(queues);
    redis.disconnect();
  });

  beforeEach(async () => {
    for (const q of [
      ...queues.inbound.partitions,
      queues['to-agent'],
      queues['to-customer'],
      queues.timers,
      queues['agent-events'],
    ]) {
      await q.obliterate({ force: true });
    }
  });

  it('needs the admin token', async () => {
    expect((await api('GET', '/dead-letters', null)).status).toBe(401);
    expect((await api('GET', '/dead-letters', 'wrong')).status).toBe(401);
  });

  it('lists the dead letters of every queue and every inbound partition, without job data unless asked', async () => {
    const [inboundId] = await deadLetters(queues.inbound.partitions[2]!, [
      { name: 'message', data: { text: SECRET_BODY } },
    ]);
    const [toAgentId] = await deadLetters(queues['to-agent'], [
      { name: 'flush', data: { text: SECRET_BODY } },
    ]);
    // A waiting job is not a dead letter.
    await queues['to-customer'].add('flush', { text: 'waiting' });

    const list = await api('GET', '/dead-letters');
    expect(list.status).toBe(200);
    expect(list.body.total).toBe(2);
    expect(list.body.counts).toMatchObject({
      'inbound-0': 0,
      'inbound-1': 0,
      'inbound-2': 1,
      'to-agent': 1,
      'to-customer': 0,
    });
    expect(list.body.deadLetters).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          id: inboundId,
          queue: 'inbound-2',
          name: 'message',
          failedReason: 'provider said no: 21610',
          attemptsMade: 1,
        }),
        expect.objectContaining({ id: toAgentId, queue: 'to-agent', name: 'flush' }),
      ]),
    );
    for (const d of list.body.deadLetters) {
      expect(d.timestamp).toEqual(expect.any(Number));
      expect(d.finishedOn).toEqual(expect.any(Number));
      expect(d).not.toHaveProperty('data');
    }
    expect(JSON.stringify(list.body)).not.toContain('4111');

    const withData = await api('GET', '/dead-letters?include=data');
    expect(withData.body.deadLetters.map((d: { data: unknown }) => d.data)).toEqual([
      { text: SECRET_BODY },
      { text: SECRET_BODY },
    ]);
  });

  it('filters by queue (a partition, or "inbound" for all of them) and limits the list', async () => {
    await deadLetters(queues.inbound.partitions[0]!, [
      { name: 'message', data: {} },
      { name: 'message', data: {} },
    ]);
    await deadLetters(queues.inbound.partitions[1]!, [{ name: 'status', data: {} }]);
    await deadLetters(queues.timers, [{ name: 'sla', data: {} }]);

    const inbound = await api('GET', '/dead-letters?queue=inbound');
    expect(inbound.body.total).toBe(3);
    expect(Object.keys(inbound.body.counts).sort()).toEqual(['inbound-0', 'inbound-1', 'inbound-2']);
    expect((await api('GET', '/dead-letters?queue=inbound-1')).body.deadLetters).toHaveLength(1);
    expect((await api('GET', '/dead-letters?queue=timers')).body.deadLetters).toEqual([
      expect.objectContaining({ queue: 'timers', name: 'sla' }),
    ]);
    const limited = await api('GET', '/dead-letters?limit=2');
    expect(limited.body.deadLetters).toHaveLength(2);
    expect(limited.body.total).toBe(4);
    expect((await api('GET', '/dead-letters?queue=nope')).status).toBe(404);
    expect((await api('GET', '/dead-letters?limit=0')).status).toBe(400);
    expect((await api('GET', '/dead-letters?limit=abc')).status).toBe(400);
  });

  it('shows one dead letter with its stack trace; 404 for an unknown one, 409 for a job that has not failed', async () => {
    const [id] = await deadLetters(queues['agent-events'], [
      { name: 'thread_reply', data: { text: SECRET_BODY } },
    ]);
    const shown = await api('GET', `/dead-letters/agent-events/${id}`);
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({
      id,
      queue: 'agent-events',
      name: 'thread_reply',
      failedReason: 'provider said no: 21610',
    });
    expect(shown.body.stacktrace.join('\n')).toContain('UnrecoverableError');
    expect(shown.body).not.toHaveProperty('data');
    expect((await api('GET', `/dead-letters/agent-events/${id}?include=data`)).body.data).toEqual({
      text: SECRET_BODY,
    });

    expect((await api('GET', '/dead-letters/agent-events/no-such-job')).status).toBe(404);
    expect((await api('GET', `/dead-letters/no-such-queue/${id}`)).status).toBe(404);
    const waiting = await queues['to-customer'].add('flush', {});
    expect((await api('GET', `/dead-letters/to-customer/${waiting.id}`)).status).toBe(409);
    expect((await api('POST', `/dead-letters/to-customer/${waiting.id}/replay`)).status).toBe(409);
    expect((await api('DELETE', `/dead-letters/to-customer/${waiting.id}`)).status).toBe(409);
    expect(await queues['to-customer'].getWaitingCount()).toBe(1);
  });

  it('replays one dead letter back onto its queue, and drops another for good', async () => {
    const [a, b] = await deadLetters(queues.inbound.partitions[1]!, [
      { name: 'message', data: { n: 1 } },
      { name: 'message', data: { n: 2 } },
    ]);
    const replay = await api('POST', `/dead-letters/inbound-1/${a}/replay`);
    expect(replay).toEqual({ status: 200, body: { replayed: true, queue: 'inbound-1', id: a } });
    expect(await (await queues.inbound.partitions[1]!.getJob(a!))!.getState()).toBe('waiting');

    expect((await api('DELETE', `/dead-letters/inbound-1/${b}`)).status).toBe(204);
    expect(await queues.inbound.partitions[1]!.getJob(b!)).toBeUndefined();
    expect((await api('GET', '/dead-letters')).body.total).toBe(0);
  });

  it("replays every dead letter (or one queue's) and says how many", async () => {
    await deadLetters(queues.inbound.partitions[0]!, [
      { name: 'message', data: {} },
      { name: 'message', data: {} },
    ]);
    await deadLetters(queues['to-agent'], [{ name: 'flush', data: {} }]);
    await deadLetters(queues.timers, [{ name: 'sla', data: {} }]);

    const one = await api('POST', '/dead-letters/replay?queue=to-agent');
    expect(one.body).toEqual({ replayed: 1, refused: 0, queues: { 'to-agent': 1 } });
    const rest = await api('POST', '/dead-letters/replay');
    expect(rest.body.replayed).toBe(3);
    expect(rest.body.queues).toMatchObject({ 'inbound-0': 2, timers: 1, 'to-agent': 0 });
    expect(await queues.inbound.partitions[0]!.getWaitingCount()).toBe(2);
    expect((await api('GET', '/dead-letters')).body.total).toBe(0);
  });

  describe('rapport dlq', () => {
    const run = async (args: string[], json = false) => {
      const out: string[] = [];
      const err: string[] = [];
      const ctx: CliContext = {
        app: async () => ({ http }) as unknown as RapportApp,
        config: { adminTokens: [{ name: 'admin', token: TEST_ADMIN_TOKEN }] } as unknown as Config,
        json,
        out: (l) => out.push(l),
        err: (l) => err.push(l),
      };
      const code = await dlqCommand.run(args, ctx);
      return { code, out, err };
    };

    it('lists, shows, replays with progress, and drops', async () => {
      const [first] = await deadLetters(queues.inbound.partitions[2]!, [
        { name: 'message', data: { text: SECRET_BODY } },
        { name: 'message', data: {} },
      ]);
      const [sla] = await deadLetters(queues.timers, [{ name: 'sla', data: {} }]);

      const list = await run(['list']);
      expect(list.code).toBe(0);
      expect(list.out.join('\n')).toContain('inbound-2');
      expect(list.out.join('\n')).toContain('provider said no: 21610');
      expect(list.out.join('\n')).not.toContain('4111');
      expect(list.out.at(-1)).toBe('3 shown of 3 dead letters.');

      const shown = await run(['show', 'inbound-2', first!]);
      expect(shown.out.join('\n')).toContain('reason    provider said no: 21610');
      expect(shown.out.join('\n')).not.toContain('4111');
      expect((await run(['show', 'inbound-2', first!, '--data'])).out.join('\n')).toContain('4111');

      const dropped = await run(['drop', 'timers', sla!]);
      expect(dropped).toMatchObject({ code: 0, out: [`Dropped timers / ${sla}.`] });
      expect((await run(['drop', 'timers', sla!])).code).toBe(1);

      const bulk = await run(['replay', '--all']);
      expect(bulk.code).toBe(0);
      expect(bulk.out).toEqual([
        expect.stringMatching(/inbound-2\s+2 of 2 replayed\s+\[2\/2\]/),
        'Replayed 2 dead letters.',
      ]);
      expect((await run(['list'])).out).toEqual(['No dead letters.']);
      expect((await run(['replay', '--all'])).out).toEqual(['No dead letters to replay.']);
      expect((await run(['replay'])).code).toBe(2);
    });
  });
});

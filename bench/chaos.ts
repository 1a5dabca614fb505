/**
 * chaos: messages from many customers go through Rapport while things break, then nothing may be
 * lost, duplicated or reordered.
 *
 * - Redis: a private Redis (AOF on, appendfsync always), SIGKILLed at 30 % of the sending time and
 *   restarted after --down seconds; or, with `--redis cluster`, a private 3-master + 3-replica Redis
 *   Cluster (scripts/redis-cluster.sh) in which the master holding the most keys is SIGKILLed at 30 %
 *   (its replica takes over) and restarted --down seconds after the failover (it rejoins as a replica).
 * - A private FerretDB, SIGKILLed at 60 % and restarted after --down seconds. Never the shared
 *   6379/27017: every server is on a loopback port of its own, its data in a temporary directory.
 * - Rapport's API runs in this process, or with --api-processes N in N api processes
 *   (bench/lib/api.ts), each on its own loopback port; --worker-processes N worker processes
 *   (bench/lib/worker.ts) are SIGKILLed in turn every --kill-every seconds and restarted.
 * - --sigterm: every --sigterm-every seconds an api or a worker process (alternately; one that has been
 *   ready for --sigterm-min-age seconds, so a worker has jobs in hand) is stopped gracefully with
 *   SIGTERM (`app.close()`, bounded by SHUTDOWN_TIMEOUT_MS; SIGKILLed only if it has not exited 10 s
 *   after that), then restarted (an api on the same port). Prints how long each took to exit.
 * - The Slack/Twilio/Graph emulators sit behind a loopback proxy that answers ~--fail-rate of calls
 *   with 429 (Retry-After: 1) or 500/502/503 instead of forwarding them, and loses the answer of
 *   ~--lost-rate of them: the call is forwarded and carried out, then the connection is dropped.
 * - An agent answers in customer threads (--replies, signed Slack events; bench/lib/replies.ts).
 * - The load generator (bench/lib/paced-sender.js, its own process) sends each customer's messages in
 *   order (the next only once the previous was accepted), each request to any api process, and retries
 *   5xx, 429 and network errors (refused, reset, timed out) — on another api process — as providers do.
 *
 * Verifies: every accepted webhook has exactly one Slack post (0 lost, 0 duplicate posts); one card
 * per customer (0 duplicate cards); at most one acknowledgement per customer and no agent reply
 * delivered twice (0 duplicate sends); every agent reply delivered or the agent told it is
 * uncertain/failed (0 silently lost replies); per-customer Slack post order equals send order.
 * Prints the figures; exits 1 on any violation.
 *
 * Usage: npm run chaos [-- --messages 2000 --seconds 60 --customers 300 --kill-every 5 --fail-rate 0.1
 *   --lost-rate 0.2 --replies 500 --drain 1200 --down 3 --restart redis,db --sigterm --sigterm-every 8 --sigterm-min-age 10 --api-processes 2
 *   --worker-processes 2 --shutdown-timeout 25000 --redis single|cluster --log-level warn]
 * `--kill-every 0` turns the worker SIGKILLs off, `--restart none` the Redis and database restarts,
 * `--fail-rate 0` the injected failures. `--log-level` sets the processes' LOG_LEVEL (default error). Without --api-processes the API runs in this process, except
 * with --sigterm or --redis cluster (then 2 api processes). --redis cluster defaults to 3 workers.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildApp, type RapportApp } from '../src/app';
import { loadConfig } from '../src/config';
import { postKeys } from '../src/router/coalesce';
import { createRedisConnection } from '../src/queue/connection';
import { ferretdbBinary, freePort, waitForPort } from '../test/helpers/services';
import {
  INBOX,
  admin,
  freeLoopbackPort,
  gracefulStop,
  parseArgs,
  rapportEnv,
  signedMessages,
  spawnApi,
  spawnWorker,
  startEmulators,
  whenReady,
  stopChild,
  summary,
  type GracefulStop,
} from './lib/world';
import { killBusiestMaster, privateCluster, restartKilled, type Failover, type PrivateCluster } from './lib/cluster';
import { createReplyDriver } from './lib/replies';
import { deadLetters, explainLostReplies, stalledJobs } from './lib/diagnostics';

const args = parseArgs({
  messages: '2000',
  seconds: '60',
  'kill-every': '5',
  'fail-rate': '0.1',
  'lost-rate': '0.2',
  drain: '1200',
  down: '3',
  restart: 'redis,db',
  'sigterm-every': '8',
  'sigterm-min-age': '10',
  redis: 'single',
});
const MESSAGES = Number(args.messages);
const SECONDS = Number(args.seconds);
const CUSTOMERS = Number(args.customers ?? Math.max(20, Math.round(MESSAGES / 6)));
const KILL_EVERY = Number(args['kill-every']) * 1000;
const FAIL_RATE = Number(args['fail-rate']);
const LOST_RATE = Number(args['lost-rate']);
const REPLIES = Number(args.replies ?? Math.round(MESSAGES / 4));
const DRAIN_MS = Number(args.drain) * 1000;
const DOWN_MS = Number(args.down) * 1000;
const RESTART = new Set(args.restart!.split(',').map((s) => s.trim()));
const CLUSTER = args.redis === 'cluster';
if (!['single', 'cluster'].includes(args.redis!)) throw new Error(`--redis single|cluster, not ${args.redis}`);
const SIGTERM = args.sigterm === 'true';
const SIGTERM_EVERY = Number(args['sigterm-every']) * 1000;
/** Only a process ready for this long is SIGTERMed (so a worker has had time to take jobs). */
const SIGTERM_MIN_AGE = Number(args['sigterm-min-age']) * 1000;
/** 0 = the API in this process (one api). */
const API_PROCESSES = Number(args['api-processes'] ?? (SIGTERM || CLUSTER ? 2 : 0));
const WORKER_PROCESSES = Number(args['worker-processes'] ?? (CLUSTER ? 3 : 2));
const RUN = `chaos${Date.now().toString(36)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (m: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${m}\n`);

const servers = new Set<ChildProcess>();
const tempPaths = new Set<string>();
let cluster: PrivateCluster | undefined;
// Whatever happens (error, Ctrl-C, timeout), the private servers and their data do not outlive this process.
process.on('exit', () => {
  for (const c of servers) c.kill('SIGKILL');
  for (const p of tempPaths) rmSync(p, { recursive: true, force: true });
  cluster?.stopSync();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

/** A private server on a loopback port with its data in a temporary directory; `stop` is a SIGKILL. */
function privateServer(command: string, argsFor: (port: number, dir: string) => string[], scheme: string) {
  const port = freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rapport-chaos-'));
  tempPaths.add(dir);
  let child: ChildProcess | undefined;
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    async start() {
      const c = spawn(command, argsFor(port, dir), { stdio: 'ignore' });
      child = c;
      servers.add(c);
      c.once('exit', () => servers.delete(c));
      await waitForPort(port);
    },
    async stop() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    },
    async destroy() {
      await this.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Redis with AOF fsynced on every write, so a SIGKILL loses nothing it acknowledged. */
const privateRedis = () =>
  privateServer('redis-server', (port, dir) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir], 'redis');

/**
 * A private FerretDB v1. `--db postgresql` (the default when the local PostgreSQL has the role
 * scripts/dev-services.sh creates): its data in a PostgreSQL database of this run, dropped at exit —
 * FerretDB's PostgreSQL handler uses indexes, its SQLite handler scans whole collections and slows
 * down as the run's data grows. `--db sqlite`: data in a temporary directory.
 */
const PG_DB = `rapport_${RUN.toLowerCase()}`;
const psql = (sql: string) => execFileSync('su', ['postgres', '-c', `psql -qtAc "${sql}"`], { stdio: 'pipe' });
function privateDatabaseOnPostgres(): boolean {
  if ((args.db ?? 'postgresql') !== 'postgresql') return false;
  try {
    psql(`create database ${PG_DB} owner rapport_ferretdb`);
  } catch {
    log('PostgreSQL (role rapport_ferretdb, see scripts/dev-services.sh) not usable: FerretDB on SQLite');
    return false;
  }
  process.on('exit', () => {
    try {
      psql(`drop database if exists ${PG_DB} with (force)`);
    } catch {
      /* best effort */
    }
  });
  return true;
}
const privateFerretDB = () => {
  const pg = privateDatabaseOnPostgres();
  return privateServer(
    ferretdbBinary(),
    (port, dir) => [
      ...(pg
        ? ['--handler=postgresql', `--postgresql-url=postgres://rapport_ferretdb:rapport_ferretdb@127.0.0.1:5432/${PG_DB}`]
        : ['--handler=sqlite', `--sqlite-url=file:${dir}/`]),
      `--listen-addr=127.0.0.1:${port}`, `--state-dir=${dir}`, '--debug-addr=-', '--telemetry=disable', '--log-level=error',
    ],
    'mongodb',
  );
};

/**
 * Forwards to `target`, except that ~rate of requests get 429 or a 5xx without reaching it, and
 * ~lostRate of them are carried out but their answer is lost (the connection dropped unanswered).
 */
async function flakyProxy(target: string, rate: number, lostRate: number, style: 'slack' | 'twilio' | 'graph') {
  const t = new URL(target);
  const failed = { '429': 0, '5xx': 0, lost: 0, calls: 0 };
  const server: Server = createServer((req, res) => {
    failed.calls++;
    const draw = Math.random();
    if (draw < rate) {
      req.resume();
      const r = Math.random();
      const status = r < 0.34 ? 429 : r < 0.67 ? 500 : r < 0.84 ? 502 : 503;
      if (status === 429) failed['429']++;
      else failed['5xx']++;
      const body =
        style === 'slack'
          ? { ok: false, error: status === 429 ? 'ratelimited' : 'internal_error' }
          : style === 'twilio'
            ? { code: status === 429 ? 20429 : 20500, message: 'injected failure', status }
            : { error: { message: 'injected failure', type: 'OAuthException', code: status === 429 ? 4 : 2 } };
      res.writeHead(status, { 'content-type': 'application/json', ...(status === 429 ? { 'retry-after': '1' } : {}) });
      res.end(JSON.stringify(body));
      return;
    }
    const lose = draw < rate + lostRate;
    if (lose) failed.lost++;
    const up = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      if (lose) {
        r.resume();
        r.on('end', () => res.socket?.destroy());
        return;
      }
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  // Keep the emulator's path (Slack's is `/api/`).
  return { url: `http://127.0.0.1:${port}${t.pathname === '/' ? '' : t.pathname}`, failed, close: () => (server.closeAllConnections(), server.close()) };
}


/** A worker or api process; restarted in place (an api on the same port) after every kill or stop. */
interface Slot {
  kind: 'api' | 'worker';
  index: number;
  port?: number;
  child?: ChildProcess;
  /** A kill or graceful stop of this slot is in progress. */
  busy: boolean;
  /** We are stopping it (an exit now is not a crash). */
  stopping: boolean;
  /** When the current process reported it handles SIGTERM (only such a process is SIGTERMed). */
  readyAt?: number;
}

async function main(): Promise<number> {
  const started = Date.now();
  const errors: unknown[] = [];
  const ferret = privateFerretDB();
  const redis = CLUSTER ? undefined : privateRedis();
  let redisUrl: string;
  if (CLUSTER) {
    cluster = await privateCluster();
    redisUrl = cluster.url;
    log(`Redis Cluster on 127.0.0.1:${cluster.ports[0]}–${cluster.ports[5]} (data in ${cluster.dir}); REDIS_URL=${redisUrl}`);
    // Rapport must make an ioredis Cluster of a seed list (src/queue/connection.ts).
    let isCluster = false;
    try {
      const probe = createRedisConnection(redisUrl, 'producer');
      isCluster = typeof (probe as unknown as { nodes?: unknown }).nodes === 'function';
      probe.disconnect();
    } catch (err) {
      log(`createRedisConnection(${redisUrl}) threw: ${String(err)}`);
    }
    if (!isCluster) throw new Error('Rapport does not connect to a Redis Cluster seed list yet (createRedisConnection did not return a Cluster)');
  } else {
    await redis!.start();
    redisUrl = redis!.url;
  }
  await ferret.start();
  const emu = await startEmulators();
  const slackProxy = await flakyProxy(emu.slack.url, FAIL_RATE, LOST_RATE, 'slack');
  const twilioProxy = await flakyProxy(emu.twilio.url, FAIL_RATE, LOST_RATE, 'twilio');
  const graphProxy = await flakyProxy(emu.graph.url, FAIL_RATE, LOST_RATE, 'graph');
  const env = rapportEnv({
    prefix: `rapport-${RUN}`,
    redisUrl,
    mongoUri: `${ferret.url}/rapport_${RUN}`,
    slackUrl: slackProxy.url.endsWith('/') ? slackProxy.url : `${slackProxy.url}/`,
    twilioUrl: twilioProxy.url,
    graphUrl: graphProxy.url,
    extra: {
      ...(args['shutdown-timeout'] ? { SHUTDOWN_TIMEOUT_MS: args['shutdown-timeout'] } : {}),
      // The processes' logs go to this run's output; `warn` shows dead letters and given-up notes.
      ...(args['log-level'] ? { LOG_LEVEL: args['log-level'] } : {}),
    },
  });
  const config = loadConfig({ ...process.env, ...env });
  const shutdownTimeoutMs = config.shutdownTimeoutMs;

  let app: RapportApp | undefined;
  const apiSlots: Slot[] = [];
  for (let i = 0; i < API_PROCESSES; i++) apiSlots.push({ kind: 'api', index: i, port: await freeLoopbackPort(), busy: false, stopping: false });
  const workerSlots: Slot[] = Array.from({ length: WORKER_PROCESSES }, (_, i) => ({ kind: 'worker' as const, index: i, busy: false, stopping: false }));
  const crashes: { kind: string; index: number; code: number | null; signal: string | null }[] = [];
  /** Starts the slot's process; resolves when it is ready (an api: listening), or at once with `wait` false. */
  const startSlot = async (s: Slot, wait = true) => {
    const child = s.kind === 'api' ? spawnApi(env, s.port!) : spawnWorker(env);
    s.child = child;
    s.readyAt = undefined;
    child.once('exit', (code, signal) => {
      if (s.stopping && s.child === child) return;
      crashes.push({ kind: s.kind, index: s.index, code, signal });
      log(`${s.kind} ${s.index} exited by itself (${signal ?? code})`);
    });
    const ready = whenReady(child).then(() => void (s.child === child && (s.readyAt = Date.now())));
    if (wait) await ready;
    else ready.catch(() => undefined);
  };
  const stopAll = () => Promise.all([...apiSlots, ...workerSlots].map((s) => ((s.stopping = true), stopChild(s.child, 'SIGKILL'))));

  let jobFile = '';
  try {
    let bases: string[];
    if (API_PROCESSES === 0) {
      app = buildApp(config, { role: 'api' });
      // `app.listen` binds 0.0.0.0; the benchmark stays on loopback (same server, so `close` still closes it).
      bases = [`http://127.0.0.1:${await app.listen(0, '127.0.0.1')}`];
      await app.mongo.ready;
    } else {
      await Promise.all(apiSlots.map((s) => startSlot(s)));
      bases = apiSlots.map((s) => `http://127.0.0.1:${s.port}`);
    }
    await Promise.all(workerSlots.map((s) => startSlot(s)));
    let agent = { status: 0, body: undefined as unknown };
    for (let i = 0; i < 60 && agent.status !== 201; i++) {
      if (i) await sleep(500);
      agent = await admin(bases[0]!, 'POST', '/agents', { slackUserId: 'U0CHAOSAGENT', name: 'Chaos Agent', inboxChannelId: INBOX, capacity: 10_000 }).catch((err: unknown) => ({ status: 0, body: String(err) }));
    }
    if (agent.status !== 201) throw new Error(`agent not created: ${agent.status} ${JSON.stringify(agent.body)}`);

    const requests = signedMessages(RUN, MESSAGES, CUSTOMERS);
    const rate = MESSAGES / SECONDS;
    jobFile = path.join(os.tmpdir(), `rapport-chaos-${process.pid}.json`);
    tempPaths.add(jobFile).add(`${jobFile}.out`);
    writeFileSync(jobFile, JSON.stringify({ bases, rate, retry: true, deadlineMs: SECONDS * 1000 + DRAIN_MS, requests }));
    log(
      `sending ${MESSAGES} messages from ${CUSTOMERS} customers over ~${SECONDS} s to ${API_PROCESSES ? `${API_PROCESSES} api processes` : 'the in-process api'}; ` +
        `${WORKER_PROCESSES} worker processes; Redis ${CLUSTER ? 'Cluster (3 masters + 3 replicas)' : 'single'}; fail rate ${FAIL_RATE}; ` +
        `worker SIGKILL ${KILL_EVERY ? `every ${KILL_EVERY / 1000} s` : 'off'}; SIGTERM ${SIGTERM ? `every ${SIGTERM_EVERY / 1000} s (SHUTDOWN_TIMEOUT_MS ${shutdownTimeoutMs})` : 'off'}; ` +
        `restarts: ${[...RESTART].join(',')}`,
    );
    type SenderOut = {
      retried: number;
      retried503: number;
      retriedNetwork: number;
      failedStatuses: Record<string, number>;
      networkErrors: Record<string, number>;
      perBase: { attempts: number; accepted: number; networkErrors: number }[];
      results: { key: string; customer: string; status: number; attempts: number }[];
    };
    const sender = new Promise<SenderOut>((resolve, reject) => {
      const child = execFile(process.execPath, [path.join(__dirname, 'lib/paced-sender.js'), jobFile, `${jobFile}.out`], { maxBuffer: 1 << 20 }, (err) =>
        err ? reject(err) : resolve(JSON.parse(readFileSync(`${jobFile}.out`, 'utf8')) as SenderOut),
      );
      servers.add(child); // killed at exit like the private servers
      child.once('exit', () => servers.delete(child));
    });
    let sending = true;
    void sender.finally(() => (sending = false)).catch(() => undefined);
    const replies = createReplyDriver({
      emu,
      bases: () => bases,
      inbox: INBOX,
      agentUserId: 'U0CHAOSAGENT',
      signingSecret: env.SLACK_SIGNING_SECRET!,
    });
    const replying = replies.run(REPLIES, SECONDS, () => sending);

    /**
     * Slack posts of customer messages (metadata `rapport_post`, payload key = the webhook's key), in arrival order:
     * a post that coalesced several messages counts once for each key it carries (`parts`), in its order.
     */
    const postCalls = () =>
      emu.slack.callsTo('chat.postMessage').flatMap((c) => {
        const meta = c.args.metadata as { event_type?: string; event_payload?: unknown } | undefined;
        return meta?.event_type === 'rapport_post' ? postKeys(meta.event_payload).map((key) => ({ key, at: c.at })) : [];
      });

    // Chaos while sending.
    const t0 = Date.now();
    const at = () => `${((Date.now() - t0) / 1000).toFixed(0)} s`;
    const tasks: Promise<unknown>[] = [];
    const task = (p: Promise<unknown>) => tasks.push(p.catch((err: unknown) => (errors.push(err), log(`chaos step failed: ${String(err)}`))));
    const pick = (slots: Slot[], from: number, minReadyMs?: number) => {
      for (let k = 0; k < slots.length; k++) {
        const s = slots[(from + k) % slots.length]!;
        if (!s.busy && (minReadyMs === undefined || (s.readyAt !== undefined && Date.now() - s.readyAt >= minReadyMs))) return s;
      }
      return undefined;
    };
    let kills = 0;
    const graceful: ({ kind: Slot['kind']; index: number; atSeconds: number } & GracefulStop)[] = [];
    let termInProgress = false;
    let terms = 0;
    let apiTerms = 0;
    let workerTerms = 0;
    let nextKill = KILL_EVERY;
    let nextTerm = SIGTERM_EVERY;
    let redisDone = false;
    let dbDone = false;
    let failover: Failover | undefined;
    let rejoined: { port: number; role: string; afterMs: number }[] | undefined;

    const sigkill = async (s: Slot) => {
      s.busy = s.stopping = true;
      await stopChild(s.child, 'SIGKILL');
      s.stopping = false;
      await startSlot(s, s.kind === 'api'); // a worker may take its time to start: that is part of the chaos
      s.busy = false;
    };
    const sigterm = async (s: Slot) => {
      s.busy = s.stopping = true;
      s.readyAt = undefined;
      const atSeconds = Math.round((Date.now() - t0) / 1000);
      const r = await gracefulStop(s.child!, shutdownTimeoutMs + 10_000);
      s.stopping = false;
      graceful.push({ kind: s.kind, index: s.index, atSeconds, ...r });
      log(`SIGTERM ${s.kind} ${s.index}: ${r.forced ? 'still running, SIGKILLed' : `exited (${r.signal ?? r.code})`} after ${r.ms} ms; restarting`);
      await startSlot(s);
      s.busy = false;
    };
    const redisFault = async () => {
      if (cluster) {
        log('SIGKILL the Redis Cluster master holding the most keys');
        failover = await killBusiestMaster(cluster);
        log(
          `killed master 127.0.0.1:${failover.killedPort} (pid ${failover.killedPid}, ${failover.killedKeys} keys); ` +
            (failover.okAfterMs === undefined
              ? 'no replica took over within 60 s'
              : `replica 127.0.0.1:${failover.promotedPort} took over; cluster_state:ok again after ${failover.okAfterMs} ms` +
                (failover.stateFailAfterMs === undefined ? ' (state fail never observed)' : ` (state fail observed after ${failover.stateFailAfterMs} ms)`)),
        );
        await sleep(DOWN_MS);
        rejoined = await restartKilled(cluster, failover.killedPort);
        log(`restarted ${rejoined.map((r) => `127.0.0.1:${r.port}: rejoined as ${r.role} in ${r.afterMs} ms`).join(', ')}`);
      } else {
        log('SIGKILL Redis');
        await redis!.stop();
        await sleep(DOWN_MS);
        await redis!.start();
        log('Redis restarted');
      }
    };

    let nextProgress = 60_000;
    while (sending) {
      await sleep(250);
      const elapsed = Date.now() - t0;
      if (elapsed >= nextProgress) {
        nextProgress += 60_000;
        const n = new Set(postCalls().map((p) => p.key)).size;
        log(`progress at ${at()}: ~${Math.min(MESSAGES, Math.round((elapsed / 1000) * (MESSAGES / SECONDS)))} sent, ${n} posted`);
      }
      if (KILL_EVERY > 0 && elapsed >= nextKill) {
        nextKill += KILL_EVERY;
        const s = pick(workerSlots, kills);
        if (s) {
          kills++;
          await sigkill(s);
          log(`SIGKILLed worker ${s.index} (kill #${kills}) at ${at()}, restarted`);
        }
      }
      if (SIGTERM && !termInProgress && elapsed >= nextTerm) {
        const wantApi = apiSlots.length > 0 && (terms % 2 === 0 || workerSlots.length === 0);
        const s = wantApi ? pick(apiSlots, apiTerms, SIGTERM_MIN_AGE) : pick(workerSlots, workerTerms, SIGTERM_MIN_AGE);
        if (s) {
          terms++;
          if (wantApi) apiTerms++;
          else workerTerms++;
          termInProgress = true;
          log(`SIGTERM ${s.kind} ${s.index} at ${at()}`);
          task(
            sigterm(s).finally(() => {
              termInProgress = false;
              nextTerm = Date.now() - t0 + SIGTERM_EVERY;
            }),
          );
        }
      }
      // A process that died by itself (a crash) is counted and restarted.
      for (const s of [...apiSlots, ...workerSlots]) {
        if (!s.busy && s.child && (s.child.exitCode !== null || s.child.signalCode !== null)) {
          s.busy = true;
          task(startSlot(s, s.kind === 'api').finally(() => (s.busy = false)));
        }
      }
      if (RESTART.has('redis') && !redisDone && elapsed >= SECONDS * 300) {
        redisDone = true;
        task(redisFault());
      }
      if (RESTART.has('db') && !dbDone && elapsed >= SECONDS * 600) {
        dbDone = true;
        task(
          (async () => {
            log('SIGKILL FerretDB');
            await ferret.stop();
            await sleep(DOWN_MS);
            await ferret.start();
            log('FerretDB restarted');
          })(),
        );
      }
    }
    const sent = await sender;
    await replying;
    const sendSeconds = (Date.now() - t0) / 1000;
    await Promise.all(tasks); // every process and server back up before draining
    const accepted = sent.results.filter((r) => r.status >= 200 && r.status < 300);
    log(
      `sending done in ${sendSeconds.toFixed(0)} s: ${accepted.length} accepted, ${sent.retried503} retries after 503, ` +
        `${sent.retriedNetwork} after network errors, ${sent.retried} retries in all; draining…`,
    );

    const posted = () => postCalls().map((p) => p.key);
    const acceptedKeys = new Set(accepted.map((r) => r.key));
    const deadline = Date.now() + DRAIN_MS;
    for (let tick = 0; ; tick++) {
      const have = new Set(posted());
      const missing = [...acceptedKeys].filter((k) => !have.has(k)).length;
      const open = replies.figures().silentlyLost;
      if ((missing === 0 && open === 0) || Date.now() > deadline) break;
      if (tick % 15 === 0) log(`draining: ${acceptedKeys.size - missing}/${acceptedKeys.size} posted, ${open} replies not yet delivered or told`);
      await sleep(1000);
    }
    await sleep(5000); // let late duplicates show up
    const totalSeconds = (Date.now() - t0) / 1000;

    // Verify.
    const calls = postCalls();
    const order = calls.map((p) => p.key);
    const counts = new Map<string, number>();
    for (const k of order) counts.set(k, (counts.get(k) ?? 0) + 1);
    const lost = [...acceptedKeys].filter((k) => !counts.has(k));
    const duplicatePosts = [...counts.values()].filter((n) => n > 1).reduce((a, n) => a + n - 1, 0);
    const position = new Map<string, number>();
    order.forEach((k, i) => !position.has(k) && position.set(k, i));
    let outOfOrder = 0;
    const byCustomer = new Map<string, string[]>();
    for (const r of sent.results) if (r.status >= 200 && r.status < 300) (byCustomer.get(r.customer) ?? byCustomer.set(r.customer, []).get(r.customer)!).push(r.key);
    const disorder: string[] = [];
    for (const [customer, keys] of byCustomer) {
      const seen = keys.filter((k) => position.has(k)).map((k) => position.get(k)!);
      for (let i = 1; i < seen.length; i++) {
        if (seen[i]! < seen[i - 1]!) {
          outOfOrder++;
          disorder.push(customer);
        }
      }
    }
    // Acknowledgements (every send that is not an agent reply): at most one per customer.
    const recipients = new Map<string, number>();
    const bump = (to: string, text: string) => !text.includes('[chaos-reply-') && recipients.set(to, (recipients.get(to) ?? 0) + 1);
    for (const m of emu.twilio.messages()) bump(m.to, m.body ?? '');
    for (const m of emu.graph.whatsappMessages()) bump(`wa:${m.waId}`, JSON.stringify(m.body));
    for (const m of emu.graph.messengerMessages()) bump(`psid:${m.recipientId}`, String(m.message.text ?? ''));
    const duplicateAcks = [...recipients.values()].filter((n) => n > 1).reduce((a, n) => a + n - 1, 0);
    const ackedTwice = [...recipients].filter(([, n]) => n > 1).map(([to]) => to);
    const replyFigures = replies.figures();
    const duplicateSends = duplicateAcks + replyFigures.duplicates;
    const cardsPerCustomer = new Map<string, number>();
    for (const m of emu.slack.messages(INBOX)) {
      const id = m.metadata?.event_type === 'rapport_card' ? m.metadata.event_payload.customerId : undefined;
      if (typeof id === 'string') cardsPerCustomer.set(id, (cardsPerCustomer.get(id) ?? 0) + 1);
    }
    const duplicateCards = [...cardsPerCustomer.values()].reduce((a, n) => a + n - 1, 0);
    const gaveUp = sent.results.length - accepted.length;
    const lastPostAt = Math.max(t0, ...calls.map((c) => c.at));
    const exitMs = (kind: Slot['kind']) => {
      const ms = graceful.filter((g) => g.kind === kind).map((g) => g.ms);
      return { ...summary(ms), all: ms };
    };
    const forcedStops = graceful.filter((g) => g.forced || g.code !== 0);
    // Read before the private servers go: what was given up, and the records of a lost reply.
    const dead = await deadLetters(redisUrl, env.QUEUE_PREFIX!).catch((err: unknown) => ({ unreadable: String(err) }));
    const stalled = await stalledJobs(redisUrl, env.QUEUE_PREFIX!).catch((err: unknown) => ({ unreadable: String(err) }));
    const lostRecords = await explainLostReplies(env.MONGODB_URI!, emu, INBOX, replyFigures.silentlyLostDetail).catch(
      (err: unknown) => [{ unreadable: String(err) }],
    );

    const figures = {
      messages: MESSAGES,
      customers: CUSTOMERS,
      redis: CLUSTER ? 'cluster (3 masters + 3 replicas)' : 'single',
      apiProcesses: API_PROCESSES || 'in-process',
      workerProcesses: WORKER_PROCESSES,
      accepted: accepted.length,
      acceptedPerApi: sent.perBase.map((b) => b.accepted),
      notAcceptedAfterRetries: gaveUp,
      webhookRetriesAfter503: sent.retried503,
      webhookRetriesAfterNetworkError: sent.retriedNetwork,
      webhookRetriesTotal: sent.retried,
      failedAttemptStatuses: sent.failedStatuses,
      networkErrors: sent.networkErrors,
      workerKills: kills,
      gracefulStops: {
        api: graceful.filter((g) => g.kind === 'api').length,
        worker: graceful.filter((g) => g.kind === 'worker').length,
        notGraceful: forcedStops.length,
        shutdownTimeoutMs,
        exitMsApi: exitMs('api'),
        exitMsWorker: exitMs('worker'),
      },
      crashes: crashes.length,
      redisRestarts: !CLUSTER && redisDone ? 1 : 0,
      ...(CLUSTER ? { clusterFailover: { ...failover, rejoined } } : {}),
      databaseRestarts: dbDone ? 1 : 0,
      injectedFailures: {
        slack: slackProxy.failed,
        twilio: twilioProxy.failed,
        graph: graphProxy.failed,
      },
      /** Share of proxied calls whose answer was lost, per service. */
      lostAnswerShare: Object.fromEntries(
        Object.entries({ slack: slackProxy.failed, twilio: twilioProxy.failed, graph: graphProxy.failed }).map(
          ([k, f]) => [k, Math.round((f.lost / Math.max(1, f.calls)) * 1000) / 1000],
        ),
      ),
      slackPosts: order.length,
      /** Slack post calls that carried several messages (a busy channel's waiting messages coalesced), and those messages. */
      coalesced: (() => {
        const multi = emu.slack.callsTo('chat.postMessage').map((c) => postKeys((c.args.metadata as { event_payload?: unknown } | undefined)?.event_payload).length).filter((n) => n > 1);
        return { calls: multi.length, messages: multi.reduce((a, n) => a + n, 0) };
      })(),
      cards: cardsPerCustomer.size,
      lost: lost.length,
      duplicatePosts,
      duplicateCards,
      agentReplies: replyFigures,
      silentlyLostReplies: replyFigures.silentlyLost,
      ...(lostRecords.length ? { silentlyLostRecords: lostRecords } : {}),
      /** Jobs BullMQ gave up on, per queue (failed sets), with their reasons. */
      deadLetters: dead,
      /** Jobs that stalled (worker killed mid-job) once, more often, and the most any one did. */
      stalledJobs: stalled,
      outOfOrder,
      acknowledgements: [...recipients.values()].reduce((a, b) => a + b, 0),
      customersWithAck: recipients.size,
      /** Customers with no acknowledgement: its send was uncertain (the agent was told) or failed. */
      customersWithoutAck: CUSTOMERS - recipients.size,
      duplicateAcks,
      duplicateSends,
      sendSeconds: Math.round(sendSeconds),
      /** From the first message sent to the last Slack post. */
      pipelineSeconds: Math.round((lastPostAt - t0) / 1000),
      deliveredPerSecond: Math.round((counts.size / Math.max(1, (lastPostAt - t0) / 1000)) * 100) / 100,
      totalSeconds: Math.round(totalSeconds),
      wallSeconds: Math.round((Date.now() - started) / 1000),
    };
    console.log(JSON.stringify(figures, null, 2));
    if (ackedTwice.length > 0 || disorder.length > 0) console.log(JSON.stringify({ ackedTwice, disorder }));
    const violations = [
      lost.length && `${lost.length} accepted but never posted within --drain (lost, or the pipeline too slow; e.g. ${lost.slice(0, 3).join(', ')})`,
      duplicatePosts && `${duplicatePosts} duplicate Slack posts`,
      duplicateCards && `${duplicateCards} duplicate cards`,
      duplicateSends && `${duplicateSends} duplicate customer sends`,
      replyFigures.silentlyLost && `${replyFigures.silentlyLost} agent replies silently lost (neither delivered nor the agent told)`,
      replyFigures.replies < REPLIES && `only ${replyFigures.replies} of ${REPLIES} agent replies were made`,
      outOfOrder && `${outOfOrder} out-of-order posts`,
      gaveUp && `${gaveUp} webhooks never accepted`,
      forcedStops.length && `${forcedStops.length} SIGTERMed processes did not exit cleanly within SHUTDOWN_TIMEOUT_MS + 10 s`,
      crashes.length && `${crashes.length} processes exited by themselves`,
      CLUSTER && RESTART.has('redis') && failover?.okAfterMs === undefined && 'the Redis Cluster did not fail over',
      errors.length && `${errors.length} chaos steps failed (${errors.map(String).join('; ')})`,
    ].filter(Boolean);
    if (violations.length) {
      console.log(`FAIL: ${violations.join('; ')}`);
      return 1;
    }
    console.log('PASS: 0 lost, 0 duplicate posts, 0 duplicate cards, 0 duplicate sends, 0 silently lost replies, order preserved');
    return 0;
  } finally {
    await stopAll();
    await app?.close().catch(() => undefined);
    slackProxy.close();
    twilioProxy.close();
    graphProxy.close();
    await emu.close();
    await redis?.destroy();
    await cluster?.stop();
    await ferret.destroy();
    if (jobFile) {
      rmSync(jobFile, { force: true });
      rmSync(`${jobFile}.out`, { force: true });
    }
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

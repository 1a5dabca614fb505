/**
 * chaos: messages from many customers go through Rapport while things break, then nothing may be
 * lost, duplicated or reordered.
 *
 * - Private Redis (AOF on, appendfsync always) and a private FerretDB on loopback ports — never the
 *   shared 6379/27017 — each SIGKILLed and restarted once mid-run (Redis at 30 %, the database at 60 %
 *   of the sending time; down for --down seconds).
 * - Rapport's API runs in this process; two worker processes (bench/lib/worker.ts) are SIGKILLed in
 *   turn every --kill-every seconds and restarted while messages are being sent.
 * - The Slack/Twilio/Graph emulators sit behind a loopback proxy that answers ~--fail-rate of calls
 *   with 429 (Retry-After: 1) or 500/502/503 instead of forwarding them.
 * - The load generator (bench/lib/paced-sender.js, its own process) sends each customer's messages in
 *   order and retries 503s and network errors, as providers do.
 *
 * Verifies: every accepted webhook has exactly one Slack post (0 lost, 0 duplicate posts); at most one
 * send to each customer (the acknowledgement — the only send in this run; 0 duplicate sends);
 * per-customer Slack post order equals send order. Prints the figures; exits 1 on any violation.
 *
 * Usage: npm run chaos [-- --messages 2000 --seconds 60 --customers 300 --kill-every 5 --fail-rate 0.1 --drain 1200]
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildApp } from '../src/app';
import { loadConfig } from '../src/config';
import { ferretdbBinary, freePort, waitForPort } from '../test/helpers/services';
import { INBOX, admin, parseArgs, rapportEnv, signedMessages, spawnWorker, stopChild } from './lib/world';
import { startEmulators } from './lib/world';

const args = parseArgs({ messages: '2000', seconds: '60', 'kill-every': '5', 'fail-rate': '0.1', drain: '1200', down: '3' });
const MESSAGES = Number(args.messages);
const SECONDS = Number(args.seconds);
const CUSTOMERS = Number(args.customers ?? Math.max(20, Math.round(MESSAGES / 6)));
const KILL_EVERY = Number(args['kill-every']) * 1000;
const FAIL_RATE = Number(args['fail-rate']);
const DRAIN_MS = Number(args.drain) * 1000;
const DOWN_MS = Number(args.down) * 1000;
const RUN = `chaos${Date.now().toString(36)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (m: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${m}\n`);

const servers = new Set<ChildProcess>();
const tempPaths = new Set<string>();
// Whatever happens (error, Ctrl-C, timeout), the private servers and their data do not outlive this process.
process.on('exit', () => {
  for (const c of servers) c.kill('SIGKILL');
  for (const p of tempPaths) rmSync(p, { recursive: true, force: true });
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

/** FerretDB v1 on SQLite (as test/helpers/services.ts privateFerretDB). */
const privateFerretDB = () =>
  privateServer(
    ferretdbBinary(),
    (port, dir) => ['--handler=sqlite', `--sqlite-url=file:${dir}/`, `--listen-addr=127.0.0.1:${port}`, `--state-dir=${dir}`, '--debug-addr=-', '--telemetry=disable', '--log-level=error'],
    'mongodb',
  );

/** Forwards to `target`, except that ~rate of requests get 429 or a 5xx without reaching it. */
async function flakyProxy(target: string, rate: number, style: 'slack' | 'twilio' | 'graph') {
  const t = new URL(target);
  const failed = { '429': 0, '5xx': 0 };
  const server: Server = createServer((req, res) => {
    if (Math.random() < rate) {
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
    const up = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
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

async function main(): Promise<number> {
  const started = Date.now();
  const redis = privateRedis();
  const ferret = privateFerretDB();
  await redis.start();
  await ferret.start();
  const emu = await startEmulators();
  const slackProxy = await flakyProxy(emu.slack.url, FAIL_RATE, 'slack');
  const twilioProxy = await flakyProxy(emu.twilio.url, FAIL_RATE, 'twilio');
  const graphProxy = await flakyProxy(emu.graph.url, FAIL_RATE, 'graph');
  const env = rapportEnv({
    prefix: `rapport-${RUN}`,
    redisUrl: redis.url,
    mongoUri: `${ferret.url}/rapport_${RUN}`,
    slackUrl: slackProxy.url.endsWith('/') ? slackProxy.url : `${slackProxy.url}/`,
    twilioUrl: twilioProxy.url,
    graphUrl: graphProxy.url,
  });
  const app = buildApp(loadConfig({ ...process.env, ...env }), { role: 'api' });
  const workers: (ChildProcess | undefined)[] = [spawnWorker(env), spawnWorker(env)];
  let jobFile = '';
  try {
    const port = await app.listen(0);
    await app.mongo.ready;
    const base = `http://127.0.0.1:${port}`;
    const agent = await admin(base, 'POST', '/agents', { slackUserId: 'U0CHAOSAGENT', name: 'Chaos Agent', inboxChannelId: INBOX, capacity: 10_000 });
    if (agent.status !== 201) throw new Error(`agent not created: ${agent.status} ${JSON.stringify(agent.body)}`);

    const requests = signedMessages(RUN, MESSAGES, CUSTOMERS);
    const rate = MESSAGES / SECONDS;
    jobFile = path.join(os.tmpdir(), `rapport-chaos-${process.pid}.json`);
    tempPaths.add(jobFile).add(`${jobFile}.out`);
    writeFileSync(jobFile, JSON.stringify({ base, rate, retry: true, deadlineMs: SECONDS * 1000 + DRAIN_MS, requests }));
    log(`sending ${MESSAGES} messages from ${CUSTOMERS} customers over ~${SECONDS} s; fail rate ${FAIL_RATE}; worker kill every ${KILL_EVERY / 1000} s`);
    const sender = new Promise<{ retried: number; retried503: number; results: { key: string; customer: string; status: number; attempts: number }[] }>((resolve, reject) => {
      execFile(process.execPath, [path.join(__dirname, 'lib/paced-sender.js'), jobFile, `${jobFile}.out`], { maxBuffer: 1 << 20 }, (err) =>
        err ? reject(err) : resolve(JSON.parse(readFileSync(`${jobFile}.out`, 'utf8'))),
      );
    });
    let sending = true;
    void sender.finally(() => (sending = false)).catch(() => undefined);

    // Chaos while sending.
    let kills = 0;
    const t0 = Date.now();
    let redisDone = false;
    let dbDone = false;
    while (sending) {
      await sleep(Math.min(KILL_EVERY, 1000));
      const elapsed = Date.now() - t0;
      if (elapsed >= (kills + 1) * KILL_EVERY) {
        const i = kills % workers.length;
        await stopChild(workers[i], 'SIGKILL');
        kills++;
        workers[i] = spawnWorker(env);
        log(`SIGKILLed worker ${i} (kill #${kills}), restarted`);
      }
      if (!redisDone && elapsed >= SECONDS * 300) {
        redisDone = true;
        log('SIGKILL Redis');
        await redis.stop();
        await sleep(DOWN_MS);
        await redis.start();
        log('Redis restarted');
      }
      if (!dbDone && elapsed >= SECONDS * 600) {
        dbDone = true;
        log('SIGKILL FerretDB');
        await ferret.stop();
        await sleep(DOWN_MS);
        await ferret.start();
        log('FerretDB restarted');
      }
    }
    const sent = await sender;
    const sendSeconds = (Date.now() - t0) / 1000;
    const accepted = sent.results.filter((r) => r.status >= 200 && r.status < 300);
    log(`sending done in ${sendSeconds.toFixed(0)} s: ${accepted.length} accepted, ${sent.retried503} retries after 503, ${sent.retried} retries in all; draining…`);

    const posted = () => {
      const order: string[] = [];
      for (const c of emu.slack.callsTo('chat.postMessage')) {
        const meta = c.args.metadata as { event_type?: string; event_payload?: { key?: string } } | undefined;
        if (meta?.event_type === 'rapport_post' && meta.event_payload?.key) order.push(meta.event_payload.key);
      }
      return order;
    };
    const acceptedKeys = new Set(accepted.map((r) => r.key));
    const deadline = Date.now() + DRAIN_MS;
    for (let tick = 0; ; tick++) {
      const have = new Set(posted());
      const missing = [...acceptedKeys].filter((k) => !have.has(k)).length;
      if (missing === 0 || Date.now() > deadline) break;
      if (tick % 15 === 0) log(`draining: ${acceptedKeys.size - missing}/${acceptedKeys.size} posted`);
      await sleep(1000);
    }
    await sleep(5000); // let late duplicates show up
    const totalSeconds = (Date.now() - t0) / 1000;

    // Verify.
    const order = posted();
    const counts = new Map<string, number>();
    for (const k of order) counts.set(k, (counts.get(k) ?? 0) + 1);
    const lost = [...acceptedKeys].filter((k) => !counts.has(k));
    const duplicatePosts = [...counts.values()].filter((n) => n > 1).reduce((a, n) => a + n - 1, 0);
    const position = new Map<string, number>();
    order.forEach((k, i) => !position.has(k) && position.set(k, i));
    let outOfOrder = 0;
    const byCustomer = new Map<string, string[]>();
    for (const r of sent.results) if (r.status >= 200 && r.status < 300) (byCustomer.get(r.customer) ?? byCustomer.set(r.customer, []).get(r.customer)!).push(r.key);
    for (const keys of byCustomer.values()) {
      const seen = keys.filter((k) => position.has(k)).map((k) => position.get(k)!);
      for (let i = 1; i < seen.length; i++) if (seen[i]! < seen[i - 1]!) outOfOrder++;
    }
    const recipients = new Map<string, number>();
    const bump = (to: string) => recipients.set(to, (recipients.get(to) ?? 0) + 1);
    for (const m of emu.twilio.messages()) bump(m.to);
    for (const m of emu.graph.whatsappMessages()) bump(`wa:${m.waId}`);
    for (const m of emu.graph.messengerMessages()) bump(`psid:${m.recipientId}`);
    const duplicateSends = [...recipients.values()].filter((n) => n > 1).reduce((a, n) => a + n - 1, 0);
    const gaveUp = sent.results.length - accepted.length;

    const figures = {
      messages: MESSAGES,
      customers: CUSTOMERS,
      accepted: accepted.length,
      notAcceptedAfterRetries: gaveUp,
      webhookRetriesAfter503: sent.retried503,
      webhookRetriesTotal: sent.retried,
      workerKills: kills,
      redisRestarts: redisDone ? 1 : 0,
      databaseRestarts: dbDone ? 1 : 0,
      injectedFailures: {
        slack: slackProxy.failed,
        twilio: twilioProxy.failed,
        graph: graphProxy.failed,
      },
      slackPosts: order.length,
      lost: lost.length,
      duplicatePosts,
      outOfOrder,
      customerSends: [...recipients.values()].reduce((a, b) => a + b, 0),
      customersWithAck: recipients.size,
      duplicateSends,
      sendSeconds: Math.round(sendSeconds),
      totalSeconds: Math.round(totalSeconds),
      wallSeconds: Math.round((Date.now() - started) / 1000),
    };
    console.log(JSON.stringify(figures, null, 2));
    const violations = [
      lost.length && `${lost.length} accepted but never posted within --drain (lost, or the pipeline too slow; e.g. ${lost.slice(0, 3).join(', ')})`,
      duplicatePosts && `${duplicatePosts} duplicate Slack posts`,
      duplicateSends && `${duplicateSends} duplicate customer sends`,
      outOfOrder && `${outOfOrder} out-of-order posts`,
      gaveUp && `${gaveUp} webhooks never accepted`,
    ].filter(Boolean);
    if (violations.length) {
      console.log(`FAIL: ${violations.join('; ')}`);
      return 1;
    }
    console.log('PASS: 0 lost, 0 duplicate posts, 0 duplicate sends, order preserved');
    return 0;
  } finally {
    await Promise.all(workers.map((w) => stopChild(w, 'SIGKILL')));
    await app.close().catch(() => undefined);
    slackProxy.close();
    twilioProxy.close();
    graphProxy.close();
    await emu.close();
    await redis.destroy();
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

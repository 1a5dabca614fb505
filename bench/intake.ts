/**
 * bench/intake: how fast can Rapport accept signed Twilio webhooks, next to the floor set by the same
 * machine and Redis?
 *
 * In one run, on the same Redis:
 *   baseline — a bare express route that parses the form and does only `queue.add`;
 *   rapport  — Rapport's real POST /webhooks/twilio (size limit, signature check, normalisation,
 *              dedupe marker, queue add), with unique, validly signed messages.
 * Each is driven at full speed (autocannon, 50 connections) in `--rounds` rounds (default 3), the two
 * back to back in each round and in alternating order, then Rapport again at half its maximum rate to
 * read its latency when not saturated. Prints req/s, p50/p99, each round's ratio and their median,
 * and the CPU time the server process spent per request served (both servers run in this process,
 * one window at a time; the load generator is a separate process).
 *
 * Why rounds: on a shared machine the load of the moment (other processes on the two cores, the
 * shared Redis) moves every figure; one baseline window followed by one Rapport window measured that
 * load as much as the route (0.59 and 0.86 in two runs). A ratio taken from two adjacent windows, in
 * alternating order, and the median over rounds, cancels most of it. The webhook bodies of a window
 * are signed just before it and dropped after, so the server's heap (and its GC pauses) does not
 * carry all of them through every window.
 *
 * Usage: npm run bench:intake [-- --seconds 10 --connections 50 --rounds 3]
 * Needs Redis and a MongoDB-protocol server (npm run services). Targets 127.0.0.1 only.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import express from 'express';
import { buildApp } from '../src/app';
import { loadConfig } from '../src/config';
import { signTwilioRequest } from '../src/channels/twilio/signature';
import { createRedisConnection, deleteKeys } from '../src/queue/connection';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const SECONDS = Number(args.get('seconds') ?? 10);
const CONNECTIONS = Number(args.get('connections') ?? 50);
const ROUNDS = Math.max(1, Number(args.get('rounds') ?? 3));
/** Unique bodies per window: more than the route can take in SECONDS, so none repeats (a repeat is a duplicate). */
const PER_WINDOW = Math.ceil(SECONDS * 12_000);
const PUBLIC_URL = 'https://rapport.bench.test';
const AUTH_TOKEN = 'bench-twilio-auth-token';
const RUN = `bench${Date.now().toString(36)}`;
const execFileAsync = promisify(execFile);

interface Result {
  label: string;
  rps: number;
  /** CPU time of this process (where both servers run) per request served in the window, µs. */
  cpuUs: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

/** Pre-signed unique webhook bodies, so the load generator spends no CPU on signing during the run. */
function signedRequests(count: number, offset: number): { body: string; signature: string }[] {
  const out: { body: string; signature: string }[] = [];
  for (let i = 0; i < count; i++) {
    const n = offset + i;
    const form = {
      MessageSid: `SM${(RUN + n.toString(36).padStart(8, '0')).padEnd(32, '0')}`,
      AccountSid: 'AC' + 'b2'.repeat(16),
      From: `+1415${String(5_000_000 + (n % 4_000_000)).padStart(7, '0')}`,
      To: '+15550001111',
      Body: `Hello, this is message ${n}`,
      NumMedia: '0',
    };
    out.push({
      body: new URLSearchParams(form).toString(),
      signature: signTwilioRequest(AUTH_TOKEN, `${PUBLIC_URL}/webhooks/twilio`, form),
    });
  }
  return out;
}

/** Drives one URL from a separate process (bench/lib/load-generator.js) and returns its figures. */
let windows = 0;

/** Drives one URL with PER_WINDOW fresh signed bodies (signed now, dropped after) and returns its figures. */
async function load(label: string, url: string, rate?: number, count = PER_WINDOW): Promise<Result> {
  const bodies = signedRequests(count, windows++ * PER_WINDOW);
  const jobFile = path.join(os.tmpdir(), `rapport-bench-${process.pid}-${Date.now()}.json`);
  const requests = bodies.map((b) => ({
    body: b.body,
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': b.signature },
  }));
  writeFileSync(
    jobFile,
    JSON.stringify({ url, connections: CONNECTIONS, duration: SECONDS, rate, requests }),
  );
  try {
    const cpu = process.cpuUsage();
    const { stdout } = await execFileAsync(
      process.execPath,
      [path.join(__dirname, 'lib/load-generator.js'), jobFile],
      {
        maxBuffer: 1 << 20,
      },
    );
    const used = process.cpuUsage(cpu);
    const r = JSON.parse(stdout) as Omit<Result, 'label' | 'cpuUs'> & { total: number };
    return { label, ...r, cpuUs: (used.user + used.system) / Math.max(1, r.total) };
  } finally {
    rmSync(jobFile, { force: true });
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** ROUNDS rounds of baseline and Rapport back to back, alternating which goes first. */
async function rounds(bareUrl: string, rapportUrl: string) {
  const out: { baseline: Result; rapport: Result; ratio: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const runBaseline = () => load(`round ${r + 1} baseline: bare express + queue.add`, bareUrl);
    const runRapport = () => load(`round ${r + 1} rapport: POST /webhooks/twilio`, rapportUrl);
    let baseline: Result, rapport: Result;
    if (r % 2 === 0) {
      baseline = await runBaseline();
      rapport = await runRapport();
    } else {
      rapport = await runRapport();
      baseline = await runBaseline();
    }
    out.push({ baseline, rapport, ratio: rapport.rps / baseline.rps });
    process.stdout.write(`round ${r + 1}: baseline ${baseline.rps.toFixed(0)} req/s, rapport ${rapport.rps.toFixed(0)} req/s, ratio ${(rapport.rps / baseline.rps).toFixed(2)}\n`);
  }
  return out;
}

/** Rapport's api, and the baseline on the same Redis: a bare route that does only what intake cannot avoid (parse + add). */
async function servers() {
  const config = loadConfig({
    ...process.env,
    PORT: '0',
    PUBLIC_URL,
    ADMIN_TOKEN: 'bench-admin-token-0123456789',
    LOG_LEVEL: 'warn',
    QUEUE_PREFIX: `rapport-${RUN}`,
    MONGODB_URI: process.env.MONGODB_URI ?? `mongodb://127.0.0.1:27017/rapport_${RUN}`,
    TWILIO_ACCOUNT_SID: 'AC' + 'b2'.repeat(16),
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    TWILIO_SMS_FROM: '+15550001111',
  });
  const app = buildApp(config, { role: 'api' });
  const rapportPort = await app.listen(0);
  const baseConnection = createRedisConnection(config.redisUrl, 'producer');
  const baseQueue = new Queue('inbound', { connection: baseConnection, prefix: `rapport-${RUN}-base` });
  const bare = express();
  bare.post('/webhooks/twilio', express.urlencoded({ extended: false }), async (req, res) => {
    await baseQueue.add('message', req.body as Record<string, string>);
    res.type('text/xml').send('<Response></Response>');
  });
  const bareServer = bare.listen(0, '127.0.0.1');
  await once(bareServer, 'listening');
  const barePort = (bareServer.address() as AddressInfo).port;
  return {
    app,
    bareUrl: `http://127.0.0.1:${barePort}/webhooks/twilio`,
    rapportUrl: `http://127.0.0.1:${rapportPort}/webhooks/twilio`,
    async close() {
      // Clean up what the run wrote.
      await app.queues.inbound.obliterate({ force: true });
      await baseQueue.obliterate({ force: true });
      await deleteKeys(app.redis, `rapport-${RUN}*`);
      await baseQueue.close();
      baseConnection.disconnect();
      bareServer.close();
      await app.close();
    },
  };
}

async function main(): Promise<void> {
  const s = await servers();
  await load('warm-up', s.bareUrl, 1000, 2000);
  await load('warm-up', s.rapportUrl, 1000, 2000);
  const measured = await rounds(s.bareUrl, s.rapportUrl);
  const rapportRps = median(measured.map((m) => m.rapport.rps));
  const halfRate = Math.max(1, Math.round(rapportRps / 2));
  const half = await load(`rapport at half its max (${halfRate} req/s)`, s.rapportUrl, halfRate);
  const baselineHalf = await load(`baseline at the same rate (${halfRate} req/s)`, s.bareUrl, halfRate);
  const rows = [...measured.flatMap((m) => [m.baseline, m.rapport]), half, baselineHalf];
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  console.log(`\nbench/intake — ${ROUNDS} round(s) of ${SECONDS}s per run, ${CONNECTIONS} connections, Node ${process.version}\n`);
  console.log(line(['run', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'non-2xx', 'errors']));
  console.log(line(['---', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const r of rows)
    console.log(
      line([r.label, r.rps.toFixed(0), String(r.p50), String(r.p99), r.cpuUs.toFixed(0), String(r.non2xx), String(r.errors)]),
    );
  const ratios = measured.map((m) => m.ratio);
  // The server's CPU per request is steadier than req/s on a shared machine: a window that other
  // processes slowed serves fewer requests, but each costs about the same CPU.
  const cpuRatios = measured.map((m) => m.rapport.cpuUs / m.baseline.cpuUs);
  console.log(`CPU per request rapport/baseline per round: ${cpuRatios.map((r) => r.toFixed(2)).join(', ')}`);
  console.log(`\nratio rapport/baseline per round: ${ratios.map((r) => r.toFixed(2)).join(', ')}`);
  console.log(`ratio rapport/baseline (median of ${ROUNDS}): ${median(ratios).toFixed(2)} (target ≥ 0.8)`);
  console.log(`CPU per request rapport/baseline (median of ${ROUNDS}): ${median(cpuRatios).toFixed(2)}`);
  console.log(`p99 at half of Rapport's max: ${half.p99} ms (target ≤ 25 ms)`);
  await s.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

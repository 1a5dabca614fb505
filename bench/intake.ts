/**
 * bench/intake: how fast can Rapport accept signed Twilio webhooks, next to the floor set by the same
 * machine and Redis?
 *
 * In one run, on the same Redis:
 *   baseline — a bare express route that parses the form and does only `queue.add`;
 *   rapport  — Rapport's real POST /webhooks/twilio (size limit, signature check, normalisation,
 *              dedupe marker, queue add), with unique, validly signed messages.
 * Each is driven at full speed (autocannon, 50 connections), then Rapport again at half its maximum
 * rate to read its latency when not saturated. Prints req/s, p50/p99 and the ratio.
 *
 * Usage: npm run bench:intake [-- --seconds 10 --connections 50]
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
const PUBLIC_URL = 'https://rapport.bench.test';
const AUTH_TOKEN = 'bench-twilio-auth-token';
const RUN = `bench${Date.now().toString(36)}`;
const execFileAsync = promisify(execFile);

interface Result {
  label: string;
  rps: number;
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
async function load(
  label: string,
  url: string,
  bodies: { body: string; signature: string }[],
  rate?: number,
): Promise<Result> {
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
    const { stdout } = await execFileAsync(
      process.execPath,
      [path.join(__dirname, 'lib/load-generator.js'), jobFile],
      {
        maxBuffer: 1 << 20,
      },
    );
    return { label, ...(JSON.parse(stdout) as Omit<Result, 'label'>) };
  } finally {
    rmSync(jobFile, { force: true });
  }
}

async function main(): Promise<void> {
  const perRun = Math.ceil(SECONDS * 12_000);
  process.stdout.write(`signing ${perRun * 3} unique webhook bodies…\n`);
  const bodies = [
    signedRequests(perRun, 0),
    signedRequests(perRun, perRun),
    signedRequests(perRun, 2 * perRun),
  ];

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

  // The baseline: same Redis, a bare route that does only what intake cannot avoid (parse + add).
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

  await load('warm-up', `http://127.0.0.1:${barePort}/webhooks/twilio`, bodies[0]!.slice(0, 2000), 1000);
  const baseline = await load(
    'baseline: bare express + queue.add',
    `http://127.0.0.1:${barePort}/webhooks/twilio`,
    bodies[0]!,
  );
  const rapport = await load(
    'rapport: POST /webhooks/twilio',
    `http://127.0.0.1:${rapportPort}/webhooks/twilio`,
    bodies[1]!,
  );
  const half = await load(
    `rapport at half its max (${Math.round(rapport.rps / 2)} req/s)`,
    `http://127.0.0.1:${rapportPort}/webhooks/twilio`,
    bodies[2]!,
    Math.max(1, Math.round(rapport.rps / 2)),
  );

  const baselineHalf = await load(
    `baseline at the same rate (${Math.round(rapport.rps / 2)} req/s)`,
    `http://127.0.0.1:${barePort}/webhooks/twilio`,
    bodies[0]!.slice().reverse(),
    Math.max(1, Math.round(rapport.rps / 2)),
  );
  const rows = [baseline, rapport, half, baselineHalf];
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  console.log(`\nbench/intake — ${SECONDS}s per run, ${CONNECTIONS} connections, Node ${process.version}\n`);
  console.log(line(['run', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'errors']));
  console.log(line(['---', '---:', '---:', '---:', '---:', '---:']));
  for (const r of rows)
    console.log(
      line([r.label, r.rps.toFixed(0), String(r.p50), String(r.p99), String(r.non2xx), String(r.errors)]),
    );
  console.log(`\nratio rapport/baseline: ${(rapport.rps / baseline.rps).toFixed(2)} (target ≥ 0.8)`);
  console.log(`p99 at half of Rapport's max: ${half.p99} ms (target ≤ 25 ms)`);
  const queued = await app.queues.inbound.count();
  console.log(
    `jobs queued by Rapport: ${queued} (expected ${Math.round(rapport.rps * SECONDS + half.rps * SECONDS)} ± in-flight)`,
  );

  // Clean up what the run wrote.
  await app.queues.inbound.obliterate({ force: true });
  await baseQueue.obliterate({ force: true });
  await deleteKeys(app.redis, `rapport-${RUN}*`);
  await baseQueue.close();
  baseConnection.disconnect();
  bareServer.close();
  await app.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

/**
 * bench/e2e: the whole pipeline under load — signed webhooks (SMS, Twilio WhatsApp, Cloud WhatsApp,
 * Messenger; new and returning customers) → intake → inbound queue → identity + routing → Slack post
 * recorded by the Slack emulator — next to raw baselines measured in the same run on the same Redis
 * and database (bare express route, bare BullMQ add+process, bare mongoose insert).
 *
 * Rapport's API runs in this process with the Slack/Twilio/Graph emulators; workers run as 1, 2, 3…
 * separate processes (`--processes`, bench/lib/worker.ts); the load generator is its own process
 * (bench/lib/paced-sender.js) sending at a fixed rate. `--redis cluster` runs everything on the local
 * 3-master Redis Cluster (scripts/redis-cluster.sh, started if needed) instead of REDIS_URL.
 *
 * Usage: npm run bench:e2e [-- --seconds 20 --rate 300 --processes 1,2,3 --redis single|cluster --customers N --drain 60
 *        --agents 50 --slack-limits --slack-latency 0
 *        --media 0.2 --media-bytes 100000 --ts-runtime --partitions 8
 *        --returning-only --rates 60,120,240,480 --cpu-prof]
 * (`--workers` is the old name of `--processes`.) `--agents N` (default 50) creates N agents, each with
 * their own inbox channel, so customers spread over N channels as on a real team. `--slack-limits`
 * makes the Slack emulator enforce Slack's per-channel chat.postMessage rate (1 a second, bursts of
 * 3, then 429 with Retry-After), so the latency is what agents would see.
 *
 * Database commands are counted with the driver's command monitoring in the api and worker processes
 * (bench/lib/db-monitor.ts) and reported per delivered message and per stage (`dbCommandsPerMessage`):
 * over the measured run (new and returning customers mixed; divided by the inbound messages stored,
 * so a run that did not drain is not inflated) and in a probe before it, on the idle system — 20
 * first contacts, drained, then one message from each of them again — for new vs returning.
 * The api runs in its own process (bench/lib/api.ts), so each process's peak RSS is its own.
 *
 * `--media F` makes a fraction F of the messages carry a file of `--media-bytes` bytes (default
 * 100000), fetched from the emulators, stored in GridFS and uploaded into the thread; the report then
 * compares media and text messages (the cost of a file) and counts the files uploaded.

 * Writes bench/results/e2e-<date>.{json,md,svg}. Needs Redis on 127.0.0.1:6379 and a MongoDB-protocol
 * server on 127.0.0.1:27017 (npm run services); uses its own key prefix and database and removes them.
 */
import { execFile, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Queue, Worker } from 'bullmq';
import type { ChildProcess } from 'node:child_process';
import express from 'express';
import mongoose, { Schema } from 'mongoose';
import { buildApp } from '../src/app';
import { loadConfig } from '../src/config';
import { postKeys } from '../src/router/coalesce';
import { createRedisConnection, deletePrefixedKeys } from '../src/queue/connection';
import { prefixFor } from '../src/queue/options';
import { compileForBench } from './lib/compiled';
import { summariseProfileFile } from './lib/cpu-profile';
import { redisPerMessage } from './lib/redis-monitor';
import { STAGES, perMessage, type DbCounts } from './lib/db-monitor';
import {
  admin,
  parseArgs,
  rapportEnv,
  rssOf,
  memoryOf,
  type MemoryMb,
  signedMessages,
  dbCountsOf,
  freeLoopbackPort,
  resetDbCounts,
  spawnApi,
  spawnWorker,
  startCpuProfile,
  startEmulators,
  stopCpuProfile,
  whenReady,
  stopChild,
  summary,
  type Emulators,
  type SignedRequest,
} from './lib/world';

const execFileAsync = promisify(execFile);
const args = parseArgs({ seconds: '20', rate: '300', drain: '60', redis: 'single' });
const SECONDS = Number(args.seconds);
const RATE = Number(args.rate);
const WORKERS = (args.processes ?? args.workers ?? '1,2,3').split(',').map(Number);
/**
 * `--returning-only`: every customer first writes once (first contacts, drained, not measured), then
 * returning-only load is offered at each of `--rates` (default 60,120,240,480 msg/s, `--seconds` each)
 * until a step does not keep up. `--cpu-prof` writes a CPU profile of each process per step.
 */
const RETURNING_ONLY = args['returning-only'] === 'true';
const RATES = (args.rates ?? '60,120,240,480').split(',').map(Number);
const CPU_PROFILE = args['cpu-prof'] === 'true';
const CUSTOMERS = Number(args.customers ?? (RETURNING_ONLY ? 400 : Math.max(50, Math.round((SECONDS * RATE) / 3))));
const DRAIN_MS = Number(args.drain) * 1000;
const CLUSTER = args.redis === 'cluster';
const AGENTS = Number(args.agents ?? 50);
const SLACK_LIMITS = args['slack-limits'] === 'true';
/** `--slack-latency MS`: every Slack Web API call answered MS later (a slow Slack); default 0. */
const SLACK_LATENCY_MS = Number(args['slack-latency'] ?? '0');
/** Slack: "1 message per second per channel, short bursts allowed"; the burst size is ours. */
const POSTING_LIMIT = { perSecond: 1, burst: 3 };
const PROBE_CUSTOMERS = 20;
const REDIS_URL = CLUSTER
  ? execFileSync('bash', [path.join(__dirname, '../scripts/redis-cluster.sh'), 'start'], { encoding: 'utf8' }).trim()
  : (process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const MONGO = process.env.MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const MEDIA = Number(args.media ?? '0');
const MEDIA_BYTES = Number(args['media-bytes'] ?? '100000');
const RUN = `e2e${Date.now().toString(36)}`;
/** `--ts-runtime`: run the api and workers through @swc-node/register as before (~75 MB more RSS each; see lib/compiled.ts). */
const COMPILED = args['ts-runtime'] === 'true' ? undefined : compileForBench(RUN);

interface SendResult {
  key: string;
  customer: string;
  sentAt: number;
  lastSentAt: number;
  doneAt: number;
  status: number;
  attempts: number;
}

async function runSender(base: string, requests: SignedRequest[], rate: number) {
  const job = path.join(os.tmpdir(), `rapport-e2e-${process.pid}-${Date.now()}.json`);
  const out = `${job}.out`;
  writeFileSync(job, JSON.stringify({ base, rate, retry: false, requests }));
  try {
    await execFileAsync(process.execPath, [path.join(__dirname, 'lib/paced-sender.js'), job, out], { maxBuffer: 1 << 24 });
    return JSON.parse(readFileSync(out, 'utf8')) as { start: number; end: number; dispatchedIn: number; results: SendResult[] };
  } finally {
    rmSync(job, { force: true });
    rmSync(out, { force: true });
  }
}

/** Slack post receive time per message key, from the emulator's call log (every key of a coalesced post). */
function postTimes(emu: Emulators): Map<string, number> {
  const out = new Map<string, number>();
  for (const call of emu.slack.callsTo('chat.postMessage')) {
    if (call.rateLimited) continue;
    const meta = call.args.metadata as { event_type?: string; event_payload?: unknown } | undefined;
    const keys = meta?.event_type === 'rapport_post' ? postKeys(meta.event_payload) : [];
    for (const key of keys) if (!out.has(key)) out.set(key, call.at);
  }
  return out;
}

/** Waits until every accepted request of `sent` has its Slack post (or `timeoutMs` passed). */
async function drain(emu: Emulators, keys: string[], timeoutMs: number): Promise<Map<string, number>> {
  const deadline = Date.now() + timeoutMs;
  let posts = postTimes(emu);
  while (keys.some((k) => !posts.has(k)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    posts = postTimes(emu);
  }
  return posts;
}

type Procs = { api: ChildProcess; workers: ChildProcess[] };

async function resetCounts(p: Procs): Promise<void> {
  for (const c of [p.api, ...p.workers]) resetDbCounts(c);
  // A snapshot after the reset proves every process handled it (IPC is ordered per child).
  await collectCounts(p);
}

async function collectCounts(p: Procs): Promise<{ role: 'api' | 'worker'; counts: DbCounts }[]> {
  return [
    { role: 'api' as const, counts: await dbCountsOf(p.api) },
    ...(await Promise.all(p.workers.map(async (w) => ({ role: 'worker' as const, counts: await dbCountsOf(w) })))),
  ];
}

/**
 * The counts once the work a batch set off after its posts (card refreshes after a thread opens,
 * acknowledgements) is done: unchanged for 2 s (at most 20 s), so it is not counted in the next batch.
 */
async function settledCounts(p: Procs): Promise<{ role: 'api' | 'worker'; counts: DbCounts }[]> {
  const total = (parts: { counts: DbCounts }[]) =>
    parts.reduce((n, { counts }) => n + Object.values(counts.byCommand).reduce((a, b) => a + b, 0), 0);
  let last = await collectCounts(p);
  for (let quiet = 0, waited = 0; quiet < 2 && waited < 20_000; waited += 1_000) {
    await new Promise((r) => setTimeout(r, 1_000));
    const now = await collectCounts(p);
    quiet = total(now) === total(last) ? quiet + 1 : 0;
    last = now;
  }
  return last;
}

/**
 * Peak RSS per process (VmHWM, the kernel's own peak) and a curve every 5 s: RSS, and what of it is
 * V8 heap, external memory and array buffers (`process.memoryUsage()` of each child, over IPC).
 */
function sampleRss(p: Procs) {
  type Point = { t: number; apiMb: number; workersMb: number[]; apiMem?: MemoryMb; workersMem: (MemoryMb | undefined)[] };
  const curve: Point[] = [];
  const t0 = Date.now();
  const sample = () => {
    const point: Point = {
      t: Math.round((Date.now() - t0) / 1000),
      apiMb: rssOf(p.api.pid!)?.rssMb ?? 0,
      workersMb: p.workers.map((w) => rssOf(w.pid!)?.rssMb ?? 0),
      workersMem: [],
    };
    curve.push(point);
    void Promise.all([memoryOf(p.api), ...p.workers.map((w) => memoryOf(w))]).then(([api, ...workers]) => {
      point.apiMem = api;
      point.workersMem = workers;
    });
  };
  sample();
  const timer = setInterval(sample, 5_000);
  return {
    stop: () => {
      clearInterval(timer);
      return { api: rssOf(p.api.pid!), workers: p.workers.map((w) => rssOf(w.pid!)), bench: rssOf(process.pid), curve };
    },
  };
}

/** Probe: PROBE_CUSTOMERS first contacts, drained; then one message from each of them again. */
async function probeNewVsReturning(emu: Emulators, base: string, procs: Procs, run: string) {
  const requests = signedMessages(run, PROBE_CUSTOMERS * 2, PROBE_CUSTOMERS, 800_000);
  const out: Record<'new' | 'returning', ReturnType<typeof perMessage>> = {} as never;
  for (const [label, batch] of [
    ['new', requests.slice(0, PROBE_CUSTOMERS)],
    ['returning', requests.slice(PROBE_CUSTOMERS)],
  ] as const) {
    await resetCounts(procs);
    const sent = await runSender(base, batch, 10);
    const keys = sent.results.filter((r) => r.status >= 200 && r.status < 300).map((r) => r.key);
    const posts = await drain(emu, keys, DRAIN_MS);
    out[label] = perMessage(await settledCounts(procs), keys.filter((k) => posts.has(k)).length);
    if (out[label].messages < batch.length) process.stdout.write(`probe (${label}): only ${out[label].messages}/${batch.length} delivered in the drain time\n`);
  }
  return out;
}

async function createAgents(base: string): Promise<void> {
  for (let i = 0; i < AGENTS; i++) {
    const n = String(i).padStart(3, '0');
    const agent = await admin(base, 'POST', '/agents', { slackUserId: `U0BENCH${n}`, name: `Bench Agent ${n}`, inboxChannelId: `C0BENCH${n}`, capacity: 10_000 });
    if (agent.status !== 201) throw new Error(`agent not created: ${agent.status} ${JSON.stringify(agent.body)}`);
  }
}

/** The processes of one phase, started, with agents created, warmed up and probed (new vs returning). */
async function setUp(emu: Emulators, workers: number) {
  const prefix = `rapport-${RUN}-w${workers}`;
  const env = rapportEnv({
    prefix,
    redisUrl: REDIS_URL,
    mongoUri: `${MONGO}/rapport_${RUN}_w${workers}`,
    slackUrl: emu.slack.url,
    twilioUrl: emu.twilio.url,
    graphUrl: emu.graph.url,
    // `--partitions N`: INBOUND_PARTITIONS for the run (default: Rapport's, 8).
    extra: { BENCH_DB_MONITOR: '1', ...(args.partitions ? { INBOUND_PARTITIONS: args.partitions } : {}) },
  });
  emu.slack.reset();
  emu.slack.limitPosting(SLACK_LIMITS ? POSTING_LIMIT : undefined);
  emu.slack.delayAnswers(SLACK_LATENCY_MS);
  // The api in its own process (its RSS is its own); this process keeps a non-listening client of
  // the same queues and database to read the jobs and outbox rows afterwards.
  const port = await freeLoopbackPort();
  const procs: Procs = { api: spawnApi(env, port, COMPILED), workers: Array.from({ length: workers }, () => spawnWorker(env, COMPILED)) };
  const app = buildApp(loadConfig({ ...process.env, ...env }), { role: 'api' });
  await Promise.all([whenReady(procs.api), ...procs.workers.map((w) => whenReady(w)), app.mongo.ready]);
  const base = `http://127.0.0.1:${port}`;
  await createAgents(base);
  const rssSampler = sampleRss(procs);

  // Warm-up (not measured): a few customers, so connections, indexes and JIT are warm.
  const warm = signedMessages(`${RUN}w${workers}x`, 40, 40, 900_000);
  await runSender(base, warm, 20);
  await drain(emu, warm.map((w) => w.key), 30_000);
  const probe = await probeNewVsReturning(emu, base, procs, `${RUN}w${workers}p`);
  await resetCounts(procs);
  return { prefix, procs, app, base, rssSampler, probe };
}

async function tearDown({ prefix, procs, app }: { prefix: string; procs: Procs; app: ReturnType<typeof buildApp> }) {
  await Promise.all([procs.api, ...procs.workers].map((c) => stopChild(c)));
  await app.mongo.connection.dropDatabase().catch(() => undefined);
  await deletePrefixedKeys(app.redis, prefix);
  await app.close();
}

async function phase(emu: Emulators, workers: number) {
  const world = await setUp(emu, workers);
  const { procs, app, base, rssSampler, probe } = world;
  const limitedBefore = emu.slack.callsTo('chat.postMessage').filter((c) => c.rateLimited).length;

  const mix = MEDIA > 0 ? { fraction: MEDIA, bytes: MEDIA_BYTES, emulators: emu } : undefined;
  const requests = signedMessages(`${RUN}w${workers}`, Math.round(SECONDS * RATE), CUSTOMERS, 0, mix);
  process.stdout.write(`[${workers} worker(s)] sending ${requests.length} webhooks at ${RATE}/s to ${CUSTOMERS} customers over ${AGENTS} agents${SLACK_LIMITS ? ' (Slack limits on)' : ''}…\n`);
  const sent = await runSender(base, requests, RATE);
  const accepted = sent.results.filter((r) => r.status >= 200 && r.status < 300);
  const posts = await drain(emu, accepted.map((r) => r.key), DRAIN_MS);
  const drainedAt = Date.now();
  const deliveredCount = accepted.filter((r) => posts.has(r.key)).length;
  const counts = await collectCounts(procs);
  // Per inbound message stored (= delivered once drained): commands of messages still queued are not paid yet.
  const stored = counts.reduce((n, c) => n + (c.role === 'worker' ? (c.counts.byCommand['insert messages'] ?? 0) : 0), 0);
  const dbRun = { ...perMessage(counts, Math.max(stored, deliveredCount)), delivered: deliveredCount, drained: deliveredCount === accepted.length };
  const rateLimited = emu.slack.callsTo('chat.postMessage').filter((c) => c.rateLimited).length - limitedBefore;
  const rss = rssSampler.stop();

  // Stages.
  const latencies = accepted.filter((r) => posts.has(r.key)).map((r) => ({ at: r.sentAt, ms: posts.get(r.key)! - r.sentAt }));
  const intake = accepted.map((r) => r.doneAt - r.lastSentAt);
  const jobs = await app.queues.inbound.getJobs(['completed']);
  const keys = new Set(accepted.map((r) => r.key));
  const measured = jobs.filter((j) => keys.has((j.data as { message?: { key?: string } }).message?.key ?? '') || keys.has(j.id ?? ''));
  const useJobs = measured.length > 0 ? measured : jobs;
  const queueWait = useJobs.filter((j) => j.processedOn).map((j) => j.processedOn! - j.timestamp);
  const processing = useJobs.filter((j) => j.processedOn && j.finishedOn).map((j) => j.finishedOn! - j.processedOn!);
  const postDocs = await app.mongo.connection
    .collection('agent_posts')
    .find({ kind: 'message' }, { projection: { key: 1, createdAt: 1 } })
    .toArray();
  const sentAt = new Map(accepted.map((r) => [r.key, r.sentAt]));
  const toOutbox: number[] = [];
  const slackStage: number[] = [];
  for (const d of postDocs) {
    const k = d.key as string;
    const created = (d.createdAt as Date | undefined)?.getTime();
    if (!created || !sentAt.has(k)) continue;
    toOutbox.push(created - sentAt.get(k)!);
    if (posts.has(k)) slackStage.push(posts.get(k)! - created);
  }
  const mediaCost = MEDIA > 0 ? await mediaReport(app, emu, requests, accepted, posts) : undefined;
  const firstSend = Math.min(...accepted.map((r) => r.sentAt));
  const lastPost = Math.max(...latencies.map((l) => l.at + l.ms));
  const result = {
    workers,
    sent: requests.length,
    accepted: accepted.length,
    rejected: sent.results.length - accepted.length,
    delivered: latencies.length,
    offeredRate: RATE,
    acceptedRate: Math.round((accepted.length / (Math.max(...accepted.map((r) => r.doneAt)) - firstSend)) * 1000),
    deliveredRate: Math.round((latencies.length / (lastPost - firstSend)) * 1000),
    drainSeconds: Math.round((drainedAt - sent.end) / 100) / 10,
    latency: summary(latencies.map((l) => l.ms)),
    stages: {
      intake: summary(intake),
      inboundQueueWait: summary(queueWait),
      identityAndRouting: summary(processing),
      webhookToOutbox: summary(toOutbox),
      outboxToSlack: summary(slackStage),
    },
    agents: AGENTS,
    slackLimits: SLACK_LIMITS ? { ...POSTING_LIMIT, rateLimitedPosts: rateLimited } : null,
    dbCommandsPerMessage: { run: dbRun, new: probe.new, returning: probe.returning },
    rss,
    timeline: timeline(latencies),
    ...(mediaCost ? { media: mediaCost } : {}),
  };

  await tearDown(world);
  return result;
}

const okKeys = (sent: { results: SendResult[] }) =>
  sent.results.filter((r) => r.status >= 200 && r.status < 300).map((r) => r.key);

/** Queue wait and job time (ms) of the completed inbound jobs of `keys`. */
async function jobTimes(app: ReturnType<typeof buildApp>, keys: Set<string>) {
  const jobs = (await app.queues.inbound.getJobs(['completed'])).filter(
    (j) => keys.has((j.data as { message?: { key?: string } }).message?.key ?? '') || keys.has(j.id ?? ''),
  );
  return {
    queueWait: summary(jobs.filter((j) => j.processedOn).map((j) => j.processedOn! - j.timestamp)),
    job: summary(jobs.filter((j) => j.processedOn && j.finishedOn).map((j) => j.finishedOn! - j.processedOn!)),
  };
}

/** Per-message figures of one returning-only step, from every process's counts over the step. */
function stepCosts(counts: { role: 'api' | 'worker'; counts: DbCounts }[], delivered: number) {
  const per = (n: number) => Math.round((n / Math.max(1, delivered)) * 100) / 100;
  const cpu = (role: 'api' | 'worker') => counts.filter((c) => c.role === role).reduce((a, c) => a + (c.counts.cpuMs ?? 0), 0);
  return {
    db: perMessage(counts, delivered),
    redis: {
      api: redisPerMessage(counts.filter((c) => c.role === 'api').flatMap((c) => (c.counts.redis ? [c.counts.redis] : [])), delivered),
      worker: redisPerMessage(counts.filter((c) => c.role === 'worker').flatMap((c) => (c.counts.redis ? [c.counts.redis] : [])), delivered),
    },
    cpuMsPerMessage: { api: per(cpu('api')), worker: per(cpu('worker')) },
  };
}

/** One step: `SECONDS` of returning-only load at `rate`, drained; its figures (and CPU profiles). */
async function returningStep(emu: Emulators, world: Awaited<ReturnType<typeof setUp>>, workers: number, rate: number) {
  const { procs, app, base } = world;
  await resetCounts(procs);
  const children = [{ name: 'api', c: procs.api }, ...procs.workers.map((c, i) => ({ name: `worker${i + 1}`, c }))];
  if (CPU_PROFILE) for (const { c } of children) startCpuProfile(c);
  const requests = signedMessages(`${RUN}w${workers}r${rate}`, Math.round(SECONDS * rate), CUSTOMERS, 0);
  process.stdout.write(`[${workers} worker(s)] returning-only: ${requests.length} webhooks at ${rate}/s from ${CUSTOMERS} warm customers…\n`);
  const sent = await runSender(base, requests, rate);
  const accepted = sent.results.filter((r) => r.status >= 200 && r.status < 300);
  const posts = await drain(emu, accepted.map((r) => r.key), DRAIN_MS);
  const drainSeconds = Math.round((Date.now() - sent.end) / 100) / 10;
  const counts = await collectCounts(procs);
  const profiles: Record<string, ReturnType<typeof summariseProfileFile>> = {};
  if (CPU_PROFILE) {
    const dir = path.join(__dirname, 'results');
    mkdirSync(dir, { recursive: true });
    for (const { name, c } of children) {
      const file = path.join(dir, `cpu-${RUN}-w${workers}-r${rate}-${name}.cpuprofile`);
      await stopCpuProfile(c, file);
      profiles[name] = summariseProfileFile(file);
    }
  }
  const delivered = accepted.filter((r) => posts.has(r.key));
  const latencies = delivered.map((r) => posts.get(r.key)! - r.sentAt);
  const firstSend = Math.min(...accepted.map((r) => r.sentAt));
  const lastPost = Math.max(...delivered.map((r) => posts.get(r.key)!));
  const deliveredRate = Math.round((delivered.length / (lastPost - firstSend)) * 1000);
  return {
    offeredRate: rate,
    sent: requests.length,
    accepted: accepted.length,
    delivered: delivered.length,
    acceptedRate: Math.round((accepted.length / (Math.max(...accepted.map((r) => r.doneAt)) - firstSend)) * 1000),
    deliveredRate,
    drainSeconds,
    // Kept up: everything delivered, and at (nearly) the rate offered.
    keptUp: delivered.length === requests.length && deliveredRate >= 0.9 * rate,
    latency: summary(latencies),
    ...(await jobTimes(app, new Set(accepted.map((r) => r.key)))),
    perMessage: stepCosts(counts, delivered.length),
    ...(CPU_PROFILE ? { cpuProfiles: profiles } : {}),
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** `--returning-only`: warm every customer (not measured), then returning-only steps at RATES. */
async function returningPhase(emu: Emulators, workers: number) {
  emu.slack.reset();
  const world = await setUp(emu, workers);
  const warm = signedMessages(`${RUN}w${workers}f`, CUSTOMERS, CUSTOMERS, 0);
  process.stdout.write(`[${workers} worker(s)] warming ${CUSTOMERS} customers (first contacts, not measured)…\n`);
  const t0 = Date.now();
  const warmSent = await runSender(world.base, warm, 30);
  // Every first contact must be through before a step starts (on a loaded machine this takes minutes):
  // a step measured behind the warm-up's backlog would measure first contacts again.
  const warmPosts = await drain(emu, okKeys(warmSent), Math.max(DRAIN_MS, 600_000));
  // Their acknowledgements and card refreshes finish before the first step.
  await settledCounts(world.procs);
  // Then one returning message each (not measured either): identity touches (last seen, address,
  // window) are written at most once a minute, so a warm-up that took minutes would make every
  // customer's first step message a touch. Steps start within that minute; a step longer than a
  // minute pays the touches at their real rate.
  const again = signedMessages(`${RUN}w${workers}g`, CUSTOMERS, CUSTOMERS, 0);
  const againSent = await runSender(world.base, again, 30);
  await drain(emu, okKeys(againSent), Math.max(DRAIN_MS, 600_000));
  await settledCounts(world.procs);
  const warmed = { customers: CUSTOMERS, delivered: okKeys(warmSent).filter((k) => warmPosts.has(k)).length, seconds: Math.round((Date.now() - t0) / 1000) };
  const steps = [];
  if (warmed.delivered < CUSTOMERS) process.stdout.write(`  only ${warmed.delivered}/${CUSTOMERS} customers warmed: no step measured\n`);
  for (const rate of warmed.delivered < CUSTOMERS ? [] : RATES) {
    const step = await returningStep(emu, world, workers, rate);
    steps.push(step);
    process.stdout.write(`  ${rate}/s offered: ${step.deliveredRate}/s delivered, p50 ${step.latency.p50} ms, p95 ${step.latency.p95} ms${step.keptUp ? '' : ' (did not keep up)'}\n`);
    if (!step.keptUp) break;
  }
  const rss = world.rssSampler.stop();
  await tearDown(world);
  return { workers, mode: 'returning-only' as const, warmed, probe: world.probe, steps, rss: { api: rss.api, workers: rss.workers } };
}

/** The media mix's cost: latency of messages with a file vs without, files uploaded, bytes stored. */
async function mediaReport(
  app: ReturnType<typeof buildApp>,
  emu: Emulators,
  requests: SignedRequest[],
  accepted: SendResult[],
  posts: Map<string, number>,
) {
  const withFile = new Set(requests.filter((r) => r.media).map((r) => r.key));
  const ms = (media: boolean) =>
    accepted.filter((r) => posts.has(r.key) && withFile.has(r.key) === media).map((r) => posts.get(r.key)! - r.sentAt);
  const expected = accepted.filter((r) => withFile.has(r.key)).length;
  // Files reach Slack after their message's line: wait (bounded) for the uploads to finish.
  const deadline = Date.now() + DRAIN_MS;
  const uploaded = () => emu.slack.callsTo('files.completeUploadExternal').length;
  while (uploaded() < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
  // Summed here, not with $group: FerretDB v1 answered 0 for `$sum: '$length'`.
  const files = await app.mongo.connection.collection('media.files').find({}, { projection: { length: 1 } }).toArray();
  const stored = { n: files.length, bytes: files.reduce((a, f) => a + Number(f.length ?? 0), 0) };
  return {
    fraction: MEDIA,
    fileBytes: MEDIA_BYTES,
    messagesWithFile: expected,
    filesUploaded: uploaded(),
    filesStored: stored.n,
    storedMb: Math.round((stored.bytes / 1_048_576) * 10) / 10,
    latencyWithFile: summary(ms(true)),
    latencyText: summary(ms(false)),
  };
}

function timeline(lat: { at: number; ms: number }[]): { t: number; p50: number; p95: number; n: number }[] {
  if (lat.length === 0) return [];
  const t0 = Math.min(...lat.map((l) => l.at));
  const buckets = new Map<number, number[]>();
  for (const l of lat) {
    const b = Math.floor((l.at - t0) / 1000);
    (buckets.get(b) ?? buckets.set(b, []).get(b)!).push(l.ms);
  }
  return [...buckets.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([t, v]) => {
      const s = summary(v);
      return { t, p50: s.p50, p95: s.p95, n: s.n };
    });
}


async function baselines() {
  // 1. Bare express route, driven by autocannon in its own process (bench/lib/load-generator.js).
  const bare = express();
  bare.post('/hello', (_req, res) => void res.send('ok'));
  const server = bare.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const job = path.join(os.tmpdir(), `rapport-e2e-bare-${process.pid}.json`);
  writeFileSync(job, JSON.stringify({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hello`, connections: 50, duration: 5, requests: [{ body: 'x', headers: {} }] }));
  const { stdout } = await execFileAsync(process.execPath, [path.join(__dirname, 'lib/load-generator.js'), job]);
  rmSync(job, { force: true });
  server.close();
  const express_ = JSON.parse(stdout) as { rps: number; p50: number; p99: number };

  // 2. Bare BullMQ: add N jobs (50 in flight) to a queue processed by a worker (concurrency 8).
  const connection = createRedisConnection(REDIS_URL, 'worker');
  const qPrefix = prefixFor('bare', `rapport-${RUN}-base`, connection);
  const queue = new Queue('bare', { connection, prefix: qPrefix });
  const N = 3000;
  const lat: number[] = [];
  let done = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const worker = new Worker('bare', async (j) => void lat.push(Date.now() - (j.data as { t: number }).t), { connection, prefix: qPrefix, concurrency: 8 });
  worker.on('completed', () => ++done === N && resolveAll());
  await worker.waitUntilReady();
  const t0 = Date.now();
  let next = 0;
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < N) {
      next++;
      await queue.add('j', { t: Date.now() }, { removeOnComplete: true });
    }
  }));
  await all;
  const bullmq = { jobsPerSec: Math.round((N / (Date.now() - t0)) * 1000), latency: summary(lat) };
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  connection.disconnect();

  // 3. Bare mongoose insert: N documents, 8 in flight, on the same server.
  const conn = await mongoose.createConnection(`${MONGO}/rapport_${RUN}_base`).asPromise();
  const Doc = conn.model('Doc', new Schema({ k: String, t: Date, text: String }));
  await Doc.create({ k: 'warm', t: new Date(), text: 'warm' });
  const M = 1000;
  const ins: number[] = [];
  let m = 0;
  const m0 = Date.now();
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (m < M) {
      const i = m++;
      const s = Date.now();
      await Doc.create({ k: `k${i}`, t: new Date(), text: `message ${i}` });
      ins.push(Date.now() - s);
    }
  }));
  const mongoInsert = { insertsPerSec: Math.round((M / (Date.now() - m0)) * 1000), latency: summary(ins) };
  await conn.dropDatabase().catch(() => undefined);
  await conn.close();
  return { express: express_, bullmq, mongoInsert };
}

function svg(runs: { workers: number; timeline: { t: number; p50: number; p95: number }[] }[]): string {
  const W = 800, H = 400, L = 60, B = 40, T = 30, R = 20;
  const maxT = Math.max(1, ...runs.flatMap((r) => r.timeline.map((p) => p.t)));
  const maxY = Math.max(1, ...runs.flatMap((r) => r.timeline.map((p) => p.p95)));
  const x = (t: number) => L + (t / maxT) * (W - L - R);
  const y = (v: number) => H - B - (v / maxY) * (H - B - T);
  const colours = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const lines = runs.flatMap((r, i) => [
    `<polyline fill="none" stroke="${colours[i % 4]}" stroke-width="2" points="${r.timeline.map((p) => `${x(p.t).toFixed(1)},${y(p.p95).toFixed(1)}`).join(' ')}"/>`,
    `<polyline fill="none" stroke="${colours[i % 4]}" stroke-width="1" stroke-dasharray="4 3" points="${r.timeline.map((p) => `${x(p.t).toFixed(1)},${y(p.p50).toFixed(1)}`).join(' ')}"/>`,
    `<text x="${W - R - 220}" y="${T + 16 * i}" font-size="12" fill="${colours[i % 4]}">${r.workers} worker(s): p95 solid, p50 dashed</text>`,
  ]);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => `<text x="${L - 6}" y="${y(f * maxY) + 4}" font-size="11" text-anchor="end">${Math.round(f * maxY)}</text><line x1="${L}" x2="${W - R}" y1="${y(f * maxY)}" y2="${y(f * maxY)}" stroke="#eee"/>`);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${L}" y="18" font-size="14">Webhook → Slack post latency (ms) by second of the run — ${RATE} msg/s offered</text>`,
    ...ticks,
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(W + L) / 2}" y="${H - 8}" font-size="12" text-anchor="middle">second of the run (send time), 0…${maxT}</text>`,
    ...lines,
    `</svg>`,
  ].join('\n');
}

type Run = Awaited<ReturnType<typeof phase>>;
type Stage = Run['stages']['intake'];
interface Report {
  date: string;
  stamp: string;
  baselines: Awaited<ReturnType<typeof baselines>>;
  runs: Run[];
}

/** Start, min, max and end of each process's RSS curve (and its V8 heap in use when RSS was highest). */
function rssCurves(r: Run) {
  const procs = [
    { name: 'api', mb: r.rss.curve.map((c) => c.apiMb), mem: r.rss.curve.map((c) => c.apiMem), peak: r.rss.api?.peakMb },
    ...r.rss.workers.map((w, i) => ({ name: `worker ${i + 1}`, mb: r.rss.curve.map((c) => c.workersMb[i] ?? 0), mem: r.rss.curve.map((c) => c.workersMem[i]), peak: w?.peakMb })),
  ];
  return procs.map(({ name, mb, mem, peak }) => {
    const max = Math.max(...mb);
    return { name, start: mb[0] ?? 0, min: Math.min(...mb), max, end: mb[mb.length - 1] ?? 0, peak: peak ?? '?', heapAtMax: mem[mb.indexOf(max)]?.heapUsed ?? '?' };
  });
}

function markdown(report: Report): string {
  const line = (c: (string | number)[]) => `| ${c.join(' | ')} |`;
  const out: string[] = [
    `# bench/e2e — ${report.date}`,
    '',
    `Node ${process.version}, ${os.cpus().length} CPUs, Redis ${CLUSTER ? 'Cluster (3 masters + 3 replicas on this machine)' : 'single server'}, ${SECONDS} s at ${RATE} msg/s offered, ${CUSTOMERS} customers (SMS, Twilio WhatsApp, Cloud WhatsApp, Messenger; first ${CUSTOMERS} messages are new customers, the rest returning) over ${AGENTS} agents' inbox channels; Slack per-channel posting limit ${SLACK_LIMITS ? `on (${POSTING_LIMIT.perSecond}/s, bursts of ${POSTING_LIMIT.burst}, 429 + Retry-After)` : 'off'}.`,
    '',
    line(['worker processes', 'accepted', 'delivered', 'accepted msg/s', 'delivered msg/s', '÷ bare insert', 'p50 ms', 'p95 ms', 'p99 ms', 'drain s', 'Slack 429s', 'RSS api / workers MB (peak)']),
    line(['---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---']),
  ];
  for (const r of report.runs)
    out.push(line([r.workers, r.accepted, r.delivered, r.acceptedRate, r.deliveredRate, (r.deliveredRate / report.baselines.mongoInsert.insertsPerSec).toFixed(3), r.latency.p50, r.latency.p95, r.latency.p99, r.drainSeconds, r.slackLimits ? r.slackLimits.rateLimitedPosts : '–', `${r.rss.api?.peakMb ?? '?'} / ${r.rss.workers.map((w) => w?.peakMb ?? '?').join(', ')}`]));
  out.push('', '## Database commands per delivered message (driver command monitoring; stage by collection)', '', line(['workers', 'messages', 'total', ...STAGES]), line(['---', '---:', '---:', ...STAGES.map(() => '---:')]));
  for (const r of report.runs)
    for (const [label, d] of Object.entries(r.dbCommandsPerMessage))
      out.push(line([`${r.workers} — ${label === 'run' ? 'measured run (mixed, per message stored)' : `${label} customers (probe)`}`, d.messages, d.total, ...STAGES.map((s) => d.stages[s])]));
  const last = report.runs[report.runs.length - 1];
  if (last) {
    out.push('', `Per command and collection (${last.workers} worker process(es); per message, new | returning):`, '', line(['command collection', 'new', 'returning']), line(['---', '---:', '---:']));
    const keys = [...new Set([...Object.keys(last.dbCommandsPerMessage.new.byCommand), ...Object.keys(last.dbCommandsPerMessage.returning.byCommand)])];
    for (const k of keys) out.push(line([`\`${k}\``, last.dbCommandsPerMessage.new.byCommand[k] ?? 0, last.dbCommandsPerMessage.returning.byCommand[k] ?? 0]));
  }
  out.push('', '## Stages (ms: p50 / p95 / p99)', '', line(['workers', 'intake (webhook response)', 'inbound queue wait', 'identity + routing (job)', 'webhook → outbox row', 'outbox row → Slack post']), line(['---:', '---', '---', '---', '---', '---']));
  const f = (s: Stage) => `${s.p50} / ${s.p95} / ${s.p99}`;
  for (const r of report.runs)
    out.push(line([r.workers, f(r.stages.intake), f(r.stages.inboundQueueWait), f(r.stages.identityAndRouting), f(r.stages.webhookToOutbox), f(r.stages.outboxToSlack)]));
  out.push('', `## RSS (MB, every 5 s; ${COMPILED ? 'compiled JavaScript, as in production' : 'TypeScript via @swc-node/register (--ts-runtime)'})`, '', line(['workers', 'process', 'start', 'min', 'max', 'end', 'peak (VmHWM)', 'heap used at max RSS']), line(['---:', '---', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const r of report.runs) for (const c of rssCurves(r)) out.push(line([r.workers, c.name, c.start, c.min, c.max, c.end, c.peak, c.heapAtMax]));
  const mediaRuns = report.runs.filter((r) => r.media);
  if (mediaRuns.length > 0) {
    out.push('', `## Media mix (a fraction of messages carry a file; webhook → message line in Slack, ms p50 / p95 / p99)`, '', line(['workers', 'fraction', 'file bytes', 'with a file', 'text only', 'files uploaded / expected', 'stored in GridFS']), line(['---:', '---:', '---:', '---', '---', '---:', '---:']));
    for (const r of mediaRuns) {
      const m = r.media!;
      out.push(line([r.workers, m.fraction, m.fileBytes, f(m.latencyWithFile), f(m.latencyText), `${m.filesUploaded} / ${m.messagesWithFile}`, `${m.filesStored} files, ${m.storedMb} MB`]));
    }
  }
  const b = report.baselines;
  out.push(
    '',
    '## Baselines (same run, same Redis and database)',
    '',
    line(['baseline', 'throughput', 'latency']),
    line(['---', '---:', '---']),
    line(['bare express POST (autocannon, 50 conns, 5 s)', `${Math.round(b.express.rps)} req/s`, `p50 ${b.express.p50} ms, p99 ${b.express.p99} ms`]),
    line(['bare BullMQ add + process (concurrency 8)', `${b.bullmq.jobsPerSec} jobs/s`, `add→processed p50 ${b.bullmq.latency.p50} ms, p95 ${b.bullmq.latency.p95} ms`]),
    line(['bare mongoose insert (8 in flight)', `${b.mongoInsert.insertsPerSec} inserts/s`, `mean ${b.mongoInsert.latency.mean} ms, p95 ${b.mongoInsert.latency.p95} ms`]),
    '',
    `Targets (issue 22): delivered ≥ 0.3 × the bare insert rate, p95 ≤ 250 ms at 50 msg/s, ≤ 4 database commands per message for a returning customer and ≤ 8 for a new one, peak RSS ≤ 250 MB per process. RSS every 5 s is in the JSON (runs[i].rss.curve). The chart is e2e-${report.stamp}.svg.`,
  );
  return out.join('\n') + '\n';
}

type ReturningRun = Awaited<ReturnType<typeof returningPhase>>;

function markdownReturning(report: { date: string; baselines: Awaited<ReturnType<typeof baselines>>; runs: ReturningRun[] }): string {
  const line = (c: (string | number)[]) => `| ${c.join(' | ')} |`;
  const b = report.baselines;
  const out: string[] = [
    `# bench/e2e --returning-only — ${report.date}`,
    '',
    `Node ${process.version}, ${os.cpus().length} CPUs, Redis ${CLUSTER ? 'Cluster' : 'single server'}, ${CUSTOMERS} customers warmed first (first contacts, not measured), then ${SECONDS} s of returning-only messages per step over ${AGENTS} agents, INBOUND_PARTITIONS ${args.partitions ?? 8}; ${COMPILED ? 'compiled JavaScript' : '--ts-runtime'}.`,
    `Same-run baselines: bare mongoose insert ${b.mongoInsert.insertsPerSec}/s, bare BullMQ ${b.bullmq.jobsPerSec} jobs/s, bare express ${Math.round(b.express.rps)} req/s.`,
    '',
    line(['workers', 'offered/s', 'delivered/s', '÷ bare insert', 'kept up', 'p50 / p95 / p99 ms webhook → Slack', 'job p50 / p95 ms', 'queue wait p50 / p95 ms', 'DB cmds/msg', 'Redis cmds / round trips per msg (worker)', '(api)', 'CPU ms/msg worker / api', 'load avg']),
    line(['---:', '---:', '---:', '---:', '---', '---', '---', '---', '---:', '---', '---', '---', '---']),
  ];
  for (const r of report.runs)
    for (const st of r.steps) {
      const c = st.perMessage;
      out.push(line([r.workers, st.offeredRate, st.deliveredRate, (st.deliveredRate / b.mongoInsert.insertsPerSec).toFixed(3), st.keptUp ? 'yes' : 'no', `${st.latency.p50} / ${st.latency.p95} / ${st.latency.p99}`, `${st.job.p50} / ${st.job.p95}`, `${st.queueWait.p50} / ${st.queueWait.p95}`, c.db.total, `${c.redis.worker.commands} / ${c.redis.worker.roundTrips}`, `${c.redis.api.commands} / ${c.redis.api.roundTrips}`, `${c.cpuMsPerMessage.worker} / ${c.cpuMsPerMessage.api}`, st.loadAverage.join(' ')]));
    }
  const last = report.runs[report.runs.length - 1];
  const step = last?.steps[0];
  if (step) {
    out.push('', `Per message at ${step.offeredRate}/s (${last.workers} worker process(es)): database commands, Redis commands by name (scripts as \`script:<name>\`)`, '');
    out.push(line(['command', 'per message']), line(['---', '---:']));
    for (const [k, n] of Object.entries(step.perMessage.db.byCommand)) out.push(line([`db \`${k}\``, n]));
    for (const [k, n] of Object.entries(step.perMessage.redis.worker.byCommand)) out.push(line([`worker redis \`${k}\``, n]));
    for (const [k, n] of Object.entries(step.perMessage.redis.api.byCommand)) out.push(line([`api redis \`${k}\``, n]));
  }
  for (const r of report.runs)
    for (const st of r.steps)
      for (const [name, prof] of Object.entries(st.cpuProfiles ?? {})) {
        out.push('', `CPU profile, ${name} at ${st.offeredRate}/s: busy ${prof.busyMs} ms (${((prof.busyMs / Math.max(1, st.delivered)) * 1000).toFixed(0)} µs/msg), idle ${prof.idleMs} ms`, '');
        out.push(line(['inclusive by area', 'ms', '%', 'self by area', 'ms', '%']), line(['---', '---:', '---:', '---', '---:', '---:']));
        for (let i = 0; i < 15; i++) {
          const a = prof.inclusiveByArea[i];
          const x = prof.selfByArea[i];
          out.push(line([a?.area ?? '', a?.ms ?? '', a?.share ?? '', x?.area ?? '', x?.ms ?? '', x?.share ?? '']));
        }
      }
  return out.join('\n') + '\n';
}

async function mainReturning(emu: Emulators, base: Awaited<ReturnType<typeof baselines>>): Promise<void> {
  const runs: ReturningRun[] = [];
  for (const w of WORKERS) runs.push(await returningPhase(emu, w));
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const report = { date: new Date().toISOString(), stamp, mode: 'returning-only', inboundPartitions: Number(args.partitions ?? 8), node: process.version, cpus: os.cpus().length, redis: CLUSTER ? 'cluster' : 'single', secondsPerStep: SECONDS, rates: RATES, customers: CUSTOMERS, agents: AGENTS, runtime: COMPILED ? 'compiled' : 'ts-runtime', baselines: base, runs };
  const dir = path.join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, `e2e-returning-${stamp}.json`), JSON.stringify(report, null, 2));
  const md = markdownReturning(report);
  writeFileSync(path.join(dir, `e2e-returning-${stamp}.md`), md);
  console.log('\n' + md);
  console.log(`wrote bench/results/e2e-returning-${stamp}.{json,md}`);
}

async function main(): Promise<void> {
  const emu = await startEmulators();
  try {
    process.stdout.write('baselines…\n');
    const base = await baselines();
    if (RETURNING_ONLY) return await mainReturning(emu, base);
    const runs = [];
    for (const w of WORKERS) runs.push(await phase(emu, w));
    const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
    const report = { date: new Date().toISOString(), stamp, node: process.version, cpus: os.cpus().length, redis: CLUSTER ? 'cluster (3 masters + 3 replicas, loopback)' : 'single', seconds: SECONDS, rate: RATE, customers: CUSTOMERS, agents: AGENTS, slackLimits: SLACK_LIMITS, runtime: COMPILED ? 'compiled' : 'ts-runtime', baselines: base, runs };
    const dir = path.join(__dirname, 'results');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `e2e-${stamp}.json`), JSON.stringify(report, null, 2));
    const md = markdown(report);
    writeFileSync(path.join(dir, `e2e-${stamp}.md`), md);
    writeFileSync(path.join(dir, `e2e-${stamp}.svg`), svg(runs));
    console.log('\n' + md);
    console.log(`wrote bench/results/e2e-${stamp}.{json,md,svg}`);
  } finally {
    await emu.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

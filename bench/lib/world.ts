/**
 * Shared by bench/e2e and bench/chaos: the emulators, the environment Rapport runs with, signed
 * webhooks for a mix of channels and customers, worker child processes, and small statistics.
 * Everything listens on and targets 127.0.0.1 only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { DbCounts } from './db-monitor';
import {
  cloudChange,
  messengerEntry,
  signedMeta,
  signedTwilio,
  twilioMessageForm,
} from '../../src/sandbox/wire-builders';
import { startEmulators as startTestEmulators, type Emulators } from '../../test/helpers/emulators';

export const PUBLIC_URL = 'https://rapport.bench.test';
export const ADMIN_TOKEN = 'bench-admin-token-0123456789';
export const TWILIO = { accountSid: 'AC' + 'c3'.repeat(16), authToken: 'bench-twilio-auth-token' };
export const META_SECRET = 'bench-meta-app-secret';
export const PAGE_ID = '100000000000001';
export const CLOUD_PHONE_ID = '106540352242922';
const CLOUD_ACCOUNT = {
  wabaId: '118273645509182',
  phoneNumberId: CLOUD_PHONE_ID,
  displayPhoneNumber: '15550003333',
};
export const INBOX = 'C0BENCHINBOX';

export type { Emulators };

export const startEmulators = () =>
  startTestEmulators({ name: 'bench', twilio: TWILIO, phoneNumberId: CLOUD_PHONE_ID, pageId: PAGE_ID });

/** Rapport's environment; `urls` are where it finds Slack/Twilio/Graph (emulators or a proxy). */
export function rapportEnv(o: {
  prefix: string;
  redisUrl: string;
  mongoUri: string;
  slackUrl: string;
  twilioUrl: string;
  graphUrl: string;
  extra?: Record<string, string>;
}): Record<string, string> {
  return {
    PORT: '0',
    PUBLIC_URL,
    REDIS_URL: o.redisUrl,
    MONGODB_URI: o.mongoUri,
    QUEUE_PREFIX: o.prefix,
    ADMIN_TOKEN,
    LOG_LEVEL: 'error',
    DEFAULT_REGION: 'US',
    TWILIO_ACCOUNT_SID: TWILIO.accountSid,
    TWILIO_AUTH_TOKEN: TWILIO.authToken,
    TWILIO_SMS_FROM: '+15550001111',
    TWILIO_WHATSAPP_FROM: 'whatsapp:+15550002222',
    TWILIO_API_BASE_URL: o.twilioUrl,
    META_APP_SECRET: META_SECRET,
    META_VERIFY_TOKEN: 'bench-verify-token',
    MESSENGER_PAGE_ACCESS_TOKEN: 'bench-page-token',
    WHATSAPP_CLOUD_ACCESS_TOKEN: 'bench-cloud-token',
    WHATSAPP_CLOUD_PHONE_NUMBER_ID: CLOUD_PHONE_ID,
    META_GRAPH_BASE_URL: o.graphUrl,
    SLACK_BOT_TOKEN: 'xoxb-bench-token',
    SLACK_SIGNING_SECRET: 'bench-slack-signing-secret',
    SLACK_API_URL: o.slackUrl,
    REPLY_UNDO_SECONDS: '0',
    ...o.extra,
  };
}

export interface SignedRequest {
  key: string;
  customer: string;
  channel: 'sms' | 'twilio-whatsapp' | 'cloud-whatsapp' | 'messenger';
  path: string;
  body: string;
  headers: Record<string, string>;
  /** The message carries a file (the media mix). */
  media?: boolean;
}

const CHANNELS: SignedRequest['channel'][] = ['sms', 'twilio-whatsapp', 'cloud-whatsapp', 'messenger'];

/**
 * `count` signed inbound messages from `customers` customers, channels mixed evenly (a customer keeps
 * one channel). Customers are visited round-robin, so the first `customers` messages are first
 * contacts and the rest come from returning customers. Customer numbers start at `firstCustomer`, so
 * batches with different starts (warm-up, probe, run) share no customer.
 */
/**
 * A media mix for signedMessages: every `1/fraction`-th message carries a file of `bytes` bytes,
 * registered on the emulator its provider fetches from (Graph media id, Twilio MediaUrl, Messenger
 * CDN URL).
 */
export interface MediaMix {
  fraction: number;
  bytes: number;
  emulators: Pick<Emulators, 'graph' | 'twilio'>;
}

/** The file of message `i`, registered on its provider's emulator; undefined for a text message. */
function mediaOf(mix: MediaMix | undefined, i: number, channel: SignedRequest['channel']) {
  if (!mix || mix.fraction <= 0 || Math.floor((i + 1) * mix.fraction) === Math.floor(i * mix.fraction))
    return undefined;
  const data = Buffer.alloc(mix.bytes, i % 251);
  if (channel === 'cloud-whatsapp')
    return { mediaId: mix.emulators.graph.addWhatsAppMedia(data, 'image/jpeg') };
  if (channel === 'messenger') return { url: mix.emulators.graph.addMessengerAttachment(data, 'image/jpeg') };
  return { url: mix.emulators.twilio.addMedia(data, 'image/jpeg') };
}

export function signedMessages(
  run: string,
  count: number,
  customers: number,
  firstCustomer = 0,
  mix?: MediaMix,
): SignedRequest[] {
  const out: SignedRequest[] = [];
  for (let i = 0; i < count; i++) {
    const c = firstCustomer + (i % customers);
    const channel = CHANNELS[c % CHANNELS.length]!;
    const id = `${run}${i.toString(36).padStart(7, '0')}`;
    const phone = `+1415${String(2_000_000 + c).padStart(7, '0')}`;
    const text = `bench message ${i} from customer ${c}`;
    const media = mediaOf(mix, i, channel);
    const customer = { customer: `${channel}:${c}`, ...(media ? { media: true } : {}), channel };
    if (channel === 'sms' || channel === 'twilio-whatsapp') {
      const sid = `SM${id.padEnd(32, '0')}`;
      const wa = channel === 'twilio-whatsapp';
      const form = twilioMessageForm({
        sid,
        accountSid: TWILIO.accountSid,
        from: wa ? `whatsapp:${phone}` : phone,
        to: wa ? 'whatsapp:+15550002222' : '+15550001111',
        body: text,
        ...(wa ? { whatsapp: { profileName: `Customer ${c}` } } : {}),
        ...(media?.url ? { media: { url: media.url, contentType: 'image/jpeg' } } : {}),
      });
      out.push({
        key: `twilio:${sid}`,
        ...customer,
        ...signedTwilio(TWILIO.authToken, PUBLIC_URL, '/webhooks/twilio', form),
      });
    } else if (channel === 'cloud-whatsapp') {
      const content = media?.mediaId
        ? { type: 'image', image: { id: media.mediaId, mime_type: 'image/jpeg', caption: text } }
        : { type: 'text', text: { body: text } };
      const payload = cloudChange(CLOUD_ACCOUNT, {
        contacts: [{ profile: { name: `Customer ${c}` }, wa_id: phone.slice(1) }],
        messages: [
          {
            from: phone.slice(1),
            id: `wamid.${id}`,
            timestamp: String(Math.floor(Date.now() / 1000)),
            ...content,
          },
        ],
      });
      out.push({ key: `whatsapp-cloud:wamid.${id}`, ...customer, ...signedMeta(META_SECRET, payload) });
    } else {
      const message = {
        mid: `m_${id}`,
        ...(media?.url ? { attachments: [{ type: 'image', payload: { url: media.url } }] } : { text }),
      };
      const payload = messengerEntry(PAGE_ID, `7${String(1_000_000_000 + c)}`, [
        { timestamp: Date.now(), message },
      ]);
      out.push({ key: `messenger:m_${id}`, ...customer, ...signedMeta(META_SECRET, payload) });
    }
  }
  return out;
}

/** Worker and api processes: `buildApp(config, { role })` with `env`; SIGTERM closes them gracefully. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * `compiled`: the directory compileForBench (compiled.ts) wrote, to run the script as compiled
 * JavaScript like production; without it the TypeScript is compiled at load time (@swc-node/register).
 */
function spawnScript(script: string, env: Record<string, string>, compiled?: string): ChildProcess {
  // BENCH_NODE_FLAGS (diagnosis): node flags for the api and worker processes only, e.g. `--trace-gc`
  // (which NODE_OPTIONS refuses) without tracing the benchmark and the load generator too.
  // `--max-semi-space-size=8` as the image and scripts/start.sh run Rapport (Dockerfile); BENCH_NODE_FLAGS
  // come after it, so `--max-semi-space-size=16` measures node's default.
  const flags = ['--max-semi-space-size=8', ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter((f) => f.length > 0)];
  const argv = compiled
    ? [...flags, path.join(compiled, 'bench/lib', script.replace(/\.ts$/, '.js'))]
    : [...flags, '-r', '@swc-node/register', path.join(__dirname, script)];
  const child = spawn(process.execPath, argv, {
    env: { ...process.env, ...env },
    // The IPC channel carries `{ ready: true }` once the process handles SIGTERM (see `whenReady`), and
    // with BENCH_DB_MONITOR=1 the database command counts (see `dbCountsOf`).
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

export function spawnWorker(env: Record<string, string>, compiled?: string): ChildProcess {
  return spawnScript('worker.ts', env, compiled);
}

/** An api process (bench/lib/api.ts) listening on 127.0.0.1:`port`; SIGTERM closes it gracefully. */
export function spawnApi(env: Record<string, string>, port: number, compiled?: string): ChildProcess {
  return spawnScript('api.ts', { ...env, PORT: String(port) }, compiled);
}

/** Resolves once `child` reported `{ ready: true }` (built, handling SIGTERM; an api: listening). */
export function whenReady(child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    };
    const onMessage = (m: unknown) => (m as { ready?: boolean } | null)?.ready === true && done();
    const onExit = (code: number | null, signal: string | null) =>
      done(new Error(`exited (${signal ?? code}) before it was ready`));
    const timer = setTimeout(() => done(new Error(`not ready after ${timeoutMs} ms`)), timeoutMs);
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

let dbRequest = 0;

/** Clears a child's database command counts (it runs with BENCH_DB_MONITOR=1). */
export function resetDbCounts(child: ChildProcess): void {
  child.send({ db: 'reset' });
}

/** A child's database command counts since the last reset (it runs with BENCH_DB_MONITOR=1). */
export function dbCountsOf(child: ChildProcess, timeoutMs = 10_000): Promise<DbCounts> {
  const id = ++dbRequest;
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown) => {
      const r = m as { dbCounts?: DbCounts; id?: number } | null;
      if (r?.id !== id || !r.dbCounts) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(r.dbCounts);
    };
    const timer = setTimeout(() => {
      child.off('message', onMessage);
      reject(new Error(`no database counts from pid ${child.pid} after ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', onMessage);
    child.send({ db: 'snapshot', id });
  });
}

let cpuRequest = 0;

/** Starts a child's CPU profiler (bench/lib/role.ts; 1 ms sampling). */
export function startCpuProfile(child: ChildProcess): void {
  child.send({ cpuProfile: 'start' });
}

/** Stops a child's CPU profiler and waits until it wrote the profile to `file`. */
export function stopCpuProfile(child: ChildProcess, file: string, timeoutMs = 30_000): Promise<void> {
  const id = ++cpuRequest;
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown) => {
      if ((m as { cpuProfileWritten?: number } | null)?.cpuProfileWritten !== id) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve();
    };
    const timer = setTimeout(() => {
      child.off('message', onMessage);
      reject(new Error(`no CPU profile from pid ${child.pid} after ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', onMessage);
    child.send({ cpuProfile: file, id });
  });
}

/** A port nothing listens on right now on 127.0.0.1 (the OS picks it). */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface GracefulStop {
  /** From SIGTERM to the process's exit. */
  ms: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** It had not exited `timeoutMs` after SIGTERM and was SIGKILLed. */
  forced: boolean;
}

/** SIGTERM, then wait for the exit; SIGKILL only if it is still running after `timeoutMs`. */
export async function gracefulStop(child: ChildProcess, timeoutMs: number): Promise<GracefulStop> {
  const t0 = Date.now();
  if (child.exitCode !== null || child.signalCode !== null)
    return { ms: 0, code: child.exitCode, signal: child.signalCode, forced: false };
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let forced = false;
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    forced = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const [code, signal] = await exited;
  clearTimeout(timer);
  return { ms: Date.now() - t0, code, signal, forced };
}

export async function stopChild(
  child: ChildProcess | undefined,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

export interface MemoryMb {
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

let memRequest = 0;

/**
 * A child's `process.memoryUsage()` in MB (bench/lib/role.ts answers over IPC): what of its RSS is
 * V8 heap (used / reserved), external memory and array buffers. Undefined if it does not answer.
 */
export function memoryOf(child: ChildProcess, timeoutMs = 2_000): Promise<MemoryMb | undefined> {
  const id = ++memRequest;
  const mb = (n: number) => Math.round(n / 1048576);
  return new Promise((resolve) => {
    const onMessage = (m: unknown) => {
      const r = m as { mem?: NodeJS.MemoryUsage; id?: number } | null;
      if (r?.id !== id || !r.mem) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      const { heapUsed, heapTotal, external, arrayBuffers } = r.mem;
      resolve({ heapUsed: mb(heapUsed), heapTotal: mb(heapTotal), external: mb(external), arrayBuffers: mb(arrayBuffers) });
    };
    const timer = setTimeout(() => {
      child.off('message', onMessage);
      resolve(undefined);
    }, timeoutMs);
    child.on('message', onMessage);
    if (!child.connected) return resolve(undefined);
    child.send({ mem: id });
  });
}

/** Peak and current RSS of a process, in MB, from /proc (Linux). */
export function rssOf(pid: number): { rssMb: number; peakMb: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
    return { rssMb: Math.round(kb('VmRSS') / 1024), peakMb: Math.round(kb('VmHWM') / 1024) };
  } catch {
    return undefined;
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function summary(values: number[]): {
  n: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
} {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN;
  return {
    n: s.length,
    mean: Math.round(mean * 10) / 10,
    p50: percentile(s, 50),
    p95: percentile(s, 95),
    p99: percentile(s, 99),
    max: s[s.length - 1] ?? NaN,
  };
}

export async function admin(
  baseUrl: string,
  method: string,
  p: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${baseUrl}/api${p}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

export function parseArgs(defaults: Record<string, string>): Record<string, string> {
  const out = { ...defaults };
  for (let i = 2; i < process.argv.length; i++) {
    const a = process.argv[i]!;
    if (!a.startsWith('--')) continue;
    const next = process.argv[i + 1];
    if (next === undefined || next.startsWith('--')) out[a.slice(2)] = 'true';
    else {
      out[a.slice(2)] = next;
      i++;
    }
  }
  return out;
}

/**
 * Fuzzing every inbound route with fast-check: ≥ 10,000 mutated or malformed requests per route,
 * starting from the real wire-format fixtures, signed (a valid signature over the mutated bytes)
 * and unsigned (missing, wrong-secret, garbage or stale signatures).
 *
 * What must hold, for every request:
 * - the answer is a 2xx or a deliberate 4xx (400/401/403/413/415): never a 5xx, never a crash;
 * - a request without a valid signature is never accepted;
 * and, for the whole run, no job was enqueued from a refused request: every job on every queue is
 * one that a 2xx request's body normalises to (the same adapters the app uses compute its key).
 *
 * The app runs with role `api` in a child process (serve-app.ts: the app and this load generator
 * get a core each), so nothing consumes the queues and the jobs can be counted here.
 * Replay a failure with the seed and path fast-check prints (`FUZZ_SEED=… npx jest test/fuzz`).
 * Scale with FUZZ_RUNS_PER_ROUTE (default 10,000).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import path from 'node:path';
import { Redis } from 'ioredis';
import fc from 'fast-check';
import { signMetaPayload } from '../../src/channels/meta/signature';
import { signSlackRequest } from '../../src/channels/slack/signature';
import { parseSlackEvent } from '../../src/channels/slack/normalize';
import { signTwilioRequest } from '../../src/channels/twilio/signature';
import { buildWebhookAdapters } from '../../src/channels';
import { eventKey } from '../../src/canonical';
import { withoutNul } from '../../src/queue/intake';
import { jobIdFor } from '../../src/queue/names';
import { closeQueues, createQueues, type Queues } from '../../src/queue/queues';
import { loadConfig, type Config } from '../../src/config';
import { TEST_META, TEST_TWILIO, testEnv } from '../helpers/env';
import { fixtureBytes } from '../helpers/fixtures';

const PUBLIC_URL = 'https://rapport.example.test';
const SLACK_SECRET = 'fuzz-slack-signing-secret';
const MAX_BYTES = 64 * 1024;
const REQUESTS_PER_ROUTE = Number(process.env.FUZZ_RUNS_PER_ROUTE ?? 10_000);
/** Requests sent concurrently within one fast-check run. */
const BATCH = 20;
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
const DELIBERATE = new Set([200, 400, 401, 403, 413, 415]);

type Format = 'json' | 'form' | 'slack-payload-form';
type Signer = 'twilio' | 'meta' | 'slack';

interface RouteSpec {
  path: string;
  format: Format;
  signer: Signer;
  contentType: string;
  fixtures: Buffer[];
}

// Slack fixtures point response_url at hooks.slack.com; a button press would post there. Point it
// at a closed local port instead, so the fuzz run never talks to the internet.
const local = (b: Buffer) =>
  Buffer.from(
    b.toString('utf8').replace(/https?(%3A|:)(%2F|\/)(%2F|\/)hooks\.slack\.com/g, 'http$1$2$3127.0.0.1%3A1'),
  );

const ROUTES: RouteSpec[] = [
  {
    path: '/webhooks/twilio',
    format: 'form',
    signer: 'twilio',
    contentType: 'application/x-www-form-urlencoded',
    fixtures: ['sms', 'whatsapp-media', 'whatsapp-location'].map((f) => fixtureBytes(`twilio/${f}.form`)),
  },
  {
    path: '/webhooks/twilio/status',
    format: 'form',
    signer: 'twilio',
    contentType: 'application/x-www-form-urlencoded',
    fixtures: ['status-delivered', 'status-failed'].map((f) => fixtureBytes(`twilio/${f}.form`)),
  },
  {
    path: '/webhooks/meta',
    format: 'json',
    signer: 'meta',
    contentType: 'application/json',
    fixtures: [
      'messenger-attachment',
      'messenger-batch',
      'messenger-delivery',
      'messenger-echo',
      'messenger-postback',
      'messenger-read',
      'messenger-text',
      'whatsapp-image',
      'whatsapp-location',
      'whatsapp-statuses',
      'whatsapp-text',
      'whatsapp-unsupported',
    ].map((f) => fixtureBytes(`meta/${f}.json`)),
  },
  {
    path: '/slack/events',
    format: 'json',
    signer: 'slack',
    contentType: 'application/json',
    fixtures: [
      'app-mention',
      'bot-message-legacy',
      'bot-message',
      'channel-join',
      'file-share-reply',
      'message-changed',
      'message-deleted',
      'thread-broadcast',
      'thread-reply',
      'top-level-message',
      'url-verification',
    ].map((f) => fixtureBytes(`slack/${f}.json`)),
  },
  {
    path: '/slack/commands',
    format: 'form',
    signer: 'slack',
    contentType: 'application/x-www-form-urlencoded',
    fixtures: ['slash-command', 'slash-command-in-thread'].map((f) => local(fixtureBytes(`slack/${f}.form`))),
  },
  {
    path: '/slack/interactions',
    format: 'slack-payload-form',
    signer: 'slack',
    contentType: 'application/x-www-form-urlencoded',
    fixtures: ['block-actions', 'view-submission'].map((f) => local(fixtureBytes(`slack/${f}.form`))),
  },
];

// ---------------------------------------------------------------------------------------------
// Mutations (plain data, so fast-check can shrink and print them)

/** Values that break parsers: wrong types, empty, huge, odd unicode, prototype keys. */
const nastyValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom<unknown>(
    null,
    '',
    0,
    -1,
    1e308,
    -0,
    true,
    [],
    {},
    '__proto__',
    'constructor',
    '\u0000',
    '\ud800',
    '😀'.repeat(50),
    'a'.repeat(5000),
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
);

type ByteMutation =
  | { kind: 'none' }
  | { kind: 'flip'; edits: [number, number][] }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'duplicate'; from: number; to: number }
  | { kind: 'drop-structural'; every: number }
  | { kind: 'random'; bytes: Uint8Array }
  | { kind: 'oversize' };

type StructuralMutation =
  | { kind: 'delete'; at: number }
  | { kind: 'replace'; at: number; value: unknown }
  | { kind: 'add'; at: number; name: string; value: unknown }
  | { kind: 'duplicate-field'; at: number }
  | { kind: 'random-json'; value: unknown };

const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  { weight: 10, arbitrary: fc.constant({ kind: 'none' as const }) },
  {
    weight: 30,
    arbitrary: fc.record({
      kind: fc.constant('flip' as const),
      edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
    }),
  },
  { weight: 20, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  {
    weight: 20,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      at: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }),
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({ kind: fc.constant('duplicate' as const), from: fc.nat(), to: fc.nat() }),
  },
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant('drop-structural' as const),
      every: fc.integer({ min: 1, max: 7 }),
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ maxLength: 2048 }) }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'oversize' as const }) },
);

const structuralMutation: fc.Arbitrary<StructuralMutation> = fc.oneof(
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), value: nastyValue }),
  fc.record({
    kind: fc.constant('add' as const),
    at: fc.nat(),
    name: fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.constantFrom('__proto__', 'constructor', 'type', 'id', 'From', 'payload'),
    ),
    value: nastyValue,
  }),
  fc.record({ kind: fc.constant('duplicate-field' as const), at: fc.nat() }),
  {
    arbitrary: fc.record({ kind: fc.constant('random-json' as const), value: fc.jsonValue({ maxDepth: 3 }) }),
    weight: 1,
  },
);

type SignatureMode = 'valid' | 'none' | 'wrong-secret' | 'garbage' | 'stale' | 'of-original';

interface FuzzCase {
  fixture: number;
  structural: StructuralMutation[];
  bytes: ByteMutation;
  signature: SignatureMode;
  garbageSignature: string;
  contentType: string | undefined;
  query: string;
}

const caseArb = (spec: RouteSpec): fc.Arbitrary<FuzzCase> =>
  fc.record({
    fixture: fc.nat({ max: spec.fixtures.length - 1 }),
    structural: fc.array(structuralMutation, { maxLength: 3 }),
    bytes: byteMutation,
    signature: fc.oneof(
      { weight: 100, arbitrary: fc.constant('valid' as const) },
      { weight: 30, arbitrary: fc.constant('none' as const) },
      { weight: 20, arbitrary: fc.constant('wrong-secret' as const) },
      { weight: 20, arbitrary: fc.constant('garbage' as const) },
      { weight: 10, arbitrary: fc.constant('stale' as const) },
      { weight: 10, arbitrary: fc.constant('of-original' as const) },
    ),
    garbageSignature: fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.constantFrom('sha256=', 'v0=', 'sha256=' + 'z'.repeat(64), 'v0=' + '0'.repeat(64), 'sha1=abc'),
    ),
    contentType: fc.oneof(
      { weight: 120, arbitrary: fc.constant(spec.contentType) },
      {
        weight: 10,
        arbitrary: fc.constantFrom(
          undefined,
          'text/plain',
          'application/json',
          'application/x-www-form-urlencoded',
          'multipart/form-data; boundary=x',
          `${spec.contentType}; charset=utf-16`,
          'APPLICATION/JSON',
          '*/*',
        ),
      },
      {
        weight: 10,
        arbitrary: fc
          .string({ unit: 'binary-ascii', maxLength: 40 })
          .map((s) => s.replace(/[^\x20-\x7e]/g, '')),
      },
    ),
    query: fc.oneof(
      { weight: 150, arbitrary: fc.constant('') },
      { weight: 10, arbitrary: fc.constantFrom('?x=1', '?hub.mode=subscribe', '?a=%ZZ', '?__proto__[x]=1') },
    ),
  });

/** Every path (as a list of keys) in a JSON value, root excluded. */
function jsonPaths(value: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []) {
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const key = Array.isArray(value) ? Number(k) : k;
      out.push([...prefix, key]);
      jsonPaths(v, [...prefix, key], out);
    }
  }
  return out;
}

/**
 * A private copy of a generated value. Mutations change the document in place, so inserting
 * fast-check's own value object would let later mutations alter it (and make it cyclic).
 */
function freshValue(m: StructuralMutation): unknown {
  if (!('value' in m)) return undefined;
  try {
    return JSON.parse(JSON.stringify(m.value ?? null)) as unknown;
  } catch {
    return null;
  }
}

function applyJson(json: unknown, m: StructuralMutation): unknown {
  if (m.kind === 'random-json') return freshValue(m);
  const paths = jsonPaths(json);
  if (paths.length === 0) return json;
  const path = paths[m.at % paths.length]!;
  let parent = json as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (m.kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else if (m.kind === 'replace') parent[last] = freshValue(m);
  else if (m.kind === 'add') {
    const target = parent[last];
    if (target && typeof target === 'object' && !Array.isArray(target))
      (target as Record<string, unknown>)[m.name] = freshValue(m);
    else if (Array.isArray(target)) target.push(freshValue(m));
    else parent[last] = { [m.name]: freshValue(m) };
  } else if (Array.isArray(parent)) parent.push(structuredClone(parent[last as number]));
  else parent[last] = [parent[last], structuredClone(parent[last])];
  return json;
}

/** JSON text of a generated value; a mutation that made it cyclic becomes plain text instead. */
const stringify = (v: unknown): string => {
  if (typeof v === 'string') return v;
  try {
    return JSON.stringify(v) ?? '';
  } catch {
    return String(v);
  }
};

function applyForm(entries: [string, string][], m: StructuralMutation): [string, string][] {
  if (m.kind === 'random-json') return [[stringify(m.value), stringify(m.value)]];
  if (entries.length === 0) return entries;
  const i = m.at % entries.length;
  const out = [...entries];
  if (m.kind === 'delete') out.splice(i, 1);
  else if (m.kind === 'replace') out[i] = [out[i]![0], stringify(m.value)];
  else if (m.kind === 'add') out.splice(i, 0, [m.name, stringify(m.value)]);
  else out.splice(i, 0, out[i]!);
  return out;
}

function applyStructural(spec: RouteSpec, original: Buffer, mutations: StructuralMutation[]): Buffer {
  if (mutations.length === 0) return original;
  if (spec.format === 'json') {
    let json: unknown = JSON.parse(original.toString('utf8'));
    for (const m of mutations) json = applyJson(json, m);
    return Buffer.from(stringify(json));
  }
  let entries = [...new URLSearchParams(original.toString('utf8'))];
  if (spec.format === 'slack-payload-form') {
    // Mutate the JSON inside `payload=`; an odd-numbered first mutation hits the form instead.
    const payloadIndex = entries.findIndex(([k]) => k === 'payload');
    const first = mutations[0]!;
    if (payloadIndex >= 0 && ('at' in first ? first.at : 0) % 2 === 0) {
      let json: unknown = JSON.parse(entries[payloadIndex]![1]);
      for (const m of mutations) json = applyJson(json, m);
      entries[payloadIndex] = ['payload', stringify(json)];
      return Buffer.from(new URLSearchParams(entries).toString());
    }
  }
  for (const m of mutations) entries = applyForm(entries, m);
  return Buffer.from(new URLSearchParams(entries).toString());
}

function applyBytes(input: Buffer, m: ByteMutation): Buffer {
  const len = Math.max(1, input.length);
  switch (m.kind) {
    case 'none':
      return input;
    case 'flip': {
      const out = Buffer.from(input);
      if (out.length > 0) for (const [pos, byte] of m.edits) out[pos % out.length] = byte;
      return out;
    }
    case 'truncate':
      return input.subarray(0, m.at % len);
    case 'insert':
      return Buffer.concat([input.subarray(0, m.at % len), Buffer.from(m.bytes), input.subarray(m.at % len)]);
    case 'duplicate': {
      const [a, b] = [m.from % len, m.to % len].sort((x, y) => x - y);
      return Buffer.concat([input.subarray(0, b), input.subarray(a, b), input.subarray(b)]);
    }
    case 'drop-structural': {
      let n = 0;
      return Buffer.from(
        input.toString('latin1').replace(/[{}[\]",:&=%]/g, (c) => (++n % m.every === 0 ? '' : c)),
        'latin1',
      );
    }
    case 'random':
      return Buffer.from(m.bytes);
    case 'oversize':
      return Buffer.concat([input, Buffer.alloc(MAX_BYTES + 1, 0x20)]);
  }
}

/** The signature headers the provider would send for `signed` bytes, per the case's mode. */
function signatureHeaders(
  spec: RouteSpec,
  c: FuzzCase,
  body: Buffer,
  original: Buffer,
): Record<string, string> {
  if (c.signature === 'none') return {};
  const signed = c.signature === 'of-original' ? original : body;
  const twilioUrl = `${PUBLIC_URL}${spec.path}${c.query}`;
  const twilioForm = (b: Buffer) => {
    const form: Record<string, string | string[]> = {};
    for (const [k, v] of new URLSearchParams(b.toString('latin1'))) {
      const e = form[k];
      form[k] = e === undefined ? v : Array.isArray(e) ? [...e, v] : [e, v];
    }
    return form;
  };
  if (c.signature === 'garbage') {
    if (spec.signer === 'twilio') return { 'x-twilio-signature': c.garbageSignature };
    if (spec.signer === 'meta') return { 'x-hub-signature-256': c.garbageSignature };
    return {
      'x-slack-request-timestamp': c.garbageSignature.slice(0, 12) || 'x',
      'x-slack-signature': c.garbageSignature || 'v0=',
    };
  }
  const wrong = c.signature === 'wrong-secret';
  switch (spec.signer) {
    case 'twilio':
      return {
        'x-twilio-signature': signTwilioRequest(
          wrong || c.signature === 'stale' ? 'wrong-token' : TEST_TWILIO.authToken,
          twilioUrl,
          twilioForm(signed),
        ),
      };
    case 'meta':
      return {
        'x-hub-signature-256': signMetaPayload(
          wrong || c.signature === 'stale' ? 'wrong-secret' : TEST_META.appSecret,
          signed,
        ),
      };
    case 'slack': {
      const stale = c.signature === 'stale' ? Math.floor(Date.now() / 1000) - 6 * 60 : undefined;
      return signSlackRequest(wrong ? 'wrong-secret' : SLACK_SECRET, signed, stale);
    }
  }
}

// ---------------------------------------------------------------------------------------------

const agent = new Agent({ keepAlive: true, maxSockets: BATCH });

function send(baseUrl: URL, path: string, body: Buffer, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        host: baseUrl.hostname,
        port: baseUrl.port,
        method: 'POST',
        path,
        headers: { ...headers, 'content-length': String(body.length) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

interface RouteTally {
  requests: number;
  signed: number;
  unsigned: number;
  statuses: Map<number, number>;
  accepted: number;
}

/** The app under test, in a child process (see serve-app.ts), with the test's view of its queues. */
interface ServedApp {
  baseUrl: URL;
  config: Config;
  queues: Queues;
  logs: string[];
  stop(): Promise<void>;
}

async function serveApp(overrides: Record<string, string>): Promise<ServedApp> {
  const env = { ...testEnv(overrides) };
  const config = loadConfig(env);
  const child = spawn(process.execPath, ['-r', '@swc-node/register', path.join(__dirname, 'serve-app.ts')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  let partial = '';
  child.stderr.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    logs.push(...lines.filter(Boolean));
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`app exited with ${code}: ${logs.slice(-5).join('\n')}`)));
    child.stdout.once('data', (line: Buffer) =>
      resolve((JSON.parse(line.toString('utf8')) as { port: number }).port),
    );
  });
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const queues = createQueues(redis, {
    prefix: config.queuePrefix,
    inboundPartitions: config.inboundPartitions,
  });
  return {
    baseUrl: new URL(`http://127.0.0.1:${port}`),
    config,
    queues,
    logs,
    async stop() {
      await closeQueues(queues);
      redis.disconnect();
      if (child.exitCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

describe('fuzzing the inbound routes', () => {
  let t: ServedApp;
  /** Job ids that 2xx requests may have queued, per queue family. */
  const allowedInbound = new Set<string>();
  const allowedAgentEvents = new Set<string>();
  const tallies: Record<string, RouteTally> = {};
  let adapters: Map<string, ReturnType<typeof buildWebhookAdapters>[number]['adapter']>;

  beforeAll(async () => {
    t = await serveApp({
      PUBLIC_URL,
      LOG_LEVEL: 'warn',
      WEBHOOK_MAX_BYTES: String(MAX_BYTES),
      INBOUND_PARTITIONS: '4',
      SLACK_BOT_TOKEN: 'xoxb-fuzz',
      SLACK_SIGNING_SECRET: SLACK_SECRET,
      // Nothing answers here: a Slack call from a fuzzed command fails fast and locally.
      SLACK_API_URL: 'http://127.0.0.1:1/api/',
    });
    adapters = new Map(buildWebhookAdapters(t.config).map(({ path: p, adapter }) => [p, adapter]));
  }, 60_000);

  afterAll(async () => {
    agent.destroy();
    const summary = Object.entries(tallies).map(
      ([route, s]) =>
        `${route} ${s.requests} (signed ${s.signed}, unsigned ${s.unsigned}; ${[...s.statuses]
          .sort(([a], [b]) => a - b)
          .map(([k, v]) => `${k}:${v}`)
          .join(' ')})`,
    );
    console.log(`fuzz: ${summary.join(' | ')}`);
    await t?.stop();
  }, 30_000);

  /** The queue job ids a 2xx request's body accounts for. */
  function recordAccepted(spec: RouteSpec, body: Buffer, query: string) {
    if (spec.path.startsWith('/webhooks/')) {
      const adapter = adapters.get(spec.path)!;
      const wreq = { method: 'POST', originalUrl: spec.path + query, query: {}, headers: {}, rawBody: body };
      for (const event of adapter.normalize(adapter.parse(wreq), new Date()).events)
        // As intake queues it: NUL characters dropped (see withoutNul in src/queue/intake.ts).
        allowedInbound.add(jobIdFor(eventKey(withoutNul(event))));
    } else if (spec.path === '/slack/events') {
      const event = parseSlackEvent(body);
      if ('eventId' in event && event.eventId)
        allowedAgentEvents.add(`ev~${event.eventId.replaceAll(':', '~')}`);
    }
  }

  async function assertNoJobFromRefusedRequests() {
    const { queues } = t;
    const inboundJobs = (
      await queues.inbound.getJobs(['waiting', 'delayed', 'prioritized', 'active', 'failed', 'completed'])
    ).map((j) => j.id!);
    const agentEventJobs = (
      await queues['agent-events'].getJobs([
        'waiting',
        'delayed',
        'prioritized',
        'active',
        'failed',
        'completed',
      ])
    ).map((j) => j.id!);
    expect(inboundJobs.filter((id) => !allowedInbound.has(id))).toEqual([]);
    expect(agentEventJobs.filter((id) => !allowedAgentEvents.has(id))).toEqual([]);
    // Nothing in the database (no agents, no customers), so no command can have queued work.
    for (const name of ['to-agent', 'to-customer', 'timers'] as const)
      expect(await queues[name].count()).toBe(0);
    return { inbound: inboundJobs.length, agentEvents: agentEventJobs.length };
  }

  it.each(ROUTES.map((r) => [r.path, r] as const))(
    `%s: ${REQUESTS_PER_ROUTE} mutated requests, signed and unsigned → no 5xx, no job from a refused request`,
    async (_path, spec) => {
      const tally: RouteTally = (tallies[spec.path] = {
        requests: 0,
        signed: 0,
        unsigned: 0,
        statuses: new Map(),
        accepted: 0,
      });
      await fc.assert(
        fc.asyncProperty(fc.array(caseArb(spec), { minLength: BATCH, maxLength: BATCH }), async (cases) => {
          await Promise.all(
            cases.map(async (c) => {
              const original = spec.fixtures[c.fixture]!;
              const body = applyBytes(applyStructural(spec, original, c.structural), c.bytes);
              const headers: Record<string, string> = signatureHeaders(spec, c, body, original);
              if (c.contentType !== undefined) headers['content-type'] = c.contentType;
              const status = await send(t.baseUrl, spec.path + c.query, body, headers);
              tally.requests++;
              const validlySigned =
                c.signature === 'valid' || (c.signature === 'of-original' && body.equals(original));
              if (validlySigned) tally.signed++;
              else tally.unsigned++;
              tally.statuses.set(status, (tally.statuses.get(status) ?? 0) + 1);
              if (!DELIBERATE.has(status)) throw new Error(`${spec.path} answered ${status}`);
              if (['none', 'wrong-secret', 'garbage', 'stale'].includes(c.signature) && status < 300) {
                throw new Error(`${spec.path} accepted a request signed "${c.signature}"`);
              }
              if (status < 300) {
                tally.accepted++;
                recordAccepted(spec, body, c.query);
              }
            }),
          );
        }),
        {
          numRuns: Math.ceil(REQUESTS_PER_ROUTE / BATCH),
          seed: SEED,
          // Report the first failing batch with its seed instead of shrinking: each shrink step is a
          // batch of real HTTP requests, and a long shrink would outlive the test's timeout.
          endOnFailure: true,
          interruptAfterTimeLimit: 100_000,
          markInterruptAsFailure: true,
        },
      );
      const jobs = await assertNoJobFromRefusedRequests();
      expect(tally.requests).toBeGreaterThanOrEqual(REQUESTS_PER_ROUTE);
      // The fuzzer must reach past the signature check, and be refused there too.
      expect(tally.statuses.get(401) ?? 0).toBeGreaterThan(0);
      expect(tally.accepted + (tally.statuses.get(400) ?? 0)).toBeGreaterThan(0);
      expect(t.logs.filter((l) => l.includes('unhandled error in request'))).toEqual([]);
      console.log(
        `fuzz ${spec.path}: ${tally.requests} requests, ${tally.accepted} accepted; queue now holds ${jobs.inbound} inbound, ${jobs.agentEvents} agent-event jobs`,
      );
    },
    120_000,
  );

  it('is still healthy and ready after the fuzzing', async () => {
    expect((await fetch(new URL('/healthz', t.baseUrl))).status).toBe(200);
    expect((await fetch(new URL('/readyz', t.baseUrl))).status).toBe(200);
  });
});

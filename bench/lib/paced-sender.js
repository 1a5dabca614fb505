// Sends pre-signed webhooks at a target rate from its own process (so it does not share the measured
// server's event loop) and records, per message key, when it was first sent and when it was accepted.
// Each customer's messages are sent one after another (the next only once the previous one was
// accepted), so "send order" per customer is well defined. With `retry`, a 5xx / 429 / network
// error is retried after a short pause, as providers do, until `deadline`.
// With several `bases` (api processes), each request goes to any of them (round robin); a retry goes
// to another one than the attempt that failed, as a provider behind a load balancer would.
// Usage: node bench/lib/paced-sender.js <job.json> <out.json>
// job.json: { base | bases: [..], rate, retry?, deadlineMs?, maxInFlight?, requests: [{ key, customer, path, body, headers }] }
'use strict';
const http = require('node:http');
const { readFileSync, writeFileSync } = require('node:fs');

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const bases = (job.bases ?? [job.base]).map((b) => new URL(b));
for (const base of bases) {
  if (!['127.0.0.1', 'localhost'].includes(base.hostname)) {
    console.error(`refusing to load ${base.hostname}: benchmarks target loopback only`);
    process.exit(2);
  }
}
const agent = new http.Agent({ keepAlive: true, maxSockets: job.maxInFlight ?? 256 });
const deadline = Date.now() + (job.deadlineMs ?? 10 * 60_000);
const results = new Array(job.requests.length);
let retried = 0;
let retried503 = 0;
let retriedNetwork = 0;
let next = 0;
const failedStatuses = {}; // status of every failed attempt (0 = refused / reset / timed out)
const networkErrors = {}; // code of every attempt that got no response: ECONNREFUSED, ECONNRESET, timeout, …
const perBase = bases.map(() => ({ attempts: 0, accepted: 0, networkErrors: 0 }));

function post(r, base) {
  return new Promise((resolve) => {
    const req = http.request(
      { host: base.hostname, port: base.port, path: r.path, method: 'POST', agent, headers: { ...r.headers, 'content-length': Buffer.byteLength(r.body) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
        res.on('error', (err) => fail(err));
      },
    );
    const fail = (err) => {
      const code = err.code ?? err.message;
      networkErrors[code] = (networkErrors[code] ?? 0) + 1;
      resolve(0);
    };
    req.setTimeout(15_000, () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
    req.on('error', fail);
    req.end(r.body);
  });
}

async function send(i) {
  const r = job.requests[i];
  const sentAt = Date.now();
  let status = 0;
  let attempts = 0;
  let lastSentAt = sentAt;
  let b = next++ % bases.length;
  for (;;) {
    attempts++;
    lastSentAt = Date.now();
    perBase[b].attempts++;
    status = await post(r, bases[b]);
    if (status === 0) perBase[b].networkErrors++;
    if (status >= 200 && status < 300) {
      perBase[b].accepted++;
      break;
    }
    failedStatuses[status] = (failedStatuses[status] ?? 0) + 1;
    if (!job.retry || Date.now() > deadline || (status >= 400 && status < 500 && status !== 429)) break;
    retried++;
    if (status === 503) retried503++;
    if (status === 0) retriedNetwork++;
    // Another api process next time (refused / reset / timed out here: it may be shutting down).
    if (bases.length > 1) b = (b + 1 + Math.floor(Math.random() * (bases.length - 1))) % bases.length;
    await new Promise((res) => setTimeout(res, 250 + Math.random() * 250));
  }
  results[i] = { key: r.key, customer: r.customer, sentAt, lastSentAt, doneAt: Date.now(), status, attempts };
}

async function main() {
  const chains = new Map();
  const start = Date.now();
  const all = [];
  for (let i = 0; i < job.requests.length; i++) {
    const due = start + (i * 1000) / job.rate;
    const wait = due - Date.now();
    if (wait > 1) await new Promise((res) => setTimeout(res, wait));
    const c = job.requests[i].customer;
    const p = (chains.get(c) ?? Promise.resolve()).then(() => send(i));
    chains.set(c, p);
    all.push(p);
  }
  const dispatchedIn = Date.now() - start;
  await Promise.all(all);
  writeFileSync(process.argv[3], JSON.stringify({ start, dispatchedIn, end: Date.now(), retried, retried503, retriedNetwork, failedStatuses, networkErrors, perBase, results }));
  agent.destroy();
}
// Never outlive the benchmark that started it.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 1000).unref();
main().catch((err) => {
  console.error(err);
  process.exit(1);
});

// Sends pre-signed webhooks at a target rate from its own process (so it does not share the measured
// server's event loop) and records, per message key, when it was first sent and when it was accepted.
// Each customer's messages are sent one after another (the next only once the previous one was
// accepted), so "send order" per customer is well defined. With `retry`, a 5xx / 429 / network
// error is retried after a short pause, as providers do, until `deadline`.
// Usage: node bench/lib/paced-sender.js <job.json> <out.json>
// job.json: { base, rate, retry?, deadlineMs?, maxInFlight?, requests: [{ key, customer, path, body, headers }] }
'use strict';
const http = require('node:http');
const { readFileSync, writeFileSync } = require('node:fs');

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const base = new URL(job.base);
if (!['127.0.0.1', 'localhost'].includes(base.hostname)) {
  console.error(`refusing to load ${base.hostname}: benchmarks target loopback only`);
  process.exit(2);
}
const agent = new http.Agent({ keepAlive: true, maxSockets: job.maxInFlight ?? 256 });
const deadline = Date.now() + (job.deadlineMs ?? 10 * 60_000);
const results = new Array(job.requests.length);
let retried = 0;
let retried503 = 0;

function post(r) {
  return new Promise((resolve) => {
    const req = http.request(
      { host: base.hostname, port: base.port, path: r.path, method: 'POST', agent, headers: { ...r.headers, 'content-length': Buffer.byteLength(r.body) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
        res.on('error', () => resolve(0));
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
    req.end(r.body);
  });
}

async function send(i) {
  const r = job.requests[i];
  const sentAt = Date.now();
  let status = 0;
  let attempts = 0;
  let lastSentAt = sentAt;
  for (;;) {
    attempts++;
    lastSentAt = Date.now();
    status = await post(r);
    if (status >= 200 && status < 300) break;
    if (!job.retry || Date.now() > deadline || (status >= 400 && status < 500 && status !== 429)) break;
    retried++;
    if (status === 503) retried503++;
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
  writeFileSync(process.argv[3], JSON.stringify({ start, dispatchedIn, end: Date.now(), retried, retried503, results }));
  agent.destroy();
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});

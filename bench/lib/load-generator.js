// Runs autocannon in its own process (so it does not share the measured server's CPU time slice or
// event loop) against one URL with pre-built requests, and prints autocannon's result as JSON.
// Usage: node bench/lib/load-generator.js <job.json>
// job.json: { url, connections, duration, rate?, requests: [{ body, headers }] }
'use strict';
const { readFileSync } = require('node:fs');
const autocannon = require('autocannon');

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const url = new URL(job.url);
if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
  console.error(`refusing to load ${url.hostname}: benchmarks target loopback only`);
  process.exit(2);
}
let next = 0;
autocannon({
  url: job.url,
  method: 'POST',
  connections: job.connections,
  duration: job.duration,
  ...(job.rate ? { overallRate: job.rate } : {}),
  requests: [
    {
      setupRequest: (req) => {
        const r = job.requests[next++ % job.requests.length];
        return { ...req, body: r.body, headers: r.headers };
      },
    },
  ],
}).then(
  (r) => {
    process.stdout.write(
      JSON.stringify({
        rps: r.requests.average,
        p50: r.latency.p50,
        p90: r.latency.p90,
        p99: r.latency.p99,
        non2xx: r.non2xx,
        errors: r.errors,
        total: r.requests.total,
      }),
    );
  },
  (err) => {
    console.error(err);
    process.exit(1);
  },
);

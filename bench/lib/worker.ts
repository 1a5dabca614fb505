/**
 * A Rapport worker process for the benchmarks: `buildApp(config, { role: 'worker' })` with the
 * environment it was given. SIGTERM/SIGINT close it gracefully; the chaos run SIGKILLs it.
 */
import { buildApp } from '../../src/app';
import { loadConfig } from '../../src/config';

const app = buildApp(loadConfig(process.env), { role: 'worker' });
let closing = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (closing) return;
    closing = true;
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
// Tell the benchmark (IPC, when spawned with one) that SIGTERM is now handled gracefully.
process.send?.({ ready: true });
// Never outlive the parent (a benchmark that crashed must not leave workers behind).
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 1000).unref();

/**
 * A Rapport api process for the chaos benchmark: `buildApp(config, { role: 'api' })` with the
 * environment it was given, listening on PORT on 127.0.0.1 only. SIGTERM/SIGINT close it gracefully
 * (`app.close()`: stop accepting, finish in-flight requests, close connections; bounded by
 * SHUTDOWN_TIMEOUT_MS), as src/main.ts does.
 */
import { buildApp } from '../../src/app';
import { loadConfig } from '../../src/config';

const config = loadConfig(process.env);
const app = buildApp(config, { role: 'api' });

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
// A benchmark stays on loopback.
app.listen(config.port, '127.0.0.1').then(
  // Tell the benchmark (IPC) that it is listening and SIGTERM is handled gracefully.
  () => process.send?.({ ready: true }),
  (err: unknown) => {
    console.error('api failed to listen', err);
    process.exit(1);
  },
);
// Never outlive the parent (a benchmark that crashed must not leave api processes behind).
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 1000).unref();

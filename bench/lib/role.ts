/**
 * A Rapport process for the benchmarks: `buildApp(config, { role })` with the environment it was
 * given. SIGTERM/SIGINT close it gracefully (`app.close()`: stop accepting, finish in-flight work,
 * bounded by SHUTDOWN_TIMEOUT_MS), as src/main.ts does; the chaos run also SIGKILLs it. It tells the
 * benchmark over IPC (`{ ready: true }`) once SIGTERM is handled, and never outlives the benchmark.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { writeHeapSnapshot } from 'node:v8';
import { buildApp, type Role } from '../../src/app';
import { loadConfig } from '../../src/config';
import { monitorCommands, type DbMonitor } from './db-monitor';
import { monitorRedis } from './redis-monitor';

/**
 * With BENCH_DB_MONITOR=1 the process counts its database commands (db-monitor.ts) and answers the
 * benchmark over IPC: `{ db: 'reset' }` clears the counts, `{ db: 'snapshot', id }` is answered with
 * `{ dbCounts, id }`.
 */
function answerDbRequests(): void {
  const monitor: DbMonitor = monitorCommands();
  // Redis commands (client side, bench/lib/redis-monitor.ts) and the process's CPU time are counted
  // over the same window as the database commands.
  const redis = monitorRedis();
  let cpuFrom = process.cpuUsage();
  process.on('message', (m: { db?: 'reset' | 'snapshot'; id?: number }) => {
    if (m?.db === 'reset') {
      monitor.reset();
      redis.reset();
      cpuFrom = process.cpuUsage();
    }
    if (m?.db === 'snapshot') {
      const cpu = process.cpuUsage(cpuFrom);
      process.send?.({
        dbCounts: {
          ...monitor.snapshot(),
          redis: redis.snapshot(),
          cpuMs: Math.round((cpu.user + cpu.system) / 1000),
        },
        id: m.id,
      });
    }
  });
}

/**
 * `{ cpuProfile: 'start' }` starts V8's CPU profiler (1 ms sampling); `{ cpuProfile: <path>, id }`
 * stops it, writes the profile there (open it in Chrome DevTools, or bench/lib/cpu-profile.ts sums it)
 * and answers `{ cpuProfileWritten: id }`. Only the measured window is profiled, not start-up or warm-up.
 */
function answerCpuProfileRequests(): void {
  let session: Session | undefined;
  process.on('message', (m: { cpuProfile?: string; id?: number }) => {
    if (m?.cpuProfile === 'start') {
      session = new Session();
      session.connect();
      session.post('Profiler.enable');
      session.post('Profiler.setSamplingInterval', { interval: 1000 });
      session.post('Profiler.start');
    } else if (typeof m?.cpuProfile === 'string' && session) {
      const s = session;
      session = undefined;
      s.post('Profiler.stop', (err, res) => {
        if (!err) writeFileSync(m.cpuProfile!, JSON.stringify(res.profile));
        s.disconnect();
        process.send?.({ cpuProfileWritten: m.id });
      });
    }
  });
}

/**
 * `{ mem: id }` is answered with `{ mem: process.memoryUsage(), id }`: the benchmark's RSS curve
 * shows how much of a process's RSS is V8 heap, external memory and array buffers. With
 * `{ heapSnapshot: path }` the process writes a V8 heap snapshot there (diagnosis only: it pauses
 * the process and needs about as much memory again).
 */
function answerMemoryRequests(): void {
  process.on('message', (m: { mem?: number; heapSnapshot?: string }) => {
    if (typeof m?.mem === 'number') process.send?.({ mem: process.memoryUsage(), id: m.mem });
    if (typeof m?.heapSnapshot === 'string') writeHeapSnapshot(m.heapSnapshot);
  });
}

/**
 * With BENCH_ALLOC_PROFILE=<path>, the process samples where it allocates (V8's sampling heap
 * profiler, garbage included) from start to SIGTERM and writes `<path>-<role>-<pid>.heapprofile`
 * (open it in Chrome DevTools, Memory tab): where the heap's growth between collections comes from.
 * With BENCH_ALLOC_PROFILE_OLD=1 as well, samples of objects a young-generation collection freed
 * are left out: what remains is what reached the old generation (promoted, or allocated there),
 * the garbage that grows the heap until a full collection.
 */
function profileAllocations(role: string): (() => void) | undefined {
  const target = process.env.BENCH_ALLOC_PROFILE;
  if (!target) return undefined;
  const session = new Session();
  session.connect();
  session.post('HeapProfiler.startSampling', {
    samplingInterval: 32_768,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: process.env.BENCH_ALLOC_PROFILE_OLD !== '1',
  } as object);
  return () =>
    session.post('HeapProfiler.stopSampling', (err, res) => {
      if (!err) writeFileSync(`${target}-${role}-${process.pid}.heapprofile`, JSON.stringify(res.profile));
    });
}

export function runRole(role: Extract<Role, 'api' | 'worker'>): void {
  const config = loadConfig(process.env);
  const app = buildApp(config, { role });
  if (process.env.BENCH_DB_MONITOR === '1') answerDbRequests();
  answerMemoryRequests();
  answerCpuProfileRequests();
  const stopProfile = profileAllocations(role);
  let closing = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (closing) return;
      closing = true;
      stopProfile?.();
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
  if (role === 'api') {
    // An api listens on PORT, on loopback only (a benchmark stays on this machine).
    app.listen(config.port, '127.0.0.1').then(
      () => process.send?.({ ready: true }),
      (err: unknown) => {
        console.error('api failed to listen', err);
        process.exit(1);
      },
    );
  } else {
    process.send?.({ ready: true });
  }
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0);
  }, 1000).unref();
}

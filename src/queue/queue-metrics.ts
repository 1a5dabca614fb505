/**
 * Queue metrics, read from Redis when Prometheus scrapes (`collect()`), so every api replica reports
 * the same shared truth and nothing has to be kept up to date in between:
 * - `rapport_queue_jobs{queue,state}`: waiting, active, delayed and failed (dead letters) per queue;
 * - `rapport_queue_oldest_waiting_seconds{queue}`: how long the next job to run has been waiting.
 * The partitioned `inbound` queue is reported per partition (`inbound-0` …) and once more under its
 * base name (`inbound`): the sum of the partitions' counts, the max of their ages. So aggregate with
 * `queue!~".+-[0-9]+"` (or only the partitions), never over both, or inbound is counted twice.
 *
 * Job durations come from the workers: `observeJobDurations` feeds `rapport_job_duration_seconds`
 * from BullMQ's own processedOn/finishedOn stamps.
 *
 * `registerChannelMetrics` reports, per channel, whether it is enabled and the time since its last
 * inbound message, from the shared record in Redis (so it survives restarts and agrees across api
 * replicas, unlike the per-process `rapport_last_inbound_timestamp_seconds`): the "no inbound on an
 * enabled channel for N hours" alert needs both.
 */
import type { Job, Queue, Worker } from 'bullmq';
import { Gauge, type Histogram, type Registry } from 'prom-client';
import type { Intake } from './intake';
import type { Queues } from './queues';

const STATES = ['waiting', 'active', 'delayed', 'failed'] as const;

export interface QueueMetricsOptions {
  /** A scrape gives up on Redis after this long (the gauges keep their last values). @defaultValue 2000 */
  timeoutMs?: number;
}

export interface QueueMetrics {
  jobs: Gauge<'queue' | 'state'>;
  oldestWaiting: Gauge<'queue'>;
}

/** Seconds since the job became runnable (its delay, if any, counted from when it was queued). */
function ageSeconds(job: Job | undefined, now: number): number {
  if (!job) return 0;
  const runnableSince = job.timestamp + (job.delay > 0 ? job.delay : 0);
  return Math.max(0, (now - runnableSince) / 1000);
}

interface QueueReading {
  name: string;
  counts: Record<(typeof STATES)[number], number>;
  oldest: number;
}

async function read(name: string, queue: Queue, now: number): Promise<QueueReading> {
  const [counts, oldestJobs] = await Promise.all([
    queue.getJobCounts(...STATES),
    // The wait list is consumed from its tail: ascending order's first job is the next to run.
    queue.getJobs(['waiting'], 0, 0, true),
  ]);
  return {
    name,
    counts: Object.fromEntries(STATES.map((s) => [s, counts[s] ?? 0])) as QueueReading['counts'],
    oldest: ageSeconds(oldestJobs[0], now),
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('queue metrics timed out')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export function registerQueueMetrics(
  registry: Registry,
  queues: Queues,
  options: QueueMetricsOptions = {},
): QueueMetrics {
  const timeoutMs = options.timeoutMs ?? 2_000;
  let readings: Promise<QueueReading[]> | undefined;

  // One Redis round per scrape serves both gauges (prom-client collects them one after the other).
  const readAll = (): Promise<QueueReading[]> => {
    readings ??= (async () => {
      const now = Date.now();
      const partitions = queues.inbound.partitions.map((q) => read(q.name, q, now));
      const plain = Object.entries(queues)
        .filter(([name]) => name !== queues.inbound.name)
        .map(([name, q]) => read(name, q as Queue, now));
      const parts = await Promise.all(partitions);
      const base: QueueReading = {
        name: queues.inbound.name,
        counts: Object.fromEntries(
          STATES.map((s) => [s, parts.reduce((sum, p) => sum + p.counts[s], 0)]),
        ) as QueueReading['counts'],
        oldest: Math.max(0, ...parts.map((p) => p.oldest)),
      };
      return [base, ...parts, ...(await Promise.all(plain))];
    })().finally(() => setTimeout(() => (readings = undefined), 0));
    return readings;
  };

  const jobs = new Gauge({
    name: 'rapport_queue_jobs',
    help: 'Jobs per queue and state (waiting, active, delayed, failed = dead letters); inbound per partition and summed under "inbound"',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      try {
        for (const r of await withTimeout(readAll(), timeoutMs)) {
          for (const s of STATES) this.set({ queue: r.name, state: s }, r.counts[s]);
        }
      } catch {
        // Redis down or slow: keep the last values; /readyz and the readiness alert report the outage.
      }
    },
  });
  const oldestWaiting = new Gauge({
    name: 'rapport_queue_oldest_waiting_seconds',
    help: 'Age of the oldest waiting job per queue (0 when none); inbound per partition and the max under "inbound"',
    labelNames: ['queue'] as const,
    registers: [registry],
    async collect() {
      try {
        for (const r of await withTimeout(readAll(), timeoutMs)) this.set({ queue: r.name }, r.oldest);
      } catch {
        // As above.
      }
    },
  });
  return { jobs, oldestWaiting };
}

/**
 * Observes how long each job ran (BullMQ's processedOn → finishedOn), completed or failed, into
 * `histogram` under `label` (by default the worker's queue name, a partition's folded into its base
 * name: `inbound-3` → `inbound`).
 */
export function observeJobDurations(
  worker: Worker,
  histogram: Histogram<'queue'>,
  label = worker.name.replace(/-\d+$/, ''),
): void {
  const observe = (job: Job | undefined) => {
    if (!job?.processedOn) return;
    const finished = job.finishedOn ?? Date.now();
    histogram.observe({ queue: label }, Math.max(0, (finished - job.processedOn) / 1000));
  };
  worker.on('completed', (job) => observe(job));
  worker.on('failed', (job) => observe(job));
}

export interface ChannelMetricsOptions {
  /** `channelStates(config)`: every channel and whether it is enabled. */
  channels: Record<string, { enabled: boolean }>;
  intake: Intake;
  /** @defaultValue 2000 */
  timeoutMs?: number;
}

export function registerChannelMetrics(
  registry: Registry,
  { channels, intake, timeoutMs = 2_000 }: ChannelMetricsOptions,
): void {
  new Gauge({
    name: 'rapport_channel_enabled',
    help: 'Whether a channel is configured (1) or disabled for missing credentials (0)',
    labelNames: ['channel'] as const,
    registers: [registry],
    collect() {
      for (const [channel, state] of Object.entries(channels)) this.set({ channel }, state.enabled ? 1 : 0);
    },
  });
  new Gauge({
    name: 'rapport_channel_seconds_since_last_inbound',
    help: 'Seconds since the last inbound customer message accepted on a channel, across every api replica (absent until the first one)',
    labelNames: ['channel'] as const,
    registers: [registry],
    async collect() {
      try {
        const last = await withTimeout(intake.lastInboundByChannel(), timeoutMs);
        const now = Date.now();
        for (const [channel, at] of Object.entries(last)) {
          if (Number.isFinite(at)) this.set({ channel }, Math.max(0, (now - at) / 1000));
        }
      } catch {
        // Redis down or slow: keep the last values.
      }
    },
  });
}

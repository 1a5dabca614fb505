/**
 * /healthz (liveness: no I/O), /readyz (can this replica do useful work: Redis, MongoDB, queues,
 * channels) and /metrics. /readyz answers 503 naming whatever is down, with short timeouts so a dead
 * dependency cannot hang the probe.
 */
import { Router } from 'express';
import type { Queues } from '../queue/queues';
import type { Intake } from '../queue/intake';
import type { Metrics } from '../metrics';
import { withTimeout } from '../storage/mongo';

export interface DependencyCheck {
  name: string;
  check(): Promise<Record<string, unknown> | void>;
}

export interface HealthOptions {
  metrics: Metrics;
  dependencies: DependencyCheck[];
  channels: Record<string, { enabled: boolean; reason?: string }>;
  queues?: Queues;
  intake?: Intake;
  timeoutMs?: number;
}

export function healthRoutes({
  metrics,
  dependencies,
  channels,
  queues,
  intake,
  timeoutMs = 1_000,
}: HealthOptions): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    const results = await Promise.all(
      dependencies.map(async (dep) => {
        const started = Date.now();
        try {
          const details = await withTimeout(dep.check(), timeoutMs, `${dep.name} check timed out`);
          return [dep.name, { status: 'ok', latencyMs: Date.now() - started, ...(details ?? {}) }] as const;
        } catch (err) {
          return [
            dep.name,
            { status: 'down', error: err instanceof Error ? err.message : String(err) },
          ] as const;
        }
      }),
    );
    const down = results.filter(([, r]) => r.status !== 'ok').map(([name]) => name);

    const queueDepths: Record<string, unknown> = {};
    let lastInbound: Record<string, number> = {};
    if (!down.includes('redis')) {
      await withTimeout(
        (async () => {
          if (queues) {
            for (const [name, queue] of Object.entries(queues)) {
              queueDepths[name] = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed');
            }
          }
          if (intake) lastInbound = await intake.lastInboundByChannel();
        })(),
        timeoutMs,
        'queue stats timed out',
      ).catch(() => undefined);
    }
    const now = Date.now();
    const channelReport = Object.fromEntries(
      Object.entries(channels).map(([name, state]) => {
        const last = lastInbound[name];
        return [
          name,
          {
            ...state,
            ...(state.enabled && last ? { secondsSinceLastInbound: Math.round((now - last) / 1000) } : {}),
          },
        ];
      }),
    );

    res.status(down.length > 0 ? 503 : 200).json({
      status: down.length > 0 ? 'unavailable' : 'ready',
      ...(down.length > 0 ? { down } : {}),
      dependencies: Object.fromEntries(results),
      queues: queueDepths,
      channels: channelReport,
    });
  });

  router.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', metrics.registry.contentType);
    res.send(await metrics.registry.metrics());
  });

  return router;
}

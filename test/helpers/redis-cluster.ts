/**
 * A private Redis Cluster for one test file: 3 masters + 3 replicas started by
 * `scripts/redis-cluster.sh` on free loopback ports, data in a temporary directory, removed by
 * `stop()` (and SIGKILLed if the test process exits first).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';

const run = promisify(execFile);
const SCRIPT = path.join(__dirname, '../../scripts/redis-cluster.sh');

export interface ClusterNodeInfo {
  port: number;
  role: 'master' | 'slave';
  /** Slot ranges this master serves, e.g. `0-5460`. */
  slots: string[];
}

export interface PrivateCluster {
  /** REDIS_URL for Rapport: the seed nodes, comma-separated. */
  url: string;
  ports: number[];
  nodes(): Promise<ClusterNodeInfo[]>;
  /** SIGKILLs the process of the master on `port`; returns when it is gone. */
  kill(port: number): Promise<void>;
  /** Starts every stopped node again (a killed master rejoins as a replica). */
  restart(): Promise<void>;
  /** Resolves when `cluster_state:ok` is seen from a live node and every slot has a live master. */
  waitOk(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Ports below Linux's ephemeral range (32768+), so no outgoing connection holds one: six node ports
 * at a random base and their cluster-bus ports 100 above.
 */
function randomBase(): number {
  return 20000 + Math.floor(Math.random() * 12000);
}

export async function startPrivateCluster(): Promise<PrivateCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startAt(randomBase());
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

async function startAt(base: number): Promise<PrivateCluster> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rapport-cluster-'));
  const env = {
    ...process.env,
    REDIS_CLUSTER_PORT: String(base),
    REDIS_CLUSTER_BUS_OFFSET: '100',
    REDIS_CLUSTER_DIR: dir,
  };
  const ports = Array.from({ length: 6 }, (_, i) => base + i);
  const pids = () =>
    ports.map((p) => {
      try {
        return Number(readFileSync(path.join(dir, String(p), 'redis.pid'), 'utf8').trim());
      } catch {
        return 0;
      }
    });
  const killAll = () => {
    for (const pid of pids()) {
      try {
        if (pid) process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  };
  process.once('exit', killAll);
  let url: string;
  try {
    const { stdout } = await run('bash', [SCRIPT, 'start'], { env });
    url = stdout.trim().split('\n').pop()!;
  } catch (err) {
    process.removeListener('exit', killAll);
    killAll();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const ask = async (port: number, ...args: string[]): Promise<string | undefined> => {
    const r = new Redis({
      host: '127.0.0.1',
      port,
      lazyConnect: true,
      retryStrategy: () => null,
      connectTimeout: 500,
    });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return String(await r.call(args[0]!, ...args.slice(1)));
    } catch {
      return undefined;
    } finally {
      r.disconnect();
    }
  };

  const cluster: PrivateCluster = {
    url,
    ports,
    async nodes() {
      for (const p of ports) {
        const text = await ask(p, 'CLUSTER', 'NODES');
        if (!text) continue;
        return text
          .trim()
          .split('\n')
          .map((line) => line.split(' '))
          .filter((f) => !f[2]!.includes('fail') && !f[2]!.includes('noaddr'))
          .map((f) => ({
            port: Number(/:(\d+)@/.exec(f[1]!)![1]),
            role: f[2]!.includes('master') ? ('master' as const) : ('slave' as const),
            slots: f.slice(8),
          }));
      }
      return [];
    },
    async kill(port) {
      const pid = pids()[ports.indexOf(port)];
      if (!pid) throw new Error(`no pid for node ${port}`);
      process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 100 && (await ask(port, 'PING')); i++) await new Promise((r) => setTimeout(r, 50));
    },
    async restart() {
      await run('bash', [SCRIPT, 'start'], { env });
    },
    async waitOk(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        for (const p of ports) {
          const info = await ask(p, 'CLUSTER', 'INFO');
          if (info?.includes('cluster_state:ok')) {
            const masters = (await cluster.nodes()).filter((n) => n.role === 'master' && n.slots.length > 0);
            if (masters.length === 3) return;
          }
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error('the cluster did not come back to state ok');
    },
    async stop() {
      process.removeListener('exit', killAll);
      await run('bash', [SCRIPT, 'stop'], { env }).catch(() => undefined);
      killAll();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}

/**
 * A private Redis Cluster for a test file or a benchmark: 3 masters + 3 replicas started by
 * `scripts/redis-cluster.sh` on free loopback ports, data in a temporary directory, removed by
 * `stop()`. The nodes are daemonized by the script, so they are not our children: they are
 * SIGKILLed by their pid files if this process exits first, and (with `watchdog`) by a detached
 * watchdog if it dies without running its exit handlers.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';

const run = promisify(execFile);
const SCRIPT = path.join(__dirname, '../../scripts/redis-cluster.sh');

export interface ClusterNodeInfo {
  id: string;
  port: number;
  role: 'master' | 'slave';
  /** The id of the master a replica follows (`-` for a master). */
  masterId: string;
  /** Slot ranges this master serves, e.g. `0-5460`. */
  slots: string[];
}

export interface PrivateCluster {
  /** REDIS_URL for Rapport: the seed nodes, comma-separated. */
  url: string;
  ports: number[];
  /** Where the nodes keep their data and pid files. */
  dir: string;
  /** The live nodes, as a live node sees them (failed ones left out). */
  nodes(): Promise<ClusterNodeInfo[]>;
  /** A command's answer from the node on `port`, or undefined if it does not answer. */
  command(port: number, ...args: string[]): Promise<string | undefined>;
  /** `cluster_state` as the first node that answers reports it. */
  state(): Promise<string | undefined>;
  /** The pid of the redis-server on `port`, if it is running. */
  pid(port: number): number | undefined;
  /** SIGKILLs the process of the master on `port`; returns when it is gone. */
  kill(port: number): Promise<void>;
  /** Starts every stopped node again (a killed master rejoins as a replica). */
  restart(): Promise<void>;
  /** Resolves when `cluster_state:ok` is seen from a live node and every slot has a live master. */
  waitOk(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
  /** SIGKILLs every node and removes the directory, synchronously (for process 'exit'). */
  stopSync(): void;
}

/**
 * Ports below Linux's ephemeral range (32768+), so no outgoing connection holds one: six node ports
 * at a random base and their cluster-bus ports 100 above.
 */
function randomBase(): number {
  return 20000 + Math.floor(Math.random() * 12000);
}

export async function startPrivateCluster(opts: { watchdog?: boolean } = {}): Promise<PrivateCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startAt(randomBase(), opts.watchdog ?? false);
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

/** If this process is SIGKILLed (no exit handlers), a detached watchdog removes the cluster. */
function spawnWatchdog(dir: string): void {
  const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 2; done
    for f in "$0"/*/redis.pid; do
      [ -f "$f" ] || continue; pid=$(cat "$f"); port=$(basename "$(dirname "$f")")
      if tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -q "redis-server.*:$port"; then kill -9 "$pid"; fi
    done
    rm -rf "$0"`;
  spawn('bash', ['-c', script, dir], { detached: true, stdio: 'ignore' }).unref();
}

/** The pid of the redis-server on `port`, if its pid file names a live redis-server on that port. */
function pidIn(dir: string, port: number): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(dir, String(port), 'redis.pid'), 'utf8').trim());
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('redis-server') && cmdline.includes(`:${port}`) ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function ask(port: number, ...args: string[]): Promise<string | undefined> {
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
}

function parseNodes(text: string): ClusterNodeInfo[] {
  return text
    .trim()
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => !f[2]!.includes('fail') && !f[2]!.includes('noaddr'))
    .map((f) => ({
      id: f[0]!,
      port: Number(/:(\d+)@/.exec(f[1]!)![1]),
      role: f[2]!.includes('master') ? ('master' as const) : ('slave' as const),
      masterId: f[3]!,
      slots: f.slice(8),
    }));
}

async function startAt(base: number, watchdog: boolean): Promise<PrivateCluster> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rapport-cluster-'));
  const env = {
    ...process.env,
    REDIS_CLUSTER_PORT: String(base),
    REDIS_CLUSTER_BUS_OFFSET: '100',
    REDIS_CLUSTER_DIR: dir,
  };
  const ports = Array.from({ length: 6 }, (_, i) => base + i);
  const stopSync = () => {
    for (const p of ports) {
      const pid = pidIn(dir, p);
      try {
        if (pid) process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stopSync);
  if (watchdog) spawnWatchdog(dir);
  let url: string;
  try {
    const { stdout } = await run('bash', [SCRIPT, 'start'], { env, timeout: 120_000 });
    url = stdout.trim().split('\n').pop()!;
    if (!url.startsWith('redis://')) throw new Error(`redis-cluster.sh printed no URL: ${stdout}`);
  } catch (err) {
    process.removeListener('exit', stopSync);
    stopSync();
    throw err;
  }

  const cluster: PrivateCluster = {
    url,
    ports,
    dir,
    command: ask,
    async nodes() {
      for (const p of ports) {
        const text = await ask(p, 'CLUSTER', 'NODES');
        if (text) return parseNodes(text);
      }
      return [];
    },
    async state() {
      for (const p of ports) {
        const info = await ask(p, 'CLUSTER', 'INFO');
        if (info) return /cluster_state:(\w+)/.exec(info)?.[1];
      }
      return undefined;
    },
    pid: (port) => pidIn(dir, port),
    async kill(port) {
      const pid = pidIn(dir, port);
      if (!pid) throw new Error(`no pid for node ${port}`);
      process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 100 && (await ask(port, 'PING')); i++) await new Promise((r) => setTimeout(r, 50));
    },
    async restart() {
      await run('bash', [SCRIPT, 'start'], { env, timeout: 120_000 });
    },
    async waitOk(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      const okSomewhere = async () => {
        for (const p of ports) if ((await ask(p, 'CLUSTER', 'INFO'))?.includes('cluster_state:ok')) return true;
        return false;
      };
      while (Date.now() < deadline) {
        if (await okSomewhere()) {
          const masters = (await cluster.nodes()).filter((n) => n.role === 'master' && n.slots.length > 0);
          if (masters.length === 3) return;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error('the cluster did not come back to state ok');
    },
    async stop() {
      process.removeListener('exit', stopSync);
      await run('bash', [SCRIPT, 'stop'], { env, timeout: 30_000 }).catch(() => undefined);
      stopSync();
    },
    stopSync,
  };
  return cluster;
}

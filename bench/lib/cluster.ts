/**
 * A private Redis Cluster for the chaos benchmark: 3 masters + 3 replicas started by
 * scripts/redis-cluster.sh (REDIS_CLUSTER_PORT = a free base port, REDIS_CLUSTER_DIR = a temporary
 * directory), on 127.0.0.1 only. The nodes are daemonized by the script, so they are not our children:
 * `cleanupSync` (for process 'exit') SIGKILLs them by their pid files and removes the directory, and a
 * detached watchdog does the same if this process dies without running its exit handlers.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const SCRIPT = path.join(__dirname, '../../scripts/redis-cluster.sh');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ClusterNode {
  id: string;
  port: number;
  flags: string[];
  masterId: string;
  slots: string[];
}

export interface Failover {
  killedPort: number;
  killedPid: number;
  /** Keys on the killed master when it was killed. */
  killedKeys: number;
  promotedPort?: number;
  /** SIGKILL → some live node reports cluster_state:fail (undefined if it never did). */
  stateFailAfterMs?: number;
  /** SIGKILL → the replica is master of the killed master's slots and cluster_state:ok. */
  okAfterMs?: number;
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A base port from `from` up whose 6 node ports and 6 cluster-bus ports (+10000) are all free. */
async function freeBase(from: number): Promise<number> {
  for (let base = from; base < from + 1000; base += 10) {
    const ports = [0, 1, 2, 3, 4, 5].flatMap((i) => [base + i, base + i + 10_000]);
    let ok = true;
    for (const p of ports) if (!(ok = await portFree(p))) break;
    if (ok) return base;
  }
  throw new Error(`no free 6-port range for a Redis Cluster from ${from}`);
}

const redisCli = async (port: number, ...args: string[]) =>
  (await execFileAsync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5_000 })).stdout;

export async function privateCluster(opts: { basePort?: number } = {}) {
  const base = await freeBase(opts.basePort ?? 7301);
  const ports = [0, 1, 2, 3, 4, 5].map((i) => base + i);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rapport-chaos-cluster-'));
  const env = { ...process.env, REDIS_CLUSTER_PORT: String(base), REDIS_CLUSTER_DIR: dir };
  const down = new Set<number>();

  /** The pid of the redis-server on `port`, if its pid file names a live redis-server on that port. */
  const pidOf = (port: number): number | undefined => {
    try {
      const pid = Number(readFileSync(path.join(dir, String(port), 'redis.pid'), 'utf8').trim());
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return cmdline.includes('redis-server') && cmdline.includes(`:${port}`) ? pid : undefined;
    } catch {
      return undefined;
    }
  };

  const cleanupSync = () => {
    for (const p of ports) {
      const pid = pidOf(p);
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };

  // If this process is SIGKILLed (no exit handlers), a detached watchdog removes the cluster.
  const watchdog = spawn(
    'bash',
    [
      '-c',
      `while kill -0 ${process.pid} 2>/dev/null; do sleep 2; done
       for f in "$0"/*/redis.pid; do
         [ -f "$f" ] || continue; pid=$(cat "$f"); port=$(basename "$(dirname "$f")")
         if tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -q "redis-server.*:$port"; then kill -9 "$pid"; fi
       done
       rm -rf "$0"`,
      dir,
    ],
    { detached: true, stdio: 'ignore' },
  );
  watchdog.unref();

  const livePort = () => ports.find((p) => !down.has(p))!;
  const nodes = async (): Promise<ClusterNode[]> =>
    (await redisCli(livePort(), 'cluster', 'nodes'))
      .trim()
      .split('\n')
      .map((line) => {
        const [id, addr, flags, masterId, , , , , ...slots] = line.split(' ');
        return { id: id!, port: Number(addr!.split('@')[0]!.split(':')[1]), flags: flags!.split(','), masterId: masterId!, slots };
      });
  const state = async (port = livePort()) => /cluster_state:(\w+)/.exec(await redisCli(port, 'cluster', 'info'))?.[1];

  return {
    base,
    ports,
    dir,
    /** Rapport's REDIS_URL: the seed list the script prints. Set by `start`. */
    url: '',
    async start(): Promise<string> {
      const { stdout } = await execFileAsync('bash', [SCRIPT, 'start'], { env, timeout: 120_000 });
      this.url = stdout.trim().split('\n').pop()!;
      if (!this.url.startsWith('redis://')) throw new Error(`redis-cluster.sh printed no URL: ${stdout}`);
      return this.url;
    },
    nodes,
    state,
    /** SIGKILLs the master holding the most keys; waits until its replica took over and the state is ok. */
    async killMaster(timeoutMs = 60_000): Promise<Failover> {
      const before = await nodes();
      const masters = before.filter((n) => n.flags.includes('master') && n.slots.length > 0 && !n.flags.some((f) => f.startsWith('fail')));
      const keys = await Promise.all(masters.map(async (m) => Number((await redisCli(m.port, 'dbsize')).trim())));
      const victimIndex = keys.indexOf(Math.max(...keys));
      const victim = masters[victimIndex]!;
      const pid = pidOf(victim.port);
      if (!pid) throw new Error(`no redis-server pid for port ${victim.port} in ${dir}`);
      const t0 = Date.now();
      process.kill(pid, 'SIGKILL');
      down.add(victim.port);
      const out: Failover = { killedPort: victim.port, killedPid: pid, killedKeys: keys[victimIndex]! };
      while (Date.now() - t0 < timeoutMs) {
        try {
          const [s, now] = await Promise.all([state(), nodes()]);
          if (s !== 'ok' && out.stateFailAfterMs === undefined) out.stateFailAfterMs = Date.now() - t0;
          const promoted = now.find((n) => n.flags.includes('master') && before.find((b) => b.id === n.id)?.masterId === victim.id);
          if (promoted && s === 'ok') {
            out.promotedPort = promoted.port;
            out.okAfterMs = Date.now() - t0;
            break;
          }
        } catch {
          /* a node busy failing over; ask again */
        }
        await sleep(100);
      }
      return out;
    },
    /** Starts the node(s) that are down again (`redis-cluster.sh start` skips live ones); they rejoin as replicas. */
    async restartDown(timeoutMs = 30_000): Promise<{ port: number; role: string; afterMs: number }[]> {
      const t0 = Date.now();
      const restarted = [...down];
      await execFileAsync('bash', [SCRIPT, 'start'], { env, timeout: 120_000 });
      down.clear();
      const roles = new Map<number, string>();
      while (Date.now() - t0 < timeoutMs) {
        const now = await nodes().catch(() => []);
        for (const p of restarted) {
          const n = now.find((x) => x.port === p);
          if (n && !n.flags.some((f) => f.startsWith('fail'))) roles.set(p, n.flags.includes('slave') ? 'replica' : n.flags.includes('master') ? 'master' : n.flags.join(','));
        }
        if (restarted.every((p) => roles.get(p) === 'replica') && (await state().catch(() => undefined)) === 'ok') break;
        await sleep(200);
      }
      return restarted.map((port) => ({ port, role: roles.get(port) ?? 'unknown', afterMs: Date.now() - t0 }));
    },
    async destroy() {
      await execFileAsync('bash', [SCRIPT, 'stop'], { env, timeout: 30_000 }).catch(() => undefined);
      cleanupSync();
    },
    cleanupSync,
    /** Whether the directory is still there (for the report). */
    exists: () => existsSync(dir),
  };
}

export type PrivateCluster = Awaited<ReturnType<typeof privateCluster>>;

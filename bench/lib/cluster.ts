/**
 * The chaos benchmark's Redis Cluster: the private cluster the tests use
 * (test/helpers/redis-cluster.ts, with its watchdog on), plus the two measurements the benchmark
 * reports — how long a failover takes once the busiest master is SIGKILLed, and how the killed
 * node rejoins.
 */
import { startPrivateCluster, type PrivateCluster } from '../../test/helpers/redis-cluster';

export type { PrivateCluster } from '../../test/helpers/redis-cluster';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

export function privateCluster(): Promise<PrivateCluster> {
  return startPrivateCluster({ watchdog: true });
}

/** SIGKILLs the master holding the most keys; waits until its replica took over and the state is ok. */
export async function killBusiestMaster(cluster: PrivateCluster, timeoutMs = 60_000): Promise<Failover> {
  const before = await cluster.nodes();
  const masters = before.filter((n) => n.role === 'master' && n.slots.length > 0);
  const keys = await Promise.all(masters.map(async (m) => Number(await cluster.command(m.port, 'DBSIZE'))));
  const victimIndex = keys.indexOf(Math.max(...keys));
  const victim = masters[victimIndex]!;
  const pid = cluster.pid(victim.port);
  if (!pid) throw new Error(`no redis-server pid for port ${victim.port} in ${cluster.dir}`);
  const t0 = Date.now();
  process.kill(pid, 'SIGKILL');
  const out: Failover = { killedPort: victim.port, killedPid: pid, killedKeys: keys[victimIndex]! };
  while (Date.now() - t0 < timeoutMs) {
    const [state, now] = await Promise.all([cluster.state(), cluster.nodes()]);
    if (state !== 'ok' && out.stateFailAfterMs === undefined) out.stateFailAfterMs = Date.now() - t0;
    const promoted = now.find(
      (n) => n.role === 'master' && before.find((b) => b.id === n.id)?.masterId === victim.id,
    );
    if (promoted && state === 'ok') {
      out.promotedPort = promoted.port;
      out.okAfterMs = Date.now() - t0;
      break;
    }
    await sleep(100);
  }
  return out;
}

/** Starts the killed node again (the script skips live ones); reports the role it rejoins with. */
export async function restartKilled(
  cluster: PrivateCluster,
  port: number,
  timeoutMs = 30_000,
): Promise<{ port: number; role: string; afterMs: number }[]> {
  const t0 = Date.now();
  await cluster.restart();
  let role = 'unknown';
  while (Date.now() - t0 < timeoutMs) {
    const node = (await cluster.nodes()).find((n) => n.port === port);
    if (node) role = node.role === 'slave' ? 'replica' : node.role;
    if (role === 'replica' && (await cluster.state()) === 'ok') break;
    await sleep(200);
  }
  return [{ port, role, afterMs: Date.now() - t0 }];
}

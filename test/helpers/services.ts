/**
 * Private, throwaway Redis and FerretDB servers on loopback, for tests that stop and restart a
 * dependency without disturbing the shared ones.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A random port for a private server: 10000–19999, below Linux's ephemeral range (32768+, where
 * outgoing connections take their local ports — a random port there can be in use) and below the
 * private Redis Clusters' range (redis-cluster.ts).
 */
export function freePort(): number {
  return 10000 + Math.floor(Math.random() * 10000);
}

/** Like `freePort`, but checked: nothing listens on it right now. */
export async function listenablePort(): Promise<number> {
  for (;;) {
    const port = freePort();
    const free = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '0.0.0.0', () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

export async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listening on ${port} after ${timeoutMs} ms`);
}

export interface PrivateServer {
  port: number;
  url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stops it and removes its data. */
  destroy(): Promise<void>;
}

function privateServer(
  port: number,
  url: string,
  command: string,
  args: string[],
  dir: string,
): PrivateServer {
  let child: ChildProcess | undefined;
  const stop = async () => {
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    child = undefined;
  };
  return {
    port,
    url,
    async start() {
      child = spawn(command, args, { stdio: 'ignore' });
      await waitForPort(port);
    },
    stop,
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function privateRedis(): PrivateServer {
  const port = freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rapport-redis-'));
  return privateServer(
    port,
    `redis://127.0.0.1:${port}`,
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', dir],
    dir,
  );
}

export function ferretdbBinary(): string {
  return (
    process.env.FERRETDB ?? path.join(process.env.GOPATH ?? path.join(os.homedir(), 'go'), 'bin', 'ferretdb')
  );
}

export function privateFerretDB(): PrivateServer {
  const port = freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rapport-ferretdb-'));
  return privateServer(
    port,
    `mongodb://127.0.0.1:${port}`,
    ferretdbBinary(),
    [
      '--handler=sqlite',
      `--sqlite-url=file:${dir}/`,
      `--listen-addr=127.0.0.1:${port}`,
      `--state-dir=${dir}`,
      '--debug-addr=-',
      '--telemetry=disable',
      '--log-level=error',
    ],
    dir,
  );
}

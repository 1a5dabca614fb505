/**
 * How tests start the real `rapport` executable (src/main.ts through @swc-node/register): from a
 * working directory of its own, so a developer's `.env` (written by `npm start`, read by main.ts)
 * never leaks into a test's configuration.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { eventually } from './eventually';

const ROOT = path.join(__dirname, '../..');
let emptyDir: string | undefined;

/** `spawn(process.execPath, r.args, { cwd: r.cwd, env: { ...r.env, … } })` runs `rapport …args`. */
export function rapportProcess(args: string[], cwd?: string) {
  emptyDir ??= mkdtempSync(path.join(os.tmpdir(), 'rapport-proc-'));
  return {
    args: ['-r', require.resolve('@swc-node/register'), path.join(ROOT, 'src/main.ts'), ...args],
    cwd: cwd ?? emptyDir,
    env: { SWC_NODE_PROJECT: path.join(ROOT, 'tsconfig.json') },
  };
}

/**
 * Starts `rapport worker` with `env` (testEnv's, with PORT set to `port`) and waits until its
 * /readyz answers 200; throws with the process's last output if it never does.
 */
export async function startRapportWorker(env: NodeJS.ProcessEnv, port: number): Promise<ChildProcess> {
  const r = rapportProcess(['worker']);
  const child = spawn(process.execPath, r.args, {
    cwd: r.cwd,
    env: { PATH: process.env.PATH, ...r.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (d: Buffer) => output.push(d.toString()) > 100 && output.shift();
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const ready = await eventually(
    () =>
      fetch(`http://127.0.0.1:${port}/readyz`).then(
        (res) => res.status,
        () => 0,
      ),
    (status) => status === 200,
    60_000,
  );
  if (ready !== 200) {
    child.kill('SIGKILL');
    throw new Error(`the worker never got ready:\n${output.join('')}`);
  }
  return child;
}

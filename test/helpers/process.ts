/**
 * How tests start the real `rapport` executable (src/main.ts through @swc-node/register): from a
 * working directory of its own, so a developer's `.env` (written by `npm start`, read by main.ts)
 * never leaks into a test's configuration.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

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

/**
 * The Rapport processes of bench/e2e run compiled JavaScript, as production does (`node dist/main.js`,
 * Dockerfile), not TypeScript compiled at load time: `-r @swc-node/register` loads the TypeScript
 * compiler (to read tsconfig.json) and swc's native binding and keeps every file's source map, which
 * added ~75 MB of RSS and ~40 MB of heap to every process — memory of the benchmark's tooling, not of
 * Rapport. Here swc transpiles src/ and the process scripts once per run (no type check: `npm run
 * typecheck` does that) into `.data/bench-build/<run>/`, inside the repository so `node_modules` resolves.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { transformFileSync } from '@swc/core';

const ROOT = path.join(__dirname, '../..');
/** What the process scripts (role.ts and the two below it) load besides src/. */
const SCRIPTS = ['bench/lib/role.ts', 'bench/lib/api.ts', 'bench/lib/worker.ts', 'bench/lib/db-monitor.ts', 'bench/lib/redis-monitor.ts'];

function tsFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(rel);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [rel] : [];
  });
}

/** Transpiles src/ and the process scripts; returns the output directory (removed at exit). */
export function compileForBench(run: string): string {
  const out = path.join(ROOT, '.data/bench-build', run);
  for (const rel of [...tsFiles('src'), ...SCRIPTS]) {
    const { code } = transformFileSync(path.join(ROOT, rel), {
      jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
      module: { type: 'commonjs' },
      sourceMaps: false,
      swcrc: false,
      configFile: false,
    });
    const target = path.join(out, rel.replace(/\.ts$/, '.js'));
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, code);
  }
  process.on('exit', () => rmSync(out, { recursive: true, force: true }));
  return out;
}

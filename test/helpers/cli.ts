/** Running the `rapport` CLI in-process in a test, and putting process.env back afterwards. */
import { runCli } from '../../src/cli';

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** Runs `rapport <argv…>` in-process; what it printed, lines joined with "\n". */
export async function runCliCaptured(...argv: string[]): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { out: (l) => out.push(l) > 0, err: (l) => err.push(l) > 0 });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** Makes process.env what `saved` (a copy taken earlier) was: added keys removed, changed ones restored. */
export function restoreEnv(saved: NodeJS.ProcessEnv): void {
  for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
  Object.assign(process.env, saved);
}

/**
 * `.env` in the working directory, read the way `npm start` uses it, for every way Rapport is run
 * (`node dist/main.js`, `npx rapport agents list`, …). Variables already in the environment win,
 * as with dotenv, so `PORT=4000 rapport doctor` overrides the file. Parsed by Node's own
 * `process.loadEnvFile` (KEY=value lines, `#` comments, quotes, `export ` prefixes).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

/** Loads `<dir>/.env` into `process.env` if it exists; returns the file read, if any. */
export function loadEnvFile(dir: string = process.cwd()): string | undefined {
  const file = path.join(dir, '.env');
  if (!existsSync(file)) return undefined;
  process.loadEnvFile(file);
  return file;
}

/**
 * Human-readable log lines for a terminal: `12:04:05 INFO  main: listening on http://… role=all`.
 * Rapport logs JSON (one object per line, for collectors); when stdout is a TTY, logger.ts sends
 * the lines through `prettyStream` instead. It formats what pino already redacted, so nothing
 * sensitive can appear here that the JSON would not show.
 */
import { Writable } from 'node:stream';

const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO ',
  40: 'WARN ',
  50: 'ERROR',
  60: 'FATAL',
};
const COLOURS: Record<number, string> = { 20: '90', 30: '36', 40: '33', 50: '31', 60: '31' };
/** Fields every line has, shown in the prefix or not at all. */
const OMIT = new Set(['level', 'time', 'pid', 'hostname', 'service', 'component', 'msg', 'err']);

function value(v: unknown): string {
  if (typeof v === 'string') return /[\s="]/.test(v) ? JSON.stringify(v) : v;
  return JSON.stringify(v);
}

/** One JSON log line as text; a line that is not JSON is returned as it is. */
export function formatLine(line: string, colour: boolean): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const level = typeof entry.level === 'number' ? entry.level : 30;
  const time = new Date(typeof entry.time === 'number' ? entry.time : Date.now()).toTimeString().slice(0, 8);
  const label = LEVELS[level] ?? String(level);
  const tag = colour && COLOURS[level] ? `\x1b[${COLOURS[level]}m${label}\x1b[0m` : label;
  const component = typeof entry.component === 'string' ? `${entry.component}: ` : '';
  const fields = Object.entries(entry)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => `${k}=${value(v)}`);
  const err = entry.err as { type?: string; message?: string; stack?: string } | undefined;
  const tail = err ? `\n    ${err.stack ?? `${err.type ?? 'Error'}: ${err.message ?? ''}`}` : '';
  return `${time} ${tag} ${component}${String(entry.msg ?? '')}${fields.length ? `  ${fields.join(' ')}` : ''}${tail}`;
}

/** A destination for pino that writes formatted lines to `out` (colours when `out` is a TTY). */
export function prettyStream(out: NodeJS.WriteStream = process.stdout): Writable {
  let pending = '';
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      const text = lines
        .filter(Boolean)
        .map((l) => `${formatLine(l, Boolean(out.isTTY))}\n`)
        .join('');
      if (text) out.write(text);
      done();
    },
  });
}

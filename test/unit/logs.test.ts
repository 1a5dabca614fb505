/**
 * Issue 21, logs: readable lines on a terminal (JSON otherwise), admin polling at debug while changes
 * stay at info, agent ids shown rather than redacted.
 */
import { Writable } from 'node:stream';
import express from 'express';
import request from 'supertest';
import { adminAudit } from '../../src/http/admin-audit';
import { formatLine, prettyStream } from '../../src/log-pretty';
import { createLogger } from '../../src/logger';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  return { lines, log: createLogger({ level: 'debug', destination }) };
}

describe('log lines', () => {
  it('read as text on a terminal: time, level, component, message, then the fields', () => {
    const line = JSON.stringify({
      level: 30,
      time: Date.UTC(2026, 0, 1, 12, 4, 5),
      pid: 1,
      hostname: 'h',
      service: 'rapport',
      component: 'main',
      msg: 'listening on http://localhost:3000 (role all; sms)',
      port: 3000,
      role: 'all',
    });
    const text = formatLine(line, false);
    expect(text).toMatch(
      /^\d\d:\d\d:\d\d INFO {2}main: listening on http:\/\/localhost:3000 \(role all; sms\) {2}port=3000 role=all$/,
    );
    expect(formatLine('not json', false)).toBe('not json');
  });

  it('are written whole, one per line, by the pretty stream', async () => {
    const written: string[] = [];
    const out = { isTTY: false, write: (s: string) => written.push(s) > 0 } as unknown as NodeJS.WriteStream;
    const stream = prettyStream(out);
    const log = createLogger({ level: 'info', destination: stream });
    log.info({ agentId: '65a000000000000000000001' }, 'hello');
    await new Promise((r) => setImmediate(r));
    expect(written.join('')).toMatch(/INFO {2}hello {2}agentId=65a000000000000000000001\n$/);
  });

  it('put successful admin reads (the page polling) at debug and changes at info', async () => {
    const { lines, log } = capture();
    const app = express();
    app.use('/api', adminAudit({ log }));
    app.get('/api/agents', (_req, res) => void res.json({ agents: [] }));
    app.post('/api/agents', (_req, res) => void res.status(201).json({}));
    await request(app).get('/api/agents');
    await request(app).post('/api/agents');
    const audit = lines.filter((l) => l.msg === 'admin request');
    expect(audit.map((l) => [l.method, l.level])).toEqual([
      ['GET', 20],
      ['POST', 30],
    ]);
  });
});

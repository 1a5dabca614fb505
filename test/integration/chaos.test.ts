/**
 * The short chaos run (`npm run chaos`, bench/chaos.ts) as part of the suite: 2 api and 2 worker
 * processes on a private Redis and a private FerretDB while workers are SIGKILLed, api and worker
 * processes SIGTERMed, Redis and the database each restarted once, the provider/Slack emulators
 * fail 10 % of calls and lose the answer of 20 % more (carried out, then the connection dropped),
 * and an agent answers 40 times in customer threads. The run itself verifies 0 lost, 0 duplicate
 * Slack posts, 0 duplicate cards, 0 duplicate customer sends, 0 silently lost agent replies and
 * per-customer order, prints its figures and exits non-zero on any violation.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';

jest.setTimeout(600_000);

const ROOT = path.join(__dirname, '../..');

it('loses, doubles and reorders nothing under worker kills, SIGTERMs, restarts and provider failures', async () => {
  const { code, stdout } = await new Promise<{ code: number; stdout: string }>((resolve) => {
    execFile(
      process.execPath,
      [
        '-r',
        '@swc-node/register',
        path.join(ROOT, 'bench/chaos.ts'),
        ...['--messages', '150', '--seconds', '20', '--customers', '30'],
        ...['--kill-every', '6', '--sigterm', '--sigterm-every', '5', '--sigterm-min-age', '3'],
        ...['--api-processes', '2', '--worker-processes', '2', '--drain', '420'],
        ...['--lost-rate', '0.2', '--replies', '40'],
      ],
      { cwd: ROOT, maxBuffer: 16 << 20, timeout: 580_000 },
      (err, out) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout: out }),
    );
  });
  // The figures are the pretty-printed JSON object starting with "messages" (child processes may also
  // write one-line JSON logs to the same output).
  const start = stdout.indexOf('\n{\n  "messages"') + 1;
  const end = stdout.indexOf('\n}', start) + 2;
  const figures = JSON.parse(stdout.slice(start, end)) as Record<string, unknown>;
  // On a failure, the whole report (e.g. which replies were silently lost) goes into the test log.
  if (code !== 0) console.log(stdout.slice(start, end));
  expect({ code, verdict: stdout.split('\n').find((l) => /^(PASS|FAIL)/.test(l)) }).toEqual({
    code: 0,
    verdict:
      'PASS: 0 lost, 0 duplicate posts, 0 duplicate cards, 0 duplicate sends, 0 silently lost replies, order preserved',
  });
  expect(figures).toMatchObject({
    accepted: 150,
    lost: 0,
    duplicatePosts: 0,
    duplicateCards: 0,
    duplicateSends: 0,
    silentlyLostReplies: 0,
    agentReplies: expect.objectContaining({ replies: 40, duplicates: 0, silentlyLost: 0 }),
    outOfOrder: 0,
    redisRestarts: 1,
    databaseRestarts: 1,
  });
  // The faults really happened: answers were lost on Slack and on the providers.
  const injected = figures.injectedFailures as Record<string, { lost: number }>;
  expect(injected.slack!.lost).toBeGreaterThan(0);
  expect(injected.twilio!.lost + injected.graph!.lost).toBeGreaterThan(0);
  expect(figures.workerKills).toEqual(expect.any(Number));
  expect(Number(figures.workerKills)).toBeGreaterThan(0);
  const stops = figures.gracefulStops as { api: number; worker: number; notGraceful: number };
  expect(stops.api + stops.worker).toBeGreaterThan(0);
  expect(stops.notGraceful).toBe(0);
});

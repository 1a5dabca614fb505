/**
 * `rapport agents …` as an operator runs it: in-process, against the real Redis and database, with
 * the same validation and side effects as the admin API.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mongoose from 'mongoose';
import { testEnv } from '../helpers/env';
import { restoreEnv, runCliCaptured } from '../helpers/cli';

describe('rapport agents', () => {
  const env = testEnv({ LOG_LEVEL: 'silent' });
  const saved = { ...process.env };
  beforeAll(() => Object.assign(process.env, env));
  afterAll(async () => {
    restoreEnv(saved);
    const conn = await mongoose.createConnection(env.MONGODB_URI!).asPromise();
    await conn.dropDatabase();
    await conn.close();
  });

  const run = runCliCaptured;

  it('adds, lists, imports from CSV with progress, and explains a bad row', async () => {
    const added = await run('agents', 'add', '--slack', 'U0CLI1', '--name', 'Cleo', '--channel', 'C0CLI1');
    expect(added.code).toBe(0);
    expect(added.out).toMatch(/Added agent [0-9a-f]{24} \(Cleo\)/);

    const dir = mkdtempSync(path.join(os.tmpdir(), 'rapport-cli-'));
    const csv = path.join(dir, 'agents.csv');
    writeFileSync(
      csv,
      'slackUserId,name,inboxChannelId,capacity\nU0CLI2,Dev,C0CLI2,20\nU0CLI3,Eve,C0CLI3,\nbad,Nope,C0CLI4,\n',
    );
    const imported = await run('agents', 'import', csv);
    rmSync(dir, { recursive: true, force: true });
    expect(imported.code).toBe(1);
    expect(imported.out).toContain('Imported 2 of 3 agents.');
    expect(imported.out).toMatch(/line 4: .*slackUserId/);
    expect(imported.err).toContain('[3/3] failed Nope');

    const listed = await run('agents', 'list', '--json');
    const names = (JSON.parse(listed.out) as { agents: { name: string }[] }).agents.map((a) => a.name);
    expect(names).toEqual(['Cleo', 'Dev', 'Eve']);
  });

  it('sets the Slack role: --role on add and update, agent by default, a wrong role refused', async () => {
    const lead = await run(
      'agents',
      'add',
      '--slack',
      'U0CLI5',
      '--name',
      'Lena',
      '--channel',
      'C0CLI5',
      '--role',
      'lead',
    );
    expect(lead.code).toBe(0);
    const list = async () =>
      (
        JSON.parse((await run('agents', 'list', '--json')).out) as {
          agents: { id: string; name: string; role: string }[];
        }
      ).agents;
    const cleo = (await list()).find((a) => a.name === 'Cleo')!;
    expect(cleo.role).toBe('agent');
    expect((await list()).find((a) => a.name === 'Lena')?.role).toBe('lead');
    expect((await run('agents', 'update', cleo.id, '--role', 'admin')).code).toBe(0);
    expect((await list()).find((a) => a.name === 'Cleo')?.role).toBe('admin');
    const bad = await run('agents', 'update', cleo.id, '--role', 'boss');
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/role/);
    expect((await run('agents', 'list')).out).toMatch(/Lena\s+U0CLI5\s+C0CLI5\s+lead\s+available/);
  });
});

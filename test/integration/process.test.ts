/** The real executable: bad config exits listing every problem; a good one serves and stops on SIGTERM. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { testEnv } from '../helpers/env';
import { rapportProcess } from '../helpers/process';

function run(env: NodeJS.ProcessEnv, args: string[] = []) {
  const r = rapportProcess(args);
  const child = spawn(process.execPath, r.args, {
    cwd: r.cwd,
    env: { PATH: process.env.PATH, ...r.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return { child, output: () => ({ stdout, stderr }) };
}

describe('the rapport process', () => {
  it('exits non-zero and lists every configuration problem', async () => {
    const { child, output } = run({ PORT: 'abc', MONGODB_URI: 'nope' });
    const [code] = await once(child, 'exit');
    expect(code).toBe(1);
    const { stderr } = output();
    expect(stderr).toContain('PORT must be a whole number');
    expect(stderr).toContain('MONGODB_URI must be a URL');
    expect(stderr).toContain('ADMIN_TOKEN is required');
  });

  it('serves /healthz and shuts down cleanly on SIGTERM', async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const { child, output } = run(testEnv({ PORT: String(port) }));
    try {
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 100));
        status = await fetch(`http://127.0.0.1:${port}/healthz`).then(
          (r) => r.status,
          () => 0,
        );
      }
      expect(status).toBe(200);
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      expect(code).toBe(0);
      expect(output().stdout).toContain('"msg":"stopped"');
    } finally {
      child.kill('SIGKILL');
    }
  });
});

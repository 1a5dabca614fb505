/**
 * `rapport doctor` in sandbox mode (`SANDBOX=true`): the channels are emulated inside the running
 * Rapport process, so the configuration is checked with the sandbox's credentials laid over it
 * (every channel on, as `npm start` runs it), provider credentials and PUBLIC_URL are not checked
 * (there are none to check), and instead doctor asks the running sandbox on `PORT` whether it answers.
 */
import { ConfigError } from '../config';
import { sandboxConflicts, sandboxOverrides, sandboxRequested } from '../sandbox';
import type { DoctorCheck } from './types';
import { messageOf } from './types';

/** Stand-in emulator URLs: doctor does not start the emulators, it only needs the channels on. */
const PLACEHOLDER = {
  twilio: 'http://127.0.0.1:9',
  graph: 'http://127.0.0.1:9',
  slack: 'http://127.0.0.1:9/api/',
};

/** Whether `env` asks for sandbox mode; a malformed SANDBOX is left to the configuration check. */
export function sandboxMode(env: NodeJS.ProcessEnv): boolean {
  try {
    return sandboxRequested(env);
  } catch (err) {
    if (err instanceof ConfigError) return false;
    throw err;
  }
}

/** The environment the sandbox runs Rapport with (what the configuration check should parse). */
export function sandboxEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...env, ...sandboxOverrides(env, PLACEHOLDER) };
}

export function sandboxConflictCheck(env: NodeJS.ProcessEnv): DoctorCheck {
  const conflicts = sandboxConflicts(env);
  return conflicts.length === 0
    ? {
        id: 'sandbox.mode',
        section: 'config',
        status: 'ok',
        title: 'Sandbox mode',
        detail:
          'SANDBOX=true: Twilio, Meta and Slack are emulated inside Rapport; nothing leaves this machine',
      }
    : {
        id: 'sandbox.mode',
        section: 'config',
        status: 'fail',
        title: 'Sandbox mode',
        detail: `SANDBOX=true together with real provider settings (${conflicts.join(', ')})`,
        fix: 'Remove SANDBOX from .env to run for real, or unset those variables to use the sandbox.',
      };
}

/** Asks the sandbox on PORT (default 3000) for its page; a warning when nothing answers. */
export async function checkRunningSandbox(env: NodeJS.ProcessEnv, timeoutMs: number): Promise<DoctorCheck> {
  const port = (env.PORT ?? '').trim() || '3000';
  const host = env.SANDBOX_HOST?.trim() || '127.0.0.1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/sandbox`;
  const base = { id: 'sandbox.running', section: 'services' as const, title: 'Sandbox page' };
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (res.ok) return { ...base, status: 'ok', detail: `answering at http://localhost:${port}/sandbox` };
    return {
      ...base,
      status: 'warn',
      detail: `port ${port} answered ${res.status}: something other than the sandbox listens there`,
      fix: 'Stop whatever listens on that port, or set PORT in .env, then `npm start`.',
    };
  } catch (err) {
    return {
      ...base,
      status: 'warn',
      detail: `nothing answers on port ${port} (${messageOf(err)})`,
      fix: 'Start it with `npm start` (it reads PORT from .env).',
    };
  }
}

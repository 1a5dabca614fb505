/**
 * `runDoctor(env)`: every check, run concurrently, gathered into one report. The configuration is
 * parsed the way the app parses it; when it is invalid its problems are failed checks and Redis and
 * MongoDB are still checked at the URLs given (or the defaults), so one run shows everything.
 */
import type { Config } from '../config';
import { checkConfiguration, checkPublicUrlShape } from './config-checks';
import { checkMongo } from './mongo';
import { checkDataKeyMarkers, dataKeyPresence } from './data-key';
import { checkChromium, checkGraph, checkPublicUrlReachable, checkSlack, checkTwilio } from './providers';
import { checkRedis } from './redis';
import { checkRunningSandbox, sandboxConflictCheck, sandboxEnv, sandboxMode } from './sandbox';
import type { DoctorCheck, DoctorReport } from './types';
import { webhookInstructions } from './webhooks';

export interface DoctorOptions {
  /**
   * Time allowed to each network check (connect + answer).
   * @defaultValue 5000
   */
  timeoutMs?: number;
}

const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
const DEFAULT_MONGODB_URI = 'mongodb://127.0.0.1:27017/rapport';

function usableUrl(raw: string | undefined, fallback: string, protocols: string[]): string | undefined {
  const value = raw?.trim() ? raw.trim() : fallback;
  try {
    return protocols.includes(new URL(value).protocol) ? value : undefined;
  } catch {
    return undefined;
  }
}

export async function runDoctor(env: NodeJS.ProcessEnv, options: DoctorOptions = {}): Promise<DoctorReport> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const sandbox = sandboxMode(env);
  const parsed = checkConfiguration(sandbox ? sandboxEnv(env) : env);
  const { config } = parsed;
  // The sandbox emulates every channel but WhatsApp Web, which needs a real phone.
  const channels = sandbox
    ? parsed.channels.map((c) =>
        c.enabled ? c : { ...c, reason: 'not in the sandbox: WhatsApp Web needs a real phone' },
      )
    : parsed.channels;
  const configChecks = sandbox ? [sandboxConflictCheck(env), ...parsed.checks] : parsed.checks;

  const redisUrl = config?.redisUrl ?? usableUrl(env.REDIS_URL, DEFAULT_REDIS_URL, ['redis:', 'rediss:']);
  const mongoUri =
    config?.mongodbUri ?? usableUrl(env.MONGODB_URI, DEFAULT_MONGODB_URI, ['mongodb:', 'mongodb+srv:']);

  const pending: Promise<DoctorCheck[]>[] = [
    redisUrl ? checkRedis(redisUrl, timeoutMs) : Promise.resolve([]),
    mongoUri ? checkMongo(mongoUri, timeoutMs) : Promise.resolve([]),
  ];
  if (sandbox) pending.push(checkRunningSandbox(env, timeoutMs).then((c) => [c]));
  else if (config) pending.push(...configuredChecks(config, env, timeoutMs));
  const checks = [...configChecks, ...(await Promise.all(pending)).flat()];

  const summary = {
    ok: checks.filter((c) => c.status === 'ok').length,
    warn: checks.filter((c) => c.status === 'warn').length,
    fail: checks.filter((c) => c.status === 'fail').length,
  };
  return {
    checks,
    channels,
    // In the sandbox the page posts the webhooks itself: nothing to paste anywhere.
    webhooks: config && !sandbox ? webhookInstructions(config) : [],
    summary,
    exitCode: summary.fail > 0 ? 1 : 0,
  };
}

function configuredChecks(
  config: Readonly<Config>,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<DoctorCheck[]>[] {
  return [
    Promise.resolve([checkPublicUrlShape(env.PUBLIC_URL, config), dataKeyPresence(config)]),
    checkDataKeyMarkers(config, timeoutMs),
    checkPublicUrlReachable(config, timeoutMs).then((c) => [c]),
    checkTwilio(config, timeoutMs),
    checkGraph(config, timeoutMs),
    checkSlack(config, timeoutMs),
    checkChromium(config),
  ];
}

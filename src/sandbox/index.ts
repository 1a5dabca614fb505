/**
 * Sandbox mode: all of Rapport on one machine with no provider accounts. Local emulators of Twilio's
 * REST API, the Meta Graph API and Slack's Web API run in this process on 127.0.0.1; the config
 * gets fixed sandbox credentials that point the REAL SDKs at them, so everything goes through the
 * real pipeline (signed webhooks, queues, identity, router, Slack posts). The `/sandbox` page acts
 * as the customers and the agents (see routes.ts).
 *
 * When: only when `SANDBOX=true` (scripts/start.sh writes it into the first-run .env, so the
 * README's run command gives the sandbox). It is never switched on implicitly by missing
 * credentials: a deployment whose secrets failed to load must not start serving an unauthenticated
 * page that acts with the admin token. Setting SANDBOX=true together with real provider variables
 * (or WHATSAPP_WEB_ENABLED, a real phone) is a configuration error naming them: the operator
 * chooses one or the other, nothing is silently ignored.
 *
 * Restarts: what the emulators and the page hold is kept in MongoDB (store.ts) and read back by
 * `open` before the app is built, so the page shows after a restart what it showed before, and
 * Slack `ts` values stay unique. `SANDBOX_RESET=true` (or `npm start -- --reset`) starts clean
 * instead: Rapport's database and Redis keys go together with the sandbox's history.
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { RapportApp } from '../app';
import { ConfigError, type Config } from '../config';
import { createLogger } from '../logger';
import { startGraphEmulator } from './emulators/graph';
import { startSlackEmulator } from './emulators/slack';
import { startTwilioEmulator } from './emulators/twilio';
import { SANDBOX_CREDENTIALS, type SandboxEmulators } from './credentials';
import type { EmulatorJournal } from './emulators/journal';
import { sandboxRoutes } from './routes';
import { openSandboxStore, resetSandboxData, type SandboxStore } from './store';

export { sandboxRoutes, type SandboxRoutesOptions } from './routes';
export { SANDBOX_CREDENTIALS, type SandboxEmulators } from './credentials';

/** Every variable that would make Rapport talk to a real provider. */
export const PROVIDER_VARIABLES = [
  'TWILIO_ACCOUNT_SID',
  'TWILIO_AUTH_TOKEN',
  'TWILIO_SMS_FROM',
  'TWILIO_WHATSAPP_FROM',
  'TWILIO_API_BASE_URL',
  'META_APP_SECRET',
  'META_VERIFY_TOKEN',
  'MESSENGER_PAGE_ACCESS_TOKEN',
  'WHATSAPP_CLOUD_ACCESS_TOKEN',
  'WHATSAPP_CLOUD_PHONE_NUMBER_ID',
  'META_GRAPH_BASE_URL',
  'SLACK_BOT_TOKEN',
  'SLACK_SIGNING_SECRET',
  'SLACK_API_URL',
  'SLACK_ESCALATION_CHANNEL',
] as const;

export interface ServeOptions {
  /** @defaultValue the app's PORT (0 picks a free one) */
  port?: number;
  /** @defaultValue `SANDBOX_HOST`, else `127.0.0.1`: the page acts as admin without a token, so loopback only */
  host?: string;
}

export interface OpenOptions {
  /** Start clean: drop the sandbox's database and Redis keys first (`--reset`, `SANDBOX_RESET`). */
  reset?: boolean;
}

export interface Sandbox {
  /** Variables to lay over the environment before `loadConfig`: sandbox credentials and emulator URLs. */
  env: NodeJS.ProcessEnv;
  emulators: SandboxEmulators;
  /**
   * Reads back what the sandbox kept in MongoDB (or starts clean with `reset`) and keeps every
   * later change there. Call after `loadConfig` and before `buildApp`; resolves with a sentence
   * for the log. Throws ConfigError when the database holds Rapport data without sandbox history.
   */
  open(config: Readonly<Config>, options?: OpenOptions): Promise<string>;
  /**
   * Serves the app with `/sandbox` in front of it (the page and its API are never part of a normal
   * app), bound to `host`; resolves with the port. Use instead of `app.listen` in sandbox mode.
   */
  serve(app: RapportApp, options?: ServeOptions): Promise<number>;
  /** Stops serving (if serving) and closes the emulators. Call after `app.close()`. */
  close(): Promise<void>;
}

const TRUE = ['true', '1', 'yes'];
const FALSE = ['false', '0', 'no', ''];

/** Whether `SANDBOX` asks for sandbox mode; a value that is not a boolean is a ConfigError. */
export function sandboxRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = (env.SANDBOX ?? '').trim().toLowerCase();
  if (TRUE.includes(value)) return true;
  if (FALSE.includes(value)) return false;
  throw new ConfigError(['SANDBOX must be true or false']);
}

/** Whether `SANDBOX_RESET` asks to start the sandbox clean; a value that is not a boolean is a ConfigError. */
export function sandboxResetRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = (env.SANDBOX_RESET ?? '').trim().toLowerCase();
  if (TRUE.includes(value)) return true;
  if (FALSE.includes(value)) return false;
  throw new ConfigError(['SANDBOX_RESET must be true or false']);
}

/** The real-provider variables set alongside SANDBOX=true (each one is a reason not to start). */
export function sandboxConflicts(env: NodeJS.ProcessEnv): string[] {
  const set = PROVIDER_VARIABLES.filter((name) => (env[name] ?? '').trim() !== '');
  const web = TRUE.includes((env.WHATSAPP_WEB_ENABLED ?? '').trim().toLowerCase());
  return [...set, ...(web ? ['WHATSAPP_WEB_ENABLED'] : [])];
}

/**
 * The variables sandbox mode lays over the environment: the fixed sandbox credentials and the
 * emulators' URLs (`rapport doctor` passes placeholders: it only needs the channels to be on).
 */
export function sandboxOverrides(
  env: NodeJS.ProcessEnv,
  urls: { twilio: string; graph: string; slack: string },
): NodeJS.ProcessEnv {
  const { twilio: tw, meta, slack: sl } = SANDBOX_CREDENTIALS;
  const port = (env.PORT ?? '').trim() || '3000';
  return {
    // Twilio signatures are computed over PUBLIC_URL + path; the page signs with the same value.
    PUBLIC_URL: `http://localhost:${port}`,
    TWILIO_ACCOUNT_SID: tw.accountSid,
    TWILIO_AUTH_TOKEN: tw.authToken,
    TWILIO_SMS_FROM: tw.smsFrom,
    TWILIO_WHATSAPP_FROM: tw.whatsappFrom,
    TWILIO_API_BASE_URL: urls.twilio,
    META_APP_SECRET: meta.appSecret,
    META_VERIFY_TOKEN: meta.verifyToken,
    MESSENGER_PAGE_ACCESS_TOKEN: meta.pageAccessToken,
    WHATSAPP_CLOUD_ACCESS_TOKEN: meta.whatsappToken,
    WHATSAPP_CLOUD_PHONE_NUMBER_ID: meta.phoneNumberId,
    META_GRAPH_BASE_URL: urls.graph,
    SLACK_BOT_TOKEN: sl.botToken,
    SLACK_SIGNING_SECRET: sl.signingSecret,
    SLACK_API_URL: urls.slack,
    SLACK_ESCALATION_CHANNEL: sl.escalationChannel,
  };
}

/**
 * Starts the three emulators on loopback and returns the environment that points Rapport at them.
 * Throws ConfigError when real provider variables are also set.
 */
export async function startSandbox(env: NodeJS.ProcessEnv = process.env): Promise<Sandbox> {
  const conflicts = sandboxConflicts(env);
  if (conflicts.length > 0) {
    throw new ConfigError([
      `SANDBOX=true cannot be combined with real provider settings (${conflicts.join(', ')} ` +
        `${conflicts.length === 1 ? 'is' : 'are'} set): remove SANDBOX from .env to run for real, ` +
        'or unset those to try the sandbox',
    ]);
  }
  const { twilio: tw, meta, slack: sl } = SANDBOX_CREDENTIALS;
  const started: { close(): Promise<void> }[] = [];
  let emulators: SandboxEmulators;
  // Bound to MongoDB by `open`; nothing reaches the emulators before it.
  let store: SandboxStore | undefined;
  const journal: EmulatorJournal = {
    write: (kind, id, doc) => store?.write(kind, id, doc) ?? Promise.resolve(),
    remove: (kind, id) => store?.remove(kind, id) ?? Promise.resolve(),
  };
  try {
    const slack = await startSlackEmulator({ token: sl.botToken, journal });
    started.push(slack);
    const twilio = await startTwilioEmulator({
      accountSid: tw.accountSid,
      authToken: tw.authToken,
      journal,
    });
    started.push(twilio);
    const graph = await startGraphEmulator({
      whatsappToken: meta.whatsappToken,
      pageToken: meta.pageAccessToken,
      phoneNumberId: meta.phoneNumberId,
      pageId: meta.pageId,
      appSecret: meta.appSecret,
      journal,
    });
    started.push(graph);
    emulators = { slack, twilio, graph };
  } catch (err) {
    await Promise.allSettled(started.map((e) => e.close()));
    throw err;
  }

  const overrides = sandboxOverrides(env, {
    twilio: emulators.twilio.url,
    graph: emulators.graph.url,
    slack: emulators.slack.url,
  });

  let server: Server | undefined;
  let closing: Promise<void> | undefined;
  return {
    env: overrides,
    emulators,
    async open(config, options = {}) {
      let reset: Awaited<ReturnType<typeof resetSandboxData>> | undefined;
      if (options.reset) reset = await resetSandboxData(config);
      const log = createLogger({ level: config.logLevel }).child({ component: 'sandbox' });
      store = await openSandboxStore({ mongodbUri: config.mongodbUri, log });
      for (const emulator of [emulators.slack, emulators.twilio, emulators.graph])
        emulator.restore(store.records);
      if (reset)
        return `sandbox started clean on purpose (reset): dropped database "${reset.database}" and ${reset.redisKeys} Redis keys`;
      return store.records.length > 0
        ? `sandbox restored ${store.records.length} records (emulated Slack, phones, page) from MongoDB; npm start -- --reset starts clean`
        : 'sandbox is empty: press "Seed demo data" on the page to begin';
    },
    async serve(app, options = {}) {
      const front = express();
      front.disable('x-powered-by');
      front.use(
        sandboxRoutes({
          emulators,
          config: app.config,
          log: app.log.child({ component: 'sandbox' }),
          journal,
          records: store?.records ?? [],
        }),
      );
      front.use(app.http);
      const host = options.host ?? (env.SANDBOX_HOST?.trim() || '127.0.0.1');
      server = front.listen(options.port ?? app.config.port, host);
      await once(server, 'listening');
      return (server.address() as AddressInfo).port;
    },
    close() {
      closing ??= (async () => {
        if (server) {
          const closed = new Promise<void>((resolve) => server!.close(() => resolve()));
          server.closeAllConnections();
          await closed;
        }
        await Promise.allSettled([
          emulators.slack.close(),
          emulators.twilio.close(),
          emulators.graph.close(),
        ]);
        await store?.close().catch(() => undefined);
      })();
      return closing;
    },
  };
}

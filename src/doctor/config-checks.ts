/**
 * Pure checks of the configuration: the environment parsed with the app's own `loadConfig`, each
 * ConfigError problem turned into a failed check with a fix, the channel states (`channelStates`),
 * and the shape of PUBLIC_URL. Nothing here does I/O.
 */
import { ConfigError, channelStates, loadConfig, type Config } from '../config';
import type { ChannelState, DoctorCheck } from './types';
import { messageOf } from './types';

/** Where each credential comes from, for fix lines. */
export const VARIABLE_HINTS: Record<string, string> = {
  ADMIN_TOKEN: 'any random string of 16+ characters, e.g. `openssl rand -hex 24`',
  TWILIO_ACCOUNT_SID: 'Twilio Console → Account Info → Account SID (AC…)',
  TWILIO_AUTH_TOKEN: 'Twilio Console → Account Info → Auth Token (the primary one)',
  META_APP_SECRET: 'Meta App Dashboard → App settings → Basic → App secret',
  META_VERIFY_TOKEN:
    'a string you choose; type the same one as "Verify token" in the app\'s Webhooks settings',
  MESSENGER_PAGE_ACCESS_TOKEN:
    'App Dashboard → Messenger → Messenger API Settings → Generate token for the Page',
  WHATSAPP_CLOUD_ACCESS_TOKEN:
    'Business Settings → System users → Generate new token (whatsapp_business_messaging)',
  WHATSAPP_CLOUD_PHONE_NUMBER_ID: 'App Dashboard → WhatsApp → API Setup → Phone number ID',
  SLACK_BOT_TOKEN: 'api.slack.com/apps → your app → Install App → Bot User OAuth Token (xoxb-…)',
  SLACK_SIGNING_SECRET:
    'api.slack.com/apps → your app → Basic Information → App Credentials → Signing Secret',
};

const GROUP_PROBLEM =
  /^(.+?) (?:is|are) required for (.+?) \(because (.+?) (?:is|are) set\); set (?:it|them) or unset the others to disable .+$/;

function hintsFor(names: string[]): string {
  const hints = names.filter((n) => VARIABLE_HINTS[n]).map((n) => `${n}: ${VARIABLE_HINTS[n]}`);
  return hints.length > 0 ? ` (${hints.join('; ')})` : '';
}

/** One ConfigError problem → detail and fix. */
export function problemCheck(problem: string, index: number): DoctorCheck {
  const group = GROUP_PROBLEM.exec(problem);
  if (group) {
    const [, missing, label, present] = group as unknown as [string, string, string, string];
    const names = missing.split(', ');
    return {
      id: `config.problem.${index + 1}`,
      section: 'config',
      status: 'fail',
      title: 'Configuration',
      detail: `${missing} ${names.length === 1 ? 'is' : 'are'} missing for ${label} (${present} ${present.includes(',') ? 'are' : 'is'} set)`,
      fix: `Set ${missing}${hintsFor(names)}, or unset ${present} to disable ${label}.`,
    };
  }
  const name = /^([A-Z][A-Z0-9_]*)/.exec(problem)?.[1];
  const required = name !== undefined && problem === `${name} is required`;
  return {
    id: `config.problem.${index + 1}`,
    section: 'config',
    status: 'fail',
    title: 'Configuration',
    detail: problem,
    fix: required
      ? `Set ${name}${hintsFor([name])} in the environment or .env (see .env.example).`
      : `Correct ${name ?? 'the setting'} in the environment or .env (see .env.example), then run \`rapport doctor\` again.`,
  };
}

export interface ConfigCheckResult {
  /** The parsed configuration, when it is valid. */
  config?: Readonly<Config>;
  checks: DoctorCheck[];
  channels: ChannelState[];
}

/** Parses `env` the way the app does and reports every problem as a failed check. */
export function checkConfiguration(env: NodeJS.ProcessEnv): ConfigCheckResult {
  let config: Readonly<Config>;
  try {
    config = loadConfig(env);
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems : [messageOf(err)];
    return { checks: problems.map(problemCheck), channels: [] };
  }
  const channels = Object.entries(channelStates(config)).map(([channel, s]) => ({
    channel,
    enabled: s.enabled,
    ...(s.reason !== undefined ? { reason: s.reason } : {}),
  }));
  const enabled = channels.filter((c) => c.enabled).length;
  const checks: DoctorCheck[] = [
    {
      id: 'config.valid',
      section: 'config',
      status: 'ok',
      title: 'Configuration',
      detail: `valid; ${enabled} of ${channels.length} channels enabled`,
    },
  ];
  if (enabled === 0) {
    checks.push({
      id: 'config.channels',
      section: 'config',
      status: 'warn',
      title: 'Channels',
      detail: 'no customer channel is enabled: Rapport will receive nothing',
      fix: 'Set the credentials of at least one channel (docs/README.md lists the setup guides).',
    });
  } else if (!config.slack) {
    checks.push({
      id: 'config.slack',
      section: 'config',
      status: 'warn',
      title: 'Slack',
      detail: "Slack is not configured: customers' messages have nowhere to go",
      fix: `Set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (docs/setup-slack.md).`,
    });
  }
  if (config.twilio?.smsFrom && !config.claims.businessName) {
    checks.push({
      id: 'config.business_name',
      section: 'config',
      status: 'warn',
      title: 'Business name',
      detail: 'BUSINESS_NAME is not set: claim codes texted to customers cannot say who sent them',
      fix: 'Set BUSINESS_NAME to the name customers know you by (README "Claims").',
    });
  }
  return { config, checks, channels };
}

/** PUBLIC_URL set and https (pure); reachability is checked separately. */
export function checkPublicUrlShape(publicUrlVar: string | undefined, config: Readonly<Config>): DoctorCheck {
  const base = { id: 'public-url.https', section: 'public-url' as const, title: 'PUBLIC_URL' };
  if (publicUrlVar === undefined || publicUrlVar.trim() === '') {
    return {
      ...base,
      status: 'warn',
      detail: `not set; webhook URLs would be ${config.publicUrl}, which no provider can reach`,
      fix: 'Set PUBLIC_URL to the https origin the providers call, e.g. https://rapport.example.com.',
    };
  }
  if (new URL(config.publicUrl).protocol !== 'https:') {
    return {
      ...base,
      status: 'warn',
      detail: `${config.publicUrl} is http: Meta refuses non-https callbacks and Slack requires https`,
      fix: 'Serve Rapport behind TLS (a reverse proxy or a tunnel) and set PUBLIC_URL to its https:// origin.',
    };
  }
  return { ...base, status: 'ok', detail: `${config.publicUrl} (https)` };
}

/**
 * Configuration: every environment variable Rapport reads, parsed once with zod into a frozen,
 * typed object. All problems are collected and reported together so an operator fixes them in one
 * go. A channel whose credentials are all absent is disabled (and /readyz says so); a channel with
 * only some of them is a configuration error, because that is almost always a typo.
 */
import { isSupportedCountry, type CountryCode } from 'libphonenumber-js';
import { z } from 'zod';
import { parseBusinessHours, type BusinessHours } from './router/business-hours';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const optionalString = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .optional();

const url = (protocols: string[]) =>
  z
    .string()
    .trim()
    .refine(
      (v) => {
        try {
          return protocols.includes(new URL(v).protocol);
        } catch {
          return false;
        }
      },
      `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
    );

const optionalUrl = (protocols: string[]) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), url(protocols).optional());

const intFromEnv = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .refine((n) => n >= min && n <= max, `must be between ${min} and ${max}`);

const boolFromEnv = z
  .string()
  .trim()
  .toLowerCase()
  .refine((v) => ['true', 'false', '1', '0', 'yes', 'no', ''].includes(v), 'must be true or false')
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** A duration like `90s`, `15m`, `2h`, `500ms` (or plain milliseconds), in milliseconds. */
const duration = z
  .string()
  .trim()
  .regex(/^\d+(ms|s|m|h|d)?$/, 'must be a duration like 90s, 15m, 2h or 500ms')
  .transform((v) => {
    const [, n, unit] = /^(\d+)(ms|s|m|h|d)?$/.exec(v)!;
    const factor = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit ?? 'ms'] ?? 1;
    return Number(n) * factor;
  });

const envSchema = z.object({
  PORT: intFromEnv(0, 65535).default(3000),
  PUBLIC_URL: optionalUrl(['http:', 'https:']),
  // One URL, or a Redis Cluster as a comma-separated list of seed nodes (see src/queue/connection.ts).
  REDIS_URL: z
    .string()
    .trim()
    .refine(
      (v) =>
        v.split(',').every((part) => {
          try {
            return ['redis:', 'rediss:'].includes(new URL(part.trim()).protocol);
          } catch {
            return false;
          }
        }),
      'must be a redis:// or rediss:// URL, or a comma-separated list of them (Redis Cluster nodes)',
    )
    .default('redis://127.0.0.1:6379'),
  // Not `new URL()`: a replica set's URI lists several host:port pairs, which WHATWG URLs reject.
  MONGODB_URI: z
    .string()
    .trim()
    .refine(
      (v) =>
        /^mongodb(\+srv)?:\/\/([^@/]+@)?[A-Za-z0-9._[\]:-]+(:\d+)?(,[A-Za-z0-9._[\]:-]+(:\d+)?)*(\/[^?]*)?(\?.*)?$/.test(
          v,
        ),
      'must be a URL starting with mongodb:// or mongodb+srv://',
    )
    .default('mongodb://127.0.0.1:27017/rapport'),
  QUEUE_PREFIX: z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9_{}.-]+$/, 'may only contain letters, digits, _ . - { }')
    .default('rapport'),
  ADMIN_TOKEN: z.string({ error: 'is required' }).min(16, 'must be at least 16 characters'),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  DEFAULT_REGION: z
    .string()
    .trim()
    .toUpperCase()
    .refine((v) => isSupportedCountry(v), 'must be an ISO 3166 country code, e.g. US or GB')
    .default('US'),
  WEBHOOK_MAX_BYTES: intFromEnv(1024, 50 * 1024 * 1024).default(3 * 1024 * 1024),
  SHUTDOWN_TIMEOUT_MS: intFromEnv(100, 600_000).default(25_000),

  TWILIO_ACCOUNT_SID: optionalString.pipe(
    z
      .string()
      .regex(/^AC[0-9a-fA-F]{32}$/, 'must be AC followed by 32 hex characters')
      .optional(),
  ),
  TWILIO_AUTH_TOKEN: optionalString,
  TWILIO_SMS_FROM: optionalString,
  TWILIO_WHATSAPP_FROM: optionalString,
  TWILIO_API_BASE_URL: optionalUrl(['http:', 'https:']),

  META_APP_SECRET: optionalString,
  META_VERIFY_TOKEN: optionalString,
  MESSENGER_PAGE_ACCESS_TOKEN: optionalString,
  WHATSAPP_CLOUD_ACCESS_TOKEN: optionalString,
  WHATSAPP_CLOUD_PHONE_NUMBER_ID: optionalString,
  META_GRAPH_BASE_URL: optionalUrl(['http:', 'https:']),
  META_GRAPH_VERSION: z
    .string()
    .trim()
    .regex(/^v\d+\.\d+$/, 'must look like v21.0')
    .default('v21.0'),

  SLACK_BOT_TOKEN: optionalString,
  SLACK_SIGNING_SECRET: optionalString,
  SLACK_API_URL: optionalUrl(['http:', 'https:']),
  SLACK_ESCALATION_CHANNEL: optionalString,

  INBOUND_PARTITIONS: intFromEnv(1, 256).default(8),
  SLA_FIRST_RESPONSE: duration.default(15 * 60_000),
  SLA_ESCALATE: duration.default(60 * 60_000),
  BUSINESS_HOURS: optionalString,
  BUSINESS_TIMEZONE: z.string().trim().default('UTC'),
  ACK_QUIET_PERIOD: duration.default(12 * 3600_000),
  ACK_TEXT: z.string().default('Thanks for your message! {agent} will reply here.'),
  ACK_AWAY_TEXT: z
    .string()
    .default('Thanks for your message! {agent} is away until {back}; {cover} can help you in the meantime.'),
  ACK_CLOSED_TEXT: z
    .string()
    .default("Thanks for your message! We're closed right now; {agent} will reply {opening}."),
  HANDOFF_TEXT: z.string().default('{agent} will take care of you from now on and will reply here.'),
  REPLY_UNDO_SECONDS: intFromEnv(0, 300).default(10),
  WHATSAPP_TEMPLATE_CONTENT_SID: optionalString,
  WHATSAPP_CLOUD_TEMPLATE: optionalString,
  WHATSAPP_CLOUD_TEMPLATE_LANGUAGE: z.string().trim().default('en'),
  MESSENGER_HUMAN_AGENT: boolFromEnv.default(false),
  /**
   * Words that opt a customer out on WhatsApp and Messenger, comma-separated; the whole message must
   * be one of them. SMS keeps the carriers' list (STOP, CANCEL, END, QUIT, …).
   */
  CHAT_OPT_OUT_WORDS: z
    .string()
    .default('STOP,UNSUBSCRIBE')
    .transform((v) =>
      v
        .split(',')
        .map((w) => w.trim().toUpperCase())
        .filter(Boolean),
    )
    .refine((words) => words.length > 0, 'at least one word (e.g. STOP)')
    .refine((words) => words.every((w) => /^[\p{L}\p{N}]+$/u.test(w)), 'single words only, comma-separated'),
  WHATSAPP_WEB_ENABLED: boolFromEnv.default(false),
  CHROMIUM_PATH: z.string().trim().default('/usr/bin/chromium'),
  /** Message bodies older than this many days are blanked by the retention job; 0 = keep forever. */
  MESSAGE_RETENTION_DAYS: intFromEnv(0, 36_500).default(0),
});

type Env = z.output<typeof envSchema>;

export interface TwilioConfig {
  accountSid: string;
  authToken: string;
  smsFrom?: string;
  whatsappFrom?: string;
  apiBaseUrl?: string;
}
export interface MetaWebhookConfig {
  appSecret: string;
  verifyToken: string;
}
export interface MessengerConfig {
  pageAccessToken: string;
}
export interface WhatsAppCloudConfig {
  accessToken: string;
  phoneNumberId: string;
}
export interface SlackConfig {
  botToken: string;
  signingSecret: string;
  apiUrl?: string;
  escalationChannel?: string;
}

export interface Config {
  port: number;
  /** Externally visible base URL (no trailing slash); used to check Twilio signatures behind proxies. */
  publicUrl: string;
  redisUrl: string;
  mongodbUri: string;
  /** Prefix of every BullMQ key; wrap it in `{}` for Redis Cluster hash tags. */
  queuePrefix: string;
  adminToken: string;
  logLevel: (typeof LOG_LEVELS)[number];
  defaultRegion: CountryCode;
  webhookMaxBytes: number;
  shutdownTimeoutMs: number;
  graph: { baseUrl?: string; version: string };
  twilio?: TwilioConfig;
  meta?: MetaWebhookConfig;
  messenger?: MessengerConfig;
  whatsappCloud?: WhatsAppCloudConfig;
  slack?: SlackConfig;
  whatsappWeb: { enabled: boolean; chromiumPath: string };
  inboundPartitions: number;
  router: RouterConfig;
  /** MESSAGE_RETENTION_DAYS; `messageDays` absent = keep message bodies forever. */
  retention: { messageDays?: number };
}

export interface RouterConfig {
  slaFirstResponseMs: number;
  slaEscalateMs: number;
  businessHours: BusinessHours;
  ackQuietPeriodMs: number;
  texts: { ack: string; ackAway: string; ackClosed: string; handoff: string };
  replyUndoMs: number;
  whatsappTemplate: { twilioContentSid?: string; cloudName?: string; cloudLanguage: string };
  messengerHumanAgent: boolean;
  /** CHAT_OPT_OUT_WORDS: what opts out on WhatsApp and Messenger (upper case). */
  chatOptOutWords: string[];
}

/** Names the channel, its present and its missing variables; reports a partial set as a problem. */
function group<T>(
  problems: string[],
  label: string,
  vars: Record<string, string | undefined>,
  required: string[],
  build: () => T,
): T | undefined {
  const present = Object.keys(vars).filter((k) => vars[k] !== undefined);
  if (present.length === 0) return undefined;
  const missing = required.filter((k) => vars[k] === undefined);
  if (missing.length > 0) {
    problems.push(
      `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} required for ${label} ` +
        `(because ${present.join(', ')} ${present.length === 1 ? 'is' : 'are'} set); set ${missing.length === 1 ? 'it' : 'them'} or unset the others to disable ${label}`,
    );
    return undefined;
  }
  return build();
}

function crossCheck(env: Env, problems: string[]): Config {
  const twilio = group(
    problems,
    'Twilio',
    {
      TWILIO_ACCOUNT_SID: env.TWILIO_ACCOUNT_SID,
      TWILIO_AUTH_TOKEN: env.TWILIO_AUTH_TOKEN,
      TWILIO_SMS_FROM: env.TWILIO_SMS_FROM,
      TWILIO_WHATSAPP_FROM: env.TWILIO_WHATSAPP_FROM,
    },
    ['TWILIO_ACCOUNT_SID', 'TWILIO_AUTH_TOKEN'],
    () => ({
      accountSid: env.TWILIO_ACCOUNT_SID!,
      authToken: env.TWILIO_AUTH_TOKEN!,
      smsFrom: env.TWILIO_SMS_FROM,
      whatsappFrom: env.TWILIO_WHATSAPP_FROM,
      apiBaseUrl: env.TWILIO_API_BASE_URL,
    }),
  );
  const meta = group(
    problems,
    'Meta webhooks (Messenger / WhatsApp Cloud)',
    {
      META_APP_SECRET: env.META_APP_SECRET,
      META_VERIFY_TOKEN: env.META_VERIFY_TOKEN,
      MESSENGER_PAGE_ACCESS_TOKEN: env.MESSENGER_PAGE_ACCESS_TOKEN,
      WHATSAPP_CLOUD_ACCESS_TOKEN: env.WHATSAPP_CLOUD_ACCESS_TOKEN,
      WHATSAPP_CLOUD_PHONE_NUMBER_ID: env.WHATSAPP_CLOUD_PHONE_NUMBER_ID,
    },
    ['META_APP_SECRET', 'META_VERIFY_TOKEN'],
    () => ({ appSecret: env.META_APP_SECRET!, verifyToken: env.META_VERIFY_TOKEN! }),
  );
  const messenger = meta
    ? group(
        problems,
        'Messenger',
        { MESSENGER_PAGE_ACCESS_TOKEN: env.MESSENGER_PAGE_ACCESS_TOKEN },
        ['MESSENGER_PAGE_ACCESS_TOKEN'],
        () => ({ pageAccessToken: env.MESSENGER_PAGE_ACCESS_TOKEN! }),
      )
    : undefined;
  const whatsappCloud = meta
    ? group(
        problems,
        'WhatsApp Cloud',
        {
          WHATSAPP_CLOUD_ACCESS_TOKEN: env.WHATSAPP_CLOUD_ACCESS_TOKEN,
          WHATSAPP_CLOUD_PHONE_NUMBER_ID: env.WHATSAPP_CLOUD_PHONE_NUMBER_ID,
        },
        ['WHATSAPP_CLOUD_ACCESS_TOKEN', 'WHATSAPP_CLOUD_PHONE_NUMBER_ID'],
        () => ({
          accessToken: env.WHATSAPP_CLOUD_ACCESS_TOKEN!,
          phoneNumberId: env.WHATSAPP_CLOUD_PHONE_NUMBER_ID!,
        }),
      )
    : undefined;
  const slack = group(
    problems,
    'Slack',
    { SLACK_BOT_TOKEN: env.SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET: env.SLACK_SIGNING_SECRET },
    ['SLACK_BOT_TOKEN', 'SLACK_SIGNING_SECRET'],
    () => ({
      botToken: env.SLACK_BOT_TOKEN!,
      signingSecret: env.SLACK_SIGNING_SECRET!,
      apiUrl: env.SLACK_API_URL,
      escalationChannel: env.SLACK_ESCALATION_CHANNEL,
    }),
  );

  let businessHours: BusinessHours = parseBusinessHours(undefined, undefined);
  try {
    businessHours = parseBusinessHours(env.BUSINESS_HOURS, env.BUSINESS_TIMEZONE);
  } catch (err) {
    problems.push(`BUSINESS_HOURS/BUSINESS_TIMEZONE: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (env.SLA_ESCALATE <= env.SLA_FIRST_RESPONSE) {
    problems.push('SLA_ESCALATE must be longer than SLA_FIRST_RESPONSE');
  }

  return {
    port: env.PORT,
    publicUrl: (env.PUBLIC_URL ?? `http://localhost:${env.PORT}`).replace(/\/+$/, ''),
    redisUrl: env.REDIS_URL,
    mongodbUri: env.MONGODB_URI,
    queuePrefix: env.QUEUE_PREFIX,
    adminToken: env.ADMIN_TOKEN,
    logLevel: env.LOG_LEVEL,
    defaultRegion: env.DEFAULT_REGION as CountryCode,
    webhookMaxBytes: env.WEBHOOK_MAX_BYTES,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    graph: { baseUrl: env.META_GRAPH_BASE_URL, version: env.META_GRAPH_VERSION },
    twilio,
    meta,
    messenger,
    whatsappCloud,
    slack,
    whatsappWeb: { enabled: env.WHATSAPP_WEB_ENABLED, chromiumPath: env.CHROMIUM_PATH },
    inboundPartitions: env.INBOUND_PARTITIONS,
    retention: env.MESSAGE_RETENTION_DAYS > 0 ? { messageDays: env.MESSAGE_RETENTION_DAYS } : {},
    router: {
      slaFirstResponseMs: env.SLA_FIRST_RESPONSE,
      slaEscalateMs: env.SLA_ESCALATE,
      businessHours,
      ackQuietPeriodMs: env.ACK_QUIET_PERIOD,
      texts: {
        ack: env.ACK_TEXT,
        ackAway: env.ACK_AWAY_TEXT,
        ackClosed: env.ACK_CLOSED_TEXT,
        handoff: env.HANDOFF_TEXT,
      },
      replyUndoMs: env.REPLY_UNDO_SECONDS * 1000,
      whatsappTemplate: {
        twilioContentSid: env.WHATSAPP_TEMPLATE_CONTENT_SID,
        cloudName: env.WHATSAPP_CLOUD_TEMPLATE,
        cloudLanguage: env.WHATSAPP_CLOUD_TEMPLATE_LANGUAGE,
      },
      messengerHumanAgent: env.MESSENGER_HUMAN_AGENT,
      chatOptOutWords: env.CHAT_OPT_OUT_WORDS,
    },
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Parses the environment; throws ConfigError naming every problem at once. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  // An empty variable (`FOO=` in a .env file) means "not set".
  const source = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== ''),
  );
  const parsed = envSchema.safeParse(source);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = issue.path.join('.');
      const value = source[name];
      const message = value === undefined && issue.code === 'invalid_type' ? 'is required' : issue.message;
      return `${name} ${message}`;
    });
    throw new ConfigError(problems);
  }
  const problems: string[] = [];
  const config = crossCheck(parsed.data, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(config);
}

/** Which channels are on, and why the others are off; reported by /readyz and at start. */
export function channelStates(config: Config): Record<string, { enabled: boolean; reason?: string }> {
  const off = (reason: string) => ({ enabled: false, reason });
  const on = { enabled: true };
  return {
    sms: config.twilio?.smsFrom
      ? on
      : off(config.twilio ? 'TWILIO_SMS_FROM not set' : 'Twilio credentials not set'),
    'twilio-whatsapp': config.twilio?.whatsappFrom
      ? on
      : off(config.twilio ? 'TWILIO_WHATSAPP_FROM not set' : 'Twilio credentials not set'),
    'whatsapp-cloud': config.whatsappCloud ? on : off('WhatsApp Cloud credentials not set'),
    messenger: config.messenger ? on : off('Messenger credentials not set'),
    'whatsapp-web': config.whatsappWeb.enabled ? on : off('WHATSAPP_WEB_ENABLED is false'),
    slack: config.slack ? on : off('Slack credentials not set'),
  };
}

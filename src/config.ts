/**
 * Configuration: every environment variable Rapport reads, parsed once with zod into a frozen,
 * typed object. All problems are collected and reported together so an operator fixes them in one
 * go. A channel whose credentials are all absent is disabled (and /readyz says so); a channel with
 * only some of them is a configuration error, because that is almost always a typo.
 */
import { createHmac } from 'node:crypto';
import { isIP } from 'node:net';
import { isSupportedCountry, type CountryCode } from 'libphonenumber-js';
import { z } from 'zod';
import { parseBusinessHours, type BusinessHours } from './router/business-hours';
import { DEFAULT_CLAIM_LIMITS, type ClaimLimitsConfig } from './identity/claim-limits';

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
  // At least one of ADMIN_TOKEN / ADMIN_TOKENS (checked in crossCheck).
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  ADMIN_TOKENS: optionalString,
  TRUST_PROXY: optionalString,
  DATA_KEY: z.string().trim().min(32, 'must be at least 32 characters').optional(),
  DATA_KEY_PREVIOUS: optionalString,
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
  // The business as customers know it: named in claim codes (and anything else sent unprompted).
  // Plain text only: it goes into SMS bodies and Slack notes.
  BUSINESS_NAME: optionalString.pipe(
    z
      .string()
      .max(40, 'must be at most 40 characters')
      .refine((v) => !/[<>\p{Cc}]/u.test(v), 'must be plain text (no < > or control characters)')
      .refine((v) => !/:\/\/|www\./i.test(v), 'must be a name, not a link')
      .optional(),
  ),
  // Claim codes (src/identity/claim-limits.ts): limits shared by every process through Redis.
  CLAIM_CODES_PER_SENDER_HOUR: intFromEnv(1, 100).default(DEFAULT_CLAIM_LIMITS.perSenderHour),
  CLAIM_CODES_PER_TARGET_DAY: intFromEnv(1, 100).default(DEFAULT_CLAIM_LIMITS.perTargetDay),
  CLAIM_CODES_PER_HOUR: intFromEnv(1, 100_000).default(DEFAULT_CLAIM_LIMITS.perHour),
  CLAIM_CODES_PER_DAY: intFromEnv(1, 1_000_000).default(DEFAULT_CLAIM_LIMITS.perDay),
  CLAIM_ATTEMPTS_PER_TARGET_DAY: intFromEnv(1, 100).default(DEFAULT_CLAIM_LIMITS.attemptsPerTargetDay),
  /** Message bodies older than this many days are blanked by the retention job; 0 = keep forever. */
  MESSAGE_RETENTION_DAYS: intFromEnv(0, 36_500).default(0),
  /** Largest file kept (inbound) or sent (outbound); default 100 MiB, WhatsApp's document limit. */
  MEDIA_MAX_BYTES: intFromEnv(1024, 2 * 1024 * 1024 * 1024).default(100 * 1024 * 1024),
  /** Files older than this many days are deleted; default MESSAGE_RETENTION_DAYS; 0 = keep. */
  MEDIA_RETENTION_DAYS: z.preprocess(
    (v) => (typeof v === 'string' && v.trim() === '' ? undefined : v),
    intFromEnv(0, 36_500).optional(),
  ),
  /** How long a signed media URL (`GET /media/…`, for Twilio MediaUrl) stays valid. */
  MEDIA_URL_TTL_SECONDS: intFromEnv(60, 86_400).default(900),
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
  /** Every admin token with its name (ADMIN_TOKEN is named `admin`); the audit log's actor is the name. */
  adminTokens: readonly AdminTokenConfig[];
  /** The token in-process callers (the sandbox) present: ADMIN_TOKEN, else the first of ADMIN_TOKENS. */
  adminToken: string;
  /** TRUST_PROXY: express's `trust proxy` (false = the TCP peer is the client). */
  trustProxy: TrustProxy;
  /** DATA_KEY: keys the erased customers' opt-out markers and the hashed ids in logs. Erase needs it. */
  dataKey?: string;
  /** DATA_KEY_PREVIOUS: earlier DATA_KEYs, still read (see docs/privacy.md, rotation). */
  previousDataKeys: readonly string[];
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
  /** Customer claims (src/router/claims-bridge.ts): BUSINESS_NAME and the CLAIM_* limits. */
  claims: ClaimsConfig;
  media: MediaConfig;
}

export interface MediaConfig {
  /** MEDIA_MAX_BYTES */
  maxBytes: number;
  /** MEDIA_RETENTION_DAYS (default MESSAGE_RETENTION_DAYS); absent = keep files forever. */
  retentionDays?: number;
  /** MEDIA_URL_TTL_SECONDS, in ms. */
  urlTtlMs: number;
  /** Key of the signed media URLs, derived from DATA_KEY, else the first admin token (no extra secret). */
  urlSecret: string;
}

export interface ClaimsConfig {
  /** BUSINESS_NAME: named in every claim code; absent = the code says "us". */
  businessName?: string;
  limits: ClaimLimitsConfig;
}

export interface AdminTokenConfig {
  name: string;
  token: string;
}

/** `false` (trust no proxy), a hop count, or the addresses/CIDRs of trusted proxies. */
export type TrustProxy = false | number | string[];

const ADMIN_TOKEN_REQUIRED =
  'ADMIN_TOKEN is required (or ADMIN_TOKENS, named tokens: ADMIN_TOKENS=alice:<openssl rand -hex 24>,bob:<…>)';
const TOKEN_NAME = /^[A-Za-z0-9_.@-]{1,64}$/;
const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** ADMIN_TOKEN (named `admin`) and ADMIN_TOKENS (`name:token,name:token`), each checked. */
export function parseAdminTokens(
  single: string | undefined,
  list: string | undefined,
  problems: string[],
): AdminTokenConfig[] {
  const tokens: AdminTokenConfig[] = single ? [{ name: 'admin', token: single }] : [];
  for (const [i, raw] of (list ?? '').split(',').entries()) {
    const entry = raw.trim();
    if (!entry) continue;
    const colon = entry.indexOf(':');
    const name = colon > 0 ? entry.slice(0, colon) : '';
    const token = colon > 0 ? entry.slice(colon + 1) : '';
    if (!TOKEN_NAME.test(name))
      problems.push(`ADMIN_TOKENS entry ${i + 1} must be name:token (name: letters, digits, _ . @ -)`);
    else if (token.length < 16)
      problems.push(`ADMIN_TOKENS token of "${name}" must be at least 16 characters`);
    else if (tokens.some((t) => t.name === name)) problems.push(`ADMIN_TOKENS names "${name}" twice`);
    else if (tokens.some((t) => t.token === token))
      problems.push(`ADMIN_TOKENS gives "${name}" a token already in use`);
    else tokens.push({ name, token });
  }
  if (tokens.length === 0 && problems.length === 0) problems.push(ADMIN_TOKEN_REQUIRED);
  return tokens;
}

/** TRUST_PROXY: unset/false/0 = trust nobody; a hop count; or a comma list of IPs/CIDRs (or loopback, linklocal, uniquelocal). */
export function parseTrustProxy(raw: string | undefined, problems: string[]): TrustProxy {
  const v = (raw ?? '').trim().toLowerCase();
  if (v === '' || v === 'false' || v === '0') return false;
  if (/^\d+$/.test(v)) {
    const hops = Number(v);
    if (hops <= 10) return hops;
    problems.push('TRUST_PROXY hop count must be between 0 and 10');
    return false;
  }
  const parts = v
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  const bad = parts.filter((p) => {
    if (PROXY_NAMES.has(p)) return false;
    const [addr, bits, extra] = p.split('/');
    const family = isIP(addr ?? '');
    if (family === 0 || extra !== undefined) return true;
    if (bits === undefined) return false;
    return !/^\d+$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128);
  });
  if (bad.length > 0 || parts.length === 0) {
    problems.push(
      `TRUST_PROXY must be a hop count (e.g. 1) or a comma-separated list of proxy addresses/CIDRs (e.g. 10.0.0.0/8,loopback); not ${bad.join(', ') || 'empty'}` +
        (v === 'true' ? ' ("true" would trust any client\'s X-Forwarded-For)' : ''),
    );
    return false;
  }
  return parts;
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
  const twilio = twilioConfig(env, problems);
  const { meta, messenger, whatsappCloud } = metaConfigs(env, problems);
  const slack = slackConfig(env, problems);
  const businessHours = businessHoursOf(env, problems);
  if (env.SLA_ESCALATE <= env.SLA_FIRST_RESPONSE) {
    problems.push('SLA_ESCALATE must be longer than SLA_FIRST_RESPONSE');
  }
  const adminTokens = parseAdminTokens(env.ADMIN_TOKEN, env.ADMIN_TOKENS, problems);
  const trustProxy = parseTrustProxy(env.TRUST_PROXY, problems);
  const previousDataKeys = previousDataKeysOf(env, problems);

  return {
    port: env.PORT,
    publicUrl: (env.PUBLIC_URL ?? `http://localhost:${env.PORT}`).replace(/\/+$/, ''),
    redisUrl: env.REDIS_URL,
    mongodbUri: env.MONGODB_URI,
    queuePrefix: env.QUEUE_PREFIX,
    adminTokens,
    adminToken: adminTokens[0]?.token ?? '',
    trustProxy,
    dataKey: env.DATA_KEY,
    previousDataKeys,
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
    media: mediaConfig(env, env.DATA_KEY ?? adminTokens[0]?.token ?? ''),
    claims: {
      businessName: env.BUSINESS_NAME,
      limits: {
        perSenderHour: env.CLAIM_CODES_PER_SENDER_HOUR,
        perTargetDay: env.CLAIM_CODES_PER_TARGET_DAY,
        perHour: env.CLAIM_CODES_PER_HOUR,
        perDay: env.CLAIM_CODES_PER_DAY,
        attemptsPerTargetDay: env.CLAIM_ATTEMPTS_PER_TARGET_DAY,
      },
    },
    router: routerConfig(env, businessHours),
  };
}

function twilioConfig(env: Env, problems: string[]): Config['twilio'] {
  return group(
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
}

/** The Meta webhook credentials, and Messenger and WhatsApp Cloud, which need them. */
function metaConfigs(env: Env, problems: string[]): Pick<Config, 'meta' | 'messenger' | 'whatsappCloud'> {
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
  if (!meta) return { meta, messenger: undefined, whatsappCloud: undefined };
  const messenger = group(
    problems,
    'Messenger',
    { MESSENGER_PAGE_ACCESS_TOKEN: env.MESSENGER_PAGE_ACCESS_TOKEN },
    ['MESSENGER_PAGE_ACCESS_TOKEN'],
    () => ({ pageAccessToken: env.MESSENGER_PAGE_ACCESS_TOKEN! }),
  );
  const whatsappCloud = group(
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
  );
  return { meta, messenger, whatsappCloud };
}

function slackConfig(env: Env, problems: string[]): Config['slack'] {
  return group(
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
}

/** BUSINESS_HOURS in BUSINESS_TIMEZONE; always open (and a problem reported) when they do not parse. */
function businessHoursOf(env: Env, problems: string[]): BusinessHours {
  try {
    return parseBusinessHours(env.BUSINESS_HOURS, env.BUSINESS_TIMEZONE);
  } catch (err) {
    problems.push(`BUSINESS_HOURS/BUSINESS_TIMEZONE: ${err instanceof Error ? err.message : String(err)}`);
    return parseBusinessHours(undefined, undefined);
  }
}

function previousDataKeysOf(env: Env, problems: string[]): string[] {
  const previousDataKeys = (env.DATA_KEY_PREVIOUS ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean);
  if (previousDataKeys.some((k) => k.length < 32))
    problems.push('DATA_KEY_PREVIOUS keys must be at least 32 characters each');
  if (previousDataKeys.length > 0 && !env.DATA_KEY)
    problems.push('DATA_KEY_PREVIOUS is set but DATA_KEY is not');
  return previousDataKeys;
}

function routerConfig(env: Env, businessHours: BusinessHours): Config['router'] {
  return {
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
    if (!source.ADMIN_TOKEN && !source.ADMIN_TOKENS) problems.push(ADMIN_TOKEN_REQUIRED);
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

function mediaConfig(env: Env, key: string): MediaConfig {
  const days = env.MEDIA_RETENTION_DAYS ?? env.MESSAGE_RETENTION_DAYS;
  return {
    maxBytes: env.MEDIA_MAX_BYTES,
    ...(days > 0 ? { retentionDays: days } : {}),
    urlTtlMs: env.MEDIA_URL_TTL_SECONDS * 1000,
    urlSecret: createHmac('sha256', key).update('rapport media url v1').digest('base64url'),
  };
}

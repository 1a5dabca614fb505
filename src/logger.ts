/**
 * One pino root per app. Components take `logger.child({ component })`. Customer data never reaches
 * the logs: tokens, signatures, authorization headers, phone numbers, addresses and message bodies
 * are redacted wherever they appear at the top level or one level down, so a stray
 * `log.info({ message })` cannot leak. Log ids (channel, message key, customer id, job id) instead.
 *
 * Some ids embed the person: whatsapp-web keys hold `<number>@c.us`, Cloud wamids are base64 of a
 * structure holding the number, Messenger PSIDs are the person's page-scoped id. An id field
 * (`ID_FIELDS`) whose value looks like one is logged as `<provider>:#<12 hex>`, a keyed hash
 * (HMAC-SHA256 under a key derived from DATA_KEY, or a per-process random key without it): equal
 * ids still correlate, the number cannot be read back. Error text (`err.message`, `err.stack` and
 * the `reason`/`error` fields) may quote provider answers ("The 'To' number +1… is not valid"): such
 * ids are hashed there too, and phone-like digit runs and e-mail addresses are replaced.
 */
import { createHmac, randomBytes } from 'node:crypto';
import pino, { type Logger } from 'pino';
import { prettyStream } from './log-pretty';

export type { Logger };

const SENSITIVE_FIELDS = [
  'authorization',
  'cookie',
  'token',
  'accessToken',
  'authToken',
  'adminToken',
  'botToken',
  'appSecret',
  'signingSecret',
  'verifyToken',
  'pageAccessToken',
  'signature',
  '"x-twilio-signature"',
  '"x-hub-signature-256"',
  '"x-slack-signature"',
  'phone',
  'e164',
  'from',
  'to',
  'From',
  'To',
  'WaId',
  'wa_id',
  'psid',
  'text',
  'body',
  'Body',
  'rawBody',
  'caption',
  'profileName',
  'ProfileName',
  'displayName',
  'firstName',
  'lastName',
  'email',
  'url',
  'uri',
];

/** Paths for pino's `redact`: each field at the top level, one level down, and inside req headers. */
export const REDACT_PATHS = [
  ...SENSITIVE_FIELDS,
  ...SENSITIVE_FIELDS.map((f) => `*.${f}`),
  ...SENSITIVE_FIELDS.map((f) => `*.*.${f}`),
];

export interface LoggerOptions {
  level: string;
  /**
   * Where lines go. Default: stdout, as JSON when it is a file or a pipe (collectors), as readable
   * lines (log-pretty.ts) when it is a terminal. Tests pass a stream to inspect what was logged.
   */
  destination?: pino.DestinationStream;
  /** DATA_KEY: keys the hashes of person-bearing ids, so they correlate across processes. @defaultValue a random per-process key */
  dataKey?: string;
}

function defaultDestination(): pino.DestinationStream | undefined {
  return process.stdout.isTTY ? prettyStream(process.stdout) : undefined;
}

/** Fields that hold ids; hashed when the id embeds a person (see module comment). */
const ID_FIELDS = new Set([
  'key',
  'messageKey',
  'messageId',
  'providerMessageId',
  'sendKey',
  'jobId',
  'replyTo',
  'wamid',
]);
/** Fields that hold error text. */
const TEXT_FIELDS = new Set(['reason', 'error', 'failedReason', 'detail', 'lastError']);

const PERSON_ID = /@[cg]\.us|@lid\b|wamid\.|(?:^|[:_|])\+?\d{7,}(?:$|[:_|@])/;
const EMBEDDED_ID = /(?:[\w.-]*\d{5,}@(?:c|g)\.us[\w~.-]*)|(?:wamid\.[A-Za-z0-9+/=_-]+)/g;
const PHONE_LIKE = /\+?\d[\d ().-]{5,}\d/g;
const EMAIL = /[\w.+-]+@[\w-]+(?:\.[\w-]+)+/g;

export interface IdHasher {
  /** `whatsapp-web:false_1415…@c.us_3EB0…` → `whatsapp-web:#3f9a0c1d2e4b`; other values unchanged. */
  id(value: string): string;
  /** Error text with embedded ids hashed, phone-like numbers and e-mails replaced. */
  text(value: string): string;
}

export function idHasher(dataKey?: string): IdHasher {
  const key = dataKey
    ? createHmac('sha256', dataKey).update('rapport/data-key/log-ids/v1').digest()
    : randomBytes(32);
  const hash = (v: string) => `#${createHmac('sha256', key).update(v).digest('hex').slice(0, 12)}`;
  return {
    id(value) {
      if (!PERSON_ID.test(value)) return value;
      const provider = /^([a-z][a-z-]*):/.exec(value)?.[1];
      return provider ? `${provider}:${hash(value)}` : hash(value);
    },
    text(value) {
      return value
        .replace(EMBEDDED_ID, (m) => hash(m))
        .replace(EMAIL, '[email]')
        .replace(PHONE_LIKE, (m) =>
          m.replace(/\D/g, '').length >= 7 && !/^\d{4}-\d\d-\d\d/.test(m) ? '[number]' : m,
        );
    },
  };
}

/** Hashes id fields and scrubs error-text fields, at the top level and one level down. */
function scrubFields(obj: Record<string, unknown>, h: IdHasher, depth = 0): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(obj)) {
    let next = v;
    if (typeof v === 'string' && ID_FIELDS.has(k)) next = h.id(v);
    else if (typeof v === 'string' && TEXT_FIELDS.has(k)) next = h.text(v);
    else if (depth === 0 && v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Error))
      next = scrubFields(v as Record<string, unknown>, h, 1);
    if (next !== v) (out ??= { ...obj })[k] = next;
  }
  return out ?? obj;
}

export function createLogger({ level, destination, dataKey }: LoggerOptions): Logger {
  const h = idHasher(dataKey);
  return pino(
    {
      level,
      base: { service: 'rapport' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { log: (obj) => scrubFields(obj, h) },
      serializers: {
        err: (err: Error) => {
          const s = pino.stdSerializers.err(err);
          return { ...s, message: h.text(s.message ?? ''), ...(s.stack ? { stack: h.text(s.stack) } : {}) };
        },
      },
    },
    destination ?? defaultDestination(),
  );
}

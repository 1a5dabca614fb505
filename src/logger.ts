/**
 * One pino root per app. Components take `logger.child({ component })`. Customer data never reaches
 * the logs: tokens, signatures, authorization headers, phone numbers, addresses and message bodies
 * are redacted wherever they appear at the top level or one level down, so a stray
 * `log.info({ message })` cannot leak. Log ids (channel, message key, customer id, job id) instead.
 */
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
}

function defaultDestination(): pino.DestinationStream | undefined {
  return process.stdout.isTTY ? prettyStream(process.stdout) : undefined;
}

export function createLogger({ level, destination }: LoggerOptions): Logger {
  return pino(
    {
      level,
      base: { service: 'rapport' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: pino.stdSerializers.err },
    },
    destination ?? defaultDestination(),
  );
}

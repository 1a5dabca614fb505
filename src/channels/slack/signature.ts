/**
 * Slack request signing (v0), for the Events API, slash commands and interactivity alike:
 * `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{X-Slack-Request-Timestamp}:{raw body}">`, keyed with
 * the app's signing secret. The check runs over the raw bytes received (form bodies and JSON alike);
 * re-encoding a parsed body would produce different bytes. A timestamp more than five minutes from
 * now is refused so a captured request cannot be replayed later.
 * https://docs.slack.dev/authentication/verifying-requests-from-slack
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { SignatureError } from '../../errors';

/** How far the request timestamp may be from our clock, either way. */
export const SLACK_SIGNATURE_MAX_AGE_MS = 5 * 60 * 1000;

const SIGNATURE_FORMAT = /^v0=([0-9a-f]{64})$/i;
const TIMESTAMP_FORMAT = /^\d{1,12}$/;

function hmac(signingSecret: string, timestamp: string, rawBody: Buffer | string): Buffer {
  return createHmac('sha256', signingSecret).update(`v0:${timestamp}:`).update(rawBody).digest();
}

/** A repeated header arrives as an array; that is not something Slack sends, so it counts as absent. */
function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return typeof value === 'string' && value.length > 0 ? value.trim() : undefined;
}

/**
 * Throws SignatureError: 401 when a header is missing or malformed, 403 when the timestamp is more
 * than five minutes off or the signature does not match.
 */
export function verifySlackSignature(
  signingSecret: string,
  headers: IncomingHttpHeaders,
  rawBody: Buffer,
  nowMs: number = Date.now(),
): void {
  // An empty key would let anyone sign; config never passes one, but a test or script might.
  if (signingSecret.length === 0) throw new Error('verifySlackSignature: signingSecret is empty');
  const timestamp = header(headers, 'x-slack-request-timestamp');
  const signature = header(headers, 'x-slack-signature');
  if (!timestamp || !signature) {
    throw new SignatureError('missing X-Slack-Request-Timestamp or X-Slack-Signature header', 401);
  }
  if (!TIMESTAMP_FORMAT.test(timestamp)) {
    throw new SignatureError('malformed X-Slack-Request-Timestamp header (expected Unix seconds)', 401);
  }
  const hex = SIGNATURE_FORMAT.exec(signature)?.[1];
  if (!hex) throw new SignatureError('malformed X-Slack-Signature header (expected v0=<64 hex digits>)', 401);

  if (Math.abs(nowMs - Number(timestamp) * 1000) > SLACK_SIGNATURE_MAX_AGE_MS) {
    throw new SignatureError('X-Slack-Request-Timestamp is more than 5 minutes from now', 403);
  }
  const received = Buffer.from(hex, 'hex');
  const expected = hmac(signingSecret, timestamp, rawBody);
  // timingSafeEqual throws on unequal lengths; the format check makes that impossible, the length
  // check keeps it so if the format ever changes.
  if (received.length !== expected.length || !timingSafeEqual(received, expected)) {
    throw new SignatureError('X-Slack-Signature does not match', 403);
  }
}

/**
 * The two headers Slack would send with these bytes (used by tests, the sandbox and load
 * generators). A string body is signed as its UTF-8 bytes.
 */
export function signSlackRequest(
  signingSecret: string,
  rawBody: string | Buffer,
  timestampSec: number = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const timestamp = String(Math.floor(timestampSec));
  return {
    'x-slack-request-timestamp': timestamp,
    'x-slack-signature': `v0=${hmac(signingSecret, timestamp, rawBody).toString('hex')}`,
  };
}

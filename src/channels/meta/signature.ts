/**
 * X-Hub-Signature-256: `sha256=<hex>`, the HMAC-SHA256 of the request body keyed with the Meta app
 * secret. Meta signs the bytes it sends (JSON with non-ASCII escaped as `\u00e4`), so the check runs
 * over the raw bytes received; re-serialising the parsed JSON would produce different bytes.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { SignatureError } from '../../errors';

const HEADER_FORMAT = /^sha256=([0-9a-f]{64})$/i;

function hmac(appSecret: string, rawBody: Buffer | string): Buffer {
  return createHmac('sha256', appSecret).update(rawBody).digest();
}

/** Throws SignatureError: 401 when the header is missing or malformed, 403 when it does not match. */
export function verifyMetaSignature(
  appSecret: string,
  header: string | string[] | undefined,
  rawBody: Buffer,
): void {
  if (typeof header !== 'string' || header.length === 0) {
    throw new SignatureError('missing X-Hub-Signature-256 header', 401);
  }
  const hex = HEADER_FORMAT.exec(header.trim())?.[1];
  if (!hex)
    throw new SignatureError('malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)', 401);
  const received = Buffer.from(hex, 'hex');
  const expected = hmac(appSecret, rawBody);
  // timingSafeEqual throws on unequal lengths; the format check makes that impossible, the length
  // check keeps it so if the format ever changes.
  if (received.length !== expected.length || !timingSafeEqual(received, expected)) {
    throw new SignatureError('X-Hub-Signature-256 does not match', 403);
  }
}

/**
 * The X-Hub-Signature-256 header value Meta would send for these bytes (used by tests, the sandbox
 * and load generators). A string is signed as its UTF-8 bytes.
 */
export function signMetaPayload(appSecret: string, rawBody: Buffer | string): string {
  return `sha256=${hmac(appSecret, rawBody).toString('hex')}`;
}

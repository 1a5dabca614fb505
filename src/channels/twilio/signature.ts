/**
 * X-Twilio-Signature: HMAC-SHA1 over the full URL plus the sorted POST parameters, keyed with the
 * auth token. Checked with twilio's own `validateRequest` (constant-time, tries the port variants
 * Twilio is inconsistent about). The URL is `PUBLIC_URL` + the path as received, so it works behind
 * TLS-terminating proxies where Express sees `http`.
 */
// The signature functions alone, not the package's index (which loads the REST client, JWT and TwiML).
import { getExpectedTwilioSignature, validateRequest } from 'twilio/lib/webhooks/webhooks';
import { SignatureError } from '../../errors';
import type { TwilioForm } from './wire';

export function verifyTwilioSignature(
  authToken: string,
  signature: string | string[] | undefined,
  url: string,
  params: TwilioForm,
): void {
  if (typeof signature !== 'string' || signature.length === 0) {
    throw new SignatureError('missing X-Twilio-Signature header', 401);
  }
  if (!validateRequest(authToken, signature, url, params)) {
    throw new SignatureError('X-Twilio-Signature does not match', 403);
  }
}

/** Computes the signature Twilio would send (used by tests, the sandbox and load generators). */
export function signTwilioRequest(authToken: string, url: string, params: TwilioForm): string {
  return getExpectedTwilioSignature(authToken, url, params);
}

/** Signs requests the way each provider does, with the test secrets. */
import type { TwilioForm } from '../../src/channels/twilio/wire';
import { SignatureError } from '../../src/errors';
import { twilioHeaders as signedTwilioHeaders } from '../../src/sandbox/wire-builders';
import { TEST_TWILIO } from './env';

export { formBody } from '../../src/sandbox/wire-builders';

export function twilioHeaders(
  url: string,
  form: TwilioForm,
  token = TEST_TWILIO.authToken,
): Record<string, string> {
  return signedTwilioHeaders(token, url, form);
}

/** The SignatureError `fn` throws; fails the test if it throws nothing or something else. */
export function signatureErrorOf(fn: () => void): SignatureError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SignatureError) return err;
    throw err;
  }
  throw new Error('expected a SignatureError');
}

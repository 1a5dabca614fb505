/** Signs requests the way each provider does, with the test secrets. */
import { signTwilioRequest } from '../../src/channels/twilio/signature';
import type { TwilioForm } from '../../src/channels/twilio/wire';
import { TEST_TWILIO } from './env';

export function twilioHeaders(
  url: string,
  form: TwilioForm,
  token = TEST_TWILIO.authToken,
): Record<string, string> {
  return {
    'content-type': 'application/x-www-form-urlencoded',
    'x-twilio-signature': signTwilioRequest(token, url, form),
  };
}

export function formBody(form: TwilioForm): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(form))
    for (const value of Array.isArray(v) ? v : [v]) params.append(k, value);
  return params.toString();
}

/**
 * Twilio webhooks: inbound SMS and WhatsApp (`POST /webhooks/twilio`) and message status callbacks
 * (`POST /webhooks/twilio/status`). Both are form-encoded and signed with X-Twilio-Signature.
 */
import type { NormalizedBatch, WebhookAdapter, WebhookRequest } from '../adapter';
import { PayloadError } from '../../errors';
import { verifyTwilioSignature } from './signature';
import { normalizeTwilioMessage, normalizeTwilioStatus } from './normalize';
import type { TwilioForm } from './wire';

export interface TwilioWebhookOptions {
  authToken: string;
  /** Externally visible base URL; the signed URL is this plus the path and query as received. */
  publicUrl: string;
  kind: 'inbound' | 'status';
}

const EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>';

export function parseForm(raw: Buffer): TwilioForm {
  const text = raw.toString('utf8');
  if (text.length > 0 && !/^[\x20-\x7e\t\r\n]*$/.test(text))
    throw new PayloadError('form body is not URL-encoded text');
  const form: TwilioForm = {};
  for (const [name, value] of new URLSearchParams(text)) {
    const existing = form[name];
    form[name] =
      existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return form;
}

export function createTwilioWebhook({
  authToken,
  publicUrl,
  kind,
}: TwilioWebhookOptions): WebhookAdapter<TwilioForm> {
  // The signature covers the parsed fields, so verify() parses; parse() reuses that result.
  const parsed = new WeakMap<Buffer, TwilioForm>();
  const formOf = (raw: Buffer) => {
    let form = parsed.get(raw);
    if (!form) {
      form = parseForm(raw);
      parsed.set(raw, form);
    }
    return form;
  };
  return {
    name: kind === 'inbound' ? 'twilio' : 'twilio-status',
    contentTypes: ['application/x-www-form-urlencoded'],
    verify(req: WebhookRequest) {
      verifyTwilioSignature(
        authToken,
        req.headers['x-twilio-signature'],
        publicUrl + req.originalUrl,
        formOf(req.rawBody),
      );
    },
    parse(req) {
      return formOf(req.rawBody);
    },
    normalize(form, receivedAt): NormalizedBatch {
      if (kind === 'status') {
        const status = normalizeTwilioStatus(form, receivedAt);
        if (!status) return { events: [], ignored: [{ reason: 'twilio status value not handled' }] };
        return { events: [{ type: 'status', status }], ignored: [] };
      }
      const message = normalizeTwilioMessage(form, receivedAt);
      if (!message) return { events: [], ignored: [{ reason: 'twilio address of an unsupported channel' }] };
      return { events: [{ type: 'message', message }], ignored: [] };
    },
    successResponse() {
      return { contentType: 'text/xml', body: EMPTY_TWIML };
    },
  };
}

/**
 * Meta webhooks (`/webhooks/meta`): one endpoint for Messenger (`object: "page"`) and the WhatsApp
 * Cloud API (`object: "whatsapp_business_account"`), both signed with the app secret
 * (X-Hub-Signature-256) and subscribed with the `hub.*` GET handshake. Objects of a disabled channel
 * are answered 200 and ignored, so Meta does not retry them for days.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { eventKey } from '../../canonical';
import { PayloadError } from '../../errors';
import type { HandshakeResult, NormalizedBatch, WebhookAdapter, WebhookRequest } from '../adapter';
import { normalizeMessengerPayload } from '../messenger/normalize';
import { normalizeWhatsAppCloudPayload } from '../whatsapp-cloud/normalize';
import { verifyMetaSignature } from './signature';

export interface MetaWebhookOptions {
  /** META_APP_SECRET: the key of X-Hub-Signature-256. */
  appSecret: string;
  /** META_VERIFY_TOKEN: the token entered in the app dashboard, echoed back in the handshake. */
  verifyToken: string;
  /** Messenger credentials are configured; otherwise `page` events are ignored. */
  messengerEnabled: boolean;
  /** WhatsApp Cloud credentials are configured; otherwise `whatsapp_business_account` events are ignored. */
  whatsappCloudEnabled: boolean;
}

/** The envelope every Meta webhook shares; the channel normalizers check the rest. */
const metaEnvelopeSchema = z.looseObject({
  object: z.string(),
  entry: z.array(z.unknown()),
});

export type MetaPayload = z.output<typeof metaEnvelopeSchema>;

/** Hashing first makes the comparison constant-time whatever the lengths. */
function sameSecret(received: string, expected: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(received), digest(expected));
}

/**
 * Express 5's "simple" query parser (node:querystring) keeps `hub.mode` as a flat key, and so does
 * qs without `allowDots`. A repeated parameter arrives as an array and counts as absent.
 */
function queryParam(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name];
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

export function parseMetaPayload(raw: Buffer): MetaPayload {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new PayloadError('body is not JSON', { cause: err });
  }
  const envelope = metaEnvelopeSchema.safeParse(json);
  if (!envelope.success)
    throw new PayloadError('body is not a Meta webhook (needs string object and array entry)');
  return envelope.data;
}

/** A disabled channel's events are reported as ignored, one per event, so they are still counted. */
function ignoreAll(batch: NormalizedBatch, channel: string): NormalizedBatch {
  return {
    events: [],
    ignored: [
      ...batch.ignored,
      ...batch.events.map((event) => ({
        reason: `${channel} is disabled: ${event.type} ${eventKey(event)} not taken`,
      })),
    ],
  };
}

export function createMetaWebhook(opts: MetaWebhookOptions): WebhookAdapter<MetaPayload> {
  const { appSecret, verifyToken, messengerEnabled, whatsappCloudEnabled } = opts;
  // An empty key would let anyone sign; config never passes one, but a test or script might.
  if (appSecret.length === 0) throw new Error('createMetaWebhook: appSecret is empty');
  if (verifyToken.length === 0) throw new Error('createMetaWebhook: verifyToken is empty');

  return {
    name: 'meta',
    contentTypes: ['application/json'],
    handshake(req: WebhookRequest): HandshakeResult {
      const mode = queryParam(req.query, 'hub.mode');
      const token = queryParam(req.query, 'hub.verify_token');
      const challenge = queryParam(req.query, 'hub.challenge');
      if (!mode || !token || !challenge)
        return { status: 400, body: 'missing hub.mode, hub.verify_token or hub.challenge' };
      if (mode !== 'subscribe' || !sameSecret(token, verifyToken))
        return { status: 403, body: 'verification failed' };
      return { status: 200, body: challenge };
    },
    verify(req) {
      verifyMetaSignature(appSecret, req.headers['x-hub-signature-256'], req.rawBody);
    },
    parse(req) {
      return parseMetaPayload(req.rawBody);
    },
    normalize(payload, receivedAt): NormalizedBatch {
      switch (payload.object) {
        case 'page': {
          const batch = normalizeMessengerPayload(payload, receivedAt);
          return messengerEnabled ? batch : ignoreAll(batch, 'messenger');
        }
        case 'whatsapp_business_account': {
          const batch = normalizeWhatsAppCloudPayload(payload, receivedAt);
          return whatsappCloudEnabled ? batch : ignoreAll(batch, 'whatsapp-cloud');
        }
        default:
          return { events: [], ignored: [{ reason: `unknown object ${payload.object}` }] };
      }
    },
    successResponse() {
      return { contentType: 'text/plain', body: 'EVENT_RECEIVED' };
    },
  };
}

/**
 * The one interface every webhook channel implements. The webhook route is generic over it:
 *   handshake? → verify (throws SignatureError; constant-time over the raw bytes)
 *   → parse (throws PayloadError) → normalize (pure; one request may hold many events).
 * Adapters know nothing of customers, agents or queues.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { InboundEvent } from '../canonical';

export interface WebhookRequest {
  method: string;
  /** Path and query as received (`req.originalUrl`). */
  originalUrl: string;
  query: Record<string, unknown>;
  headers: IncomingHttpHeaders;
  /** The exact bytes received; signatures are checked over these, never over re-serialised JSON. */
  rawBody: Buffer;
}

export interface HandshakeResult {
  status: number;
  body: string;
}

/** What an adapter makes of one request: the events in it, and whatever it chose to ignore. */
export interface NormalizedBatch {
  events: InboundEvent[];
  /** Unknown objects or event types: answered 200, logged and counted, never enqueued. */
  ignored: { reason: string }[];
}

export interface WebhookAdapter<Payload = unknown> {
  /** Used in logs and metrics. */
  readonly name: string;
  /** Content types this route accepts (anything else is 415). */
  readonly contentTypes: string[];
  /** Provider's subscription handshake (GET), if it has one. */
  handshake?(req: WebhookRequest): HandshakeResult;
  verify(req: WebhookRequest): void;
  parse(req: WebhookRequest): Payload;
  normalize(payload: Payload, receivedAt: Date): NormalizedBatch;
  /** The HTTP response body the provider expects on success. */
  successResponse(): { contentType: string; body: string };
}

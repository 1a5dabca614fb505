/**
 * The generic webhook route: one implementation for every provider, parameterised by its adapter.
 * Order: size limit (413) → content type (415) → signature (401/403) → parse (400) → normalize →
 * enqueue (503 if Redis is down) → the provider's success answer. The provider is answered 2xx only
 * after every event of the request is durably queued. Unknown objects/events are answered 200 so the
 * provider does not retry forever, and are logged and counted.
 */
import express, { Router, type Request } from 'express';
import type { WebhookAdapter, WebhookRequest } from '../channels/adapter';
import { sourceOf, type InboundEvent, type MessagePart } from '../canonical';
import { AppError, UnsupportedMediaTypeError } from '../errors';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { Intake } from '../queue/intake';

export interface WebhookRouteOptions {
  path: string;
  adapter: WebhookAdapter;
  intake: Intake;
  metrics: Metrics;
  log: Logger;
  maxBytes: number;
}

export function toWebhookRequest(req: Request): WebhookRequest {
  return {
    method: req.method,
    originalUrl: req.originalUrl,
    query: req.query as Record<string, unknown>,
    headers: req.headers,
    rawBody: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
  };
}

/** The provider's type as a metric label: bounded, so a sender cannot mint label values. */
function typeLabel(providerType: string): string {
  return /^[a-z][a-z0-9_.]{0,39}$/i.test(providerType) ? providerType.toLowerCase() : 'other';
}

function sourceOfEvent(event: InboundEvent): string {
  const { channel, provider } = event.type === 'message' ? event.message : event.status;
  return sourceOf(channel, provider);
}

function countUnsupported(metrics: Metrics, channel: string, parts: MessagePart[]): void {
  for (const part of parts)
    if (part.kind === 'unsupported')
      metrics.unsupportedInbound.inc({ channel, type: typeLabel(part.providerType) });
}

function mediaType(header: string | undefined): string | undefined {
  return header?.split(';')[0]?.trim().toLowerCase();
}

export function webhookRoute({ path, adapter, intake, metrics, log, maxBytes }: WebhookRouteOptions): Router {
  const router = Router();
  const rejectionReason: Record<number, string> = {
    400: 'payload',
    401: 'signature',
    403: 'signature',
    413: 'too_large',
    415: 'content_type',
    503: 'unavailable',
  };

  if (adapter.handshake) {
    const handshake = adapter.handshake.bind(adapter);
    router.get(path, (req, res) => {
      const result = handshake(toWebhookRequest(req));
      if (result.status !== 200) metrics.webhookRejections.inc({ route: path, reason: 'handshake' });
      res.status(result.status).type('text/plain').send(result.body);
    });
  }

  router.post(path, express.raw({ type: () => true, limit: maxBytes }), async (req, res) => {
    const started = process.hrtime.bigint();
    try {
      const type = mediaType(req.headers['content-type']);
      if (!type || !adapter.contentTypes.includes(type)) throw new UnsupportedMediaTypeError(type);
      const wreq = toWebhookRequest(req);
      adapter.verify(wreq);
      const payload = adapter.parse(wreq);
      const batch = adapter.normalize(payload, new Date());
      const { queued, duplicates } = await intake.accept(batch.events);

      for (const event of queued) {
        const source = sourceOfEvent(event);
        metrics.inboundEvents.inc({ channel: source, kind: event.type, outcome: 'queued' });
        if (event.type === 'message') {
          metrics.lastInbound.set({ channel: source }, Date.now() / 1000);
          countUnsupported(metrics, source, event.message.parts);
        }
      }
      for (const event of duplicates)
        metrics.inboundEvents.inc({ channel: sourceOfEvent(event), kind: event.type, outcome: 'duplicate' });
      for (const ignored of batch.ignored) {
        metrics.inboundEvents.inc({ channel: adapter.name, kind: 'ignored', outcome: 'ignored' });
        log.info({ adapter: adapter.name, reason: ignored.reason }, 'webhook event ignored');
      }
      // Built only when it is written: this runs for every webhook, and debug is off in production.
      if (log.isLevelEnabled('debug'))
        log.debug(
          {
            adapter: adapter.name,
            queued: queued.length,
            duplicates: duplicates.length,
            ignored: batch.ignored.length,
            ms: Number(process.hrtime.bigint() - started) / 1e6,
          },
          'webhook accepted',
        );
      // Written directly: express's send() would hash the body for an ETag and re-parse the content
      // type on every webhook, for a constant answer no provider caches.
      const success = adapter.successResponse();
      res.statusCode = 200;
      res.setHeader('content-type', `${success.contentType}; charset=utf-8`);
      res.end(success.body);
    } catch (err) {
      if (err instanceof AppError) {
        metrics.webhookRejections.inc({ route: path, reason: rejectionReason[err.status] ?? err.code });
      }
      throw err;
    }
  });

  return router;
}

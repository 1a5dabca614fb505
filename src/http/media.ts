/**
 * `GET /media/:id?exp=…&sig=…` — serves one of an agent's outbound files to the provider that
 * delivers it (Twilio fetches `MediaUrl`; Messenger fetches attachment URLs). No login: the URL
 * itself is the credential, an HMAC over the id and expiry (src/media/outbound.ts), valid for
 * MEDIA_URL_TTL_SECONDS. A wrong signature is 403, an expired one 410, anything else unknown 404;
 * only outbound files are served, never a customer's own uploads.
 */
import { Router } from 'express';
import type { Logger } from '../logger';
import { verifyMediaUrl } from '../media/outbound';
import type { MediaStore } from '../media/store';

export interface MediaRoutesOptions {
  store: MediaStore;
  urlSecret: string;
  log: Logger;
}

function one(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export function mediaRoutes(o: MediaRoutesOptions): Router {
  const router = Router();
  router.get('/media/:id', async (req, res) => {
    const id = req.params.id;
    const verdict = verifyMediaUrl(o.urlSecret, id, one(req.query.exp), one(req.query.sig));
    if (verdict !== 'ok') {
      const status = verdict === 'expired' ? 410 : 403;
      res.status(status).json({ error: { code: `media_url_${verdict}`, message: `media URL ${verdict}` } });
      return;
    }
    const file = await o.store.info(id);
    if (!file || file.metadata.direction !== 'out') {
      res.status(404).json({ error: { code: 'not_found', message: 'no such file' } });
      return;
    }
    o.log.info({ fileId: id, bytes: file.bytes }, 'outbound media served');
    res.setHeader('Content-Type', file.metadata.contentType);
    res.setHeader('Content-Length', String(file.bytes));
    res.setHeader('Cache-Control', 'private, no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Content-Disposition', 'inline');
    o.store
      .open(id)
      .on('error', () => res.destroy())
      .pipe(res);
  });
  return router;
}

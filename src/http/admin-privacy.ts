/**
 * Admin API for customers' data rights: export (`GET /customers/:id/export`) and erasure
 * (`DELETE /customers/:id`, `GET /customers/:id/erasure`). Mounted under `/api` behind `adminAuth`.
 *
 * - Export answers the JSON of src/privacy/export.ts as an attachment; an erased customer answers
 *   410 with the erasure's audit record, an unknown one 404.
 * - Erase answers 200 with the audit record when finished, 202 when its Slack part continues in the
 *   background (rate limits); calling it again is safe and reports the same erasure. 409 when a
 *   merge on the customer is running (retry) or the erasure is already running.
 * - Every call is logged with actor (the admin token's name) and customer id only.
 */
import { Router } from 'express';
import { isAppError } from '../errors';
import type { Logger } from '../logger';
import { adminActor } from './admin-auth';
import type { ErasureService } from '../privacy/erase';
import { exportCustomer, type AppModels } from '../privacy/export';

export interface PrivacyRoutesOptions {
  models: AppModels;
  erasures: ErasureService;
  log: Logger;
}

export function privacyRoutes(o: PrivacyRoutesOptions): Router {
  const router = Router();

  router.get('/customers/:id/export', async (req, res) => {
    const actor = adminActor(res);
    const id = req.params.id;
    try {
      const data = await exportCustomer(o.models, id);
      o.log.info(
        { actor, action: 'customer.export', customerId: data.customer.id, messages: data.messages.length },
        'customer exported',
      );
      res.setHeader('Content-Disposition', `attachment; filename="customer-${data.customer.id}.json"`);
      res.json(data);
    } catch (err) {
      if (isAppError(err) && err.status === 404) {
        const erasure = await o.erasures.find(id).catch(() => undefined);
        if (erasure) {
          o.log.info(
            { actor, action: 'customer.export', customerId: id, erasureId: erasure.id },
            'export of an erased customer refused',
          );
          res.status(410).json({ error: { code: 'erased', message: `customer ${id} was erased` }, erasure });
          return;
        }
      }
      throw err;
    }
  });

  router.delete('/customers/:id', async (req, res) => {
    const actor = adminActor(res);
    const erasure = await o.erasures.erase(req.params.id, actor);
    o.log.info(
      {
        actor,
        action: 'customer.erase',
        customerId: req.params.id,
        erasureId: erasure.id,
        status: erasure.status,
      },
      erasure.status === 'done' ? 'customer erased' : 'customer erasure continues in background',
    );
    res.status(erasure.status === 'done' ? 200 : 202).json({ erasure });
  });

  router.get('/customers/:id/erasure', async (req, res) => {
    const actor = adminActor(res);
    const erasure = await o.erasures.find(req.params.id);
    o.log.info({ actor, action: 'customer.erasure.get', customerId: req.params.id }, 'erasure looked up');
    if (!erasure) {
      res
        .status(404)
        .json({ error: { code: 'not_found', message: `no erasure for customer ${req.params.id}` } });
      return;
    }
    res.json({ erasure });
  });

  return router;
}

/**
 * Turns anything thrown in a route into a clear JSON answer. AppErrors carry their status; body
 * parser errors (oversized, malformed) map to 413/400; anything else is a bug: 500, logged with its
 * stack, and the process carries on.
 */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { isAppError } from '../errors';
import type { Logger } from '../logger';

interface BodyParserError {
  type: string;
  status: number;
}

function isBodyParserError(err: unknown): err is BodyParserError {
  return typeof err === 'object' && err !== null && 'type' in err && 'status' in err;
}

export function notFound(): RequestHandler {
  return (_req, res) => {
    res.status(404).json({ error: { code: 'not_found', message: 'no such route' } });
  };
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    if (res.headersSent) return;
    if (isAppError(err)) {
      const level = err.status >= 500 ? 'warn' : 'info';
      log[level]({ route: req.route?.path ?? req.path, code: err.code, status: err.status }, err.message);
      if (err.status === 503) res.setHeader('Retry-After', '5');
      res.status(err.status).json({ error: { code: err.code, message: err.message } });
      return;
    }
    if (isBodyParserError(err)) {
      const status =
        err.type === 'entity.too.large' ? 413 : err.status >= 400 && err.status < 500 ? err.status : 400;
      const code = status === 413 ? 'payload_too_large' : 'invalid_payload';
      log.info({ route: req.path, code, status }, 'request body refused');
      res.status(status).json({ error: { code, message: err.type.replace(/\./g, ' ') } });
      return;
    }
    log.error({ err, route: req.path }, 'unhandled error in request');
    res.status(500).json({ error: { code: 'internal', message: 'internal error' } });
  };
}

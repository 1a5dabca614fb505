/**
 * Turns anything thrown in a route into a clear JSON answer. AppErrors carry their status; body
 * parser errors (oversized, malformed) map to 413/400; anything else is a bug: 500, logged with its
 * stack, and the process carries on.
 */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { z } from 'zod';
import { isAppError } from '../errors';
import type { Logger } from '../logger';

/** Every error answer's body (the OpenAPI document publishes this schema as `Error`). */
export const errorBody = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

export type ErrorBody = z.infer<typeof errorBody>;

export function errorJson(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

interface BodyParserError {
  type: string;
  status: number;
}

function isBodyParserError(err: unknown): err is BodyParserError {
  return typeof err === 'object' && err !== null && 'type' in err && 'status' in err;
}

export function notFound(): RequestHandler {
  return (_req, res) => {
    res.status(404).json(errorJson('not_found', 'no such route'));
  };
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    if (res.headersSent) return;
    if (isAppError(err)) {
      const level = err.status >= 500 ? 'warn' : 'info';
      log[level]({ route: req.route?.path ?? req.path, code: err.code, status: err.status }, err.message);
      if (err.status === 503) res.setHeader('Retry-After', '5');
      res.status(err.status).json(errorJson(err.code, err.message));
      return;
    }
    if (isBodyParserError(err)) {
      const status =
        err.type === 'entity.too.large' ? 413 : err.status >= 400 && err.status < 500 ? err.status : 400;
      const code = status === 413 ? 'payload_too_large' : 'invalid_payload';
      log.info({ route: req.path, code, status }, 'request body refused');
      res.status(status).json(errorJson(code, err.type.replace(/\./g, ' ')));
      return;
    }
    log.error({ err, route: req.path }, 'unhandled error in request');
    res.status(500).json(errorJson('internal', 'internal error'));
  };
}

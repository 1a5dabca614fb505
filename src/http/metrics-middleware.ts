/** Records every request's duration by method, matched route pattern (not raw path) and status. */
import type { RequestHandler } from 'express';
import type { Metrics } from '../metrics';

export function requestMetrics(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    const end = metrics.httpDuration.startTimer();
    res.on('finish', () => {
      const pattern: unknown = req.route?.path;
      const route = typeof pattern === 'string' ? `${req.baseUrl}${pattern}` : 'unmatched';
      end({ method: req.method, route, status: String(res.statusCode) });
    });
    next();
  };
}

/**
 * The request plumbing every emulator shares: reading a body, answering JSON, form and auth
 * parsing, the queue of "fail (or lose) the next n matching requests" entries, and a node:http
 * server on 127.0.0.1 that turns a handler's throw into the emulator's own error answer.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Answers `body` as JSON (a string as plain text). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain' : 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/** Answers a stored file's bytes. */
export function sendFile(res: ServerResponse, data: Buffer, contentType: string): void {
  res.writeHead(200, { 'content-type': contentType, 'content-length': String(data.length) });
  res.end(data);
}

/** Form fields; a field sent more than once (`MediaUrl`) becomes an array. */
export function parseForm(text: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of new URLSearchParams(text)) {
    const existing = out[name];
    out[name] =
      existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return out;
}

export function basicAuth(header: string | undefined): { user: string; password: string } | undefined {
  const match = /^Basic\s+(.+)$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export function bearerToken(req: IncomingMessage): string | undefined {
  return /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
}

/**
 * "The next `times` requests `match` accepts, after letting `skip` of them through, get `fault`":
 * the failures and lost answers each emulator can be told to produce.
 */
export class FaultQueue<F, M> {
  private pending: { fault: F; remaining: number; skip: number; match?: M }[] = [];

  add(fault: F, times = 1, match?: M, skip = 0): void {
    this.pending.push({ fault, remaining: times, skip, ...(match !== undefined ? { match } : {}) });
  }

  /** The fault of the first entry that accepts this request (one use consumed), if any. */
  take(accepts: (match: M | undefined) => boolean): F | undefined {
    const index = this.pending.findIndex((p) => accepts(p.match));
    const hit = this.pending[index];
    if (!hit) return undefined;
    if (hit.skip > 0) {
      hit.skip -= 1;
      return undefined;
    }
    hit.remaining -= 1;
    if (hit.remaining <= 0) this.pending.splice(index, 1);
    return hit.fault;
  }

  clear(): void {
    this.pending = [];
  }
}

export interface LocalServer {
  /** e.g. `http://127.0.0.1:54321` */
  origin: string;
  close(): Promise<void>;
}

/**
 * Serves `handle` on a free port of 127.0.0.1; a rejected handler gets `onError`'s answer unless
 * it had already started answering.
 */
export async function listenLocally(
  handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
  onError: (res: ServerResponse, err: unknown) => void,
): Promise<LocalServer> {
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) onError(res, err);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
    server.listen(0, '127.0.0.1');
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

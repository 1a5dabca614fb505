/**
 * The mongoose connection. It is created at once and connects in the background, retrying with
 * backoff, so the process starts (and /readyz reports MongoDB down) even when the database is not yet
 * reachable; once connected, the driver reconnects by itself. Indexes are built when a connection
 * is first established (`ensureIndexes`), because unique indexes carry correctness (dedupe,
 * one customer per identity), not just speed.
 */
import mongoose, { type Connection } from 'mongoose';
import type { Logger } from '../logger';

export interface MongoHandle {
  connection: Connection;
  /** Resolves once connected and indexes are built; never rejects (it keeps retrying). */
  ready: Promise<void>;
  ping(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export function connectMongo(uri: string, log: Logger): MongoHandle {
  const connection = mongoose.createConnection();
  let closed = false;
  let wakeRetry: (() => void) | undefined;

  const ready = (async () => {
    for (let attempt = 1; !closed; attempt++) {
      try {
        await connection.openUri(uri, {
          serverSelectionTimeoutMS: 2_000,
          connectTimeoutMS: 2_000,
          socketTimeoutMS: 30_000,
          maxPoolSize: 20,
          autoIndex: false,
        });
        await Promise.all(Object.values(connection.models).map((m) => m.createIndexes()));
        log.info({ attempt }, 'mongodb connected, indexes ensured');
        return;
      } catch (err) {
        if (closed) return;
        const delay = Math.min(250 * 2 ** attempt, 5_000);
        log.warn({ err, attempt, retryInMs: delay }, 'mongodb connect failed; retrying');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          wakeRetry = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
  })();

  return {
    connection,
    ready,
    async ping(timeoutMs) {
      const db = connection.db;
      if (connection.readyState !== 1 || !db) throw new Error('not connected');
      await withTimeout(db.admin().ping(), timeoutMs, 'mongodb ping timed out');
    },
    async close() {
      closed = true;
      wakeRetry?.();
      await connection.close(true).catch(() => undefined);
      await ready;
    },
  };
}

export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Customers' files (inbound photos, voice notes, documents; agents' outbound attachments) in MongoDB
 * GridFS, so the stack stays two services. GridFS is two plain collections (`media.files`,
 * `media.chunks`) written with inserts, finds and deletes only: it works the same on FerretDB v1
 * (checked: upload, metadata query, ranged download, delete) and MongoDB 7.
 *
 * - Ids are deterministic (a hash of the message key and the file's position), so a retried job
 *   finds the file it already stored instead of storing a second copy. A crash mid-upload leaves
 *   chunks without a files document; the next attempt deletes them first (the unique
 *   `{files_id, n}` index would otherwise refuse the re-upload).
 * - Every file carries `metadata.customerId`, so export lists it, erase deletes it and retention
 *   expires it by `uploadDate`.
 * - Writes are streamed through a byte counter: a file over the cap is aborted (its chunks deleted)
 *   with a `MediaTooLargeError`, never buffered whole.
 */
import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import mongoose, { type Connection } from 'mongoose';
import { AppError } from '../errors';

export const MEDIA_BUCKET = 'media';

export interface MediaMetadata {
  customerId: string;
  /** The message (inbound) or send (outbound) key the file belongs to. */
  key: string;
  direction: 'in' | 'out';
  contentType: string;
  /** As the sender named it (customer-controlled: escape before showing). */
  filename: string;
}

export interface StoredFile {
  id: string;
  bytes: number;
  uploadDate: Date;
  metadata: MediaMetadata;
}

/** The file is larger than the cap; nothing of it is kept. */
export class MediaTooLargeError extends AppError {
  constructor(
    readonly limit: number,
    /** Bytes seen before stopping (at least limit + 1), or the declared size. */
    readonly seen: number,
    /** True when `seen` is the file's real size (declared by the provider), not a lower bound. */
    readonly exact = false,
  ) {
    super(`file over the ${limit}-byte limit`, 'media_too_large', 413, false);
  }
}

export interface MediaStore {
  /** The file with this id, if fully stored. */
  info(id: string): Promise<StoredFile | undefined>;
  /** Streams `source` into the store under `id` (replacing a partial earlier attempt). */
  put(id: string, source: Readable, metadata: MediaMetadata, maxBytes: number): Promise<StoredFile>;
  /** The bytes of a stored file; `range` is inclusive-exclusive `[start, end)`. */
  open(id: string, range?: { start: number; end: number }): Readable;
  read(id: string): Promise<Buffer>;
  forCustomer(customerId: string): Promise<StoredFile[]>;
  /** Deletes every file of the customer; returns how many. */
  deleteForCustomer(customerId: string): Promise<number>;
  /** Deletes files stored before `before`; returns how many. */
  deleteOlderThan(before: Date): Promise<number>;
}

/** A stable, URL-safe file id for the `index`th file of message or send `key`. */
export function mediaId(direction: 'in' | 'out', key: string, index: number): string {
  const hash = createHash('sha256').update(`${key}\u0000${index}`).digest('base64url').slice(0, 32);
  return `${direction}-${hash}`;
}

function byteCap(limit: number, onOver: (seen: number) => void): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > limit) {
        onOver(seen);
        done(new MediaTooLargeError(limit, seen));
        return;
      }
      done(null, chunk);
    },
  });
}

interface FileDoc {
  _id: string;
  length: number;
  uploadDate: Date;
  metadata?: MediaMetadata;
}

function toStored(doc: FileDoc): StoredFile | undefined {
  if (!doc.metadata) return undefined;
  return { id: doc._id, bytes: doc.length, uploadDate: doc.uploadDate, metadata: doc.metadata };
}

export function createMediaStore(connection: Connection): MediaStore {
  const bucket = () => {
    const db = connection.db;
    if (!db) throw new AppError('database not connected', 'db_unavailable', 503, true);
    return new mongoose.mongo.GridFSBucket(db, { bucketName: MEDIA_BUCKET });
  };
  const chunks = () => connection.collection(`${MEDIA_BUCKET}.chunks`);
  const filesColl = () => connection.collection<FileDoc>(`${MEDIA_BUCKET}.files`);

  async function info(id: string): Promise<StoredFile | undefined> {
    const doc = await filesColl().findOne({ _id: id });
    return doc ? toStored(doc) : undefined;
  }

  async function deleteWhere(filter: Record<string, unknown>): Promise<number> {
    const docs = await filesColl()
      .find(filter, { projection: { _id: 1 } })
      .toArray();
    for (const doc of docs) {
      // Chunks first: a crash in between leaves an orphan files document a retry deletes again.
      await chunks().deleteMany({ files_id: doc._id });
      await filesColl().deleteOne({ _id: doc._id });
    }
    return docs.length;
  }

  return {
    info,
    async put(id, source, metadata, maxBytes) {
      const existing = await info(id);
      if (existing) {
        source.destroy();
        return existing;
      }
      await chunks().deleteMany({ files_id: id });
      // `as never`: GridFS ids are ObjectIds in the driver's types, but any value is allowed.
      const upload = bucket().openUploadStreamWithId(id as never, metadata.filename, { metadata });
      try {
        await pipeline(
          source,
          byteCap(maxBytes, () => undefined),
          upload,
        );
      } catch (err) {
        await upload.abort().catch(() => undefined);
        await chunks().deleteMany({ files_id: id });
        throw err;
      }
      const stored = await info(id);
      if (!stored) throw new AppError(`media ${id} not found after upload`, 'media_lost', 500, true);
      return stored;
    },
    open(id, range) {
      return bucket().openDownloadStream(id as never, range ? { start: range.start, end: range.end } : {});
    },
    async read(id) {
      const parts: Buffer[] = [];
      for await (const chunk of bucket().openDownloadStream(id as never)) parts.push(chunk as Buffer);
      return Buffer.concat(parts);
    },
    async forCustomer(customerId) {
      const docs = await filesColl()
        .find({ 'metadata.customerId': customerId })
        .sort({ uploadDate: 1 })
        .toArray();
      return docs.map(toStored).filter((f): f is StoredFile => f !== undefined);
    },
    deleteForCustomer: (customerId) => deleteWhere({ 'metadata.customerId': customerId }),
    deleteOlderThan: (before) => deleteWhere({ uploadDate: { $lt: before } }),
  };
}

/**
 * Files in MongoDB, chunked into plain documents: the RemoteAuth session store (so a WhatsApp
 * login survives restarts and moves between hosts) and, through `media.ts`, inbound media.
 *
 * Why not GridFS or wwebjs-mongo: FerretDB (our MongoDB-protocol server) makes no GridFS
 * guarantees, and wwebjs-mongo reads the zip from `./<session>.zip` relative to the working
 * directory instead of RemoteAuth's `dataPath`. Why chunks: one document is capped at 16 MiB and a
 * session zip can be larger.
 *
 * Writing without transactions: a file is written as chunks under a fresh random `version`, then
 * the one metadata document is switched to that version (a single-document write, atomic on its
 * own), then other versions' chunks are deleted. A reader follows the metadata to one version and
 * checks count, size and SHA-256, so a crash mid-save leaves the previous file readable and at
 * worst some orphan chunks (deleted by the next save). One writer per file is assumed: the session
 * lock (`lock.ts`) guarantees it for sessions, deterministic ids make media writes idempotent.
 *
 * `RemoteAuth` (whatsapp-web.js `src/authStrategies/RemoteAuth.js`) calls the `Store` methods as:
 * `sessionExists({session})`, `save({session})` after writing `<dataPath>/<session>.zip`,
 * `extract({session, path})` expecting the zip at `path`, `delete({session})`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { Schema, type Connection, type Model } from 'mongoose';

/** Below MongoDB's 16 MiB document limit with room for the other fields. */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

interface BlobMeta {
  _id: string;
  version: string;
  chunks: number;
  bytes: number;
  sha256: string;
  contentType?: string;
  filename?: string;
  savedAt: Date;
}

interface BlobChunk {
  blob: string;
  version: string;
  n: number;
  data: Buffer;
}

export interface BlobInfo {
  id: string;
  bytes: number;
  sha256: string;
  contentType?: string;
  filename?: string;
  savedAt: Date;
}

export interface BlobStore {
  exists(id: string): Promise<boolean>;
  info(id: string): Promise<BlobInfo | undefined>;
  /** Writes (or replaces) a file from a buffer or a file on disk. */
  put(
    id: string,
    source: Buffer | { file: string },
    meta?: { contentType?: string; filename?: string },
  ): Promise<BlobInfo>;
  /** The whole file, or undefined if there is none. Throws if the stored chunks are inconsistent. */
  get(id: string): Promise<Buffer | undefined>;
  /** Writes the file to `file` (replacing it); false if there is none. */
  writeTo(id: string, file: string): Promise<boolean>;
  delete(id: string): Promise<void>;
}

const META_MODEL = 'WhatsAppWebBlob';
const CHUNK_MODEL = 'WhatsAppWebBlobChunk';

function modelsOn(connection: Connection): { meta: Model<BlobMeta>; chunks: Model<BlobChunk> } {
  const existingMeta = connection.models[META_MODEL] as Model<BlobMeta> | undefined;
  const existingChunks = connection.models[CHUNK_MODEL] as Model<BlobChunk> | undefined;
  const meta =
    existingMeta ??
    connection.model<BlobMeta>(
      META_MODEL,
      new Schema<BlobMeta>(
        {
          _id: { type: String, required: true },
          version: { type: String, required: true },
          chunks: { type: Number, required: true },
          bytes: { type: Number, required: true },
          sha256: { type: String, required: true },
          contentType: String,
          filename: String,
          savedAt: { type: Date, required: true },
        },
        { collection: 'whatsapp_web_blobs', versionKey: false },
      ),
    );
  const chunks =
    existingChunks ??
    connection.model<BlobChunk>(
      CHUNK_MODEL,
      new Schema<BlobChunk>(
        {
          blob: { type: String, required: true },
          version: { type: String, required: true },
          n: { type: Number, required: true },
          data: { type: Buffer, required: true },
        },
        { collection: 'whatsapp_web_blob_chunks', versionKey: false },
      ).index({ blob: 1, version: 1, n: 1 }, { unique: true }),
    );
  return { meta, chunks };
}

/** Lean reads return BSON `Binary` for buffers; accept both shapes. */
function bytesOf(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === 'object' && value !== null) {
    const inner: unknown = (value as { buffer?: unknown }).buffer;
    if (inner instanceof Uint8Array) return Buffer.from(inner);
  }
  throw new Error('stored chunk is not binary data');
}

async function* chunksOfBuffer(buffer: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < buffer.length; offset += size) yield buffer.subarray(offset, offset + size);
}

async function* chunksOfFile(file: string, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const piece of createReadStream(file, { highWaterMark: size })) {
    const buf = Buffer.isBuffer(piece) ? piece : Buffer.from(String(piece));
    pending.push(buf);
    pendingBytes += buf.length;
    while (pendingBytes >= size) {
      const all = Buffer.concat(pending);
      yield all.subarray(0, size);
      const rest = all.subarray(size);
      pending = rest.length > 0 ? [rest] : [];
      pendingBytes = rest.length;
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending);
}

export interface BlobStoreOptions {
  connection: Connection;
  /** @defaultValue 1 MiB */
  chunkBytes?: number;
}

export function createBlobStore({
  connection,
  chunkBytes = DEFAULT_CHUNK_BYTES,
}: BlobStoreOptions): BlobStore {
  const models = modelsOn(connection);
  let indexes: Promise<void> | undefined;
  // Built on first use: the app builds indexes of models registered before it connected, and this
  // store may be created later.
  const ensureIndexes = () =>
    (indexes ??= models.chunks.createIndexes().catch((err: unknown) => {
      indexes = undefined;
      throw err;
    }));

  const readMeta = async (id: string) => models.meta.findById(id).lean<BlobMeta>().exec();

  /** Reads one version's chunks in order, checking them; `sink` receives each chunk. */
  const readVersion = async (meta: BlobMeta, sink: (chunk: Buffer) => Promise<void> | void) => {
    const hash = createHash('sha256');
    let count = 0;
    let bytes = 0;
    const cursor = models.chunks
      .find({ blob: meta._id, version: meta.version })
      .sort({ n: 1 })
      .lean<BlobChunk[]>()
      .cursor();
    for await (const doc of cursor) {
      const chunk = bytesOf((doc as { data?: unknown }).data);
      if ((doc as { n?: unknown }).n !== count) throw new Error(`blob ${meta._id}: chunk ${count} missing`);
      hash.update(chunk);
      bytes += chunk.length;
      count += 1;
      await sink(chunk);
    }
    if (count !== meta.chunks || bytes !== meta.bytes || hash.digest('hex') !== meta.sha256) {
      throw new Error(`blob ${meta._id}: stored chunks do not match their metadata`);
    }
  };

  /** Reads the current version; retries once if a concurrent save replaced it mid-read. */
  const readCurrent = async (id: string, open: () => Promise<(chunk: Buffer) => Promise<void> | void>) => {
    for (let attempt = 0; ; attempt++) {
      const meta = await readMeta(id);
      if (!meta) return false;
      try {
        await readVersion(meta, await open());
        return true;
      } catch (err) {
        const now = await readMeta(id);
        if (attempt > 0 || !now || now.version === meta.version) throw err;
      }
    }
  };

  const toInfo = (m: BlobMeta): BlobInfo => ({
    id: m._id,
    bytes: m.bytes,
    sha256: m.sha256,
    savedAt: m.savedAt,
    ...(m.contentType ? { contentType: m.contentType } : {}),
    ...(m.filename ? { filename: m.filename } : {}),
  });

  return {
    async exists(id) {
      return (await models.meta.exists({ _id: id })) !== null;
    },
    async info(id) {
      const m = await readMeta(id);
      return m ? toInfo(m) : undefined;
    },
    async put(id, source, meta = {}) {
      await ensureIndexes();
      const version = randomBytes(8).toString('hex');
      const hash = createHash('sha256');
      let n = 0;
      let bytes = 0;
      const pieces = Buffer.isBuffer(source)
        ? chunksOfBuffer(source, chunkBytes)
        : chunksOfFile(source.file, chunkBytes);
      for await (const data of pieces) {
        hash.update(data);
        await models.chunks.create({ blob: id, version, n, data });
        n += 1;
        bytes += data.length;
      }
      const doc: BlobMeta = {
        _id: id,
        version,
        chunks: n,
        bytes,
        sha256: hash.digest('hex'),
        savedAt: new Date(),
        ...(meta.contentType ? { contentType: meta.contentType } : {}),
        ...(meta.filename ? { filename: meta.filename } : {}),
      };
      await models.meta.replaceOne({ _id: id }, doc, { upsert: true });
      await models.chunks.deleteMany({ blob: id, version: { $ne: version } });
      return toInfo(doc);
    },
    async get(id) {
      const parts: Buffer[] = [];
      const found = await readCurrent(id, async () => {
        parts.length = 0;
        return (chunk) => void parts.push(chunk);
      });
      return found ? Buffer.concat(parts) : undefined;
    },
    async writeTo(id, file) {
      await mkdir(path.dirname(file), { recursive: true });
      const partial = `${file}.${randomBytes(4).toString('hex')}.partial`;
      let out: ReturnType<typeof createWriteStream> | undefined;
      try {
        const found = await readCurrent(id, async () => {
          out?.destroy();
          out = createWriteStream(partial);
          const stream = out;
          return async (chunk) => {
            if (!stream.write(chunk)) await new Promise<void>((resolve) => stream.once('drain', resolve));
          };
        });
        if (!found) return false;
        const stream = out;
        if (stream) {
          stream.end();
          await finished(stream);
        }
        await rename(partial, file);
        return true;
      } finally {
        out?.destroy();
        await rm(partial, { force: true });
      }
    },
    async delete(id) {
      await models.meta.deleteOne({ _id: id });
      await models.chunks.deleteMany({ blob: id });
    },
  };
}

/** The `Store` whatsapp-web.js `RemoteAuth` expects (its `index.d.ts` `Store`). */
export interface RemoteAuthStore {
  sessionExists(options: { session: string }): Promise<boolean>;
  save(options: { session: string }): Promise<void>;
  extract(options: { session: string; path: string }): Promise<void>;
  delete(options: { session: string }): Promise<void>;
}

export interface MongoRemoteAuthStoreOptions {
  connection: Connection;
  /** The same `dataPath` given to RemoteAuth: `save` reads `<dataPath>/<session>.zip` from there. */
  dataPath: string;
  chunkBytes?: number;
}

const sessionBlobId = (session: string) => `session:${session}`;

export function createMongoRemoteAuthStore({
  connection,
  dataPath,
  chunkBytes,
}: MongoRemoteAuthStoreOptions): RemoteAuthStore {
  const blobs = createBlobStore({ connection, ...(chunkBytes ? { chunkBytes } : {}) });
  return {
    async sessionExists({ session }) {
      return blobs.exists(sessionBlobId(session));
    },
    async save({ session }) {
      const file = path.join(path.resolve(dataPath), `${session}.zip`);
      await blobs.put(
        sessionBlobId(session),
        { file },
        { contentType: 'application/zip', filename: `${session}.zip` },
      );
    },
    async extract({ session, path: file }) {
      if (!(await blobs.writeTo(sessionBlobId(session), file))) {
        throw new Error(`no saved WhatsApp Web session ${session}`);
      }
    },
    async delete({ session }) {
      await blobs.delete(sessionBlobId(session));
    },
  };
}

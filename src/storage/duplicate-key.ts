/**
 * Unique-index races. Rapport keeps writes correct with unique indexes instead of transactions
 * (FerretDB v1 has none), so losing a race shows up as a duplicate key error (E11000): the caller
 * either treats it as "already there" or runs its upsert again, which then finds the winner.
 */

/** How many times to retry an upsert that lost a race on a unique index. */
const MAX_DUPLICATE_RETRIES = 5;

/** MongoDB duplicate key error (unique index violation), from the driver or a bulk write. */
export function isDuplicateKeyError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code: unknown = (err as { code?: unknown }).code;
  if (code === 11000 || code === 11001) return true;
  const writeErrors: unknown = (err as { writeErrors?: unknown }).writeErrors;
  if (Array.isArray(writeErrors)) return writeErrors.some((e: unknown) => isDuplicateKeyError(e));
  const message: unknown = (err as { message?: unknown }).message;
  return typeof message === 'string' && message.includes('E11000');
}

/** Runs an upsert again when it lost a race on a unique index (E11000): the retry finds the winner. */
export async function retryOnDuplicate<T>(op: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (!isDuplicateKeyError(err) || attempt >= MAX_DUPLICATE_RETRIES) throw err;
    }
  }
}

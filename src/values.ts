/**
 * Helpers over plain values (parsed JSON, forms, canonical events), shared by every layer.
 *
 * NUL characters get their own pair because PostgreSQL-backed MongoDB-protocol stores (FerretDB)
 * can neither store nor query one: inbound events drop them (`withoutNul`), and a Slack payload
 * holding one is malformed (`hasNul`). Both walk values the same way, through `mapStrings`.
 */

const NUL = '\u0000';

/** A non-null object that is not an array: its properties can be read as `unknown`. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (!isRecord(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * `value` with `fix` applied to every string in it, object keys included, through arrays and plain
 * objects up to `maxDepth` levels below `value` (deeper containers are returned as they are).
 */
export function mapStrings<T>(value: T, fix: (s: string) => string, maxDepth = Infinity, depth = 0): T {
  if (typeof value === 'string') return fix(value) as T;
  if (depth > maxDepth) return value;
  const inner = (v: unknown): unknown => mapStrings(v, fix, maxDepth, depth + 1);
  if (Array.isArray(value)) return value.map(inner) as T;
  if (isPlainObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [fix(k), inner(v)])) as T;
  }
  return value;
}

/**
 * Whether `test` holds for a string in `value`, object keys included, through arrays and plain
 * objects up to `maxDepth` levels below `value` (as mapStrings walks it), allocating nothing.
 */
function someString(value: unknown, test: (s: string) => boolean, maxDepth: number, depth = 0): boolean {
  if (typeof value === 'string') return test(value);
  if (depth > maxDepth) return false;
  if (Array.isArray(value)) return value.some((v) => someString(v, test, maxDepth, depth + 1));
  if (!isPlainObject(value)) return false;
  for (const key of Object.keys(value))
    if (test(key) || someString(value[key], test, maxDepth, depth + 1)) return true;
  return false;
}

const holdsNul = (s: string) => s.includes(NUL);

/**
 * The value with NUL characters removed from every string. Providers can deliver one inside a
 * message body (`%00` in a form); nothing a person wrote is lost by dropping it. A value without
 * one is returned as it is: every inbound event passes here, and copying it was garbage per request.
 */
export function withoutNul<T>(value: T): T {
  if (!someString(value, holdsNul, Infinity)) return value;
  return mapStrings(value, (s) => (s.includes(NUL) ? s.replaceAll(NUL, '') : s));
}

/** True if any string in `value` (keys included, 32 levels deep at most) holds a NUL character. */
export function hasNul(value: unknown): boolean {
  return someString(value, holdsNul, 32);
}

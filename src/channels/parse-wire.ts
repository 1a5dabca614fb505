/**
 * Reads a provider payload (or a part of one) with its wire schema: the parsed value, or a
 * PayloadError (400) that names the provider, the part and the first problem found.
 */
import type { z } from 'zod';
import { PayloadError } from '../errors';

export function parseWire<S extends z.ZodType>(
  source: string,
  schema: S,
  value: unknown,
  where: string,
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const detail = issue
    ? `${issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''}${issue.message}`
    : 'invalid';
  throw new PayloadError(`${source} ${where}: ${detail}`, { cause: result.error });
}

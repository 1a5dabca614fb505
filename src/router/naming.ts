/**
 * Naming a customer: an agent (`/rapport name <name>`, the card's name field), the admin API
 * (`PATCH /api/customers/:id` with `displayName`) or the CLI (`rapport customers name`) sets or
 * corrects the name. The card is refreshed and later posts use the new name.
 *
 * A name set here is recorded with its source (`agent` / `admin` in `profile.name`); providers only
 * fill a name in when the customer has none (identity/resolve.ts), so a later WhatsApp or Messenger
 * profile name never overwrites it.
 */
import type { Types } from 'mongoose';
import { NotFoundError, PayloadError } from '../errors';
import type { Customer, IdentityModels } from '../identity/models';
import { followToLive } from '../identity/tombstones';
import type { Logger } from '../logger';
import { escapeSlackText } from '../channels/slack/escape';
import type { CardUpdates } from './card-updates';

/** Longest name accepted (Slack shows a post's username up to 80 characters). */
export const MAX_NAME_LENGTH = 80;

export interface NamingOptions {
  models: IdentityModels;
  cards: Pick<CardUpdates, 'requestRefresh'>;
  log: Logger;
  /** Called after a rename is stored (the hot cache, src/identity/cache.ts). */
  customerChanged?: (id: Types.ObjectId) => Promise<void>;
}

/** The name as stored: whitespace collapsed; refused if empty, too long or holding control characters. */
export function cleanName(raw: string): string {
  const name = raw.replace(/\s+/g, ' ').trim();
  if (name === '') throw new PayloadError('displayName: must not be empty');
  if ([...name].length > MAX_NAME_LENGTH)
    throw new PayloadError(`displayName: at most ${MAX_NAME_LENGTH} characters`);
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new PayloadError('displayName: control characters');
  return name;
}

export function createNaming(o: NamingOptions) {
  const { Customer } = o.models;

  return {
    /**
     * Sets the live customer's name (following a merge); returns the customer as stored.
     * `source`: `agent` (Slack) or `admin` (API, CLI).
     */
    async rename(
      customerId: Types.ObjectId,
      rawName: string,
      source: 'agent' | 'admin',
      actor: string,
    ): Promise<Customer> {
      const name = cleanName(rawName);
      const start = await Customer.findById(customerId).lean<Customer>();
      if (!start) throw new NotFoundError(`customer ${String(customerId)}`);
      const live = await followToLive(Customer, start);
      const updated = await Customer.findOneAndUpdate(
        { _id: live._id },
        { $set: { displayName: name, 'profile.name': { value: name, source, at: new Date() } } },
        { returnDocument: 'after' },
      ).lean<Customer>();
      if (!updated) throw new NotFoundError(`customer ${String(customerId)}`);
      await o.customerChanged?.(live._id);
      await o.cards.requestRefresh(live._id);
      o.log.info({ customerId: String(live._id), source, actor }, 'customer named');
      return updated;
    },
  };
}

export type Naming = ReturnType<typeof createNaming>;

/**
 * `/rapport name <name>` (and the card's name field): the handler commands.ts delegates to.
 * Answers with the ephemeral text for the agent.
 */
export async function nameFromSlack(
  naming: Naming,
  customer: Customer,
  text: string,
  userId: string,
): Promise<string> {
  if (!text.trim()) return 'Usage: `/rapport name <name>` in the customer thread (or add the customer id).';
  try {
    const named = await naming.rename(customer._id, text, 'agent', `slack:${userId}`);
    return `Named: this customer is now *${escapeSlackText(named.displayName ?? '')}*. The card and later posts use it.`;
  } catch (err) {
    if (err instanceof PayloadError) return `That name cannot be used (${err.message.replace(/^displayName: /, '')}).`;
    throw err;
  }
}

/**
 * How operator commands name a customer: by id (24 hex digits), by email address, or by phone
 * number in any usual format (`+1 415 555 0123`, `(415) 555-0123` with DEFAULT_REGION). Merged-away
 * customers lead to the customer they were merged into, as the admin API's lookups do.
 */
import { Types } from 'mongoose';
import type { RapportApp } from '../app';
import { PayloadError } from '../errors';
import type { Customer, Identity } from '../identity/models';
import { normalizePhone } from '../identity/phone';
import { followToLive } from '../identity/tombstones';

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]{2,}$/;

/** The identity key `ref` names, or undefined when it is a customer id. Throws on anything else. */
export function identityKeyOf(ref: string, app: Pick<RapportApp, 'config'>): string | undefined {
  const raw = ref.trim();
  if (Types.ObjectId.isValid(raw) && /^[0-9a-f]{24}$/i.test(raw)) return undefined;
  if (raw.includes('@')) {
    if (!EMAIL.test(raw)) throw new PayloadError(`"${raw}" is not a valid email address`);
    return `email:${raw.toLowerCase()}`;
  }
  const e164 = normalizePhone(raw, app.config.defaultRegion);
  if (!e164) throw new PayloadError(`"${raw}" is not a customer id, an email address or a phone number`);
  return `phone:${e164}`;
}

/** The live customer's id for an id, email or phone; throws PayloadError (with the reason) if none. */
export async function resolveCustomer(ref: string, app: RapportApp): Promise<string> {
  const key = identityKeyOf(ref, app);
  if (key === undefined) return ref.trim();
  const { Identity, Customer } = app.models;
  const identity = await Identity.findOne({ key }).lean<Identity>();
  const start = identity ? await Customer.findById(identity.customerId).lean<Customer>() : null;
  if (!start) throw new PayloadError(`no customer has ${key.replace(':', ' ')}`);
  return String((await followToLive(Customer, start))._id);
}

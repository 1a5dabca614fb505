/**
 * Claims: linking identities that share no key (a Messenger PSID and a phone number or email).
 *
 * A customer who writes just a phone number or an email (`detectClaim`) is sent a 6-digit code over
 * the claimed channel (the router sends it) and must send it back on the ORIGINAL channel within
 * 15 minutes. Only then are the two customers merged (reason `claim`), or the claimed identity
 * attached when nobody had it yet. Receiving the code proves control of the claimed address; sending
 * it back on the original channel proves the same person controls both. Without that, anyone could
 * type someone else's number and read their history.
 *
 * Rules
 * - Only a message that is exactly six digits (spaces allowed) counts as an attempt; anything else
 *   is ordinary conversation (`none`).
 * - At most 5 attempts per code; the 5th wrong one locks the claim (`locked`). A wrong, expired or
 *   locked code merges nothing.
 * - The code is stored as scrypt(code, per-claim salt), never in clear. A new claim from the same
 *   channel supersedes the pending one.
 * - Expiry is checked on read (`expiresAt`): FerretDB v1 has no TTL indexes. Finished claims stay
 *   as an audit trail.
 * - An attempt is counted before the code is compared, by inserting `<claimId>:<n>` (n = 1…5) into
 *   `claim_attempts`: the unique `_id` makes each n taken once, so concurrent guesses can never
 *   exceed 5. (`$inc` cannot do this on FerretDB v1: concurrent updates of one document lose
 *   increments; see merge.ts, "Lost updates".) `attempts` on the claim is informational.
 * - Crash safety: the merge or attach happens BEFORE the claim is marked verified. A crash in
 *   between leaves the claim pending; sending the code again repeats the (idempotent) merge, which
 *   finds the pair already merged or resumes it.
 *
 * Agents and the admin API are trusted: `linkIdentity` merges at once, recorded with its actor.
 */
import { randomBytes, randomInt, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { Types } from 'mongoose';
import type { CountryCode } from 'libphonenumber-js';
import { ConflictError, NotFoundError } from '../errors';
import type { Claim, ClaimKind, Customer, Identity, IdentityModels, Source } from './models';
import { parseCustomerId, type MergeResult, type MergeService } from './merge';
import { normalizePhone } from './phone';
import { isDuplicateKeyError } from './resolve';
import { followToLive, liveCustomerById } from './tombstones';

const scrypt = promisify(scryptCallback) as (
  password: string,
  salt: string,
  keylen: number,
) => Promise<Buffer>;

/** How long a code is valid. */
export const CLAIM_TTL_MS = 15 * 60 * 1000;
/** Attempts per code; the last wrong one locks the claim. */
export const MAX_CLAIM_ATTEMPTS = 5;
/** After expiry, a 6-digit message still answers `expired`/`locked` for this long, then `none`. */
const CLAIM_MEMORY_MS = 60 * 60 * 1000;

export interface ClaimTarget {
  kind: ClaimKind;
  /** E.164 or lower-cased email. */
  value: string;
}

/** `phone:+…` or `email:…`. */
export function claimKey(claim: ClaimTarget): string {
  return `${claim.kind}:${claim.value}`;
}

const EMAIL = /[^\s@<>()"',;:]+@[^\s@<>()"',;:]+\.[a-z]{2,}/i;
const EMAIL_WHOLE =
  /^[^\s@<>()"',;:]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}$/i;
/** A typed phone number: optional `+`, digits and separators, ending in a digit. */
const PHONE_RUN = /\+?\(?\d[\d\s().\-/\u2010-\u2015]{5,}\d/g;
/** Longer messages are conversation, not a claim. */
const MAX_CLAIM_TEXT = 80;
/** Words allowed around the number or email ("my number is", "it's", "email me at"). */
const MAX_FILLER_WORDS = 6;

function fillerOk(rest: string): boolean {
  const words = rest
    .replace(/[.,:;!?'"()\-–—]/g, ' ')
    .split(/\s+/)
    .filter(Boolean);
  return words.length <= MAX_FILLER_WORDS && !/\d|@/.test(rest);
}

/**
 * The phone number or email a message is essentially made of ("+44 20 7946 0958", "my number is
 * 415 555 0123", "it's Ada@Example.com"), or undefined for anything else — longer texts, two
 * numbers, numbers inside a sentence about something else. Pure.
 */
export function detectClaim(text: string, defaultRegion: CountryCode): ClaimTarget | undefined {
  const trimmed = text.trim();
  if (trimmed.length === 0 || trimmed.length > MAX_CLAIM_TEXT) return undefined;

  const email = EMAIL.exec(trimmed);
  if (email) {
    const value = email[0].replace(/[.]+$/, '').toLowerCase();
    if (!EMAIL_WHOLE.test(value)) return undefined;
    const rest = trimmed.replace(email[0], ' ');
    return fillerOk(rest) ? { kind: 'email', value } : undefined;
  }

  const runs = trimmed.match(PHONE_RUN) ?? [];
  if (runs.length !== 1) return undefined;
  const run = runs[0] ?? '';
  const rest = trimmed.replace(run, ' ');
  if (!fillerOk(rest)) return undefined;
  const e164 = normalizePhone(run.trim(), defaultRegion);
  return e164 === undefined ? undefined : { kind: 'phone', value: e164 };
}

export type VerifyOutcome =
  | { outcome: 'none' }
  | { outcome: 'verified'; merge: MergeResult | undefined }
  | { outcome: 'wrong' | 'expired' | 'locked' };

export interface StartClaimInput {
  customerId: Types.ObjectId | string;
  /** The identity the customer wrote on; the code must come back on it. */
  identityKey: string;
  claim: ClaimTarget;
}

export interface StartClaimResult {
  /** Empty when `alreadyLinked`. */
  claimId: string;
  /** The code to send over the claimed channel; empty when `alreadyLinked`. */
  code: string;
  /** The claimed identity already belongs to this customer: nothing to send. */
  alreadyLinked: boolean;
}

export interface ClaimService {
  startClaim(input: StartClaimInput): Promise<StartClaimResult>;
  verifyClaim(input: {
    customerId: Types.ObjectId | string;
    identityKey: string;
    text: string;
  }): Promise<VerifyOutcome>;
  /** Trusted link (agent, admin): merges at once, or attaches a new verified identity. */
  linkIdentity(input: {
    customerId: Types.ObjectId | string;
    claim: ClaimTarget;
    actor: string;
    reason: 'agent' | 'admin';
  }): Promise<MergeResult | { attached: true }>;
}

export interface ClaimServiceOptions {
  models: IdentityModels;
  merges: MergeService;
  /** Clock, for expiry. @defaultValue `() => new Date()` */
  now?: () => Date;
}

async function hashCode(code: string, salt: string): Promise<Buffer> {
  return scrypt(code, salt, 32);
}

export function createClaimService({
  models,
  merges,
  now = () => new Date(),
}: ClaimServiceOptions): ClaimService {
  const { Customer, Identity, Claim, ClaimAttempt } = models;

  /** Counts one attempt; its number (1…5), or undefined when all are used. */
  async function takeAttempt(claimId: Types.ObjectId): Promise<number | undefined> {
    const used = await ClaimAttempt.countDocuments({ claimId });
    for (let n = used + 1; n <= MAX_CLAIM_ATTEMPTS; n++) {
      try {
        await ClaimAttempt.create({ _id: `${String(claimId)}:${n}`, claimId });
        return n;
      } catch (err) {
        if (!isDuplicateKeyError(err)) throw err;
      }
    }
    return undefined;
  }

  async function liveOf(customerId: Types.ObjectId | string): Promise<Customer> {
    const live = await liveCustomerById(Customer, parseCustomerId(customerId));
    if (!live) throw new NotFoundError(`customer ${String(customerId)}`);
    return live;
  }

  /**
   * Makes `claim` an identity of `customer`: attaches it when nobody has it, merges when another
   * customer does. Idempotent.
   */
  async function link(
    customer: Customer,
    claim: ClaimTarget,
    source: Source,
    reason: 'claim' | 'agent' | 'admin',
    actor: string,
  ): Promise<MergeResult | undefined> {
    const key = claimKey(claim);
    let identity: Identity | null = null;
    for (let attempt = 0; attempt < 5 && !identity; attempt++) {
      try {
        identity = await Identity.findOneAndUpdate(
          { key },
          {
            $setOnInsert: { kind: claim.kind, value: claim.value, customerId: customer._id, source },
            $set: { verified: true },
          },
          { upsert: true, returnDocument: 'after' },
        ).lean<Identity>();
      } catch (err) {
        if (!isDuplicateKeyError(err)) throw err;
      }
    }
    if (!identity) throw new Error(`could not upsert identity ${key}`);

    const owner = await liveCustomerById(Customer, identity.customerId);
    if (!owner) {
      // Half-created identity (its first message crashed before the customer was created): it has
      // no history yet, so it simply becomes this customer's.
      await Identity.updateOne(
        { key, customerId: identity.customerId },
        { $set: { customerId: customer._id } },
      );
    } else if (!owner._id.equals(customer._id)) {
      return merges.mergeCustomers({ aId: customer._id, bId: owner._id, reason, actor });
    }
    if (claim.kind === 'email') {
      await Customer.updateOne(
        { _id: customer._id, 'profile.email': null },
        { $set: { 'profile.email': { value: claim.value, source, at: now() } } },
      );
    }
    // Attached to a customer that a merge tombstoned meanwhile: follow it (insert-then-check, as
    // for messages; merge.ts).
    const current = await Customer.findById(customer._id).lean<Customer>();
    if (current?.mergedInto) {
      const live = await followToLive(Customer, current);
      await Identity.updateOne({ key, customerId: customer._id }, { $set: { customerId: live._id } });
    }
    return undefined;
  }

  return {
    async startClaim({ customerId, identityKey, claim }) {
      const customer = await liveOf(customerId);
      const key = claimKey(claim);
      const existing = await Identity.findOne({ key }).lean<Identity>();
      if (key === identityKey || existing) {
        const owner = existing ? await liveCustomerById(Customer, existing.customerId) : customer;
        if (owner?._id.equals(customer._id)) return { claimId: '', code: '', alreadyLinked: true };
      }
      await Claim.updateMany({ identityKey, status: 'pending' }, { $set: { status: 'superseded' } });
      const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
      const salt = randomBytes(16).toString('hex');
      const created = await Claim.create({
        customerId: customer._id,
        identityKey,
        kind: claim.kind,
        value: claim.value,
        claimedKey: key,
        codeHash: (await hashCode(code, salt)).toString('hex'),
        salt,
        expiresAt: new Date(now().getTime() + CLAIM_TTL_MS),
        attempts: 0,
        status: 'pending',
      });
      return { claimId: String(created._id), code, alreadyLinked: false };
    },

    async verifyClaim({ customerId, identityKey, text }) {
      const code = text.replace(/\s+/g, '');
      if (!/^\d{6}$/.test(code)) return { outcome: 'none' };
      const claim = await Claim.findOne({ identityKey }).sort({ createdAt: -1, _id: -1 }).lean<Claim>();
      if (!claim) return { outcome: 'none' };
      const at = now().getTime();
      const expired = at > claim.expiresAt.getTime();
      if (expired && at > claim.expiresAt.getTime() + CLAIM_MEMORY_MS) return { outcome: 'none' };
      if (claim.status === 'locked') return { outcome: 'locked' };
      if (claim.status === 'expired') return { outcome: 'expired' };
      if (claim.status !== 'pending') return { outcome: 'none' };
      if (expired) {
        await Claim.updateOne({ _id: claim._id, status: 'pending' }, { $set: { status: 'expired' } });
        return { outcome: 'expired' };
      }

      const attemptNo = await takeAttempt(claim._id);
      if (attemptNo === undefined) {
        await Claim.updateOne({ _id: claim._id, status: 'pending' }, { $set: { status: 'locked' } });
        return { outcome: 'locked' };
      }
      await Claim.updateOne({ _id: claim._id }, { $max: { attempts: attemptNo } });
      const attempt = claim;
      const expected = Buffer.from(attempt.codeHash, 'hex');
      const presented = await hashCode(code, attempt.salt);
      if (expected.length !== presented.length || !timingSafeEqual(expected, presented)) {
        if (attemptNo >= MAX_CLAIM_ATTEMPTS) {
          await Claim.updateOne({ _id: claim._id, status: 'pending' }, { $set: { status: 'locked' } });
          return { outcome: 'locked' };
        }
        return { outcome: 'wrong' };
      }

      // Merge (or attach) first, then mark verified: see the module comment.
      const customer = await liveOf(customerId);
      const merge = await link(
        customer,
        { kind: attempt.kind, value: attempt.value },
        'claim',
        'claim',
        `customer:${identityKey}`,
      );
      await Claim.updateOne(
        { _id: claim._id, status: 'pending' },
        {
          $set: {
            status: 'verified',
            verifiedAt: now(),
            ...(merge ? { mergeEventId: merge.event._id } : {}),
          },
        },
      );
      return { outcome: 'verified', merge };
    },

    async linkIdentity({ customerId, claim, actor, reason }) {
      const id = parseCustomerId(customerId);
      const customer = await Customer.findById(id).lean<Customer>();
      if (!customer) throw new NotFoundError(`customer ${String(id)}`);
      if (customer.mergedInto) {
        throw new ConflictError(
          `customer ${String(id)} is merged into ${String(customer.mergedInto)}; link to the live customer`,
        );
      }
      const merge = await link(customer, claim, reason, reason, actor);
      return merge ?? { attached: true };
    },
  };
}

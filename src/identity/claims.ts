/**
 * Claims: linking identities that share no key (a Messenger PSID and a phone number or email).
 *
 * A customer who makes an explicit claim (`readClaim(...).explicit`: just a phone number, or a
 * documented form such as "my number is …" in English, Spanish, Portuguese or French; README
 * "Claims") is sent a 6-digit code over the claimed channel (the router sends it, within the limits
 * of claim-limits.ts) and must send it back on the ORIGINAL channel within 15 minutes. A message
 * that merely mentions a number is not explicit: only an agent may decide to send a code. Only then are the two customers merged (reason `claim`), or the claimed identity
 * attached when nobody had it yet. Receiving the code proves control of the claimed address; sending
 * it back on the original channel proves the same person controls both. Without that, anyone could
 * type someone else's number and read their history.
 *
 * Rules
 * - Only a message that is exactly six digits (spaces allowed) counts as an attempt; anything else
 *   is ordinary conversation (`none`).
 * - At most 5 attempts per code; the 5th wrong one locks the claim (`locked`). With `limits`, each
 *   attempt is also counted against the claimed target's daily budget (across all its claims, so a
 *   new claim gives no new guesses); a spent budget locks the claim too. A wrong, expired or
 *   locked code merges nothing.
 * - The code is stored as scrypt(code, per-claim salt), never in clear. A new claim from the same
 *   channel supersedes the pending one.
 * - Expiry is checked on read (`expiresAt`): FerretDB v1 has no TTL indexes. Finished claims stay
 *   as an audit trail.
 * - An attempt is counted before the code is compared, by inserting `<claimId>:<n>` (n = 1…5) into
 *   `claim_attempts`: the unique `_id` makes each n taken once, so concurrent guesses can never
 *   exceed 5. (`$inc` cannot do this on FerretDB v1: concurrent updates of one document lose
 *   increments; see README.md, "Lost updates and settle".) `attempts` on the claim is informational.
 * - Crash safety: the merge or attach happens BEFORE the claim is marked verified. A crash in
 *   between leaves the claim pending; sending the code again repeats the (idempotent) merge, which
 *   finds the pair already merged or resumes it.
 * - A retried job of the message that verified a claim (`attemptId`, recorded as `verifiedBy`) is
 *   answered `verified` again with the same merge, so the confirmation and notes that the router
 *   appends after it are not lost to a crash in between.
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
import { isDuplicateKeyError } from '../storage/duplicate-key';
import { followToLive, liveCustomerById } from './tombstones';
import type { ClaimLimits } from './claim-limits';

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
/** Words allowed around the number or email for an agent to be offered a claim ("call my wife at"). */
const MAX_FILLER_WORDS = 6;

/**
 * The explicit claim forms (README "Claims"), matched against the words before the number or email,
 * lower-cased, without accents and with single spaces. English, Spanish, Portuguese and French.
 */
const NUMBER_WORDS =
  'number|phone|phone number|mobile|mobile number|cell|cell number|cellphone|whatsapp|whatsapp number|' +
  'email|e-mail|email address|e-mail address';
const EXPLICIT_PREFIXES: RegExp[] = [
  // English: "my number is", "my whatsapp number:", "this is my whatsapp", "my email is".
  new RegExp(`^my (?:${NUMBER_WORDS})(?: is)?$`),
  new RegExp(`^this is my (?:${NUMBER_WORDS})$`),
  // Spanish: "mi número es", "mi número de whatsapp es", "este es mi celular", "mi correo es".
  /^mi (?:numero|celular|movil|telefono|whatsapp|correo|correo electronico|email|e-mail)(?: de (?:telefono|celular|movil|whatsapp))?(?: es)?$/,
  /^(?:este|ese) es mi (?:numero|celular|movil|telefono|whatsapp|correo|correo electronico|email|e-mail)(?: de (?:telefono|celular|movil|whatsapp))?$/,
  // Portuguese: "meu número é", "meu zap é", "este é o meu whatsapp", "meu e-mail é".
  /^(?:o )?meu (?:numero|celular|telefone|whatsapp|zap|email|e-mail)(?: de (?:telefone|celular|whatsapp))?(?: e)?$/,
  /^(?:este|esse) e (?:o )?meu (?:numero|celular|telefone|whatsapp|zap|email|e-mail)(?: de (?:telefone|celular|whatsapp))?$/,
  // French: "mon numéro est", "mon numéro de téléphone :", "voici mon whatsapp", "c'est mon e-mail".
  /^mon (?:numero|portable|telephone|whatsapp|mail|e-mail|email|adresse mail|adresse e-mail)(?: de (?:telephone|portable|whatsapp))?(?: est)?$/,
  /^(?:voici|c'est|c’est) mon (?:numero|portable|telephone|whatsapp|mail|e-mail|email|adresse mail|adresse e-mail)(?: de (?:telephone|portable|whatsapp))?$/,
];

/** Lower case, no accents, single spaces, without the `:`/`-`/`=` that may end a label. */
function normalizeWords(text: string): string {
  return text
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/\s*[:=\-–—]+$/, '')
    .trim();
}

/** Whether the text around the value makes an explicit claim: nothing, or a listed form before it. */
function isExplicit(before: string, after: string): boolean {
  if (!/^[\s.!]*$/.test(after)) return false;
  const words = normalizeWords(before);
  return words === '' || EXPLICIT_PREFIXES.some((p) => p.test(words));
}

function fillerOk(rest: string): boolean {
  const words = rest
    .replace(/[.,:;!?'"()\-–—]/g, ' ')
    .split(/\s+/)
    .filter(Boolean);
  return words.length <= MAX_FILLER_WORDS && !/\d|@/.test(rest);
}

/** A phone number or email read from a customer message, and how sure we are it is a claim. */
export interface ReadClaim {
  target: ClaimTarget;
  /**
   * True for an explicit claim (the message is just the number/email, or a form of
   * `EXPLICIT_PREFIXES` followed by it): a code may be sent automatically. False when the message
   * merely mentions one ("call my wife at +1 …"): only an agent may decide to send a code.
   */
  explicit: boolean;
}

/** The one number or email of a short message, with the text before and after it. */
function findValue(
  trimmed: string,
  defaultRegion: CountryCode,
): { target: ClaimTarget; before: string; after: string; rest: string } | undefined {
  const email = EMAIL.exec(trimmed);
  if (email) {
    const value = email[0].replace(/[.]+$/, '').toLowerCase();
    if (!EMAIL_WHOLE.test(value)) return undefined;
    const at = email.index;
    return {
      target: { kind: 'email', value },
      before: trimmed.slice(0, at),
      after: trimmed.slice(at + email[0].length),
      rest: trimmed.replace(email[0], ' '),
    };
  }
  const runs = [...trimmed.matchAll(PHONE_RUN)];
  if (runs.length !== 1) return undefined;
  const run = runs[0]!;
  const e164 = normalizePhone(run[0].trim(), defaultRegion);
  if (e164 === undefined) return undefined;
  return {
    target: { kind: 'phone', value: e164 },
    before: trimmed.slice(0, run.index),
    after: trimmed.slice(run.index + run[0].length),
    rest: trimmed.replace(run[0], ' '),
  };
}

/**
 * Reads a claim from a customer message: the phone number or email it is essentially made of,
 * `explicit` when the message is just that or one of the documented claim forms (README "Claims").
 * Undefined for anything else — longer texts, two numbers, numbers inside a sentence. Pure.
 */
export function readClaim(text: string, defaultRegion: CountryCode): ReadClaim | undefined {
  const trimmed = text.trim();
  if (trimmed.length === 0 || trimmed.length > MAX_CLAIM_TEXT) return undefined;
  const found = findValue(trimmed, defaultRegion);
  if (!found || !fillerOk(found.rest)) return undefined;
  return { target: found.target, explicit: isExplicit(found.before, found.after) };
}

/** The phone number or email of a short message, explicit or not (an agent's `/rapport link` value). */
export function detectClaim(text: string, defaultRegion: CountryCode): ClaimTarget | undefined {
  return readClaim(text, defaultRegion)?.target;
}

/** The claim a code was checked against: what was claimed, and attempts left on this code. */
export interface ClaimRef {
  kind: ClaimKind;
  value: string;
}

export type VerifyOutcome =
  | { outcome: 'none' }
  | { outcome: 'verified'; merge: MergeResult | undefined; claim: ClaimRef }
  | { outcome: 'wrong'; claim: ClaimRef; attemptsLeft: number }
  | { outcome: 'expired' | 'locked'; claim: ClaimRef };

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
    /** Identifies this attempt (the message key), so a retried job does not count it twice. */
    attemptId?: string;
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
  /**
   * The per-target attempt budget across claims (claim-limits.ts). @defaultValue none: only the
   * per-code cap of MAX_CLAIM_ATTEMPTS applies.
   */
  limits?: Pick<ClaimLimits, 'takeAttempt'>;
  /** Clock, for expiry. @defaultValue `() => new Date()` */
  now?: () => Date;
  /** Called before and after a claim attaches an identity to a customer (the hot cache, cache.ts). */
  identityChanging?: () => Promise<void>;
}

async function hashCode(code: string, salt: string): Promise<Buffer> {
  return scrypt(code, salt, 32);
}

export function createClaimService({
  models,
  merges,
  limits,
  now = () => new Date(),
  identityChanging = async () => undefined,
}: ClaimServiceOptions): ClaimService {
  const { Customer, Identity, Claim, ClaimAttempt, MergeEvent } = models;

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

  /**
   * The answer to a retried job of the message that verified `claim` (it crashed before telling
   * anyone): `verified` again, with the merge it made, so the confirmation and notes are not lost.
   */
  async function replayVerified(claim: Claim, ref: ClaimRef): Promise<VerifyOutcome> {
    const event = claim.mergeEventId
      ? await MergeEvent.findById(claim.mergeEventId).lean<MergeResult['event']>()
      : null;
    return { outcome: 'verified', merge: event ? { event } : undefined, claim: ref };
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
    await identityChanging();
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
      await identityChanging();
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
    // for messages; identity/README.md, "Lost updates and settle").
    const current = await Customer.findById(customer._id).lean<Customer>();
    if (current?.mergedInto) {
      const live = await followToLive(Customer, current);
      await Identity.updateOne({ key, customerId: customer._id }, { $set: { customerId: live._id } });
    }
    await identityChanging();
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

    async verifyClaim({ customerId, identityKey, text, attemptId }) {
      const code = text.replace(/\s+/g, '');
      if (!/^\d{6}$/.test(code)) return { outcome: 'none' };
      const claim = await Claim.findOne({ identityKey }).sort({ createdAt: -1, _id: -1 }).lean<Claim>();
      if (!claim) return { outcome: 'none' };
      const ref: ClaimRef = { kind: claim.kind, value: claim.value };
      const at = now().getTime();
      const expired = at > claim.expiresAt.getTime();
      if (expired && at > claim.expiresAt.getTime() + CLAIM_MEMORY_MS) return { outcome: 'none' };
      if (claim.status === 'verified' && attemptId !== undefined && claim.verifiedBy === attemptId)
        return replayVerified(claim, ref);
      if (claim.status === 'locked') return { outcome: 'locked', claim: ref };
      if (claim.status === 'expired') return { outcome: 'expired', claim: ref };
      if (claim.status !== 'pending') return { outcome: 'none' };
      if (expired) {
        await Claim.updateOne({ _id: claim._id, status: 'pending' }, { $set: { status: 'expired' } });
        return { outcome: 'expired', claim: ref };
      }

      const attemptNo = await takeAttempt(claim._id);
      const budget =
        attemptNo === undefined
          ? { ok: false, left: 0 }
          : ((await limits?.takeAttempt({
              target: claim.claimedKey,
              id: attemptId ?? `${String(claim._id)}:${attemptNo}`,
            })) ?? { ok: true, left: MAX_CLAIM_ATTEMPTS });
      if (attemptNo === undefined || !budget.ok) {
        await Claim.updateOne({ _id: claim._id, status: 'pending' }, { $set: { status: 'locked' } });
        return { outcome: 'locked', claim: ref };
      }
      await Claim.updateOne({ _id: claim._id }, { $max: { attempts: attemptNo } });
      const expected = Buffer.from(claim.codeHash, 'hex');
      const presented = await hashCode(code, claim.salt);
      if (expected.length !== presented.length || !timingSafeEqual(expected, presented)) {
        const attemptsLeft = Math.min(MAX_CLAIM_ATTEMPTS - attemptNo, budget.left);
        if (attemptsLeft <= 0) {
          await Claim.updateOne({ _id: claim._id, status: 'pending' }, { $set: { status: 'locked' } });
          return { outcome: 'locked', claim: ref };
        }
        return { outcome: 'wrong', claim: ref, attemptsLeft };
      }

      // Merge (or attach) first, then mark verified: see the module comment.
      const customer = await liveOf(customerId);
      const merge = await link(customer, ref, 'claim', 'claim', `customer:${identityKey}`);
      await Claim.updateOne(
        { _id: claim._id, status: 'pending' },
        {
          $set: {
            status: 'verified',
            verifiedAt: now(),
            ...(attemptId !== undefined ? { verifiedBy: attemptId } : {}),
            ...(merge ? { mergeEventId: merge.event._id } : {}),
          },
        },
      );
      return { outcome: 'verified', merge, claim: ref };
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

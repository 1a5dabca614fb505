/**
 * The identity module's claims and merges, seen from the router: turns a customer message into a
 * claim step and an agent's `/rapport link` into a trusted link.
 *
 * A customer message is, in this order:
 * - six digits while a claim is pending: a code attempt (verified, wrong, expired or locked), each
 *   answered to the customer and noted in the thread. The message itself is still posted.
 * - an explicit claim (`readClaim(...).explicit`: just a number, or "my number is …"): a code is sent
 *   to the claimed number, if the limits (claim-limits.ts) and the number's opt-outs allow it.
 * - a message that merely mentions a number ("call my wife at +1 …"): nothing is sent; the agent
 *   gets a note with a "Send a code to …" button (`CLAIM_OFFER_ACTION`), which only a permitted
 *   agent may press.
 *
 * The bridge decides; it returns a plan (the notes and sends to append after the customer's message,
 * with idempotent keys derived from the message) that the inbound router or the button applies. A
 * code is started at most once per message: a retried job or a second press sends no second code.
 */
import type { CountryCode } from 'libphonenumber-js';
import type { Types } from 'mongoose';
import type { ClaimsConfig } from '../config';
import type { Admission, ClaimLimits } from '../identity/claim-limits';
import {
  claimKey,
  detectClaim,
  readClaim,
  type ClaimService,
  type ClaimTarget,
  type VerifyOutcome,
} from '../identity/claims';
import type { MergeResult } from '../identity/merge';
import type { Customer, IdentityModels, Message } from '../identity/models';
import { liveCustomerById } from '../identity/tombstones';
import type { Channel } from '../canonical';
import { claimTexts, describeTarget, type CodeRefusal } from './claim-texts';
import type { LinkPort } from './commands';
import {
  CLAIM_OFFER_ACTION,
  type ClaimEffect,
  type ClaimMerge,
  type ClaimOffers,
  type ClaimPlan,
  type ClaimsPort,
} from './claim-plan';
import type { RouterModels } from './models';
import type { OptOuts } from './opt-outs';

export function mergeOutcome(result: MergeResult | undefined): ClaimMerge {
  return {
    kind: 'verified',
    survivorId: result ? String(result.event.survivorId) : undefined,
    mergedId: result ? String(result.event.mergedId) : undefined,
    mergeId: result ? String(result.event._id) : undefined,
    otherOwnerAgentId: result?.mergedOwnerAgentId,
  };
}

export interface ClaimsBridgeOptions {
  claims: ClaimService;
  models: RouterModels & IdentityModels;
  defaultRegion: CountryCode;
  config: ClaimsConfig;
  limits: ClaimLimits;
  /** STOPs, kept or from an erased customer (opt-outs.ts). */
  optOuts: Pick<OptOuts, 'anyOptedOut'>;
  /** Counts each code decision: sent, offered, opted_out, limited_<limit> (metrics). */
  onCode?: (outcome: string) => void;
}

/** Where a message came from and where answers to it go. */
interface Origin {
  customerId: Types.ObjectId;
  identityKey: string;
  messageKey: string;
  channel: Channel;
}

const note = (customerId: Types.ObjectId, key: string, text: string): ClaimEffect => ({
  kind: 'note',
  customerId,
  post: { key, kind: 'note', text, username: 'Rapport' },
});

/** An automatic answer on the app and identity the customer wrote from. */
const answer = (o: Origin, key: string, text: string): ClaimEffect => ({
  kind: 'send',
  customerId: o.customerId,
  send: { key, origin: 'auto', text, toIdentityKey: o.identityKey, via: o.channel },
});

export function createClaimsBridge(o: ClaimsBridgeOptions): ClaimsPort & LinkPort & ClaimOffers {
  const { claims, models, defaultRegion } = o;

  async function admit(
    origin: Origin,
    targetKey: string,
  ): Promise<Admission | { ok: false; limit: 'opted_out' }> {
    // A STOP on any channel of the target, kept or from an erased customer.
    if (await o.optOuts.anyOptedOut(targetKey)) return { ok: false, limit: 'opted_out' };
    return o.limits.admitCode({ sender: origin.identityKey, target: targetKey, id: origin.messageKey });
  }

  /** The key of a claim note: one per message, and one per press of its button. */
  const noteKey = (origin: Origin, by?: string) =>
    `claim-note:${origin.messageKey}${by ? `:${by}:${Date.now()}` : ''}`;

  function refused(origin: Origin, target: ClaimTarget, why: CodeRefusal, by?: string): ClaimEffect[] {
    o.onCode?.(why === 'opted_out' ? 'opted_out' : `limited_${why}`);
    const toTarget = why === 'target' || why === 'attempts' || why === 'opted_out';
    return [
      note(origin.customerId, noteKey(origin, by), claimTexts.agent.refused(target.value, why)),
      answer(
        origin,
        `claim-answer:${origin.messageKey}`,
        toTarget ? claimTexts.customer.cannot() : claimTexts.customer.later(),
      ),
    ];
  }

  /** Sends a code to a phone target, within limits: the effects to apply. */
  async function startCode(origin: Origin, target: ClaimTarget, by?: string): Promise<ClaimEffect[]> {
    const targetKey = `phone:${target.value}`;
    const codeKey = `claim-code:${origin.messageKey}`;
    const started = await models.CustomerSend.exists({ key: codeKey });
    const effects: ClaimEffect[] = [];
    if (!started) {
      const admission = await admit(origin, targetKey);
      if (!admission.ok) return refused(origin, target, admission.limit, by);
      const claim = await claims.startClaim({
        customerId: origin.customerId,
        identityKey: origin.identityKey,
        claim: target,
      });
      if (claim.alreadyLinked) return [];
      o.onCode?.('sent');
      effects.push({
        kind: 'send',
        customerId: origin.customerId,
        send: {
          key: codeKey,
          origin: 'claim_code',
          toIdentityKey: targetKey,
          text: claimTexts.code(o.config.businessName, claim.code, origin.channel),
        },
      });
    }
    effects.push(
      answer(
        origin,
        `claim-ask:${origin.messageKey}`,
        claimTexts.customer.codeSent(describeTarget('phone', target.value)),
      ),
      note(origin.customerId, noteKey(origin, by), claimTexts.agent.codeSent(target.value, by)),
    );
    return effects;
  }

  /** The plan after a code attempt on a pending claim. */
  async function afterAttempt(
    origin: Origin,
    customer: Customer,
    v: Exclude<VerifyOutcome, { outcome: 'none' }>,
  ): Promise<ClaimPlan> {
    const target = describeTarget(v.claim.kind, v.claim.value);
    const key = origin.messageKey;
    if (v.outcome === 'verified') {
      const live = (await liveCustomerById(models.Customer, customer._id)) ?? customer;
      const here: Origin = { ...origin, customerId: live._id };
      const confirm = answer(here, `claim-answer:${key}`, claimTexts.customer.confirmed(target));
      if (!v.merge)
        return {
          effects: [confirm, note(live._id, `claim-note:${key}`, claimTexts.agent.linked(v.claim.value))],
        };
      const outcome = mergeOutcome(v.merge);
      return {
        customer: live,
        effects: [confirm],
        merged: { outcome, survivorNote: claimTexts.agent.merged(v.claim.value, outcome.mergedId ?? '') },
      };
    }
    const [toCustomer, toAgent] =
      v.outcome === 'wrong'
        ? [
            claimTexts.customer.wrong(target, v.attemptsLeft),
            claimTexts.agent.wrong(v.claim.value, v.attemptsLeft),
          ]
        : v.outcome === 'expired'
          ? [claimTexts.customer.expired(), claimTexts.agent.expired(v.claim.value)]
          : [claimTexts.customer.locked(), claimTexts.agent.locked(v.claim.value)];
    return {
      effects: [
        answer(origin, `claim-answer:${key}`, toCustomer),
        note(origin.customerId, `claim-note:${key}`, toAgent),
      ],
    };
  }

  /** The plan for a message that may be a claim. */
  async function onClaimText(origin: Origin, text: string): Promise<ClaimPlan> {
    const read = readClaim(text, defaultRegion);
    if (!read) return { effects: [] };
    const { target, explicit } = read;
    const key = `claim-note:${origin.messageKey}`;
    if (target.kind === 'email')
      return { effects: [note(origin.customerId, key, claimTexts.agent.email(target.value, explicit))] };
    if (explicit) return { effects: await startCode(origin, target) };
    // A mention of the customer's own number is no claim.
    if (await models.Identity.exists({ key: `phone:${target.value}`, customerId: origin.customerId }))
      return { effects: [] };
    o.onCode?.('offered');
    return {
      effects: [
        {
          kind: 'note',
          customerId: origin.customerId,
          post: {
            key,
            kind: 'note',
            username: 'Rapport',
            text: claimTexts.agent.offer(target.value),
            button: {
              actionId: CLAIM_OFFER_ACTION,
              text: `Send a code to ${target.value}`,
              value: origin.messageKey,
            },
          },
        },
      ],
    };
  }

  return {
    async handle({ customer, identityKey, message }) {
      const origin: Origin = {
        customerId: customer._id,
        identityKey,
        messageKey: message.key,
        channel: message.channel,
      };
      const text = message.text ?? '';
      const verified = await claims.verifyClaim({
        customerId: customer._id,
        identityKey,
        text,
        attemptId: message.key,
      });
      if (verified.outcome !== 'none') return afterAttempt(origin, customer, verified);
      return onClaimText(origin, text);
    },

    async pressOffer({ userId, messageKey, authorize }) {
      const message = await models.Message.findOne({ key: messageKey, direction: 'in' }).lean<Message>();
      const customer = message ? await liveCustomerById(models.Customer, message.customerId) : undefined;
      const refusal = await authorize(customer ?? null);
      if (refusal !== undefined || !message || !customer)
        return { text: refusal ?? 'That message is no longer available.', effects: [] };
      const read = readClaim(message.text ?? '', defaultRegion);
      if (!read || read.target.kind !== 'phone')
        return {
          text: 'That message no longer holds a phone number (it may have been erased).',
          effects: [],
        };
      const origin: Origin = {
        customerId: customer._id,
        identityKey: message.identityKey,
        messageKey: message.key,
        channel: message.channel,
      };
      if (await models.CustomerSend.exists({ key: `claim-code:${message.key}` }))
        return { text: 'A code was already sent for this message.', effects: [] };
      const effects = await startCode(origin, read.target, userId);
      if (effects.length === 0)
        return { text: `${read.target.value} already belongs to this customer: no code is needed.`, effects };
      const sent = effects.some((e) => e.kind === 'send' && e.send.origin === 'claim_code');
      return {
        effects,
        text: sent
          ? `A code is on its way to ${read.target.value}; the customer was asked to send it back in their chat.`
          : 'No code was sent: the note in the thread says why.',
      };
    },
    identityKeyOf(value) {
      const claim = detectClaim(value, defaultRegion);
      return claim ? claimKey(claim) : undefined;
    },
    async link({ customerId, value, actor }) {
      const claim = detectClaim(value, defaultRegion);
      if (!claim) return { text: `"${value}" is not a phone number or email address.` };
      const result = await claims.linkIdentity({
        customerId: customerId as Types.ObjectId,
        claim,
        actor,
        reason: 'agent',
      });
      if ('attached' in result) return { text: `linked ${claim.value} to this customer.` };
      return {
        text: `linked ${claim.value}: it belonged to another customer, now merged into this one (undo: POST /api/merges/${String(result.event._id)}/undo).`,
        mergedOwnerAgentId: result.mergedOwnerAgentId,
        mergedId: String(result.event.mergedId),
        survivorId: String(result.event.survivorId),
      };
    },
  };
}

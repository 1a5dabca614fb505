/**
 * The identity module's claims and merges, seen from the router: turns a customer message into a
 * claim step (verify a code, or start a claim) and an agent's `/rapport link` into a trusted link.
 * A code is started at most once per message (keyed by the message), so a retried job does not
 * send the customer a second, different code.
 */
import type { CountryCode } from 'libphonenumber-js';
import type { Types } from 'mongoose';
import { claimKey, detectClaim, type ClaimService } from '../identity/claims';
import type { MergeResult } from '../identity/merge';
import type { RouterModels } from './models';
import type { LinkPort } from './commands';
import type { ClaimOutcome, ClaimsPort } from './inbound';

export function mergeOutcome(result: MergeResult | undefined): Extract<ClaimOutcome, { kind: 'verified' }> {
  return {
    kind: 'verified',
    survivorId: result ? String(result.event.survivorId) : undefined,
    mergedId: result ? String(result.event.mergedId) : undefined,
    mergeId: result ? String(result.event._id) : undefined,
    otherOwnerAgentId: result?.mergedOwnerAgentId,
  };
}

export function createClaimsBridge(
  claims: ClaimService,
  models: RouterModels,
  defaultRegion: CountryCode,
): ClaimsPort & LinkPort {
  return {
    async handle({ customerId, identityKey, message }) {
      const text = message.text ?? '';
      const verified = await claims.verifyClaim({ customerId, identityKey, text });
      if (verified.outcome === 'verified') return mergeOutcome(verified.merge);
      if (verified.outcome !== 'none') return { kind: 'rejected', reason: verified.outcome };
      const claim = detectClaim(text, defaultRegion);
      if (!claim) return { kind: 'none' };
      // Already handled for this message (a retried job): do not issue a second code.
      if (await models.CustomerSend.exists({ key: `claim-ask:${message.key}` })) return { kind: 'none' };
      const started = await claims.startClaim({ customerId, identityKey, claim });
      if (started.alreadyLinked) return { kind: 'already_linked' };
      return {
        kind: 'code_needed',
        claimKey: `${claim.kind}:${claim.value}`,
        code: started.code,
        value: claim.value,
        claimKind: claim.kind,
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

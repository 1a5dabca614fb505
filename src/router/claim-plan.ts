/**
 * What a customer message means for claims, as data: the router's port to the claims bridge
 * (claims-bridge.ts) and the plan it returns — notes and sends to append after the customer's
 * message, each under an idempotent key — so the bridge decides and the router applies.
 */
import type { Types } from 'mongoose';
import type { InboundMessage } from '../canonical';
import type { Customer } from '../identity/models';
import type { NewAgentPost, NewCustomerSend, Outbox } from './outbox';

/** A verified claim that merged two customers (router onMerged tells both threads). */
export interface ClaimMerge {
  kind: 'verified';
  survivorId?: string;
  mergedId?: string;
  mergeId?: string;
  otherOwnerAgentId?: string;
}

/** One thing to append to a customer's outboxes. */
export type ClaimEffect =
  | { kind: 'note'; customerId: Types.ObjectId; post: NewAgentPost }
  | { kind: 'send'; customerId: Types.ObjectId; send: NewCustomerSend };

/** What a customer message means for claims. */
export interface ClaimPlan {
  /** The live customer the message belongs to now: after a verified merge, the survivor. */
  customer?: Customer;
  /** Appended after the customer's message is posted, in order. */
  effects: ClaimEffect[];
  /** A merge the claim made: both threads are told (router onMerged), the survivor's with this note. */
  merged?: { outcome: ClaimMerge; survivorNote: string };
}

/** The identity module's claims, seen from the router (wired in app.ts). */
export interface ClaimsPort {
  handle(input: { customer: Customer; identityKey: string; message: InboundMessage }): Promise<ClaimPlan>;
}

/** Appends a plan's effects, in order (each idempotent by its key). */
export async function applyClaimEffects(outbox: Outbox, effects: ClaimEffect[]): Promise<void> {
  for (const e of effects) {
    if (e.kind === 'note') await outbox.postToAgent(e.customerId, e.post);
    else await outbox.sendToCustomer(e.customerId, e.send);
  }
}

/** The Slack action id of the "Send a code to …" button; its value is the offered message's key. */
export const CLAIM_OFFER_ACTION = 'rapport_claim_send';

/** The "Send a code to …" button's handler (claims-bridge.ts). */
export interface ClaimOffers {
  /** A press by `userId` on the offer made for message `messageKey`: the ephemeral answer and effects. */
  pressOffer(input: {
    userId: string;
    messageKey: string;
    /**
     * The permission check (src/router/authorize.ts): the refusal text, or undefined when `userId`
     * may act on the customer (`null`: the message or its customer is gone).
     */
    authorize: (
      customer: { _id: Types.ObjectId; ownerAgentId?: string } | null,
    ) => Promise<string | undefined>;
  }): Promise<{ text: string; effects: ClaimEffect[] }>;
}

/**
 * The inbound event handler: what the router worker calls for each job. Free of BullMQ so it can be
 * called (and tested) directly. Errors keep their type: PayloadError (a sender address we cannot
 * resolve) is non-retryable; anything else (database down, lost race beyond retries) is retryable.
 * Every step is idempotent, so a retried job converges (see resolve.ts).
 */
import type { InboundEvent } from '../canonical';
import type { Logger } from '../logger';
import type { Customer, Identity } from './models';
import type { IdentityStore } from './resolve';

export interface InboundResult {
  /** The live customer the message was filed under (message events only). */
  customerId?: string;
  /** That customer's document as resolution read it, when it is the one filed under (saves a read). */
  customer?: Customer;
  /** Message: newly stored (false for a redelivery). Status: the report changed the message. */
  stored: boolean;
  /** Fills the hot cache (first contact): called once routing is done. */
  refill?: () => Promise<void>;
  /** This message created `customer` (a first contact: it has no Slack thread yet). */
  created?: boolean;
  /** The sender's identity after this message (with `created`: the new customer's only one). */
  identity?: Identity;
}

/** About the job's run: `retried`, an earlier run of it failed, stalled or was deferred. */
export interface InboundRun {
  retried?: boolean;
}

export interface InboundProcessor {
  process(event: InboundEvent, run?: InboundRun): Promise<InboundResult>;
}

export function createInboundProcessor({
  store,
  log,
}: {
  store: IdentityStore;
  log: Logger;
}): InboundProcessor {
  return {
    async process(event) {
      if (event.type === 'status') {
        const { updated } = await store.applyStatus(event.status);
        log.debug(
          { key: event.status.key, provider: event.status.provider, state: event.status.state, updated },
          updated ? 'delivery status applied' : 'delivery status ignored (unknown message or repeat)',
        );
        return { stored: updated };
      }
      const { message } = event;
      const { customer, identity, created, unmoved, refill } = await store.resolveCustomer(message);
      // storeInbound answers with the customer the message was filed under: the resolved one, or
      // the identity's new live customer when a merge or undo moved it in between.
      const { stored, customerId } = await store.storeInbound(message, customer._id, identity.key, unmoved);
      log.info(
        {
          key: message.key,
          channel: message.channel,
          provider: message.provider,
          customerId,
          created,
          stored,
        },
        stored ? 'inbound message stored' : 'inbound message already stored',
      );
      const same = customerId === String(customer._id);
      return {
        customerId,
        stored,
        ...(same
          ? { customer, created, ...(created ? { identity } : {}), ...(refill ? { refill } : {}) }
          : {}),
      };
    },
  };
}

/**
 * One inbound event end to end inside the worker: identity first (resolve, store once, apply
 * statuses), then the router (owner, acknowledgement, Slack post, SLA; status reactions).
 */
import type { CountryCode } from 'libphonenumber-js';
import type { InboundProcessor } from '../identity/inbound-processor';
import type { Customer, IdentityModels } from '../identity/models';
import { identityKeyOf } from '../identity/resolve';
import type { Router } from './index';

export function createInboundPipeline(
  identity: InboundProcessor,
  router: Router,
  models: IdentityModels,
  defaultRegion: CountryCode,
): InboundProcessor {
  return {
    async process(event, run) {
      const result = await identity.process(event);
      if (event.type === 'status') {
        await router.onStatus(event.status);
        return result;
      }
      const ref = identityKeyOf(event.message.from, defaultRegion);
      if (!result.customerId || !ref) return result;
      const customer =
        result.customer ?? (await models.Customer.findById(result.customerId).lean<Customer>());
      if (!customer) throw new Error(`customer ${result.customerId} vanished after storing a message`);
      await router.inbound.route(event.message, customer, ref.key, {
        created: result.created === true,
        identity: result.identity,
        // Its Slack posts may have been tried (the job's inline flush): looked up before posting again.
        retried: run?.retried === true,
      });
      // A name that arrived with this message, a window that opened, a new identity: the card follows
      // (coalesced; Slack is called only when what the card shows changed). An ordinary message of a
      // returning customer changes none of these: no refresh (judged in Redis, no database read).
      await router.cards.afterInbound(result.customerId, {
        customer,
        identityKey: ref.key,
        channel: event.message.channel,
        created: result.created === true,
      });
      await result.refill?.();
      return result;
    },
  };
}

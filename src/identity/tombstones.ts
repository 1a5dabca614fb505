/**
 * Following `mergedInto` tombstones to the live customer. A merged customer is kept (not deleted)
 * so a merge can be undone and stale ids keep working: every lookup by customer id goes through
 * here. The chain is bounded so corruption (a cycle) fails loudly instead of looping.
 */
import type { Model, Types } from 'mongoose';
import type { Customer } from './models';

/** How many `mergedInto` hops to follow before declaring the chain broken (a cycle or corruption). */
export const MAX_MERGE_HOPS = 8;

/** The live customer at the end of `start`'s merge chain. Throws (retryable) on a broken chain. */
export async function followToLive(CustomerModel: Model<Customer>, start: Customer): Promise<Customer> {
  let customer = start;
  for (let hops = 0; customer.mergedInto; hops++) {
    if (hops >= MAX_MERGE_HOPS) {
      throw new Error(`merge chain from customer ${String(start._id)} is longer than ${MAX_MERGE_HOPS}`);
    }
    const next = await CustomerModel.findById(customer.mergedInto).lean<Customer>();
    // Retryable: a merge that is still in progress (or crashed) is resumed by its own job.
    if (!next) throw new Error(`customer ${String(customer._id)} is merged into a missing customer`);
    customer = next;
  }
  return customer;
}

/** The live customer of `id` (itself when it is not a tombstone), or undefined if `id` is unknown. */
export async function liveCustomerById(
  CustomerModel: Model<Customer>,
  id: Types.ObjectId | string,
): Promise<Customer | undefined> {
  const start = await CustomerModel.findById(id).lean<Customer>();
  return start ? followToLive(CustomerModel, start) : undefined;
}

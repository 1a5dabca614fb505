/**
 * What an erasure leaves behind on purpose, read by the rest of Rapport: opt-out markers (keep
 * honouring a STOP after the record is gone) and tombstones (refuse a job queued before the erasure).
 */
import { Types } from 'mongoose';
import type { CountryCode } from 'libphonenumber-js';
import type { Address } from '../../canonical';
import { identityKeyOf } from '../../identity/resolve';
import type { Logger } from '../../logger';
import type { ErasedOptOut, PrivacyModels } from '../models';
import { identityHash, markerKeyId, optOutMarker } from './keys';

export interface TombstoneDeps {
  privacy: PrivacyModels;
  /** The current marker key (written on re-key), if DATA_KEY is set. */
  markerKey?: string;
  /** Every key to read with: the current one first, then the earlier ones. */
  allKeys: string[];
  defaultRegion: CountryCode;
  log: Logger;
}

/** The sender address of a queued inbound message event, if `data` is one. */
function senderOf(data: unknown): Address | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const message = (data as { message?: { from?: Address } }).message;
  const from = message?.from;
  return from && typeof from === 'object' && typeof from.kind === 'string' ? from : undefined;
}

/** Whether an erased customer had opted out of `channel` on `identityKey`; re-keys an old marker found. */
export async function isOptOutErased(
  d: TombstoneDeps,
  identityKey: string,
  channel: string,
): Promise<boolean> {
  const ids = d.allKeys.map((k) => optOutMarker(k, identityKey, channel));
  const found = await d.privacy.ErasedOptOut.findOne({ _id: { $in: ids } }).lean<ErasedOptOut>();
  if (!found) return false;
  // Found under an earlier key: copy it under the current one, so that key can go some day.
  if (d.markerKey && found._id !== ids[0]) {
    const { _id: _old, ...rest } = found;
    await d.privacy.ErasedOptOut.updateOne(
      { _id: ids[0] },
      { $setOnInsert: { ...rest, kid: markerKeyId(d.markerKey) } },
      { upsert: true },
    ).catch((err: unknown) => d.log.warn({ err }, 'opt-out marker re-key failed'));
  }
  return true;
}

/** Whether a queued job (its data, queued at `queuedAt` ms) belongs to a customer erased since. */
export async function isErasedJob(d: TombstoneDeps, data: unknown, queuedAt: number): Promise<boolean> {
  const { Erasure } = d.privacy;
  const customerId = (data as { customerId?: unknown } | null)?.customerId;
  const asId = typeof customerId === 'string' && /^[0-9a-f]{24}$/i.test(customerId) ? customerId : undefined;
  if (asId && (await Erasure.exists({ customerIds: new Types.ObjectId(asId) }))) return true;
  const from = senderOf(data);
  const ref = from ? identityKeyOf(from, d.defaultRegion) : undefined;
  if (!ref) return false;
  const hashes = d.allKeys.map((k) => identityHash(k, ref.key));
  return (
    (await Erasure.exists({ identityHashes: { $in: hashes }, startedAt: { $gte: new Date(queuedAt) } })) !==
    null
  );
}

/**
 * The erasure's database steps. Each takes the erasure document and is idempotent: a crash midway
 * and a re-run converge. They update `e` (counts, Slack refs) in place and save what they change.
 */
import type { Types } from 'mongoose';
import type { Message, StatusEntry } from '../../identity/models';
import type { MediaStore } from '../../media/store';
import type { OptOut } from '../../router/models';
import { optOutMarkersWritten, optOutsErased } from '../../router/opt-outs';
import type { RedisClient } from '../../queue/connection';
import type { AppModels } from '../export';
import type { Erasure, PrivacyModels } from '../models';
import type { SaveErasure } from './audit';
import { DataKeyMissingError, markerKeyId, optOutMarker } from './keys';
import { refKey, slackRefsOf } from './plan';

export interface DbStepDeps {
  models: AppModels;
  privacy: PrivacyModels;
  save: SaveErasure;
  /** Keys the opt-out markers (DATA_KEY's marker key). */
  markerKey?: string;
  /** Customers' files (GridFS): deleted with the outboxes. */
  media?: Pick<MediaStore, 'deleteForCustomer'>;
  sleep: (ms: number) => Promise<void>;
  /** The opt-outs' copy in Redis (src/router/opt-outs.ts), kept in step with the deleted opt-outs. */
  hot?: { redis: RedisClient; prefix: string };
}

export const ERASED_IDENTITY_KEY = 'erased';

export async function eraseIdentities(d: DbStepDeps, e: Erasure): Promise<void> {
  await d.models.Identity.deleteMany({ customerId: { $in: e.customerIds } });
}

/** Deletes the opt-outs; an active one (STOP) leaves a keyed marker, honoured when the number writes again. */
export async function eraseOptOuts(d: DbStepDeps, e: Erasure): Promise<void> {
  const keys = e.plan?.identityKeys ?? [];
  if (keys.length === 0) return;
  const markerKey = d.markerKey;
  if (!markerKey) throw new DataKeyMissingError();
  const optOuts = await d.models.OptOut.find({ identityKey: { $in: keys } }).lean<OptOut[]>();
  const markers: string[] = [];
  for (const opt of optOuts) {
    if (!opt.optedOut) continue;
    const id = optOutMarker(markerKey, opt.identityKey, opt.channel);
    await d.privacy.ErasedOptOut.updateOne(
      { _id: id },
      { $setOnInsert: { channel: opt.channel, erasureId: e._id, at: opt.at, kid: markerKeyId(markerKey) } },
      { upsert: true },
    );
    markers.push(id);
  }
  // The markers are in the Redis copy before the opt-outs leave the database; their fields leave
  // the copy before (a re-run after a crash then finds the opt-outs again) and after (a rebuild
  // that read them meanwhile does not complete).
  if (d.hot) {
    await optOutMarkersWritten(d.hot.redis, d.hot.prefix, markers);
    await optOutsErased(d.hot.redis, d.hot.prefix, optOuts);
  }
  await d.models.OptOut.deleteMany({ identityKey: { $in: keys } });
  if (d.hot) await optOutsErased(d.hot.redis, d.hot.prefix, optOuts);
  if (markers.length > 0) {
    e.counts.optOutMarkers = markers.length;
    await d.save(e, { 'counts.optOutMarkers': markers.length });
  }
}

/** The family's claims and claims by others on its identities, with their attempts. */
export async function eraseClaims(d: DbStepDeps, e: Erasure): Promise<void> {
  const keys = e.plan?.identityKeys ?? [];
  const claims = await d.models.Claim.find(
    {
      $or: [
        { customerId: { $in: e.customerIds } },
        ...(keys.length ? [{ claimedKey: { $in: keys } }, { identityKey: { $in: keys } }] : []),
      ],
    },
    { _id: 1 },
  ).lean<{ _id: Types.ObjectId }[]>();
  if (claims.length === 0) return;
  const claimIds = claims.map((c) => c._id);
  await d.models.ClaimAttempt.deleteMany({ claimId: { $in: claimIds } });
  await d.models.Claim.deleteMany({ _id: { $in: claimIds } });
}

/** Slack outbox, sends and files. Posts made since the plan join the Slack list before their records go. */
export async function eraseOutboxes(d: DbStepDeps, e: Erasure): Promise<void> {
  const { refs, threads } = await slackRefsOf(d.models, e.customerIds);
  const known = new Set(e.slack.refs.map(refKey));
  const knownThreads = new Set(e.slack.threads.map(refKey));
  const newRefs = refs.filter((r) => !known.has(refKey(r)));
  const newThreads = threads.filter((t) => !knownThreads.has(refKey(t)));
  if (newRefs.length > 0 || newThreads.length > 0) {
    e.slack.refs = [...e.slack.refs, ...newRefs];
    e.slack.threads = [...e.slack.threads, ...newThreads];
    e.counts.slackHumanRemaining = e.slack.refs.filter((r) => r.kind === 'human').length;
    await d.save(e, {
      'slack.refs': e.slack.refs,
      'slack.threads': e.slack.threads,
      'counts.slackHumanRemaining': e.counts.slackHumanRemaining,
    });
  }
  await d.models.AgentPost.deleteMany({ customerId: { $in: e.customerIds } });
  await d.models.CustomerSend.deleteMany({ customerId: { $in: e.customerIds } });
  for (const id of e.customerIds) await d.media?.deleteForCustomer(String(id));
}

/** A status entry without the provider's error details (they may quote the number). */
export function scrubStatus(s: StatusEntry | undefined): StatusEntry | undefined {
  if (!s) return undefined;
  return {
    key: s.key,
    state: s.state,
    at: s.at,
    providerErrors: (s.providerErrors ?? []).map((err) => ({ code: err.code })),
  };
}

/** The bodiless record a message becomes; ids that embed one of `needles` are replaced. */
export function blankedMessage(m: Message, needles: string[]): Record<string, unknown> {
  const embeds = (s: string | undefined) => !!s && needles.some((n) => s.includes(n));
  const set: Record<string, unknown> = {
    parts: [],
    identityKey: ERASED_IDENTITY_KEY,
    statusHistory: (m.statusHistory ?? []).map(scrubStatus),
  };
  const status = scrubStatus(m.status);
  if (status) set.status = status;
  if (embeds(m.key)) set.key = `erased:${String(m._id)}`;
  if (embeds(m.providerMessageId)) set.providerMessageId = `erased:${String(m._id)}`;
  return set;
}

/** Blanks the family's messages; returns how many it changed. */
export async function eraseMessages(d: DbStepDeps, e: Erasure): Promise<number> {
  const needles = e.plan?.needles ?? [];
  let changed = 0;
  for (let page = 0; page < 10_000; page++) {
    const batch = await d.models.Message.find({
      customerId: { $in: e.customerIds },
      $or: [{ identityKey: { $ne: ERASED_IDENTITY_KEY } }, { text: { $exists: true } }],
    })
      .limit(200)
      .lean<Message[]>();
    if (batch.length === 0) break;
    for (const m of batch) {
      const set = blankedMessage(m, needles);
      await d.models.Message.updateOne({ _id: m._id }, { $set: set, $unset: { text: 1, replyTo: 1 } });
      changed++;
    }
  }
  return changed;
}

/** Merge events inside the family are deleted; those with an outside customer lose snapshots and keys. */
export async function eraseMerges(d: DbStepDeps, e: Erasure): Promise<void> {
  const ids = e.customerIds;
  const inside = await d.models.MergeEvent.deleteMany({ survivorId: { $in: ids }, mergedId: { $in: ids } });
  const crossing = await d.models.MergeEvent.updateMany(
    { $or: [{ survivorId: { $in: ids } }, { mergedId: { $in: ids } }] },
    {
      $set: { identityKeys: [], profileTaken: [] },
      $unset: { mergedSnapshot: 1, survivorSnapshot: 1, displayNameTaken: 1 },
    },
  );
  await d.models.MergeLock.deleteMany({ _id: { $in: ids } });
  e.counts.mergeEventsDeleted = Math.max(e.counts.mergeEventsDeleted ?? 0, inside.deletedCount);
  e.counts.mergeEventsScrubbed = Math.max(e.counts.mergeEventsScrubbed ?? 0, crossing.matchedCount);
  await d.save(e, {
    'counts.mergeEventsDeleted': e.counts.mergeEventsDeleted,
    'counts.mergeEventsScrubbed': e.counts.mergeEventsScrubbed,
  });
}

/** Conversation, threads and owner history. */
export async function eraseRouterRecords(d: DbStepDeps, e: Erasure): Promise<void> {
  const ids = e.customerIds;
  await d.models.Conversation.deleteMany({ _id: { $in: ids } });
  await d.models.CurrentThread.deleteMany({ _id: { $in: ids } });
  await d.models.SlackThread.deleteMany({ customerId: { $in: ids } });
  await d.models.OwnershipChange.deleteMany({ customerId: { $in: ids } });
}

export async function eraseCustomers(d: DbStepDeps, e: Erasure): Promise<void> {
  await d.models.Customer.deleteMany({ _id: { $in: e.customerIds } });
}

/**
 * Work that raced the erasure (a message being stored for the old customer as its identity went,
 * a flush posting to Slack) and FerretDB lost updates: re-apply the sweeps until they hold.
 * `sweepOutboxes` is the whole outboxes step (database and Redis).
 */
export async function settle(
  d: DbStepDeps,
  e: Erasure,
  sweepOutboxes: (e: Erasure) => Promise<void>,
): Promise<void> {
  for (let round = 0; round < 5; round++) {
    await eraseIdentities(d, e);
    await sweepOutboxes(e);
    const late = await eraseMessages(d, e);
    await eraseRouterRecords(d, e);
    await eraseCustomers(d, e);
    const left = await Promise.all([
      d.models.Identity.countDocuments({ customerId: { $in: e.customerIds } }),
      d.models.Message.countDocuments({ customerId: { $in: e.customerIds }, text: { $exists: true } }),
      d.models.Customer.countDocuments({ _id: { $in: e.customerIds } }),
    ]);
    if (late === 0 && left.every((n) => n === 0)) return;
    await d.sleep(100);
  }
}

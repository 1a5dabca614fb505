/**
 * Planning an erasure: the family, its identity keys, the strings that identify the person, and
 * the Slack messages to delete, written once with the erasure document so every re-run does the
 * same work.
 */
import type { Types } from 'mongoose';
import { parsePhoneNumberFromString } from 'libphonenumber-js';
import { MergeBusyError } from '../../identity/merge';
import type { Customer, Identity, MergeLock } from '../../identity/models';
import type { Logger } from '../../logger';
import type { AgentPost, CurrentThread, CustomerSend, SlackThread } from '../../router/models';
import { customerFamily, type AppModels } from '../export';
import { ZERO_COUNTS, type Erasure, type PrivacyModels, type SlackRef } from '../models';
import { identityHash } from './keys';

export interface PlanDeps {
  models: AppModels;
  privacy: PrivacyModels;
  /** Keys the tombstones' hashes (DATA_KEY's marker key). */
  markerKey: string;
  log: Logger;
}

export type SlackThreadRef = { channel: string; ts: string };

export const refKey = (r: SlackThreadRef & { fileId?: string }) =>
  r.fileId ? `${r.channel}/${r.ts}/${r.fileId}` : `${r.channel}/${r.ts}`;
/** Deletion order: Rapport's files and posts, then the cards, then (never deleted) people's replies. */
const KIND_ORDER: Record<SlackRef['kind'], number> = { file: 0, post: 0, card: 1, human: 2 };

/** Strings that identify the person and may be embedded in ids (e.g. whatsapp-web message ids). */
export function needlesOf(identities: Identity[]): string[] {
  const out = new Set<string>();
  for (const i of identities) {
    if (i.kind === 'phone') {
      out.add(i.value);
      out.add(i.value.replace(/^\+/, ''));
      const national = parsePhoneNumberFromString(i.value)?.nationalNumber;
      if (national && national.length >= 6) out.add(String(national));
    } else if (i.kind === 'psid') {
      const psid = i.value.split(':')[1];
      if (psid) out.add(psid);
    } else out.add(i.value);
    for (const a of Object.values(i.lastAddress ?? {})) if (a?.raw) out.add(a.raw);
  }
  return [...out].filter((n) => n.length >= 6);
}

/**
 * The Slack messages Rapport knows for customers `ids` (cards, its posts, agents' replies), the files
 * it uploaded into their threads, and the threads.
 */
export async function slackRefsOf(
  models: AppModels,
  ids: Types.ObjectId[],
): Promise<{ refs: SlackRef[]; threads: SlackThreadRef[] }> {
  const inSlack = { customerId: { $in: ids }, 'slack.ts': { $exists: true } };
  const [posts, sends, threads, current] = await Promise.all([
    models.AgentPost.find({ customerId: { $in: ids } }, { slack: 1, files: 1 }).lean<AgentPost[]>(),
    models.CustomerSend.find(inSlack, { slack: 1 }).lean<CustomerSend[]>(),
    models.SlackThread.find({ customerId: { $in: ids } }).lean<SlackThread[]>(),
    models.CurrentThread.find({ _id: { $in: ids } }).lean<CurrentThread[]>(),
  ]);
  const refs = new Map<string, SlackRef>();
  const add = (r: SlackRef) => {
    if (r.channel && r.ts && !refs.has(refKey(r))) refs.set(refKey(r), r);
  };
  const threadRefs = new Map<string, SlackThreadRef>();
  for (const t of [...threads, ...current]) {
    threadRefs.set(refKey(t), { channel: t.channel, ts: t.ts });
    add({ channel: t.channel, ts: t.ts, kind: 'card' });
  }
  const fallback = current[0] ?? threads[0];
  for (const p of posts) {
    if (p.slack) add({ channel: p.slack.channel, ts: p.slack.ts, kind: 'post' });
    // Keyed beside its post (or the customer's thread); a file is deleted by its file id alone.
    const where = p.slack ?? fallback;
    for (const f of p.files ?? [])
      if (f.slackFileId && where)
        add({ channel: where.channel, ts: where.ts, kind: 'file', fileId: f.slackFileId });
  }
  for (const s of sends) if (s.slack) add({ channel: s.slack.channel, ts: s.slack.ts, kind: 'human' });
  return { refs: [...refs.values()], threads: [...threadRefs.values()] };
}

/** Refuses while a merge or undo on the family runs (its steps would race the erasure's). */
async function refuseWhileMerging(models: AppModels, ids: Types.ObjectId[]): Promise<void> {
  const locks = await models.MergeLock.find({ _id: { $in: ids } }).lean<MergeLock[]>();
  if (locks.length === 0) return;
  const active = await models.MergeEvent.countDocuments({
    _id: { $in: locks.map((l) => l.eventId) },
    status: { $in: ['in_progress', 'undoing'] },
  });
  if (active > 0) throw new MergeBusyError(locks[0]!._id);
}

/** What the erasure is about to remove, for the audit counts. */
async function countFamilyRecords(models: AppModels, ids: Types.ObjectId[], keys: string[]) {
  const [messages, optOuts, claims, agentPosts, customerSends, ownershipChanges] = await Promise.all([
    models.Message.countDocuments({ customerId: { $in: ids } }),
    models.OptOut.countDocuments({ identityKey: { $in: keys } }),
    models.Claim.countDocuments({
      $or: [{ customerId: { $in: ids } }, { claimedKey: { $in: keys } }, { identityKey: { $in: keys } }],
    }),
    models.AgentPost.countDocuments({ customerId: { $in: ids } }),
    models.CustomerSend.countDocuments({ customerId: { $in: ids } }),
    models.OwnershipChange.countDocuments({ customerId: { $in: ids } }),
  ]);
  return { messages, optOuts, claims, agentPosts, customerSends, ownershipChanges };
}

/** Creates the erasure document with its plan. Caller holds the family lock. */
export async function planErasure(
  d: PlanDeps,
  requestedId: Types.ObjectId,
  start: Customer,
  actor: string,
): Promise<Erasure> {
  const family = await customerFamily(d.models, start);
  const ids = family.map((c) => c._id);
  await refuseWhileMerging(d.models, ids);
  const identities = await d.models.Identity.find({ customerId: { $in: ids } }).lean<Identity[]>();
  const keys = identities.map((i) => i.key);
  const { refs, threads } = await slackRefsOf(d.models, ids);
  refs.sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind]);
  const created = await d.privacy.Erasure.create({
    requestedId,
    liveId: family[0]!._id,
    customerIds: ids,
    actor,
    status: 'in_progress',
    stepsDone: [],
    plan: { identityKeys: keys, needles: [...needlesOf(identities), ...keys, ...ids.map(String)] },
    identityHashes: keys.map((k) => identityHash(d.markerKey, k)),
    slack: { refs, threads, next: 0, noticesPosted: [] },
    counts: {
      ...ZERO_COUNTS,
      customers: ids.length,
      identities: identities.length,
      ...(await countFamilyRecords(d.models, ids, keys)),
      slackHumanRemaining: refs.filter((r) => r.kind === 'human').length,
    },
    startedAt: new Date(),
  });
  d.log.info(
    { erasureId: String(created._id), customerId: String(family[0]!._id), customers: ids.length, actor },
    'erasure started',
  );
  return created.toObject();
}

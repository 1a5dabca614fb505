/**
 * Erasure ("right to be forgotten"): removes a customer's personal data from Rapport's database and
 * Rapport's own copy of it in Slack, keeping an audit record with ids and counts only.
 *
 * Scope: the live customer and every tombstone merged into it (a tombstone id erases the same
 * family). What happens to each kind of data:
 *
 * | data                                   | effect                                                       |
 * |----------------------------------------|--------------------------------------------------------------|
 * | identities                             | deleted: the next message from that number/PSID is a new customer |
 * | customers (live + tombstones)          | deleted                                                      |
 * | messages                               | kept as bodiless records (direction, channel, times, status codes): `text`, `parts`, `replyTo` removed, `identityKey` = `erased`, provider error details removed; a key or provider id that embeds the number (whatsapp-web ids do) is replaced |
 * | Slack outbox (agent_posts), sends      | deleted (pending ones are thereby cancelled)                 |
 * | files (GridFS `media`, src/media)      | deleted with the outboxes                                    |
 * | claims + claim attempts                | deleted (also claims by others on these identities)          |
 * | merge events                           | inside the family: deleted; with an outside customer (undone/cancelled): snapshots, keys and taken fields removed |
 * | conversation, threads, owner history   | deleted                                                      |
 * | opt-outs                               | deleted; an active opt-out (STOP) leaves a keyed-hash marker (below) |
 * | Slack: cards and Rapport's posts       | `chat.delete`d (a bot token can delete the bot's own messages) |
 * | Slack: agents' replies and notes       | cannot be deleted or edited with a bot token (`cant_delete_message`, `cant_update_message`): a notice is posted in each thread saying the data was erased and that people's messages there must be deleted by a person or by workspace retention; their number is in the audit counts (`slackHumanRemaining`) |
 *
 * | BullMQ jobs (every queue, every state)  | removed when their data, id, failure text or result names the customer (queue-purge.ts) |
 *
 * Opt-out markers: honouring STOP is a legal duty (TCPA/CTIA in the US, PECR in the UK, ePrivacy)
 * that outlives the customer record, and erasure must not re-enable messaging a number that asked
 * not to be messaged. So an active opt-out leaves HMAC-SHA256(markerKey, `<identityKey>|<channel>`)
 * in `erased_opt_outs`: enough to answer "did this number opt out?" when it writes again, useless to
 * list numbers. It is keyed (not a bare hash) because the phone-number space is small enough to
 * brute-force a plain SHA-256 in seconds. `isOptOutErased()` checks it (the router consults it
 * when an identity is first seen). The key comes from DATA_KEY, a secret of its own (not an admin
 * token, whose rotation would silently forget every marker); without DATA_KEY erase refuses with
 * 503 `data_key_missing`. Earlier keys (DATA_KEY_PREVIOUS, and the ADMIN_TOKEN-derived key of older
 * versions) are still read, and a marker found under one is re-written under the current key.
 *
 * Tombstones: the erasure record keeps keyed hashes of the erased identity keys, so a dead letter
 * queued before the erasure (its data names the number) can be refused on replay
 * (`isErasedJob`), instead of recreating the customer.
 *
 * Running it: an `erasures` document drives fixed, idempotent steps (like merge.ts's MergeEvent).
 * The plan (family ids, identity keys, Slack refs) is written with the document, once; each step
 * re-runs safely, so a crash midway and a re-run (the same DELETE, or `resume()`) converge. The
 * identity keys in the plan are personal data and are unset as soon as the database steps are done
 * (before Slack, which needs only channel/ts refs). One runner at a time
 * per family (a Redis lock; FerretDB v1 loses concurrent updates to one document).
 *
 * Slack is done in-line, last (after the database, which matters most), with bounded retries: a 429
 * waits its Retry-After when that is short (`maxSlackWaitMs`), and the whole Slack step has a time
 * budget (`slackBudgetMs`). When the budget or the retries run out the erasure stays `in_progress`
 * with its Slack progress saved, the API answers 202, and `resume()` (run by the maintenance worker
 * every minute) finishes it. Refs that fail for good (channel gone, bot removed) are counted as
 * `slackFailed` and skipped.
 */
import { forgetHotCustomer } from '../identity/cache';
import { cardKeysOf } from '../router/card-updates';
import { cardCheckKey } from '../router/slack-delivery';
import { createHmac } from 'node:crypto';
import type { CountryCode } from 'libphonenumber-js';
import type { RedisClient } from '../queue/connection';
import { Types } from 'mongoose';
import { parsePhoneNumberFromString } from 'libphonenumber-js';
import { SlackApiError, type SlackClient } from '../channels/slack/client';
import { AppError, NotFoundError } from '../errors';
import { MergeBusyError, parseCustomerId } from '../identity/merge';
import { identityKeyOf } from '../identity/resolve';
import type { Address } from '../canonical';
import { purgeQueues } from './queue-purge';
import type { Customer, Identity, MergeLock, Message, StatusEntry } from '../identity/models';
import type { Logger } from '../logger';
import { withLock } from '../queue/lock';
import { DeferError } from '../queue/workers';
import type { AgentPost, CustomerSend, OptOut, SlackThread, CurrentThread } from '../router/models';
import type { MediaStore } from '../media/store';
import { customerFamily, type AppModels } from './export';
import {
  ERASURE_STEPS,
  ZERO_COUNTS,
  registerPrivacyModels,
  type Erasure,
  type ErasedOptOut as ErasedOptOutDoc,
  type ErasureCounts,
  type ErasureStep,
  type PrivacyModels,
  type SlackRef,
} from './models';

export interface ErasureServiceOptions {
  models: AppModels;
  /** Absent when Slack is not configured: the Slack step is recorded as skipped. */
  slack?: SlackClient;
  redis: RedisClient;
  /** QUEUE_PREFIX, for the per-family lock and the outbox sequence keys. */
  prefix: string;
  /**
   * Secret for the opt-out markers' and tombstones' HMAC (`dataKeyFrom(DATA_KEY)`). Absent: erase
   * refuses (DataKeyMissingError); lookups use the previous keys only.
   */
  markerKey?: string;
  /** Earlier marker keys, still read (DATA_KEY_PREVIOUS; the ADMIN_TOKEN-derived legacy key). @defaultValue [] */
  previousMarkerKeys?: string[];
  /** DEFAULT_REGION, to read phone numbers in dead letters. @defaultValue 'US' */
  defaultRegion?: CountryCode;
  /** How long the jobs step waits for a matching active job to finish. @defaultValue 5000 */
  activeJobWaitMs?: number;
  log: Logger;
  /** Customers' files (GridFS): deleted with the outboxes. */
  media?: Pick<MediaStore, 'deleteForCustomer'>;
  /** Time one run may spend on Slack before leaving the rest to `resume()`. @defaultValue 20000 */
  slackBudgetMs?: number;
  /** Longest Retry-After waited in-line; a longer one ends the run (resumed later). @defaultValue 30000 */
  maxSlackWaitMs?: number;
  /** Attempts per Slack call on retryable errors. @defaultValue 5 */
  slackAttempts?: number;
  /** Test hook: runs before each step (throw to simulate a crash). */
  onStep?: (step: ErasureStep, erasureId: Types.ObjectId) => Promise<void> | void;
  sleep?: (ms: number) => Promise<void>;
}

export interface ErasureView {
  id: string;
  requestedId: string;
  customerIds: string[];
  actor: string;
  status: Erasure['status'];
  stepsDone: ErasureStep[];
  pending: ErasureStep[];
  counts: ErasureCounts;
  slackSkipped: string | null;
  startedAt: string;
  completedAt: string | null;
}

export interface ErasureService {
  models: PrivacyModels;
  /** Erases customer `id` (live or tombstone) or continues its unfinished erasure. Idempotent. */
  erase(id: string | Types.ObjectId, actor: string): Promise<ErasureView>;
  /** The erasure that covers customer `id`, if any. */
  find(id: string | Types.ObjectId): Promise<ErasureView | undefined>;
  /** Continues erasures left `in_progress` (crash, Slack rate limits) untouched for `olderThanMs` (default 30 s). */
  resume(options?: { olderThanMs?: number }): Promise<{ resumed: number; failed: number }>;
  /** Whether an erased customer had opted out of `channel` on `identityKey` (keep honouring it). */
  isOptOutErased(identityKey: string, channel: string): Promise<boolean>;
  /** Whether a queued job (its data, queued at `queuedAt` ms) belongs to a customer erased since. */
  isErasedJob(data: unknown, queuedAt: number): Promise<boolean>;
}

/** DATA_KEY is not set: erasing would leave opt-out markers nobody could read after a key change. */
export class DataKeyMissingError extends AppError {
  constructor() {
    super(
      'erase needs DATA_KEY (a secret of 32+ characters, e.g. `openssl rand -hex 32`, the same in every process); see docs/privacy.md',
      'data_key_missing',
      503,
      false,
    );
  }
}

/** Another run of the same erasure holds it; retry shortly. */
export class ErasureBusyError extends AppError {
  constructor() {
    super('an erasure of this customer is running', 'erasure_in_progress', 409, true);
  }
}

/** The Slack step stopped early (budget, rate limit); the erasure resumes later. */
class SlackIncomplete extends Error {}

export const ERASED_IDENTITY_KEY = 'erased';

/** Keyed hash of an erased identity key (tombstone; see module comment). */
export function identityHash(markerKey: string, identityKey: string): string {
  return createHmac('sha256', markerKey).update(`tombstone|${identityKey}`).digest('hex');
}

/** HMAC marker id of an opt-out (see module comment). */
export function optOutMarker(markerKey: string, identityKey: string, channel: string): string {
  return createHmac('sha256', markerKey).update(`${identityKey}|${channel}`).digest('hex');
}

/**
 * The marker key of versions before DATA_KEY, derived from ADMIN_TOKEN. Only read now (markers
 * written then are still honoured, and re-written under DATA_KEY when found).
 */
export function optOutMarkerKey(adminToken: string): string {
  return createHmac('sha256', adminToken).update('rapport/erased-opt-out-marker/v1').digest('hex');
}

/** The marker key derived from a DATA_KEY. */
export function dataMarkerKey(dataKey: string): string {
  return createHmac('sha256', dataKey).update('rapport/data-key/erasure-markers/v1').digest('hex');
}

/** A short public id of a marker key (stored with markers; doctor compares it with the configured keys). */
export function markerKeyId(markerKey: string): string {
  return createHmac('sha256', markerKey).update('rapport/key-id').digest('hex').slice(0, 12);
}

/** The erasure service's keys from config: DATA_KEY writes; DATA_KEY_PREVIOUS and legacy ADMIN_TOKEN keys are read. */
export function markerKeysOf(config: {
  dataKey?: string;
  previousDataKeys: readonly string[];
  adminTokens: readonly { token: string }[];
}): { markerKey?: string; previousMarkerKeys: string[] } {
  return {
    markerKey: config.dataKey ? dataMarkerKey(config.dataKey) : undefined,
    previousMarkerKeys: [
      ...config.previousDataKeys.map(dataMarkerKey),
      ...config.adminTokens.map((t) => optOutMarkerKey(t.token)),
    ],
  };
}

/** The sender address of a queued inbound message event, if `data` is one. */
function senderOf(data: unknown): Address | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const message = (data as { message?: { from?: Address } }).message;
  const from = message?.from;
  return from && typeof from === 'object' && typeof from.kind === 'string' ? from : undefined;
}

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

function scrubStatus(s: StatusEntry | undefined): StatusEntry | undefined {
  if (!s) return undefined;
  return {
    key: s.key,
    state: s.state,
    at: s.at,
    providerErrors: (s.providerErrors ?? []).map((e) => ({ code: e.code })),
  };
}

function view(e: Erasure): ErasureView {
  const done = new Set(e.stepsDone);
  return {
    id: String(e._id),
    requestedId: String(e.requestedId),
    customerIds: e.customerIds.map(String),
    actor: e.actor,
    status: e.status,
    stepsDone: e.stepsDone,
    pending: ERASURE_STEPS.filter((s) => !done.has(s)),
    counts: { ...ZERO_COUNTS, ...e.counts },
    slackSkipped: e.slack?.skipped ?? null,
    startedAt: e.startedAt.toISOString(),
    completedAt: e.completedAt?.toISOString() ?? null,
  };
}

const refKey = (r: { channel: string; ts: string }) => `${r.channel}/${r.ts}`;
const KIND_ORDER: Record<SlackRef['kind'], number> = { post: 0, card: 1, human: 2 };

export function createErasureService(o: ErasureServiceOptions): ErasureService {
  const { models, log } = o;
  const privacy = registerPrivacyModels(models.Customer.db);
  const { Erasure, ErasedOptOut } = privacy;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const slackBudgetMs = o.slackBudgetMs ?? 20_000;
  const maxSlackWaitMs = o.maxSlackWaitMs ?? 30_000;
  const slackAttempts = o.slackAttempts ?? 5;
  const allKeys = [...(o.markerKey ? [o.markerKey] : []), ...(o.previousMarkerKeys ?? [])];
  const lockKey = (liveId: Types.ObjectId) => `${o.prefix}:lock:erasure:${String(liveId)}`;
  const lockTtlMs = slackBudgetMs + 10 * 60_000;

  async function slackRefsOf(
    ids: Types.ObjectId[],
  ): Promise<{ refs: SlackRef[]; threads: { channel: string; ts: string }[] }> {
    const [posts, sends, threads, current] = await Promise.all([
      models.AgentPost.find({ customerId: { $in: ids }, 'slack.ts': { $exists: true } }, { slack: 1 }).lean<
        AgentPost[]
      >(),
      models.CustomerSend.find(
        { customerId: { $in: ids }, 'slack.ts': { $exists: true } },
        { slack: 1 },
      ).lean<CustomerSend[]>(),
      models.SlackThread.find({ customerId: { $in: ids } }).lean<SlackThread[]>(),
      models.CurrentThread.find({ _id: { $in: ids } }).lean<CurrentThread[]>(),
    ]);
    const refs = new Map<string, SlackRef>();
    const add = (r: SlackRef) => {
      if (r.channel && r.ts && !refs.has(refKey(r))) refs.set(refKey(r), r);
    };
    const threadRefs = new Map<string, { channel: string; ts: string }>();
    for (const t of [...threads, ...current]) {
      threadRefs.set(refKey(t), { channel: t.channel, ts: t.ts });
      add({ channel: t.channel, ts: t.ts, kind: 'card' });
    }
    for (const p of posts) if (p.slack) add({ channel: p.slack.channel, ts: p.slack.ts, kind: 'post' });
    for (const s of sends) if (s.slack) add({ channel: s.slack.channel, ts: s.slack.ts, kind: 'human' });
    return { refs: [...refs.values()], threads: [...threadRefs.values()] };
  }

  async function save(e: Erasure, set: Record<string, unknown>, unset?: Record<string, 1>): Promise<void> {
    await Erasure.updateOne({ _id: e._id }, { $set: set, ...(unset ? { $unset: unset } : {}) });
  }

  /** Creates the erasure document with its plan. Caller holds the family lock. */
  async function plan(requestedId: Types.ObjectId, start: Customer, actor: string): Promise<Erasure> {
    const family = await customerFamily(models, start);
    const ids = family.map((c) => c._id);
    const locks = await models.MergeLock.find({ _id: { $in: ids } }).lean<MergeLock[]>();
    if (locks.length > 0) {
      const active = await models.MergeEvent.countDocuments({
        _id: { $in: locks.map((l) => l.eventId) },
        status: { $in: ['in_progress', 'undoing'] },
      });
      if (active > 0) throw new MergeBusyError(locks[0]!._id);
    }
    const identities = await models.Identity.find({ customerId: { $in: ids } }).lean<Identity[]>();
    const keys = identities.map((i) => i.key);
    const { refs, threads } = await slackRefsOf(ids);
    refs.sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind]);
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
    const created = await Erasure.create({
      requestedId,
      liveId: family[0]!._id,
      customerIds: ids,
      actor,
      status: 'in_progress',
      stepsDone: [],
      plan: { identityKeys: keys, needles: [...needlesOf(identities), ...keys, ...ids.map(String)] },
      identityHashes: keys.map((k) => identityHash(o.markerKey!, k)),
      slack: { refs, threads, next: 0, noticesPosted: [] },
      counts: {
        ...ZERO_COUNTS,
        customers: ids.length,
        identities: identities.length,
        messages,
        optOuts,
        claims,
        agentPosts,
        customerSends,
        ownershipChanges,
        slackHumanRemaining: refs.filter((r) => r.kind === 'human').length,
      },
      startedAt: new Date(),
    });
    log.info(
      { erasureId: String(created._id), customerId: String(family[0]!._id), customers: ids.length, actor },
      'erasure started',
    );
    return created.toObject();
  }

  // --- steps (each idempotent) ---------------------------------------------------------------

  async function eraseIdentities(e: Erasure): Promise<void> {
    await models.Identity.deleteMany({ customerId: { $in: e.customerIds } });
  }

  async function eraseOptOuts(e: Erasure): Promise<void> {
    const keys = e.plan?.identityKeys ?? [];
    if (keys.length === 0) return;
    const optOuts = await models.OptOut.find({ identityKey: { $in: keys } }).lean<OptOut[]>();
    let markers = 0;
    for (const opt of optOuts) {
      if (!opt.optedOut) continue;
      await ErasedOptOut.updateOne(
        { _id: optOutMarker(o.markerKey!, opt.identityKey, opt.channel) },
        {
          $setOnInsert: {
            channel: opt.channel,
            erasureId: e._id,
            at: opt.at,
            kid: markerKeyId(o.markerKey!),
          },
        },
        { upsert: true },
      );
      markers++;
    }
    await models.OptOut.deleteMany({ identityKey: { $in: keys } });
    if (markers > 0) {
      e.counts.optOutMarkers = markers;
      await save(e, { 'counts.optOutMarkers': markers });
    }
  }

  async function eraseClaims(e: Erasure): Promise<void> {
    const keys = e.plan?.identityKeys ?? [];
    const claims = await models.Claim.find(
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
    await models.ClaimAttempt.deleteMany({ claimId: { $in: claimIds } });
    await models.Claim.deleteMany({ _id: { $in: claimIds } });
  }

  async function eraseOutboxes(e: Erasure): Promise<void> {
    // Posts made since the plan (in-flight work) join the Slack list before their records go.
    const { refs, threads } = await slackRefsOf(e.customerIds);
    const known = new Set(e.slack.refs.map(refKey));
    const knownThreads = new Set(e.slack.threads.map(refKey));
    const newRefs = refs.filter((r) => !known.has(refKey(r)));
    const newThreads = threads.filter((t) => !knownThreads.has(refKey(t)));
    if (newRefs.length > 0 || newThreads.length > 0) {
      e.slack.refs = [...e.slack.refs, ...newRefs];
      e.slack.threads = [...e.slack.threads, ...newThreads];
      e.counts.slackHumanRemaining = e.slack.refs.filter((r) => r.kind === 'human').length;
      await save(e, {
        'slack.refs': e.slack.refs,
        'slack.threads': e.slack.threads,
        'counts.slackHumanRemaining': e.counts.slackHumanRemaining,
      });
    }
    await models.AgentPost.deleteMany({ customerId: { $in: e.customerIds } });
    await models.CustomerSend.deleteMany({ customerId: { $in: e.customerIds } });
    for (const id of e.customerIds) await o.media?.deleteForCustomer(String(id));
    // One key a call: on a Redis Cluster the keys may sit in different slots.
    const keys = [
      ...e.customerIds.flatMap((id) => [`${o.prefix}:seq:${String(id)}`, ...cardKeysOf(o.prefix, String(id))]),
      ...e.slack.threads.map((t) => cardCheckKey(o.prefix, t)),
    ];
    for (const key of keys) await o.redis.del(key).catch(() => undefined);
    for (const id of e.customerIds) await forgetHotCustomer(o.redis, o.prefix, String(id));
  }

  /** Blanks the family's messages; returns how many it changed. */
  async function eraseMessages(e: Erasure): Promise<number> {
    const needles = e.plan?.needles ?? [];
    const embeds = (s: string | undefined) => !!s && needles.some((n) => s.includes(n));
    let changed = 0;
    for (let page = 0; page < 10_000; page++) {
      const batch = await models.Message.find({
        customerId: { $in: e.customerIds },
        $or: [{ identityKey: { $ne: ERASED_IDENTITY_KEY } }, { text: { $exists: true } }],
      })
        .limit(200)
        .lean<Message[]>();
      if (batch.length === 0) break;
      for (const m of batch) {
        const set: Record<string, unknown> = {
          parts: [],
          identityKey: ERASED_IDENTITY_KEY,
          statusHistory: (m.statusHistory ?? []).map(scrubStatus),
        };
        const status = scrubStatus(m.status);
        if (status) set.status = status;
        if (embeds(m.key)) set.key = `erased:${String(m._id)}`;
        if (embeds(m.providerMessageId)) set.providerMessageId = `erased:${String(m._id)}`;
        await models.Message.updateOne({ _id: m._id }, { $set: set, $unset: { text: 1, replyTo: 1 } });
        changed++;
      }
    }
    return changed;
  }

  async function eraseMerges(e: Erasure): Promise<void> {
    const ids = e.customerIds;
    const inside = await models.MergeEvent.deleteMany({ survivorId: { $in: ids }, mergedId: { $in: ids } });
    const crossing = await models.MergeEvent.updateMany(
      { $or: [{ survivorId: { $in: ids } }, { mergedId: { $in: ids } }] },
      {
        $set: { identityKeys: [], profileTaken: [] },
        $unset: { mergedSnapshot: 1, survivorSnapshot: 1, displayNameTaken: 1 },
      },
    );
    await models.MergeLock.deleteMany({ _id: { $in: ids } });
    e.counts.mergeEventsDeleted = Math.max(e.counts.mergeEventsDeleted ?? 0, inside.deletedCount);
    e.counts.mergeEventsScrubbed = Math.max(e.counts.mergeEventsScrubbed ?? 0, crossing.matchedCount);
    await save(e, {
      'counts.mergeEventsDeleted': e.counts.mergeEventsDeleted,
      'counts.mergeEventsScrubbed': e.counts.mergeEventsScrubbed,
    });
  }

  async function eraseRouterRecords(e: Erasure): Promise<void> {
    const ids = e.customerIds;
    await models.Conversation.deleteMany({ _id: { $in: ids } });
    await models.CurrentThread.deleteMany({ _id: { $in: ids } });
    await models.SlackThread.deleteMany({ customerId: { $in: ids } });
    await models.OwnershipChange.deleteMany({ customerId: { $in: ids } });
  }

  async function eraseCustomers(e: Erasure): Promise<void> {
    await models.Customer.deleteMany({ _id: { $in: e.customerIds } });
  }

  /** Job payloads in Redis (see queue-purge.ts); an active job left over is retried by a re-run. */
  async function eraseJobs(e: Erasure): Promise<boolean> {
    const result = await purgeQueues({
      redis: o.redis,
      prefix: o.prefix,
      // Slack thread timestamps find the agents' side (agent-events jobs carry thread_ts, not ids).
      needles: e.plan
        ? [...e.plan.needles, ...e.slack.threads.map((t) => t.ts), ...e.slack.refs.map((r) => r.ts)]
        : [],
      activeWaitMs: o.activeJobWaitMs,
    });
    e.counts.jobsRemoved = (e.counts.jobsRemoved ?? 0) + result.removed;
    await save(e, { 'counts.jobsRemoved': e.counts.jobsRemoved });
    if (result.active > 0) {
      log.info(
        { erasureId: String(e._id), active: result.active },
        'erasure: jobs still active; resuming later',
      );
      return false;
    }
    return true;
  }

  /**
   * Work that raced the erasure (a message being stored for the old customer as its identity went,
   * a flush posting to Slack) and FerretDB lost updates: re-apply the sweeps until they hold.
   */
  async function settle(e: Erasure): Promise<void> {
    for (let round = 0; round < 5; round++) {
      await eraseIdentities(e);
      await eraseOutboxes(e);
      const late = await eraseMessages(e);
      await eraseRouterRecords(e);
      await eraseCustomers(e);
      const left = await Promise.all([
        models.Identity.countDocuments({ customerId: { $in: e.customerIds } }),
        models.Message.countDocuments({ customerId: { $in: e.customerIds }, text: { $exists: true } }),
        models.Customer.countDocuments({ _id: { $in: e.customerIds } }),
      ]);
      if (late === 0 && left.every((n) => n === 0)) return;
      await sleep(100);
    }
  }

  // --- Slack -------------------------------------------------------------------------------------

  async function slackCall(started: number, fn: () => Promise<unknown>): Promise<'ok' | 'failed'> {
    for (let attempt = 1; ; attempt++) {
      try {
        await fn();
        return 'ok';
      } catch (err) {
        if (!(err instanceof SlackApiError)) throw err;
        if (!err.retryable) return 'failed';
        const wait = err.retryAfterMs ?? Math.min(500 * 2 ** (attempt - 1), 8_000);
        const elapsed = Date.now() - started;
        if (attempt >= slackAttempts || wait > maxSlackWaitMs || elapsed + wait > slackBudgetMs) {
          throw new SlackIncomplete(`slack ${err.slackError}: will resume`);
        }
        await sleep(wait);
      }
    }
  }

  function noticeText(e: Erasure): string {
    const humans = e.slack.refs.filter((r) => r.kind === 'human').length;
    return (
      `:wastebasket: This customer's data was erased from Rapport on ${new Date().toISOString().slice(0, 10)} ` +
      `(erasure \`${String(e._id)}\`). Rapport deleted its own messages in this thread. ` +
      `Messages written by people here${humans ? ` (${humans} ${humans === 1 ? 'reply' : 'replies'} sent to the customer, plus any notes)` : ''} ` +
      'cannot be deleted by the app: please delete them, or leave them to the workspace retention policy.'
    );
  }

  /** Returns false when the step must continue later. */
  async function eraseSlack(e: Erasure): Promise<boolean> {
    const slack = o.slack;
    if (!slack) {
      if (e.slack.refs.length > 0 && !e.slack.skipped) {
        e.slack.skipped = 'slack not configured';
        await save(e, { 'slack.skipped': e.slack.skipped });
        log.warn(
          { erasureId: String(e._id), refs: e.slack.refs.length },
          'erasure: Slack not configured; Slack copies left in place',
        );
      }
      return true;
    }
    const started = Date.now();
    try {
      for (const thread of e.slack.threads) {
        const key = refKey(thread);
        if (e.slack.noticesPosted.includes(key)) continue;
        const outcome = await slackCall(started, () =>
          slack.postMessage({ channel: thread.channel, threadTs: thread.ts, text: noticeText(e) }),
        );
        e.slack.noticesPosted.push(key);
        if (outcome === 'ok') e.counts.slackNotices++;
        await save(e, {
          'slack.noticesPosted': e.slack.noticesPosted,
          'counts.slackNotices': e.counts.slackNotices,
        });
      }
      let sinceSave = 0;
      while (e.slack.next < e.slack.refs.length) {
        const ref = e.slack.refs[e.slack.next]!;
        if (ref.kind !== 'human') {
          const outcome = await slackCall(started, () => slack.deleteMessage(ref.channel, ref.ts));
          if (outcome === 'ok') e.counts.slackDeleted++;
          else e.counts.slackFailed++;
        }
        e.slack.next++;
        if (++sinceSave >= 10) {
          sinceSave = 0;
          await save(e, {
            'slack.next': e.slack.next,
            'counts.slackDeleted': e.counts.slackDeleted,
            'counts.slackFailed': e.counts.slackFailed,
          });
        }
      }
      await save(e, {
        'slack.next': e.slack.next,
        'counts.slackDeleted': e.counts.slackDeleted,
        'counts.slackFailed': e.counts.slackFailed,
      });
      return true;
    } catch (err) {
      if (!(err instanceof SlackIncomplete)) throw err;
      await save(e, {
        'slack.next': e.slack.next,
        'counts.slackDeleted': e.counts.slackDeleted,
        'counts.slackFailed': e.counts.slackFailed,
        lastError: err.message,
      });
      log.info(
        { erasureId: String(e._id), done: e.slack.next, of: e.slack.refs.length },
        'erasure: Slack deletions paused; resuming later',
      );
      return false;
    }
  }

  const STEPS: Record<ErasureStep, (e: Erasure) => Promise<unknown>> = {
    identities: eraseIdentities,
    'opt-outs': eraseOptOuts,
    claims: eraseClaims,
    outboxes: eraseOutboxes,
    messages: eraseMessages,
    merges: eraseMerges,
    router: eraseRouterRecords,
    customers: eraseCustomers,
    jobs: eraseJobs,
    settle,
    slack: eraseSlack,
  };

  /** Runs the remaining steps of `initial`. Caller holds the family lock. */
  async function run(initial: Erasure): Promise<Erasure> {
    const e: Erasure = {
      ...initial,
      counts: { ...ZERO_COUNTS, ...initial.counts },
      slack: { ...initial.slack, noticesPosted: [...(initial.slack.noticesPosted ?? [])] },
    };
    if (e.status === 'done') return e;
    for (const step of ERASURE_STEPS) {
      if (e.stepsDone.includes(step)) continue;
      await o.onStep?.(step, e._id);
      const result = await STEPS[step](e);
      if (result === false) return (await Erasure.findById(e._id).lean<Erasure>()) ?? e;
      e.stepsDone = [...e.stepsDone, step];
      // The plan's identity keys are personal data: gone as soon as the database steps are.
      if (step === 'settle') e.plan = undefined;
      await save(e, { stepsDone: e.stepsDone }, step === 'settle' ? { plan: 1 } : undefined);
      log.debug({ erasureId: String(e._id), step }, 'erasure step done');
    }
    const completedAt = new Date();
    await save(e, { status: 'done', completedAt }, { plan: 1, lastError: 1 });
    log.info(
      { erasureId: String(e._id), customerId: String(e.liveId), actor: e.actor, counts: e.counts },
      'customer erased',
    );
    return { ...e, status: 'done', completedAt, plan: undefined };
  }

  async function locked<T>(liveId: Types.ObjectId, fn: () => Promise<T>): Promise<T> {
    try {
      return await withLock(o.redis, lockKey(liveId), lockTtlMs, fn);
    } catch (err) {
      if (err instanceof DeferError) throw new ErasureBusyError();
      throw err;
    }
  }

  const findDoc = (id: Types.ObjectId) =>
    Erasure.findOne({ customerIds: id }).sort({ startedAt: -1 }).lean<Erasure>();

  return {
    models: privacy,

    async erase(rawId, actor) {
      if (!o.markerKey) throw new DataKeyMissingError();
      const id = parseCustomerId(rawId);
      const existing = await findDoc(id);
      if (existing) {
        if (existing.status === 'done') return view(existing);
        return view(
          await locked(existing.liveId, async () =>
            run((await Erasure.findById(existing._id).lean<Erasure>()) ?? existing),
          ),
        );
      }
      const start = await models.Customer.findById(id).lean<Customer>();
      if (!start) throw new NotFoundError(`customer ${String(rawId)}`);
      const family = await customerFamily(models, start);
      const liveId = family[0]!._id;
      return view(
        await locked(liveId, async () => {
          // A concurrent request for another id of this family may have planned it meanwhile.
          const raced = await findDoc(liveId);
          return run(raced ?? (await plan(id, start, actor)));
        }),
      );
    },

    async find(rawId) {
      const id = parseCustomerId(rawId);
      const doc = await findDoc(id);
      return doc ? view(doc) : undefined;
    },

    async resume(options = {}) {
      const before = new Date(Date.now() - (options.olderThanMs ?? 30_000));
      const stale = await Erasure.find({ status: 'in_progress', updatedAt: { $lt: before } })
        .limit(20)
        .lean<Erasure[]>();
      let resumed = 0;
      let failed = 0;
      for (const doc of stale) {
        try {
          await locked(doc.liveId, async () => run((await Erasure.findById(doc._id).lean<Erasure>()) ?? doc));
          resumed++;
        } catch (err) {
          failed++;
          if (!(err instanceof ErasureBusyError))
            log.warn({ erasureId: String(doc._id), err }, 'resuming erasure failed');
        }
      }
      return { resumed, failed };
    },

    async isOptOutErased(identityKey, channel) {
      const ids = allKeys.map((k) => optOutMarker(k, identityKey, channel));
      const found = await ErasedOptOut.findOne({ _id: { $in: ids } }).lean<ErasedOptOutDoc>();
      if (!found) return false;
      // Found under an earlier key: copy it under the current one, so that key can go some day.
      if (o.markerKey && found._id !== ids[0]) {
        const { _id: _old, ...rest } = found;
        await ErasedOptOut.updateOne(
          { _id: ids[0] },
          { $setOnInsert: { ...rest, kid: markerKeyId(o.markerKey) } },
          { upsert: true },
        ).catch((err: unknown) => log.warn({ err }, 'opt-out marker re-key failed'));
      }
      return true;
    },

    async isErasedJob(data, queuedAt) {
      const customerId = (data as { customerId?: unknown } | null)?.customerId;
      const asId =
        typeof customerId === 'string' && /^[0-9a-f]{24}$/i.test(customerId) ? customerId : undefined;
      if (asId && (await Erasure.exists({ customerIds: new Types.ObjectId(asId) }))) return true;
      const from = senderOf(data);
      const ref = from ? identityKeyOf(from, o.defaultRegion ?? 'US') : undefined;
      if (!ref) return false;
      const hashes = allKeys.map((k) => identityHash(k, ref.key));
      return (
        (await Erasure.exists({
          identityHashes: { $in: hashes },
          startedAt: { $gte: new Date(queuedAt) },
        })) !== null
      );
    },
  };
}

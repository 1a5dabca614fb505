/**
 * Erasure ("right to be forgotten"): removes a customer family's personal data from Rapport's
 * database, Redis and Rapport's own posts in Slack, keeping an audit record with ids and counts only.
 * What each kind of data becomes, and why: src/privacy/README.md and docs/privacy.md.
 *
 * The guarantee: an erasure, once started, finishes. An `erasures` document (audit.ts) drives fixed,
 * idempotent steps (db-steps.ts, redis-steps.ts, slack-steps.ts) in ERASURE_STEPS order, one runner
 * per family (a Redis lock), so a crash, a repeated DELETE or `resume()` converge on the same result.
 */
import type { Types } from 'mongoose';
import type { CountryCode } from 'libphonenumber-js';
import type { SlackClient } from '../../channels/slack/client';
import { AppError, DeferError, NotFoundError } from '../../errors';
import { parseCustomerId } from '../../identity/merge';
import type { Customer } from '../../identity/models';
import type { Logger } from '../../logger';
import type { MediaStore } from '../../media/store';
import type { RedisClient } from '../../queue/connection';
import { withLock } from '../../queue/lock';
import { customerFamily, type AppModels } from '../export';
import {
  ERASURE_STEPS,
  ZERO_COUNTS,
  registerPrivacyModels,
  type Erasure,
  type ErasureStep,
  type PrivacyModels,
} from '../models';
import { completeErasure, erasureSaver, latestErasure, view, type ErasureView } from './audit';
import * as db from './db-steps';
import { DataKeyMissingError, optOutMarker } from './keys';
import { planErasure } from './plan';
import { eraseCustomerKeys, eraseJobs } from './redis-steps';
import { eraseSlack } from './slack-steps';
import { isErasedJob, isOptOutErased } from './tombstones';

export type { ErasureView } from './audit';
export { ERASED_IDENTITY_KEY } from './db-steps';
export {
  DataKeyMissingError,
  dataMarkerKey,
  identityHash,
  markerKeyId,
  markerKeysOf,
  optOutMarker,
  optOutMarkerKey,
} from './keys';
export { needlesOf } from './plan';

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
  /** The marker ids `isOptOutErased` looks for, one per marker key read (src/router/opt-outs.ts). */
  optOutMarkerIds(identityKey: string, channel: string): string[];
  /** Every opt-out marker id in the database (the Redis copy's rebuild, src/router/opt-outs.ts). */
  erasedOptOutIds(): Promise<string[]>;
  /** Whether a queued job (its data, queued at `queuedAt` ms) belongs to a customer erased since. */
  isErasedJob(data: unknown, queuedAt: number): Promise<boolean>;
}

/** Another run of the same erasure holds it; retry shortly. */
export class ErasureBusyError extends AppError {
  constructor() {
    super('an erasure of this customer is running', 'erasure_in_progress', 409, true);
  }
}

type Step = (e: Erasure) => Promise<unknown>;

/** The steps with their inputs bound, by name; a step answering `false` must continue later. */
function erasureSteps(
  o: ErasureServiceOptions,
  privacy: PrivacyModels,
  sleep: (ms: number) => Promise<void>,
): Record<ErasureStep, Step> {
  const save = erasureSaver(privacy.Erasure);
  const d: db.DbStepDeps = {
    models: o.models,
    privacy,
    save,
    markerKey: o.markerKey,
    media: o.media,
    sleep,
    hot: { redis: o.redis, prefix: o.prefix },
  };
  const r = { redis: o.redis, prefix: o.prefix, save, log: o.log, activeJobWaitMs: o.activeJobWaitMs };
  const s = {
    slack: o.slack,
    save,
    log: o.log,
    sleep,
    budgetMs: o.slackBudgetMs ?? 20_000,
    maxWaitMs: o.maxSlackWaitMs ?? 30_000,
    attempts: o.slackAttempts ?? 5,
  };
  const outboxes = async (e: Erasure) => {
    await db.eraseOutboxes(d, e);
    await eraseCustomerKeys(r, e);
  };
  return {
    identities: (e) => db.eraseIdentities(d, e),
    'opt-outs': (e) => db.eraseOptOuts(d, e),
    claims: (e) => db.eraseClaims(d, e),
    outboxes,
    messages: (e) => db.eraseMessages(d, e),
    merges: (e) => db.eraseMerges(d, e),
    router: (e) => db.eraseRouterRecords(d, e),
    customers: (e) => db.eraseCustomers(d, e),
    jobs: (e) => eraseJobs(r, e),
    settle: (e) => db.settle(d, e, outboxes),
    slack: (e) => eraseSlack(s, e),
  };
}

export function createErasureService(o: ErasureServiceOptions): ErasureService {
  const { models, log } = o;
  const privacy = registerPrivacyModels(models.Customer.db);
  const { Erasure } = privacy;
  const save = erasureSaver(Erasure);
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const steps = erasureSteps(o, privacy, sleep);
  const allKeys = [...(o.markerKey ? [o.markerKey] : []), ...(o.previousMarkerKeys ?? [])];
  const tombstones = {
    privacy,
    markerKey: o.markerKey,
    allKeys,
    defaultRegion: o.defaultRegion ?? 'US',
    log,
  };
  const lockTtlMs = (o.slackBudgetMs ?? 20_000) + 10 * 60_000;
  const reread = async (e: Erasure) => (await Erasure.findById(e._id).lean<Erasure>()) ?? e;

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
      if ((await steps[step](e)) === false) return reread(e);
      e.stepsDone = [...e.stepsDone, step];
      // The plan's identity keys are personal data: gone as soon as the database steps are.
      if (step === 'settle') e.plan = undefined;
      await save(e, { stepsDone: e.stepsDone }, step === 'settle' ? { plan: 1 } : undefined);
      log.debug({ erasureId: String(e._id), step }, 'erasure step done');
    }
    return completeErasure(save, log, e);
  }

  /** Runs `fn` holding the family's lock; ErasureBusyError while another run holds it. */
  async function locked<T>(liveId: Types.ObjectId, fn: () => Promise<T>): Promise<T> {
    try {
      return await withLock(o.redis, `${o.prefix}:lock:erasure:${String(liveId)}`, lockTtlMs, fn);
    } catch (err) {
      if (err instanceof DeferError) throw new ErasureBusyError();
      throw err;
    }
  }

  /** Plans and runs a new erasure of the family of `start`. */
  async function eraseFresh(id: Types.ObjectId, start: Customer, actor: string): Promise<Erasure> {
    const liveId = (await customerFamily(models, start))[0]!._id;
    return locked(liveId, async () => {
      // A concurrent request for another id of this family may have planned it meanwhile.
      const raced = await latestErasure(Erasure, liveId);
      const planDeps = { models, privacy, markerKey: o.markerKey!, log };
      return run(raced ?? (await planErasure(planDeps, id, start, actor)));
    });
  }

  return {
    models: privacy,

    async erase(rawId, actor) {
      if (!o.markerKey) throw new DataKeyMissingError();
      const id = parseCustomerId(rawId);
      const existing = await latestErasure(Erasure, id);
      if (existing?.status === 'done') return view(existing);
      if (existing) return view(await locked(existing.liveId, async () => run(await reread(existing))));
      const start = await models.Customer.findById(id).lean<Customer>();
      if (!start) throw new NotFoundError(`customer ${String(rawId)}`);
      return view(await eraseFresh(id, start, actor));
    },

    async find(rawId) {
      const doc = await latestErasure(Erasure, parseCustomerId(rawId));
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
          await locked(doc.liveId, async () => run(await reread(doc)));
          resumed++;
        } catch (err) {
          failed++;
          if (!(err instanceof ErasureBusyError))
            log.warn({ erasureId: String(doc._id), err }, 'resuming erasure failed');
        }
      }
      return { resumed, failed };
    },

    isOptOutErased: (identityKey, channel) => isOptOutErased(tombstones, identityKey, channel),
    optOutMarkerIds: (identityKey, channel) => allKeys.map((k) => optOutMarker(k, identityKey, channel)),
    erasedOptOutIds: async () =>
      (await privacy.ErasedOptOut.find({}, { _id: 1 }).lean<{ _id: string }[]>()).map((m) => m._id),
    isErasedJob: (data, queuedAt) => isErasedJob(tombstones, data, queuedAt),
  };
}

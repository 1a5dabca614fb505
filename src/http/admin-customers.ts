/**
 * Admin API for customers: look one up (profile, identities, recent history), find by phone /
 * email / PSID, merge two, undo a merge, link an identity. Mounted under `/api` behind `adminAuth`
 * and after `express.json()`; errors go through src/http/errors.ts as `{ error: { code, message } }`.
 *
 * Choices
 * - A malformed id is answered like an unknown id (404): to the caller both are "no such customer".
 * - `GET /customers/:id` with a tombstone id answers with the LIVE customer it was merged into and
 *   `mergedFrom: "<requested id>"`, so stale links keep working; `?follow=false` answers with the
 *   tombstone itself (it then has `mergedInto`).
 * - Merging is idempotent: the same pair again answers with the same merge (200). Self-merge or a
 *   tombstone is 409; a merge or undo already running on one of the customers is 409
 *   `merge_in_progress` (retry).
 * - Bodies are validated with zod; a 400 names the field and the reason.
 */
import { Router } from 'express';
import type { Types } from 'mongoose';
import { z } from 'zod';
import type { CountryCode } from 'libphonenumber-js';
import { PayloadError } from '../errors';
import type { ClaimService, ClaimTarget } from '../identity/claims';
import { parseCustomerId, type MergeEventDoc, type MergeResult, type MergeService } from '../identity/merge';
import {
  MERGE_REASONS,
  MERGE_STATUSES,
  PROFILE_KEYS,
  type Customer,
  type Identity,
  type IdentityModels,
  type Message,
} from '../identity/models';
import { normalizePhone } from '../identity/phone';
import { followToLive } from '../identity/tombstones';
import { NotFoundError } from '../errors';
import { adminActor } from './admin-auth';

/** How many messages `GET /customers/:id` returns, newest first. */
const RECENT_MESSAGES = 50;

export interface CustomerAdminOptions {
  models: IdentityModels;
  merges: MergeService;
  claims: ClaimService;
  /** DEFAULT_REGION, for phone numbers written without a country code. */
  defaultRegion: CountryCode;
  /** Called after a merge (API merge or identity link that merged): tell the other owner. */
  onMerged?: (result: MergeResult) => Promise<void>;
  /** Called after an undo: the restored customer's owner gets it back. */
  onUnmerged?: (result: MergeResult) => Promise<void>;
  /** Sets the customer's name (router/naming.ts: the card follows); `PATCH /customers/:id`. */
  rename?: (id: Types.ObjectId, name: string) => Promise<Customer>;
}

export const customerPatchBody = z.strictObject({
  displayName: z.string().min(1, 'must not be empty').max(200, 'too long'),
});

export const mergeBody = z.strictObject({
  otherId: z.string().min(1, 'required'),
  survivorId: z.string().min(1).optional(),
});

export const identityBody = z
  .strictObject({
    phone: z.string().min(1).max(64).optional(),
    email: z.string().min(3).max(254).optional(),
  })
  .refine((b) => (b.phone === undefined) !== (b.email === undefined), {
    message: 'exactly one of phone or email is required',
    path: ['phone'],
  });

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]{2,}$/;

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field =
    issue && issue.path.length > 0
      ? issue.path.join('.')
      : issue?.code === 'unrecognized_keys'
        ? (issue.keys?.join(', ') ?? 'body')
        : 'body';
  throw new PayloadError(`${field}: ${issue?.message ?? 'invalid'}`);
}

function customerSummary(c: Customer, identities: Identity[]) {
  return {
    id: String(c._id),
    displayName: c.displayName ?? null,
    ownerAgentId: c.ownerAgentId ?? null,
    firstSeenAt: c.firstSeenAt.toISOString(),
    lastSeenAt: c.lastSeenAt.toISOString(),
    lastChannel: c.lastChannel ?? null,
    ...(c.mergedInto ? { mergedInto: String(c.mergedInto) } : {}),
    profile: c.profile ?? {},
    identities: identities.map((i) => ({ key: i.key, kind: i.kind, verified: i.verified, source: i.source })),
  };
}

function messageView(m: Message) {
  return {
    id: String(m._id),
    key: m.key,
    direction: m.direction,
    channel: m.channel,
    provider: m.provider,
    identityKey: m.identityKey,
    text: m.text ?? null,
    parts: m.parts,
    sentAt: m.sentAt.toISOString(),
    status: m.status?.state ?? null,
  };
}

/** A merge as the customers API answers with it (published as `Merge` in the OpenAPI document). */
export const mergeRecordView = z.object({
  id: z.string(),
  survivorId: z.string(),
  mergedId: z.string(),
  reason: z.enum(MERGE_REASONS),
  actor: z.string(),
  status: z.enum(MERGE_STATUSES),
  identityKeys: z.array(z.string()),
  messagesMoved: z.number().int(),
  profileTaken: z.array(z.enum(PROFILE_KEYS)),
  createdAt: z.string(),
  completedAt: z.string().nullable(),
  undoneAt: z.string().nullable(),
  undoActor: z.string().nullable(),
  survivorOwnerAgentId: z.string().nullable(),
  mergedOwnerAgentId: z.string().nullable(),
});

/** POST /customers/:id/merge, POST /merges/:id/undo, and an identity link that merged. */
export const mergeAnswerView = z.object({ merge: mergeRecordView });

/** POST /customers/:id/identities when the identity was free: attached to the customer. */
export const attachedAnswerView = z.object({
  attached: z.literal(true),
  identity: z.object({ key: z.string(), kind: z.enum(['phone', 'email']), verified: z.literal(true) }),
});

export function mergeView(result: MergeResult): z.infer<typeof mergeRecordView> {
  const e: MergeEventDoc = result.event;
  return {
    id: String(e._id),
    survivorId: String(e.survivorId),
    mergedId: String(e.mergedId),
    reason: e.reason,
    actor: e.actor,
    status: e.status,
    identityKeys: e.identityKeys,
    messagesMoved: e.messageIds.length,
    profileTaken: e.profileTaken.map((p) => p.field),
    createdAt: e.createdAt.toISOString(),
    completedAt: e.completedAt?.toISOString() ?? null,
    undoneAt: e.undoneAt?.toISOString() ?? null,
    undoActor: e.undoActor ?? null,
    survivorOwnerAgentId: result.survivorOwnerAgentId ?? null,
    mergedOwnerAgentId: result.mergedOwnerAgentId ?? null,
  };
}

export function customerAdminRoutes(options: CustomerAdminOptions): Router {
  const { models, merges, claims, defaultRegion } = options;
  const { Customer, Identity, Message } = models;
  const router = Router();

  async function identitiesOf(customerId: Customer['_id']): Promise<Identity[]> {
    return Identity.find({ customerId }).sort({ createdAt: 1 }).lean<Identity[]>();
  }

  router.get('/customers/:id', async (req, res) => {
    const id = parseCustomerId(req.params.id);
    const requested = await Customer.findById(id).lean<Customer>();
    if (!requested) throw new NotFoundError(`customer ${req.params.id}`);
    const follow = req.query.follow !== 'false';
    const customer = follow ? await followToLive(Customer, requested) : requested;
    const [identities, recent] = await Promise.all([
      identitiesOf(customer._id),
      Message.find({ customerId: customer._id })
        .sort({ sentAt: -1 })
        .limit(RECENT_MESSAGES)
        .lean<Message[]>(),
    ]);
    res.json({
      ...customerSummary(customer, identities),
      ...(customer._id.equals(requested._id) ? {} : { mergedFrom: String(requested._id) }),
      recent: recent.map(messageView),
    });
  });

  router.get('/customers', async (req, res) => {
    const given = (['phone', 'email', 'psid'] as const).filter((k) => typeof req.query[k] === 'string');
    if (given.length !== 1) throw new PayloadError('query: exactly one of phone, email or psid is required');
    const field = given[0]!;
    const raw = String(req.query[field]).trim();
    let key: string;
    if (field === 'phone') {
      const e164 = normalizePhone(raw, defaultRegion);
      if (!e164) throw new PayloadError('phone: not a valid phone number');
      key = `phone:${e164}`;
    } else if (field === 'email') {
      if (!EMAIL.test(raw)) throw new PayloadError('email: not a valid email address');
      key = `email:${raw.toLowerCase()}`;
    } else {
      if (!/^[^:\s]+:[^:\s]+$/.test(raw)) throw new PayloadError('psid: expected <pageId>:<psid>');
      key = `psid:${raw}`;
    }
    const identity = await Identity.findOne({ key }).lean<Identity>();
    const start = identity ? await Customer.findById(identity.customerId).lean<Customer>() : null;
    if (!start) {
      res.json({ customers: [] });
      return;
    }
    const customer = await followToLive(Customer, start);
    res.json({ customers: [customerSummary(customer, await identitiesOf(customer._id))] });
  });

  router.patch('/customers/:id', async (req, res) => {
    const id = parseCustomerId(req.params.id);
    const body = parseBody(customerPatchBody, req.body);
    if (!options.rename) throw new NotFoundError('customer naming');
    const customer = await options.rename(id, body.displayName);
    res.json(customerSummary(customer, await identitiesOf(customer._id)));
  });

  router.post('/customers/:id/merge', async (req, res) => {
    const id = parseCustomerId(req.params.id);
    const body = parseBody(mergeBody, req.body);
    const result = await merges.mergeCustomers({
      aId: id,
      bId: parseCustomerId(body.otherId),
      survivorId: body.survivorId,
      reason: 'admin',
      actor: adminActor(res),
    });
    await options.onMerged?.(result);
    res.json({ merge: mergeView(result) } satisfies z.infer<typeof mergeAnswerView>);
  });

  router.post('/merges/:id/undo', async (req, res) => {
    const result = await merges.undoMerge(req.params.id, adminActor(res));
    await options.onUnmerged?.(result);
    res.json({ merge: mergeView(result) } satisfies z.infer<typeof mergeAnswerView>);
  });

  router.post('/customers/:id/identities', async (req, res) => {
    const id = parseCustomerId(req.params.id);
    const body = parseBody(identityBody, req.body);
    let claim: ClaimTarget;
    if (body.phone !== undefined) {
      const e164 = normalizePhone(body.phone, defaultRegion);
      if (!e164) throw new PayloadError('phone: not a valid phone number');
      claim = { kind: 'phone', value: e164 };
    } else {
      const email = (body.email ?? '').trim();
      if (!EMAIL.test(email)) throw new PayloadError('email: not a valid email address');
      claim = { kind: 'email', value: email.toLowerCase() };
    }
    const result = await claims.linkIdentity({
      customerId: id,
      claim,
      actor: adminActor(res),
      reason: 'admin',
    });
    if ('attached' in result) {
      res.json({
        attached: true,
        identity: { key: `${claim.kind}:${claim.value}`, kind: claim.kind, verified: true },
      } satisfies z.infer<typeof attachedAnswerView>);
      return;
    }
    await options.onMerged?.(result);
    res.json({ merge: mergeView(result) } satisfies z.infer<typeof mergeAnswerView>);
  });

  return router;
}

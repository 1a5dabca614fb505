/**
 * Subject access: everything Rapport's database holds about one customer, as one JSON document.
 *
 * The customer is the family: the live customer and every tombstone merged into it (a merge keeps
 * the merged profile for undo), so a tombstone id exports the same family. Claim code hashes and
 * salts are left out: secrets, not information about the person. Copies held elsewhere (Slack,
 * queue jobs): src/privacy/README.md.
 */
import type { Types } from 'mongoose';
import type { MediaStore } from '../media/store';
import { NotFoundError } from '../errors';
import { parseCustomerId } from '../identity/merge';
import type { Claim, Customer, Identity, IdentityModels, MergeEvent, Message } from '../identity/models';
import { followToLive } from '../identity/tombstones';
import type {
  AgentPost,
  Conversation,
  CurrentThread,
  CustomerSend,
  OptOut,
  OwnershipChange,
  RouterModels,
  SlackThread,
} from '../router/models';

export type AppModels = IdentityModels & RouterModels;

export interface ExportOptions {
  /** Called after each page of messages: `done` of `total`. */
  onProgress?: (p: { stage: 'messages'; done: number; total: number }) => void;
  /** Messages per page. @defaultValue 500 */
  pageSize?: number;
  /** Clock (tests). */
  now?: () => Date;
  /** Lists the customer's files (GridFS); each is downloadable at `download`. */
  media?: Pick<MediaStore, 'forCustomer'>;
}

export const EXPORT_FORMAT = 'rapport.customer-export/1';

/** The live customer behind `start` and every tombstone merged into it, live first. */
export async function customerFamily(models: AppModels, start: Customer): Promise<Customer[]> {
  const live = await followToLive(models.Customer, start);
  const family: Customer[] = [live];
  const seen = new Set([String(live._id)]);
  let frontier: Types.ObjectId[] = [live._id];
  while (frontier.length > 0) {
    const merged = await models.Customer.find({ mergedInto: { $in: frontier } }).lean<Customer[]>();
    frontier = [];
    for (const c of merged) {
      if (seen.has(String(c._id))) continue;
      seen.add(String(c._id));
      family.push(c);
      frontier.push(c._id);
    }
  }
  return family;
}

const iso = (d: Date | undefined | null) => (d ? new Date(d).toISOString() : null);

function customerView(c: Customer) {
  return {
    id: String(c._id),
    displayName: c.displayName ?? null,
    profile: c.profile ?? {},
    ownerAgentId: c.ownerAgentId ?? null,
    firstSeenAt: iso(c.firstSeenAt),
    lastSeenAt: iso(c.lastSeenAt),
    lastChannel: c.lastChannel ?? null,
    lastProvider: c.lastProvider ?? null,
    mergedInto: c.mergedInto ? String(c.mergedInto) : null,
    mergedBy: c.mergedBy ? String(c.mergedBy) : null,
    createdAt: iso(c.createdAt),
    updatedAt: iso(c.updatedAt),
  };
}

function identityView(i: Identity) {
  return {
    key: i.key,
    kind: i.kind,
    value: i.value,
    customerId: String(i.customerId),
    verified: i.verified,
    source: i.source,
    lastAddress: i.lastAddress ?? {},
    lastInboundAt: i.lastInboundAt ?? {},
    createdAt: iso(i.createdAt),
  };
}

function messageView(m: Message) {
  return {
    id: String(m._id),
    key: m.key,
    customerId: String(m.customerId),
    direction: m.direction,
    channel: m.channel,
    provider: m.provider,
    providerMessageId: m.providerMessageId,
    identityKey: m.identityKey,
    to: m.to ?? null,
    text: m.text ?? null,
    parts: m.parts ?? [],
    replyTo: m.replyTo ?? null,
    status: m.status ?? null,
    statusHistory: m.statusHistory ?? [],
    sentAt: iso(m.sentAt),
    receivedAt: iso(m.receivedAt),
  };
}

function mergeView(e: MergeEvent) {
  const { _id, survivorId, mergedId, messageIds, survivorMessageIdsOnKeys, ...rest } = e;
  return {
    ...rest,
    id: String(_id),
    survivorId: String(survivorId),
    mergedId: String(mergedId),
    messageIds: (messageIds ?? []).map(String),
    survivorMessageIdsOnKeys: (survivorMessageIdsOnKeys ?? []).map(String),
  };
}

function claimView(c: Claim) {
  return {
    id: String(c._id),
    customerId: String(c.customerId),
    identityKey: c.identityKey,
    kind: c.kind,
    value: c.value,
    status: c.status,
    attempts: c.attempts,
    expiresAt: iso(c.expiresAt),
    verifiedAt: iso(c.verifiedAt),
    createdAt: iso(c.createdAt),
  };
}

function sendView(s: CustomerSend) {
  return {
    id: String(s._id),
    key: s.key,
    customerId: String(s.customerId),
    origin: s.origin,
    text: s.text ?? null,
    media: s.media ?? [],
    template: s.template ?? null,
    via: s.via ?? null,
    toIdentityKey: s.toIdentityKey ?? null,
    slack: s.slack ?? null,
    agentSlackUserId: s.agentSlackUserId ?? null,
    state: s.state,
    provider: s.provider ?? null,
    channel: s.channel ?? null,
    providerMessageId: s.providerMessageId ?? null,
    failure: s.failure ?? null,
    createdAt: iso(s.createdAt),
  };
}

function conversationView(c: Conversation) {
  return {
    customerId: String(c._id),
    ownerAgentId: c.ownerAgentId ?? null,
    open: c.open,
    lastCustomerMessageAt: iso(c.lastCustomerMessageAt),
    lastAgentReplyAt: iso(c.lastAgentReplyAt),
  };
}

function ownerChangeView(o: OwnershipChange) {
  return {
    customerId: String(o.customerId),
    fromAgentId: o.fromAgentId ?? null,
    toAgentId: o.toAgentId,
    reason: o.reason,
    actor: o.actor,
    at: iso(o.at),
  };
}

function optOutView(o: OptOut) {
  return { identityKey: o.identityKey, channel: o.channel, optedOut: o.optedOut, at: iso(o.at) };
}

function postView(p: AgentPost) {
  return {
    key: p.key,
    customerId: String(p.customerId),
    kind: p.kind,
    channel: p.channel ?? null,
    text: p.text,
    state: p.state,
    slack: p.slack ?? null,
    createdAt: iso(p.createdAt),
  };
}

function threadView(t: SlackThread, current: CurrentThread[]) {
  return {
    channel: t.channel,
    ts: t.ts,
    agentId: t.agentId,
    customerId: String(t.customerId),
    current: current.some((c) => c.channel === t.channel && c.ts === t.ts),
  };
}

/** The family's messages, oldest first, in pages of `pageSize` reported through `onProgress`. */
async function exportMessages(models: AppModels, ids: Types.ObjectId[], options: ExportOptions) {
  const pageSize = options.pageSize ?? 500;
  const total = await models.Message.countDocuments({ customerId: { $in: ids } });
  const messages: ReturnType<typeof messageView>[] = [];
  let lastSentAt: Date | undefined;
  let lastId: Types.ObjectId | undefined;
  // Keyset pagination on (sentAt, _id): stable under concurrent inserts, no growing skip.
  for (;;) {
    const after =
      lastSentAt && lastId
        ? { $or: [{ sentAt: { $gt: lastSentAt } }, { sentAt: lastSentAt, _id: { $gt: lastId } }] }
        : {};
    const page = await models.Message.find({ customerId: { $in: ids }, ...after })
      .sort({ sentAt: 1, _id: 1 })
      .limit(pageSize)
      .lean<Message[]>();
    for (const m of page) messages.push(messageView(m));
    options.onProgress?.({
      stage: 'messages',
      done: messages.length,
      total: Math.max(total, messages.length),
    });
    if (page.length < pageSize) break;
    const last = page[page.length - 1]!;
    lastSentAt = last.sentAt;
    lastId = last._id;
  }
  return messages;
}

/** The family's records besides customers, identities and messages. */
async function exportRecords(models: AppModels, ids: Types.ObjectId[], keys: string[]) {
  const [merges, claims, conversations, ownerHistory, sends, posts, optOuts, threads, currentThreads] =
    await Promise.all([
      models.MergeEvent.find({ $or: [{ survivorId: { $in: ids } }, { mergedId: { $in: ids } }] })
        .sort({ createdAt: 1 })
        .lean<MergeEvent[]>(),
      models.Claim.find({ $or: [{ customerId: { $in: ids } }, { claimedKey: { $in: keys } }] })
        .sort({ createdAt: 1 })
        .lean<Claim[]>(),
      models.Conversation.find({ _id: { $in: ids } }).lean<Conversation[]>(),
      models.OwnershipChange.find({ customerId: { $in: ids } })
        .sort({ at: 1 })
        .lean<OwnershipChange[]>(),
      models.CustomerSend.find({ customerId: { $in: ids } })
        .sort({ seq: 1, _id: 1 })
        .lean<CustomerSend[]>(),
      models.AgentPost.find({ customerId: { $in: ids } })
        .sort({ seq: 1, _id: 1 })
        .lean<AgentPost[]>(),
      models.OptOut.find({ identityKey: { $in: keys } }).lean<OptOut[]>(),
      models.SlackThread.find({ customerId: { $in: ids } }).lean<SlackThread[]>(),
      models.CurrentThread.find({ _id: { $in: ids } }).lean<CurrentThread[]>(),
    ]);
  return { merges, claims, conversations, ownerHistory, sends, posts, optOuts, threads, currentThreads };
}

/**
 * Everything about the customer `id` (a live or tombstone id). Throws NotFoundError (404) for an
 * unknown or malformed id.
 */
export async function exportCustomer(
  models: AppModels,
  id: string | Types.ObjectId,
  options: ExportOptions = {},
) {
  const customerId = parseCustomerId(id);
  const start = await models.Customer.findById(customerId).lean<Customer>();
  if (!start) throw new NotFoundError(`customer ${String(id)}`);
  const family = await customerFamily(models, start);
  const ids = family.map((c) => c._id);
  const live = family[0]!;

  const identities = await models.Identity.find({ customerId: { $in: ids } })
    .sort({ createdAt: 1 })
    .lean<Identity[]>();
  const messages = await exportMessages(models, ids, options);
  const r = await exportRecords(
    models,
    ids,
    identities.map((i) => i.key),
  );
  const files = options.media ? await filesOf(options.media, family, String(live._id)) : [];

  return {
    format: EXPORT_FORMAT,
    exportedAt: (options.now?.() ?? new Date()).toISOString(),
    customer: customerView(live),
    requestedId: String(customerId),
    /** Customers merged into this one (tombstones kept for undo), followed transitively. */
    mergedCustomers: family.slice(1).map(customerView),
    identities: identities.map(identityView),
    messages,
    merges: r.merges.map(mergeView),
    claims: r.claims.map(claimView),
    conversations: r.conversations.map(conversationView),
    ownerHistory: r.ownerHistory.map(ownerChangeView),
    sends: r.sends.map(sendView),
    optOuts: r.optOuts.map(optOutView),
    slack: {
      threads: r.threads.map((t) => threadView(t, r.currentThreads)),
      /** What Rapport posted into the agents' threads (customer messages and internal notes). */
      posts: r.posts.map(postView),
    },
    /** The customer's files (photos, voice notes, documents both ways); bytes at `download`. */
    files,
    counts: {
      files: files.length,
      identities: identities.length,
      messages: messages.length,
      merges: r.merges.length,
      sends: r.sends.length,
      slackPosts: r.posts.length,
    },
  };
}

/** The family's files, each with its admin API download path. */
async function filesOf(media: Pick<MediaStore, 'forCustomer'>, family: Customer[], liveId: string) {
  const lists = await Promise.all(family.map((c) => media.forCustomer(String(c._id))));
  return lists.flat().map((f) => ({
    id: f.id,
    customerId: f.metadata.customerId,
    direction: f.metadata.direction,
    key: f.metadata.key,
    filename: f.metadata.filename,
    contentType: f.metadata.contentType,
    bytes: f.bytes,
    storedAt: f.uploadDate.toISOString(),
    download: `/api/customers/${liveId}/files/${f.id}`,
  }));
}

export type CustomerExport = Awaited<ReturnType<typeof exportCustomer>>;

/**
 * Coalescing a customer's waiting messages into one Slack post while their channel is rate limited.
 *
 * Slack allows about one post a second per channel. An agent with several busy customers gets more
 * than that, and every post over the limit is refused (429) and waits: the thread falls behind. When
 * a channel was refused a post within BUSY_CHANNEL_MS and a customer has several messages waiting,
 * they go out as one post: each message on its own line under its channel label, each message's
 * outbox key in the post's metadata (`parts`), so the exactly-once look-up (slack-delivery.ts)
 * recognises every message it carries. While the channel is free, each message is its own post, as
 * agents read best.
 *
 * Only a customer's plain messages join: a note (Rapport's own, with its own name and icon), a post
 * with a button or files, or one whose text is already out (its files pending) goes alone, and a
 * change of the name a post shows starts a new post. Order is kept: only neighbours join.
 */
import type { Channel } from '../canonical';
import type { RedisClient } from '../queue/connection';
import { payloadValues, type MetadataPayload } from '../channels/slack/client';
import type { AgentPost } from './models';

/** Slack truncates a message's text at 40,000 characters and advises at most 4,000. */
export const COALESCED_MAX_CHARS = 4_000;
/** Messages in one post at most (its metadata lists each key). */
export const COALESCED_MAX_PARTS = 20;
/** A channel refused a post this recently counts as busy. */
export const BUSY_CHANNEL_MS = 60_000;

/** "This channel was refused a post recently", shared by every process. */
export function channelBusyKey(prefix: string, channel: string): string {
  return `${prefix}:slack-busy:${channel}`;
}

export async function markChannelBusy(redis: RedisClient, prefix: string, channel: string): Promise<void> {
  await redis.set(channelBusyKey(prefix, channel), '1', 'PX', BUSY_CHANNEL_MS);
}

export async function channelBusy(redis: RedisClient, prefix: string, channel: string): Promise<boolean> {
  return (await redis.exists(channelBusyKey(prefix, channel))) === 1;
}

/** A customer's plain message whose text is still to post: it may share a post with its neighbours. */
function joinable(p: AgentPost): boolean {
  return p.kind === 'message' && !p.button && !p.files?.length && !p.slack;
}

/** How one post shows in the thread; `previousChannel` is the channel of the message before it. */
export type Render = (post: AgentPost, previousChannel: string | undefined) => string;

/** The channel shown after `post` ("now writing on …" marks a change). */
export function channelAfter(post: AgentPost, previous: Channel | undefined): Channel | undefined {
  return post.kind === 'message' && post.channel ? post.channel : previous;
}

/**
 * The pending posts in order, as the Slack posts they go out as. `coalesce`: neighbouring joinable
 * messages of one name share a post, up to COALESCED_MAX_PARTS and COALESCED_MAX_CHARS (a message
 * longer than that alone goes alone, as it always did); otherwise one post each.
 */
export function groupPosts(
  pending: AgentPost[],
  render: Render,
  lastPostedChannel: Channel | undefined,
  coalesce: boolean,
): AgentPost[][] {
  if (!coalesce) return pending.map((p) => [p]);
  const groups: AgentPost[][] = [];
  let chars = 0;
  let previous = lastPostedChannel;
  for (const post of pending) {
    const size = render(post, previous).length + 1;
    previous = channelAfter(post, previous);
    const open = groups.at(-1);
    const head = open?.[0];
    if (
      open &&
      head &&
      joinable(head) &&
      joinable(post) &&
      post.username === head.username &&
      open.length < COALESCED_MAX_PARTS &&
      chars + size <= COALESCED_MAX_CHARS
    ) {
      open.push(post);
      chars += size;
    } else {
      groups.push([post]);
      chars = size;
    }
  }
  return groups;
}

/**
 * The text of a post carrying `posts` (each on its own line), where `group` is the whole group in
 * order (members already out, found by a look-up, still count for the "now writing on" marks).
 */
export function renderGroup(
  group: AgentPost[],
  posts: AgentPost[],
  render: Render,
  lastPostedChannel: Channel | undefined,
): string {
  const keep = new Set(posts.map((p) => p.key));
  const lines: string[] = [];
  let previous = lastPostedChannel;
  for (const post of group) {
    if (keep.has(post.key)) lines.push(render(post, previous));
    previous = channelAfter(post, previous);
  }
  return lines.join('\n');
}

/**
 * The post's metadata payload: its key, and for a post carrying several messages every key in
 * `parts` (the first also as `key`, which is what older readers look at).
 */
export function postPayload(posts: AgentPost[]): MetadataPayload {
  const first = posts[0]!.key;
  return posts.length === 1 ? { key: first } : { key: first, parts: posts.map((p) => ({ key: p.key })) };
}

/** The outbox keys a post's metadata payload carries, in order (one, or each message it coalesced). */
export function postKeys(payload: unknown): string[] {
  return payloadValues(payload, 'key');
}

/**
 * The erasure's Slack step, last and bounded: a notice in each thread (people's replies cannot be
 * deleted by a bot token), then `files.delete` of the files Rapport uploaded and `chat.delete` of
 * its own messages. Retryable errors are
 * retried within a time budget; past it the step stops with its progress saved and resumes later.
 */
import { SlackApiError, type SlackClient } from '../../channels/slack/client';
import type { Logger } from '../../logger';
import type { Erasure } from '../models';
import type { SaveErasure } from './audit';
import { refKey } from './plan';

export interface SlackStepDeps {
  /** Absent when Slack is not configured: the step is recorded as skipped. */
  slack?: SlackClient;
  save: SaveErasure;
  log: Logger;
  sleep: (ms: number) => Promise<void>;
  /** Time one run may spend on Slack. */
  budgetMs: number;
  /** Longest Retry-After waited in-line. */
  maxWaitMs: number;
  /** Attempts per call on retryable errors. */
  attempts: number;
}

/** The step stopped early (budget, rate limit); the erasure resumes later. */
export class SlackIncomplete extends Error {}

/**
 * One Slack call with retries: 'failed' when retrying cannot help (channel gone); throws
 * SlackIncomplete when the attempts, the wait or the budget (from `started`) run out.
 */
export async function slackCall(
  d: SlackStepDeps,
  started: number,
  fn: () => Promise<unknown>,
): Promise<'ok' | 'failed'> {
  for (let attempt = 1; ; attempt++) {
    try {
      await fn();
      return 'ok';
    } catch (err) {
      if (!(err instanceof SlackApiError)) throw err;
      if (!err.retryable) return 'failed';
      const wait = err.retryAfterMs ?? Math.min(500 * 2 ** (attempt - 1), 8_000);
      const elapsed = Date.now() - started;
      if (attempt >= d.attempts || wait > d.maxWaitMs || elapsed + wait > d.budgetMs) {
        throw new SlackIncomplete(`slack ${err.slackError}: will resume`);
      }
      await d.sleep(wait);
    }
  }
}

export function noticeText(e: Erasure, now = new Date()): string {
  const humans = e.slack.refs.filter((r) => r.kind === 'human').length;
  return (
    `:wastebasket: This customer's data was erased from Rapport on ${now.toISOString().slice(0, 10)} ` +
    `(erasure \`${String(e._id)}\`). Rapport deleted its own messages in this thread. ` +
    `Messages written by people here${humans ? ` (${humans} ${humans === 1 ? 'reply' : 'replies'} sent to the customer, plus any notes)` : ''} ` +
    'cannot be deleted by the app: please delete them, or leave them to the workspace retention policy.'
  );
}

/** A notice in each thread not yet noticed. */
async function postNotices(d: SlackStepDeps, slack: SlackClient, e: Erasure, started: number): Promise<void> {
  for (const thread of e.slack.threads) {
    const key = refKey(thread);
    if (e.slack.noticesPosted.includes(key)) continue;
    const outcome = await slackCall(d, started, () =>
      slack.postMessage({ channel: thread.channel, threadTs: thread.ts, text: noticeText(e) }),
    );
    e.slack.noticesPosted.push(key);
    if (outcome === 'ok') e.counts.slackNotices++;
    await d.save(e, {
      'slack.noticesPosted': e.slack.noticesPosted,
      'counts.slackNotices': e.counts.slackNotices,
    });
  }
}

const progressOf = (e: Erasure) => ({
  'slack.next': e.slack.next,
  'counts.slackDeleted': e.counts.slackDeleted,
  'counts.slackFailed': e.counts.slackFailed,
});

/** Deletes Rapport's messages from `slack.next` on (people's replies are skipped), saving every 10. */
async function deleteRefs(d: SlackStepDeps, slack: SlackClient, e: Erasure, started: number): Promise<void> {
  let sinceSave = 0;
  while (e.slack.next < e.slack.refs.length) {
    const ref = e.slack.refs[e.slack.next]!;
    if (ref.kind !== 'human') {
      const fileId = ref.fileId;
      const outcome = await slackCall(d, started, () =>
        fileId ? slack.deleteFile(fileId) : slack.deleteMessage(ref.channel, ref.ts),
      );
      if (outcome === 'ok') e.counts.slackDeleted++;
      else e.counts.slackFailed++;
    }
    e.slack.next++;
    if (++sinceSave >= 10) {
      sinceSave = 0;
      await d.save(e, progressOf(e));
    }
  }
  await d.save(e, progressOf(e));
}

/** Without a Slack client, records once that the Slack copies were left in place. */
async function skipSlack(d: SlackStepDeps, e: Erasure): Promise<void> {
  if (e.slack.refs.length === 0 || e.slack.skipped) return;
  e.slack.skipped = 'slack not configured';
  await d.save(e, { 'slack.skipped': e.slack.skipped });
  d.log.warn(
    { erasureId: String(e._id), refs: e.slack.refs.length },
    'erasure: Slack not configured; Slack copies left in place',
  );
}

/** The Slack step; false when it must continue later (progress saved). */
export async function eraseSlack(d: SlackStepDeps, e: Erasure): Promise<boolean> {
  const slack = d.slack;
  if (!slack) {
    await skipSlack(d, e);
    return true;
  }
  const started = Date.now();
  try {
    await postNotices(d, slack, e, started);
    await deleteRefs(d, slack, e, started);
    return true;
  } catch (err) {
    if (!(err instanceof SlackIncomplete)) throw err;
    await d.save(e, { ...progressOf(e), lastError: err.message });
    d.log.info(
      { erasureId: String(e._id), done: e.slack.next, of: e.slack.refs.length },
      'erasure: Slack deletions paused; resuming later',
    );
    return false;
  }
}

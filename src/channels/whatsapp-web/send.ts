/**
 * Sending through WhatsApp Web from any process.
 *
 * Only the process holding the session (a Chromium logged into the number) can send, but the
 * `to-customer` worker runs anywhere. So `ChannelSender.send()` puts the message on its own
 * BullMQ queue, `whatsapp-web-out`, and waits for the result (QueueEvents); only the session holder
 * runs the Worker that consumes it, and only while the session is `ready`.
 *
 * Idempotency: the job id is derived from the outbound message key. If the caller times out and
 * retries, it re-attaches to the same job (still waiting, being sent, or finished) instead of
 * queueing a second copy. A finished job with a retryable failure is replaced on retry; a job
 * waiting longer than `maxSendAgeMs` is not sent any more (the customer would get a stale reply
 * long after the agent was told it failed).
 *
 * The worker answers with a result object rather than throwing, so the provider-specific reason
 * (`invalid_recipient`, `unsupported`, …) survives the trip through Redis and comes back to the
 * caller as the same `OutboundError`. A job that *fails* (the worker process died mid-send, BullMQ
 * marks it stalled) is reported as `uncertain`: the message may or may not have gone out, so it is
 * not queued again (the agent is told, with a "Send again" button) — see README "Sending".
 * A multi-part message (several media) reports each accepted part's id, also on failure, and a
 * retried job skips the parts already accepted.
 */
import { Queue, QueueEvents, Worker, type Job } from 'bullmq';
import type { RedisClient } from '../../queue/connection';
import type { Logger } from '../../logger';
import { jobIdFor } from '../../queue/names';
import { prefixFor } from '../../queue/options';
import {
  OutboundError,
  type ChannelSender,
  type OutboundMedia,
  type OutboundMessage,
  type SendFailureReason,
  type SendProgress,
  type SendResult,
} from '../sender';
import { PROVIDER } from './normalize';
import type { WhatsAppWebClientLike, WwebMedia } from './wire';

export interface SendJobData {
  message: OutboundMessage;
  /** Ids of the parts an earlier attempt got accepted: the session skips them. */
  done?: string[];
}

export type SendJobResult =
  | { ok: true; providerMessageId: string; providerMessageIds: string[] }
  | {
      ok: false;
      reason: SendFailureReason;
      message: string;
      providerCode?: string;
      /** Parts WhatsApp accepted before the failure (earlier attempts' included). */
      providerMessageIds?: string[];
    };

const SEND_FAILURE_REASONS: readonly SendFailureReason[] = [
  'window_closed',
  'opted_out',
  'rate_limited',
  'unavailable',
  'uncertain',
  'invalid_recipient',
  'auth',
  'unsupported',
  'rejected',
];

function isReason(v: unknown): v is SendFailureReason {
  return typeof v === 'string' && (SEND_FAILURE_REASONS as readonly string[]).includes(v);
}

/** Narrows a job's return value (it crossed Redis as JSON). */
export function parseSendJobResult(value: unknown): SendJobResult | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (v.ok === true && typeof v.providerMessageId === 'string') {
    const ids = Array.isArray(v.providerMessageIds)
      ? v.providerMessageIds.filter((x): x is string => typeof x === 'string')
      : [v.providerMessageId];
    return { ok: true, providerMessageId: v.providerMessageId, providerMessageIds: ids };
  }
  if (v.ok === false && isReason(v.reason)) {
    const ids = Array.isArray(v.providerMessageIds)
      ? v.providerMessageIds.filter((x): x is string => typeof x === 'string')
      : undefined;
    return {
      ok: false,
      reason: v.reason,
      message: typeof v.message === 'string' ? v.message : 'send failed',
      ...(typeof v.providerCode === 'string' ? { providerCode: v.providerCode } : {}),
      ...(ids && ids.length > 0 ? { providerMessageIds: ids } : {}),
    };
  }
  return undefined;
}

const retryable = (reason: SendFailureReason) => reason === 'unavailable' || reason === 'rate_limited';

/** Reports the parts a job got accepted beyond those already recorded (`done` is updated). */
async function record(result: SendJobResult, done: string[], progress: SendProgress | undefined) {
  const ids = result.providerMessageIds ?? [];
  for (let i = done.length; i < ids.length; i++) {
    done.push(ids[i] as string);
    await progress?.onPart(i, ids[i] as string);
  }
}

/**
 * The international digits of a recipient: `+14155550123`, `14155550123`, or the raw jid
 * `14155550123@c.us` (what identity keeps as the address replies go to). Undefined otherwise.
 */
export function recipientDigits(to: string): string | undefined {
  const t = to.trim();
  const jid = /^(\d+)(?::\d+)?@(?:c\.us|s\.whatsapp\.net)$/i.exec(t);
  const digits = jid ? jid[1] : /^\+?(\d+)$/.exec(t)?.[1];
  return digits !== undefined && /^[1-9]\d{6,14}$/.test(digits) ? digits : undefined;
}

/** Checks what WhatsApp Web cannot carry before anything is queued. */
export function validateOutbound(message: OutboundMessage): { digits: string } {
  if (message.template) {
    throw new OutboundError('WhatsApp Web cannot send templates', PROVIDER, 'unsupported', undefined);
  }
  const hasText = message.text !== undefined && message.text.trim() !== '';
  if (!hasText && (message.media ?? []).length === 0) {
    throw new OutboundError('nothing to send (no text, no media)', PROVIDER, 'rejected', undefined);
  }
  const digits = recipientDigits(message.to);
  if (!digits) {
    throw new OutboundError(
      'recipient is not an E.164 phone number',
      PROVIDER,
      'invalid_recipient',
      undefined,
    );
  }
  return { digits };
}

// ---------------------------------------------------------------------------------------------
// Producer side: runs in any process.

export interface WhatsAppWebSenderOptions {
  queue: Queue;
  queueEvents: QueueEvents;
  /** How long to wait for the session holder. */
  timeoutMs: number;
  log: Logger;
}

const failureOf = (result: Extract<SendJobResult, { ok: false }>) =>
  new OutboundError(result.message, PROVIDER, result.reason, result.providerCode);

type Found = { sent: SendResult } | { job: Job<SendJobData> | undefined };

/**
 * An earlier job for this message (a retried call): its success, or the job to wait for, or none
 * (queue anew). Throws its failure when retrying cannot help, and `uncertain` when it stalled.
 */
async function earlierJob(
  queue: Queue,
  jobId: string,
  done: string[],
  progress: SendProgress | undefined,
): Promise<Found> {
  const job: Job<SendJobData> | undefined = await queue.getJob(jobId);
  if (!job) return { job: undefined };
  const state = await job.getState();
  if (state === 'completed') {
    const result = parseSendJobResult(job.returnvalue);
    if (result) await record(result, done, progress);
    if (result?.ok) return { sent: { provider: PROVIDER, providerMessageId: result.providerMessageId } };
    if (result && !retryable(result.reason)) throw failureOf(result);
    await job.remove();
    return { job: undefined };
  }
  if (state === 'failed') {
    // The session process died (stalled) mid-send: it may have gone out. Not resent blindly.
    throw new OutboundError(
      'the WhatsApp Web session stopped while sending this message',
      PROVIDER,
      'uncertain',
      undefined,
    );
  }
  if (state === 'unknown') {
    await job.remove().catch(() => undefined);
    return { job: undefined };
  }
  return { job };
}

/** The job carrying `message` — an earlier one re-attached, else a new one — or its earlier success. */
async function jobFor(
  queue: Queue,
  ready: Promise<unknown>,
  jobId: string,
  message: OutboundMessage,
  done: string[],
  progress: SendProgress | undefined,
): Promise<{ sent: SendResult } | { job: Job<SendJobData> }> {
  try {
    await ready;
    const found = await earlierJob(queue, jobId, done, progress);
    if ('sent' in found) return found;
    const data: SendJobData = { message, ...(done.length > 0 ? { done } : {}) };
    const job =
      found.job ??
      (await queue.add('send', data, {
        jobId,
        attempts: 1,
        removeOnComplete: { age: 24 * 3600 },
        removeOnFail: { age: 7 * 24 * 3600 },
      }));
    return { job };
  } catch (err) {
    if (err instanceof OutboundError) throw err;
    throw new OutboundError('whatsapp-web send queue unavailable', PROVIDER, 'unavailable', undefined, {
      cause: err,
    });
  }
}

/** The job's result, once the session holder ran it (at most `timeoutMs`). */
async function resultOf(
  job: Job<SendJobData>,
  queueEvents: QueueEvents,
  timeoutMs: number,
  log: Logger,
): Promise<SendJobResult> {
  let value: unknown;
  try {
    value = await job.waitUntilFinished(queueEvents, timeoutMs);
  } catch (err) {
    const timedOut = err instanceof Error && /timed out/i.test(err.message);
    log.warn({ jobId: job.id, timedOut }, 'whatsapp-web send did not complete');
    throw new OutboundError(
      timedOut
        ? `no WhatsApp Web session sent the message within ${Math.round(timeoutMs / 1000)} s (is the whatsapp-web role running and ready?)`
        : 'the WhatsApp Web send failed in the session process',
      PROVIDER,
      'unavailable',
      undefined,
      { cause: err },
    );
  }
  const result = parseSendJobResult(value);
  if (!result)
    throw new OutboundError(
      'malformed result from the WhatsApp Web session',
      PROVIDER,
      'unavailable',
      undefined,
    );
  return result;
}

export function createWhatsAppWebSender({
  queue,
  queueEvents,
  timeoutMs,
  log,
}: WhatsAppWebSenderOptions): ChannelSender {
  const ready = queueEvents.waitUntilReady();
  ready.catch(() => undefined);

  return {
    provider: PROVIDER,
    channels: ['whatsapp'],
    async send(message, progress) {
      validateOutbound(message);
      const jobId = jobIdFor(`${PROVIDER}-out:${message.key}`);
      const done = [...(progress?.done ?? [])];
      const found = await jobFor(queue, ready, jobId, message, done, progress);
      if ('sent' in found) return found.sent;
      const result = await resultOf(found.job, queueEvents, timeoutMs, log);
      await record(result, done, progress);
      if (!result.ok) throw failureOf(result);
      return { provider: PROVIDER, providerMessageId: result.providerMessageId };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Consumer side: runs only in the session holder.

/** Errors of a session that is gone or going (the page closed, the browser died, not logged in). */
const SESSION_GONE =
  /session closed|target closed|protocol error|detached frame|execution context was destroyed|browser has disconnected|not ready|connection closed|cannot read properties of (?:null|undefined)/i;
/** WhatsApp refusing the address itself. */
const BAD_RECIPIENT = /invalid wid|wid error|no lid for user|not a valid|does not exist|not registered/i;

export function classifySendError(err: unknown): SendFailureReason {
  const text = err instanceof Error ? err.message : String(err);
  if (BAD_RECIPIENT.test(text)) return 'invalid_recipient';
  if (SESSION_GONE.test(text)) return 'unavailable';
  // Unknown: not retried, so an error after WhatsApp accepted the message cannot loop into
  // repeated sends (and repeated sends are what gets unofficial clients banned).
  return 'rejected';
}

export type MediaLoader = (media: OutboundMedia) => Promise<WwebMedia>;

export interface SendProcessorOptions {
  /** The client, only while the session is `ready`. */
  readyClient: () => WhatsAppWebClientLike | undefined;
  loadMedia: MediaLoader;
  maxSendAgeMs: number;
  log: Logger;
  onOutcome?: (outcome: 'sent' | SendFailureReason) => void;
}

/** WhatsApp's own jid for the number (e.g. Brazilian accounts registered without the ninth digit). */
async function chatIdFor(
  client: WhatsAppWebClientLike,
  digits: string,
): Promise<{ chatId: string } | { failure: [SendFailureReason, string] }> {
  if (!client.getNumberId) return { chatId: `${digits}@c.us` };
  try {
    const wid = await client.getNumberId(digits);
    return wid
      ? { chatId: wid._serialized }
      : { failure: ['invalid_recipient', 'this number is not on WhatsApp'] };
  } catch (err) {
    return { failure: [classifySendError(err), 'could not look the number up on WhatsApp'] };
  }
}

/**
 * Sends the text, or one WhatsApp message per file with the text under the first one. Parts an
 * earlier attempt got accepted (already in `ids`) are skipped; each accepted part is added to `ids`.
 */
async function sendParts(
  client: WhatsAppWebClientLike,
  chatId: string,
  text: string | undefined,
  media: WwebMedia[],
  ids: string[],
): Promise<void> {
  if (media.length === 0) {
    if (ids.length === 0) ids.push((await client.sendMessage(chatId, text ?? '')).id._serialized);
    return;
  }
  for (const [i, file] of media.entries()) {
    if (i < ids.length) continue;
    const options = i === 0 && text !== undefined ? { caption: text } : undefined;
    ids.push((await client.sendMessage(chatId, file, options)).id._serialized);
  }
}

/** Sends one queued message with the live client. Never throws: the result says what happened. */
export function createSendProcessor(
  o: SendProcessorOptions,
): (job: Job<SendJobData>) => Promise<SendJobResult> {
  return async (job) => {
    const message = job.data.message;
    const ids: string[] = [...(job.data.done ?? [])];
    const fail = (reason: SendFailureReason, text: string): SendJobResult => {
      o.onOutcome?.(reason);
      return {
        ok: false,
        reason,
        message: text,
        ...(ids.length > 0 ? { providerMessageIds: [...ids] } : {}),
      };
    };
    if (Date.now() - job.timestamp > o.maxSendAgeMs) {
      return fail('unavailable', 'expired: waited too long for a WhatsApp Web session');
    }
    let digits: string;
    try {
      ({ digits } = validateOutbound(message));
    } catch (err) {
      return err instanceof OutboundError
        ? fail(err.reason, err.message)
        : fail('rejected', 'invalid message');
    }
    const client = o.readyClient();
    if (!client) return fail('unavailable', 'the WhatsApp Web session is not ready');

    const chat = await chatIdFor(client, digits);
    if ('failure' in chat) return fail(...chat.failure);
    const chatId = chat.chatId;

    const media: WwebMedia[] = [];
    for (const m of message.media ?? []) {
      try {
        media.push(await o.loadMedia(m));
      } catch (err) {
        o.log.warn({ err, jobId: job.id }, 'could not fetch outbound media');
        return fail('unavailable', 'could not fetch the media to send');
      }
    }

    try {
      const text = message.text?.trim() === '' ? undefined : message.text;
      await sendParts(client, chatId, text, media, ids);
    } catch (err) {
      o.log.warn({ err, jobId: job.id, sentParts: ids.length }, 'whatsapp-web sendMessage failed');
      return fail(classifySendError(err), 'WhatsApp Web did not accept the message');
    }
    o.onOutcome?.('sent');
    return { ok: true, providerMessageId: ids[0]!, providerMessageIds: ids };
  };
}

export function createSendWorker(o: {
  queueName: string;
  prefix: string;
  connection: RedisClient;
  processor: (job: Job<SendJobData>) => Promise<SendJobResult>;
  log: Logger;
}): Worker<SendJobData, SendJobResult> {
  const worker = new Worker<SendJobData, SendJobResult>(o.queueName, o.processor, {
    connection: o.connection,
    prefix: prefixFor(o.queueName, o.prefix, o.connection),
    // One at a time: keeps a customer's messages in order and the sending rate human-like.
    concurrency: 1,
    // A job that stalled (the process died mid-send) fails instead of being re-sent blindly;
    // the caller decides (see the module comment).
    maxStalledCount: 0,
  });
  worker.on('error', (err) => o.log.debug({ err }, 'whatsapp-web send worker connection error'));
  return worker;
}

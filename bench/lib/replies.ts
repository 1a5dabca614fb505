/**
 * Agent replies for the chaos run: an agent answers in customer threads (the Slack emulator stores
 * the reply, a signed Slack event tells an api process, retried on another one as Slack retries),
 * and afterwards every reply is checked at the providers and in Slack:
 * - delivered: its marker is in exactly one message the Twilio/Graph emulators accepted;
 * - told: not delivered, and the agent got a note in the thread about it (an uncertain or failed
 *   send: the `send-note:<send key>:…` post) or a private warning that the reply reached nobody;
 * - duplicate: delivered more than once; silently lost: neither delivered nor told.
 */
import { randomBytes } from 'node:crypto';
import { postKeys } from '../../src/router/coalesce';
import { signedSlack, slackEventCallback, slackMessage } from '../../src/sandbox/wire-builders';
import type { Emulators } from './world';

export interface ReplyDriverOptions {
  emu: Emulators;
  /** The api base URLs (one is picked per event; another on failure). */
  bases: () => string[];
  inbox: string;
  agentUserId: string;
  signingSecret: string;
}

interface SentReply {
  marker: string;
  ts: string;
  threadTs: string;
  accepted: boolean;
  /** Deliveries of its event until an api answered 200 (0: none did). */
  eventAttempts: number;
}

export interface ReplyFigures {
  replies: number;
  acceptedEvents: number;
  delivered: number;
  toldUncertainOrFailed: number;
  duplicates: number;
  silentlyLost: number;
  /** Deliveries of events that needed more than one (an api restarting or answering 503). */
  eventRetries: number;
  /** Each silently lost reply: its marker, Slack ts and thread, and whether an api accepted its event. */
  silentlyLostDetail: SentReply[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long Slack keeps retrying an event its app did not acknowledge (3 retries over ~5 minutes). */
const EVENT_RETRY_SPAN_MS = 5 * 60_000;

/** Texts of every message the providers accepted (Twilio bodies, Cloud text bodies, Messenger texts). */
export function providerTexts(emu: Emulators): string[] {
  return [
    ...emu.twilio.messages().map((m) => m.body ?? ''),
    ...emu.graph.whatsappMessages().map((m) => JSON.stringify(m.body)),
    ...emu.graph.messengerMessages().map((m) => String(m.message.text ?? '')),
  ];
}

export function createReplyDriver(o: ReplyDriverOptions) {
  const sent: SentReply[] = [];
  let n = 0;

  /**
   * Delivers the event as Slack does: retried until an api answers 200, for as long as Slack keeps
   * retrying (about 5 minutes), here sooner and more often (0.5 s, doubling to 10 s) so that a
   * restarting api delays the reply little. Returns the number of attempts, or 0 if none succeeded.
   */
  async function postEvent(body: string): Promise<number> {
    const giveUpAt = Date.now() + EVENT_RETRY_SPAN_MS;
    for (let attempt = 0; ; attempt++) {
      const bases = o.bases();
      const base = bases[(attempt + n) % bases.length]!;
      try {
        const signed = signedSlack(o.signingSecret, '/slack/events', body);
        const res = await fetch(`${base}${signed.path}`, {
          method: 'POST',
          body,
          headers: signed.headers,
          signal: AbortSignal.timeout(10_000),
        });
        if (res.status === 200) return attempt + 1;
      } catch {
        // an api restarting: try another, as Slack retries
      }
      if (Date.now() >= giveUpAt) return 0;
      await sleep(Math.min(500 * 2 ** Math.floor(attempt / 4), 10_000));
    }
  }

  /** One reply in a random customer thread; false if no thread exists yet. */
  async function replyOnce(): Promise<boolean> {
    const cards = o.emu.slack.messages(o.inbox).filter((m) => m.metadata?.event_type === 'rapport_card');
    const card = cards[Math.floor(Math.random() * cards.length)];
    if (!card) return false;
    const marker = `[chaos-reply-${++n}-${randomBytes(3).toString('hex')}]`;
    const text = `Answer ${marker}`;
    const stored = o.emu.slack.postAsUser(o.inbox, { user: o.agentUserId, text, threadTs: card.ts });
    const body = slackEventCallback(
      {
        teamId: o.emu.slack.teamId,
        apiAppId: 'A0CHAOS',
        eventId: `EvCHAOS${n}${randomBytes(3).toString('hex').toUpperCase()}`,
      },
      slackMessage({ channel: o.inbox, user: o.agentUserId, text, ts: stored.ts, threadTs: card.ts }),
    );
    const reply: SentReply = { marker, ts: stored.ts, threadTs: card.ts, accepted: false, eventAttempts: 0 };
    sent.push(reply);
    reply.eventAttempts = await postEvent(body);
    reply.accepted = reply.eventAttempts > 0;
    return true;
  }

  /** Keys of the thread notes about sends (`send-note:<send key>:<attempt>`), from what Slack received. */
  function notedSendKeys(): Set<string> {
    const keys = new Set<string>();
    for (const c of o.emu.slack.callsTo('chat.postMessage')) {
      const meta = c.args.metadata as { event_payload?: unknown } | undefined;
      for (const key of postKeys(meta?.event_payload)) {
        const match = /^send-note:(slack:[^:]+:[^:]+):/.exec(key);
        if (match?.[1]) keys.add(match[1]);
      }
    }
    return keys;
  }

  /** Thread ts of the private warnings that a reply reached nobody (an unknown thread). */
  function warnedThreads(): Set<string> {
    return new Set(
      o.emu.slack
        .callsTo('chat.postEphemeral')
        .map((c) => String(c.args.thread_ts ?? ''))
        .filter(Boolean),
    );
  }

  function figures(): ReplyFigures {
    const texts = providerTexts(o.emu);
    const noted = notedSendKeys();
    const warned = warnedThreads();
    const out: ReplyFigures = {
      replies: sent.length,
      acceptedEvents: sent.filter((r) => r.accepted).length,
      delivered: 0,
      toldUncertainOrFailed: 0,
      duplicates: 0,
      silentlyLost: 0,
      eventRetries: sent.reduce((a, r) => a + Math.max(0, r.eventAttempts - 1), 0),
      silentlyLostDetail: [],
    };
    for (const r of sent) {
      const times = texts.filter((t) => t.includes(r.marker)).length;
      const told = noted.has(`slack:${o.inbox}:${r.ts}`) || warned.has(r.threadTs);
      if (times > 1) out.duplicates += times - 1;
      if (times >= 1) out.delivered++;
      else if (told) out.toldUncertainOrFailed++;
      else {
        out.silentlyLost++;
        out.silentlyLostDetail.push({ ...r });
      }
    }
    return out;
  }

  return {
    /** Sends `total` replies spread over `seconds` (waiting for threads to exist). */
    async run(total: number, seconds: number, stillSending: () => boolean): Promise<void> {
      const gap = (seconds * 1000) / Math.max(1, total);
      while (sent.length < total) {
        const started = Date.now();
        if (!(await replyOnce())) await sleep(200);
        const wait = gap - (Date.now() - started);
        if (wait > 0 && stillSending()) await sleep(wait);
      }
    },
    figures,
    /** True once every reply is delivered or told (nothing pending). */
    settled: () => figures().silentlyLost === 0,
  };
}

/**
 * bench/slack-flush: the Slack stage alone under Slack's per-channel posting limit (1 post a second,
 * bursts of 3, 429 + Retry-After, enforced by the emulator). Customers with open threads get
 * messages appended to their Slack outbox at a fixed rate (the router's own append,
 * `outbox.postToAgent`, so nothing upstream competes for the CPU), and the report says how far the
 * channels fall behind: append → Slack post latency per message, posts refused with 429, post calls
 * made and how many messages they carried.
 *
 * Self-contained (reads a post's keys from its metadata itself) so the same file runs against an
 * older tree for a before/after comparison.
 *
 * Usage: node -r @swc-node/register bench/slack-flush.ts [--agents 10 --customers-per-agent 8
 *        --rate 15 --seconds 20 --drain 120]
 * Needs Redis and a MongoDB-protocol server (npm run services); uses its own prefix and database.
 */
import { randomBytes } from 'node:crypto';
import { Types } from 'mongoose';
import { startWorld } from '../test/helpers/world';
import { parseArgs, summary } from './lib/world';

const args = parseArgs({ agents: '10', 'customers-per-agent': '8', rate: '15', seconds: '20', drain: '120' });
const AGENTS = Number(args.agents);
const PER_AGENT = Number(args['customers-per-agent']);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const DRAIN_MS = Number(args.drain) * 1000;
const MONGO = process.env.MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every outbox key a post's metadata carries (`key`, and `parts[].key` of a coalesced post). */
function keysOf(metadata: unknown): string[] {
  const m = metadata as { event_type?: string; event_payload?: { key?: unknown; parts?: unknown } } | undefined;
  if (m?.event_type !== 'rapport_post') return [];
  const parts = Array.isArray(m.event_payload?.parts) ? (m.event_payload.parts as { key?: unknown }[]) : [];
  const all = [m.event_payload?.key, ...parts.map((p) => p.key)].filter((k): k is string => typeof k === 'string');
  return [...new Set(all)];
}

async function main() {
  const run = `sf${Date.now().toString(36)}`;
  const w = await startWorld({ MONGODB_URI: `${MONGO}/rapport_${run}`, LOG_LEVEL: 'warn' });
  try {
    await w.t.app.mongo.ready;
    const customers: Types.ObjectId[] = [];
    for (let a = 0; a < AGENTS; a++) {
      const n = String(a).padStart(3, '0');
      await w.addAgent({ slackUserId: `U0SF${n}`, name: `Agent ${n}`, inboxChannelId: `C0SF${n}`, capacity: 10_000 });
    }
    // First contacts, without the limit: each customer's thread opens (a card and a first post).
    const phones = Array.from({ length: AGENTS * PER_AGENT }, (_, i) => `+1415556${String(i).padStart(4, '0')}`);
    for (const phone of phones) await w.sms(phone, `hello from ${phone}`);
    for (const phone of phones) {
      for (;;) {
        const post = await w.t.app.models.AgentPost.findOne({ text: `hello from ${phone}`, state: 'posted' }).lean();
        if (post) {
          customers.push(post.customerId);
          break;
        }
        await sleep(200);
      }
    }
    await sleep(3_000);
    w.slack.limitPosting({ perSecond: 1, burst: 3 });
    const callsBefore = w.slack.callsTo('chat.postMessage').length;

    // The load: RATE appends a second, customers in turn (so every channel gets RATE / AGENTS a second).
    const appended = new Map<string, number>();
    const total = RATE * SECONDS;
    const t0 = Date.now();
    for (let i = 0; i < total; i++) {
      const due = t0 + (i * 1000) / RATE;
      if (due > Date.now()) await sleep(due - Date.now());
      const key = `bench:${run}:${i}:${randomBytes(3).toString('hex')}`;
      appended.set(key, Date.now());
      const customerId = customers[i % customers.length]!;
      void w.t.app.router.outbox.postToAgent(customerId, {
        key,
        kind: 'message',
        channel: 'sms',
        text: `message ${i} ${'lorem ipsum '.repeat(4)}`,
        username: 'Bench Customer',
      });
    }
    const posted = () => {
      const at = new Map<string, number>();
      for (const c of w.slack.callsTo('chat.postMessage').slice(callsBefore)) {
        if (c.rateLimited) continue;
        for (const k of keysOf(c.args.metadata)) if (appended.has(k) && !at.has(k)) at.set(k, c.at);
      }
      return at;
    };
    const deadline = Date.now() + DRAIN_MS;
    while (posted().size < appended.size && Date.now() < deadline) await sleep(500);
    const at = posted();
    const calls = w.slack.callsTo('chat.postMessage').slice(callsBefore);
    const made = calls.filter((c) => !c.rateLimited && keysOf(c.args.metadata).some((k) => appended.has(k)));
    const lag = [...at].map(([k, t]) => t - appended.get(k)!);
    const report = {
      agents: AGENTS,
      customers: customers.length,
      rate: RATE,
      seconds: SECONDS,
      appended: appended.size,
      posted: at.size,
      refused429: calls.filter((c) => c.rateLimited).length,
      postCalls: made.length,
      messagesPerPost: Math.round((at.size / Math.max(1, made.length)) * 100) / 100,
      appendToSlackMs: summary(lag),
      lastPostAfterSendingS: Math.round((Math.max(...at.values()) - (t0 + SECONDS * 1000)) / 100) / 10,
    };
    console.log(JSON.stringify(report, null, 2));
  } finally {
    await w.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

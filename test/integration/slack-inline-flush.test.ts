/**
 * The inbound job posts its message to Slack itself (src/router/inbound.ts `flushAppended`,
 * slack-delivery.ts `flushNow`): one BullMQ job per message instead of two. A flush job is queued
 * only when the customer's flush lock is held, Slack asks to wait (a channel's 429) or the inline
 * flush failed; a worker killed between the append and the end of its inline flush leaves no flush
 * job, and the inbound job's stalled re-run posts the message, once. While Slack posts are slower
 * than the rest of an inbound job, flush jobs again (a Slack call in an inbound job holds its
 * whole partition). Real Redis, the real
 * MongoDB-protocol server, the Slack emulator, the real `rapport worker` executable.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Types } from 'mongoose';
import { eventually } from '../helpers/eventually';
import { startRapportWorker } from '../helpers/process';
import { listenablePort } from '../helpers/services';
import { privateStores, testEnv, uniqueName } from '../helpers/env';
import { PUBLIC_URL, SLACK_SECRET, startWorld, type World } from '../helpers/world';
import { channelWaitKey, POST_EVENT_TYPE } from '../../src/router/slack-delivery';
import { toAgentLockKey } from '../../src/queue/lock';

jest.setTimeout(120_000);

const INA = { slackUserId: 'U0INLINE', name: 'Ina', inboxChannelId: 'C0INLINE' };

let w: World;
let stores: NodeJS.ProcessEnv;
let child: ChildProcess | undefined;

beforeAll(async () => {
  stores = privateStores(uniqueName('inline'));
  w = await startWorld({ ...stores });
  await w.addAgent(INA);
});

afterAll(async () => {
  child?.kill('SIGKILL');
  await w.stop();
});

const models = () => w.t.app.models;
const prefix = () => w.t.app.config.queuePrefix;

/** The `flush` jobs ever queued (completed ones are kept) for the customer's Slack outbox. */
async function flushJobs(customerId: Types.ObjectId) {
  const jobs = await w.t.app.queues['to-agent'].getJobs([
    'completed',
    'waiting',
    'delayed',
    'active',
    'failed',
    'prioritized',
  ]);
  return jobs.filter(
    (j) => j.name === 'flush' && (j.data as { customerId?: string }).customerId === String(customerId),
  );
}

/** The posts in the customer's thread that carry `key`. */
function postsWithKey(thread: { channel: string; ts: string }, key: string) {
  return w.slack
    .thread(thread.channel, thread.ts)
    .filter((m) => m.metadata?.event_type === POST_EVENT_TYPE && m.metadata.event_payload.key === key);
}

/** Sends an SMS and waits until its post is marked posted; the post. */
async function posted(phone: string, text: string) {
  expect((await w.sms(phone, text)).status).toBe(200);
  const post = await eventually(
    async () => models().AgentPost.findOne({ text, state: 'posted' }).lean(),
    Boolean,
    30_000,
  );
  if (!post) throw new Error(`never posted: ${text}`);
  return post;
}

async function threadOf(customerId: Types.ObjectId): Promise<{ channel: string; ts: string }> {
  const t = await models().CurrentThread.findById(customerId).lean();
  return { channel: t!.channel, ts: t!.ts };
}

/** A returning customer: their first contact posted and settled (card, acknowledgement). */
async function returning(phone: string) {
  const first = await posted(phone, `hello ${phone}`);
  await new Promise((r) => setTimeout(r, 1_000));
  return { customerId: first.customerId, thread: await threadOf(first.customerId) };
}

describe('the inbound job posts its own message', () => {
  it('the outbox is free: posted by the inbound job, no flush job queued', async () => {
    const { customerId, thread } = await returning('+14155550301');
    const before = (await flushJobs(customerId)).length;
    const post = await posted('+14155550301', 'inline 301');
    expect(postsWithKey(thread, post.key)).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 300));
    expect((await flushJobs(customerId)).length).toBe(before);
  });

  it("the customer's flush lock is held: a flush job is queued, and it posts once the lock is free", async () => {
    const { customerId, thread } = await returning('+14155550302');
    const before = (await flushJobs(customerId)).length;
    // Another flush of this customer is running (as far as the lock says) for 1.5 s.
    await w.t.app.redis.set(toAgentLockKey(prefix(), String(customerId)), 'elsewhere', 'PX', 1_500);
    const post = await posted('+14155550302', 'locked 302');
    expect((await flushJobs(customerId)).length).toBe(before + 1);
    expect(postsWithKey(thread, post.key)).toHaveLength(1);
  });

  it('the channel asks to wait (429): a delayed flush job posts it after the wait, once', async () => {
    const { customerId, thread } = await returning('+14155550303');
    const before = (await flushJobs(customerId)).length;
    await w.t.app.redis.set(channelWaitKey(prefix(), thread.channel), '1', 'PX', 1_500);
    const sentAt = Date.now();
    const post = await posted('+14155550303', 'waited 303');
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(1_000);
    const jobs = (await flushJobs(customerId)).slice(before);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.opts.delay).toBeGreaterThan(500);
    expect(postsWithKey(thread, post.key)).toHaveLength(1);
  });

  it('the inline flush fails (Slack 500s): a flush job marked as tried takes over, looks first, posts once', async () => {
    const { customerId, thread } = await returning('+14155550304');
    const before = (await flushJobs(customerId)).length;
    // As many 500s as the inline flush tries in place (3): it gives up and hands over.
    w.slack.failNext('chat.postMessage', { status: 500 }, { times: 3, channel: thread.channel });
    const lookups = w.slack.callsTo('conversations.replies').length;
    const post = await posted('+14155550304', 'failed 304');
    const jobs = (await flushJobs(customerId)).slice(before);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.data).toMatchObject({ tried: true });
    expect(w.slack.callsTo('conversations.replies').length).toBeGreaterThan(lookups);
    expect(postsWithKey(thread, post.key)).toHaveLength(1);
  });
});

describe('a slow Slack', () => {
  it('while Slack posts take longer than the rest of an inbound job, inbound jobs queue flush jobs', async () => {
    const phone = '+14155550306';
    const { customerId, thread } = await returning(phone);
    const before = (await flushJobs(customerId)).length;
    // Far slower than an inbound job's steps here (tens of ms): a post held the partition that long.
    w.slack.delayAnswers(1_000);
    try {
      await posted(phone, 'slow 306');
      const next = await posted(phone, 'after slow 306');
      expect((await flushJobs(customerId)).length).toBeGreaterThan(before);
      expect(postsWithKey(thread, next.key)).toHaveLength(1);
    } finally {
      w.slack.delayAnswers(0);
    }
    // Slack is fast again: the flush jobs' posts bring the average down, and inbound jobs post inline.
    let inline = false;
    for (let i = 0; i < 20 && !inline; i++) {
      const jobs = (await flushJobs(customerId)).length;
      await posted(phone, `fast again ${i} 306`);
      inline = (await flushJobs(customerId)).length === jobs;
    }
    expect(inline).toBe(true);
  });
});

/**
 * A Slack in front of the emulator whose `chat.postMessage` takes the request and never answers (the
 * doomed worker's posts hang); every other method is passed through.
 */
async function hangingPosts(): Promise<{ server: Server; calls: () => number }> {
  let calls = 0;
  const body = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };
  const server = createServer((req, res) => {
    if (req.url?.includes('chat.postMessage')) {
      calls++;
      return;
    }
    void body(req).then(async (data) => {
      const answer = await fetch(`${w.slack.url}${(req.url ?? '/').slice(1)}`, {
        method: req.method,
        headers: req.headers as Record<string, string>,
        ...(req.method === 'GET' || req.method === 'HEAD' ? {} : { body: data }),
      });
      res.writeHead(answer.status, {
        'content-type': answer.headers.get('content-type') ?? 'application/json',
      });
      res.end(Buffer.from(await answer.arrayBuffer()));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, calls: () => calls };
}

async function startDoomedWorker(slackUrl: string): Promise<void> {
  const port = await listenablePort();
  const env = testEnv({
    ...stores,
    PORT: String(port),
    PUBLIC_URL,
    SLACK_BOT_TOKEN: w.slack.token,
    SLACK_SIGNING_SECRET: SLACK_SECRET,
    SLACK_API_URL: slackUrl,
    TWILIO_API_BASE_URL: w.twilio.url,
    META_GRAPH_BASE_URL: w.graph.url,
    INBOUND_PARTITIONS: '4',
  });
  child = await startRapportWorker(env, port);
}

it('a worker killed after the append, inside its inline flush: the stalled re-run posts the message once', async () => {
  const phone = '+14155550305';
  const { customerId, thread } = await returning(phone);
  const before = (await flushJobs(customerId)).length;
  // This process's inbound workers stand aside: the doomed worker takes the message.
  const inbound = w.t.app.workers.filter((wk) => wk.name.startsWith('inbound'));
  await Promise.all(inbound.map((wk) => wk.pause()));
  const proxy = await hangingPosts();
  try {
    await startDoomedWorker(`http://127.0.0.1:${(proxy.server.address() as AddressInfo).port}/`);
    expect((await w.sms(phone, 'killed 305')).status).toBe(200);
    await eventually(
      async () => proxy.calls(),
      (n) => n > 0,
      30_000,
    );
    // The message is appended and its post is in flight: killed there, no flush job was queued.
    const row = await models().AgentPost.findOne({ text: 'killed 305' }).lean();
    expect(row).toMatchObject({ state: 'pending' });
    expect((await flushJobs(customerId)).length).toBe(before);
    const exited = once(child!, 'exit');
    child!.kill('SIGKILL');
    await exited;
    inbound.forEach((wk) => wk.resume());
    // BullMQ finds the inbound job stalled (its lock expired), runs it again, and that run flushes.
    const post = await eventually(
      async () => models().AgentPost.findOne({ text: 'killed 305', state: 'posted' }).lean(),
      Boolean,
      150_000,
    );
    expect(post).toBeTruthy();
    expect(postsWithKey(thread, row!.key)).toHaveLength(1);
  } finally {
    inbound.forEach((wk) => wk.resume());
    proxy.server.closeAllConnections();
    proxy.server.close();
  }
}, 300_000);

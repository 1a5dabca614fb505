/**
 * Issue 21: the sandbox across a restart. Slack `ts` values are clock-based and unique across
 * emulator restarts; the sandbox keeps its emulated Slack, phones and page in MongoDB and reads them
 * back (or starts clean on purpose); a database with Rapport data but no sandbox history is refused;
 * and a thread record whose Slack card is gone never routes an agent's reply to a customer.
 */
import mongoose from 'mongoose';
import { ConfigError, loadConfig } from '../../src/config';
import { startSandbox, type Sandbox } from '../../src/sandbox';
import { startSlackEmulator } from '../emulators/slack';
import { eventually } from '../helpers/eventually';
import { sandboxEnv } from '../helpers/sandbox-page';
import { startSandboxApp, type SandboxApp } from '../helpers/sandbox-app';
import { startWorld, type World } from '../helpers/world';

jest.setTimeout(60_000);

describe('Slack ts values', () => {
  it('are clock-based and never repeat when the emulator restarts', async () => {
    const post = async (url: string) => {
      const res = await fetch(`${url}chat.postMessage`, {
        method: 'POST',
        headers: { authorization: 'Bearer xoxb-test-token', 'content-type': 'application/json' },
        body: JSON.stringify({ channel: 'C1', text: 'hi' }),
      });
      return ((await res.json()) as { ts: string }).ts;
    };
    const first = await startSlackEmulator();
    const before = [await post(first.url), await post(first.url)];
    await first.close();
    const second = await startSlackEmulator();
    const after = await post(second.url);
    await second.close();
    expect(new Set([...before, after]).size).toBe(3);
    const seconds = Number(after.split('.')[0]);
    expect(Math.abs(seconds - Date.now() / 1000)).toBeLessThan(60);
    expect(after).toMatch(/^\d{10}\.\d{6}$/);
    expect(Number(after)).toBeGreaterThan(Number(before[1]));
  });
});

describe('the sandbox across a restart', () => {
  const env = sandboxEnv('sbr', 'warn');
  let running: (SandboxApp & { base: string }) | undefined;

  async function boot(reset = false): Promise<string> {
    const started = await startSandboxApp(env, { reset });
    running = { ...started, base: `http://127.0.0.1:${started.port}/sandbox/api` };
    return started.opened;
  }
  async function stop(): Promise<void> {
    await running?.stop();
    running = undefined;
  }
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${running!.base}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed JSON, checked below
    return { status: res.status, body: (await res.json()) as any };
  };
  type Thread = { ts: string; text: string; replies: { text: string }[] };
  const threads = async (): Promise<Thread[]> =>
    (await api('GET', '/state')).body.slack.channels.flatMap((c: { threads: Thread[] }) => c.threads);

  afterAll(async () => {
    await running?.destroy();
    running = undefined;
  });

  it('shows after a restart what it showed before, and seeding again says what already existed', async () => {
    expect(await boot()).toMatch(/empty/);
    const seeded = await api('POST', '/seed');
    expect(seeded.body.added.agents).toEqual(['Alex', 'Sam']);
    expect(seeded.body.added.customers).toHaveLength(4);
    const before = await eventually(threads, (t) => t.length === 4);
    await stop();

    expect(await boot()).toMatch(/restored \d+ records/);
    const state = (await api('GET', '/state')).body;
    expect(state.people.map((p: { name: string }) => p.name)).toContain('Dana Whitfield');
    expect(state.agents.map((a: { name: string }) => a.name).sort()).toEqual(['Alex', 'Sam']);
    expect((await threads()).map((t) => t.ts).sort()).toEqual(before.map((t) => t.ts).sort());
    const again = await api('POST', '/seed');
    expect(again.body.added).toEqual({ agents: [], customers: [] });
    expect(again.body.existing.agents).toEqual(['Alex', 'Sam']);
    expect(again.body.message).toMatch(
      /^Added nothing new\. Already there: agents Alex, Sam; customers Dana/,
    );

    // A new customer after the restart gets a thread of their own, with a later ts.
    const robin = (await api('POST', '/people', { name: 'Robin', phone: '+14155550177' })).body;
    await api('POST', '/customer/send', { person: robin.id, app: 'sms', text: 'new after restart' });
    const freshOf = (t: Thread[]) => t.find((x) => !before.some((b) => b.ts === x.ts));
    const all = await eventually(threads, (t) =>
      Boolean(freshOf(t)?.replies.some((r) => r.text.includes('new after restart'))),
    );
    expect(all).toHaveLength(5);
    const fresh = freshOf(all)!;
    expect(Math.min(...before.map((t) => Number(t.ts)))).toBeLessThan(Number(fresh.ts));
  });

  it('starts clean on purpose with reset, saying so', async () => {
    await stop();
    expect(await boot(true)).toMatch(/started clean on purpose/);
    const state = (await api('GET', '/state')).body;
    expect(state.people).toEqual([]);
    expect(state.agents).toEqual([]);
    expect(await threads()).toEqual([]);
  });

  it('refuses a database with Rapport data but no sandbox history instead of running on half', async () => {
    await stop();
    const connection = await mongoose.createConnection(env.MONGODB_URI!).asPromise();
    await connection.dropDatabase();
    await connection.collection('customers').insertOne({ displayName: 'left over' });
    await connection.close();
    const sandbox = await startSandbox(env);
    const config = loadConfig({ ...env, ...sandbox.env });
    const attempt = sandbox.open(config);
    await expect(attempt).rejects.toThrow(ConfigError);
    await expect(attempt).rejects.toThrow(/--reset/);
    await sandbox.close();
    await boot(true);
  });
});

describe('a thread record whose Slack card is gone', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ REPLY_UNDO_SECONDS: '0' });
    await w.addAgent({ slackUserId: 'U0ALEX', name: 'Alex', inboxChannelId: 'C0ALEX' });
  });
  afterAll(() => w.stop());

  it('never routes an agent reply in it to a customer', async () => {
    await w.sms('+14155550188', 'hello 188');
    const card = await eventually(
      async () => w.slack.messages('C0ALEX').find((m) => m.metadata?.event_type === 'rapport_card'),
      Boolean,
    );
    // The workspace lost the card (an emulator restarted without its history did exactly this).
    const deleted = await fetch(`${w.slack.url}chat.delete`, {
      method: 'POST',
      headers: { authorization: `Bearer ${w.slack.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'C0ALEX', ts: card!.ts }),
    });
    expect(((await deleted.json()) as { ok: boolean }).ok).toBe(true);
    const reply = await w.agentReply('C0ALEX', card!.ts, 'U0ALEX', 'meant for someone else');
    expect(reply.res.status).toBe(200);
    await eventually(
      async () => w.slack.messages('C0ALEX').find((m) => m.ts === reply.ts)?.reactions ?? [],
      (r) => r.includes('warning'),
    );
    // …and its author is told privately why.
    const note = await eventually(
      async () =>
        w.slack
          .callsTo('chat.postEphemeral')
          .find((c) => c.args.user === 'U0ALEX' && c.args.thread_ts === card!.ts),
      Boolean,
    );
    expect(String(note?.args.text)).toContain('Your reply was not sent');
    expect(w.twilio.messages().filter((m) => m.body === 'meant for someone else')).toEqual([]);
  });
});

describe('the sandbox page: edit and delete a reply within the undo window', () => {
  const env = { ...sandboxEnv('sbr', 'warn'), REPLY_UNDO_SECONDS: '3' };
  let running: SandboxApp;
  let sandbox: Sandbox;
  let base = '';
  beforeAll(async () => {
    running = await startSandboxApp(env);
    sandbox = running.sandbox;
    base = `http://127.0.0.1:${running.port}/sandbox/api`;
  });
  afterAll(() => running.destroy());
  const post = async (path: string, body?: unknown) =>
    (await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    })) as Response;

  it('sends the edited text and never the deleted reply', async () => {
    const dana = '+14155550123';
    await post('/seed');
    const { slack, twilio } = sandbox.emulators;
    const card = await eventually(
      async () =>
        ['C0INBOXALEX', 'C0INBOXSAM']
          .flatMap((channel) =>
            slack.messages(channel).map((m) => ({ channel, m, replies: slack.thread(channel, m.ts) })),
          )
          .find(
            (c) =>
              c.m.metadata?.event_type === 'rapport_card' && c.replies.some((r) => r.text.includes('#1042')),
          ),
      Boolean,
    );
    const user = card!.channel === 'C0INBOXALEX' ? 'U0ALEX' : 'U0SAM';
    const reply = async (text: string) =>
      (await (
        await post('/agent/reply', { user, channel: card!.channel, threadTs: card!.m.ts, text })
      ).json()) as {
        ts: string;
      };
    const gone = await reply('Sorry, wrong customer');
    const fixed = await reply('It ships tomorow');
    await eventually(
      async () => slack.thread(card!.channel, card!.m.ts).find((m) => m.ts === fixed.ts)?.reactions ?? [],
      (r) => r.includes('hourglass_flowing_sand'),
    );
    expect((await post('/agent/change', { channel: card!.channel, ts: gone.ts })).status).toBe(200);
    expect(
      (await post('/agent/change', { channel: card!.channel, ts: fixed.ts, text: 'It ships tomorrow' }))
        .status,
    ).toBe(200);
    const sent = await eventually(
      async () => twilio.messages().filter((m) => m.to === dana && (m.body ?? '').includes('ships')),
      (m) => m.length >= 1,
    );
    await new Promise((r) => setTimeout(r, 1500));
    expect(sent.map((m) => m.body)).toEqual(['It ships tomorrow']);
    expect(twilio.messages().filter((m) => (m.body ?? '').includes('wrong customer'))).toEqual([]);
    expect((await post('/agent/change', { channel: card!.channel, ts: '1.000000' })).status).toBe(400);

    // The card's buttons, pressed as the owner: hand off to the other agent; the answer comes back.
    const other =
      user === 'U0ALEX'
        ? { user: 'U0SAM', channel: 'C0INBOXSAM' }
        : { user: 'U0ALEX', channel: 'C0INBOXALEX' };
    const customerId = String(card!.m.metadata!.event_payload.customerId);
    const handoff = await post('/agent/action', {
      user,
      channel: card!.channel,
      cardTs: card!.m.ts,
      actionId: 'rapport_handoff',
      value: customerId,
      selectedUser: other.user,
    });
    const answer = (await handoff.json()) as { status: number; text: string };
    expect(answer.status).toBe(200);
    expect(answer.text).not.toBe('');
    await eventually(
      async () =>
        slack
          .messages(other.channel)
          .filter(
            (m) =>
              m.metadata?.event_type === 'rapport_card' && m.metadata.event_payload.customerId === customerId,
          ),
      (cards) => cards.length === 1,
    );
  });
});

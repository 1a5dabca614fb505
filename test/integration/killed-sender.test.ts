/**
 * A worker SIGKILLed in the middle of a customer send (the real `rapport worker` executable, its
 * provider call hanging) leaves the customer's to-customer lock behind. The lock is short and renewed
 * by its holder, so the customer's next reply waits only until it expires (15 s), not minutes; the
 * interrupted send is reported as uncertain, never resent.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { eventually } from '../helpers/eventually';
import { startRapportWorker } from '../helpers/process';
import { listenablePort } from '../helpers/services';
import { privateStores, testEnv, uniqueName } from '../helpers/env';
import { PUBLIC_URL, SLACK_SECRET, startWorld, type World } from '../helpers/world';

jest.setTimeout(120_000);

const ALEX = { slackUserId: 'U0KILLED', name: 'Alex', inboxChannelId: 'C0KILLED' };
const CUSTOMER = '+15557770101';

let w: World;
let stores: NodeJS.ProcessEnv;
let hanging: Server;
let hangingCalls = 0;
let child: ChildProcess | undefined;

beforeAll(async () => {
  stores = privateStores(uniqueName('killed'));
  w = await startWorld({ ...stores });
  await w.addAgent(ALEX);
  // Twilio for the doomed worker: takes the request and never answers.
  hanging = createServer(() => void hangingCalls++);
  await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  child?.kill('SIGKILL');
  hanging.closeAllConnections();
  hanging.close();
  await w.stop();
});

/** The real worker executable on the world's Redis and database, its Twilio calls hanging. */
async function startDoomedWorker(): Promise<void> {
  const port = await listenablePort();
  const env = testEnv({
    ...stores,
    PORT: String(port),
    PUBLIC_URL,
    SLACK_BOT_TOKEN: w.slack.token,
    SLACK_SIGNING_SECRET: SLACK_SECRET,
    SLACK_API_URL: w.slack.url,
    TWILIO_API_BASE_URL: `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`,
    META_GRAPH_BASE_URL: w.graph.url,
    REPLY_UNDO_SECONDS: '0',
    INBOUND_PARTITIONS: '4',
  });
  child = await startRapportWorker(env, port);
}

const twilioTexts = () => w.twilio.messages().map((m) => m.body ?? '');

it("a worker killed mid-send blocks the customer's next reply only for the short lock", async () => {
  expect((await w.sms(CUSTOMER, 'Hello, anyone there?')).status).toBe(200);
  const card = await eventually(
    async () => w.slack.messages(ALEX.inboxChannelId).find((m) => m.metadata?.event_type === 'rapport_card'),
    Boolean,
  );
  if (!card) throw new Error('no card');
  // Let the acknowledgement go out first, then leave this customer's sends to the doomed worker alone.
  await eventually(
    async () => w.twilio.messages().length,
    (n) => n > 0,
  );
  const sent = w.twilio.messages().length;
  const toCustomer = w.t.app.workers.find((wk) => wk.name === 'to-customer')!;
  await toCustomer.pause();
  await startDoomedWorker();

  await w.agentReply(ALEX.inboxChannelId, card.ts, ALEX.slackUserId, 'First answer');
  await eventually(
    async () => hangingCalls,
    (n) => n > 0,
    30_000,
  );
  expect(hangingCalls).toBeGreaterThan(0);
  // Killed inside the provider call: the lock stays, nobody renews or releases it.
  const exited = once(child!, 'exit');
  child!.kill('SIGKILL');
  await exited;
  const killedAt = Date.now();
  toCustomer.resume();

  await w.agentReply(ALEX.inboxChannelId, card.ts, ALEX.slackUserId, 'Second answer');
  const texts = await eventually(
    async () => twilioTexts(),
    (t) => t.some((x) => x.includes('Second answer')),
    60_000,
  );
  const waitedMs = Date.now() - killedAt;
  expect(texts.filter((x) => x.includes('Second answer'))).toHaveLength(1);
  // The lock's 15 s plus retries and a loaded machine's slowness, far below the 2 minutes a long
  // unrenewed lock would take.
  expect(waitedMs).toBeLessThan(40_000);
  // The interrupted reply is not resent behind the agent's back: the agent is told it is uncertain.
  expect(
    twilioTexts()
      .slice(sent)
      .filter((x) => x.includes('First answer')),
  ).toHaveLength(0);
  const note = await eventually(
    async () =>
      w.slack.thread(ALEX.inboxChannelId, card.ts).find((m) => m.text.includes('Delivery uncertain')),
    Boolean,
  );
  expect(note).toBeDefined();
});

it("a worker killed while sending a first contact's acknowledgement: it is not sent again, the agent is told", async () => {
  // The acknowledgement's job carries its send (delivery.ts `sendCarried`): run again after its worker
  // died, it must read the send's state (`sending`), not go by what it carries.
  const phone = '+15557770102';
  const toCustomer = w.t.app.workers.find((wk) => wk.name === 'to-customer')!;
  await toCustomer.pause();
  const callsBefore = hangingCalls;
  await startDoomedWorker();

  expect((await w.sms(phone, 'First words 0102')).status).toBe(200);
  await eventually(
    async () => hangingCalls,
    (n) => n > callsBefore,
    30_000,
  );
  const exited = once(child!, 'exit');
  child!.kill('SIGKILL');
  await exited;
  toCustomer.resume();

  const card = await eventually(
    async () =>
      w.slack
        .messages(ALEX.inboxChannelId)
        .filter((m) => m.metadata?.event_type === 'rapport_card')
        .find((c) =>
          w.slack.thread(ALEX.inboxChannelId, c.ts).some((r) => r.text.includes('First words 0102')),
        ),
    Boolean,
    60_000,
  );
  if (!card) throw new Error('no card');
  const note = await eventually(
    async () =>
      w.slack.thread(ALEX.inboxChannelId, card.ts).find((m) => m.text.includes('Delivery uncertain')),
    Boolean,
    // Nothing else flushes this customer: the job runs again once BullMQ finds it stalled (its lock
    // expired, then the next stall check).
    150_000,
  );
  expect(note).toBeDefined();
  const identity = await w.t.app.models.Identity.findOne({ key: `phone:${phone}` }).lean();
  const ack = await w.t.app.models.CustomerSend.findOne({
    customerId: identity!.customerId,
    origin: 'auto',
  }).lean();
  expect(ack).toMatchObject({ state: 'failed', failure: { reason: 'uncertain' } });
  expect(hangingCalls - callsBefore).toBe(1);
  expect(w.twilio.messages().filter((m) => m.to === phone)).toEqual([]);
}, 300_000);

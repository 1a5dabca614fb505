/**
 * A reply that cannot go out is explained to the agent even when the worker fails between deciding
 * and telling: the flush job's retry must still find the send and post the note (a send marked
 * failed before its note existed was skipped by the retry, and the reply was lost without a word).
 */
import { eventually } from '../helpers/eventually';
import { startWorld, type World } from '../helpers/world';

jest.setTimeout(90_000);

const ALEX = { slackUserId: 'U0NOTES', name: 'Alex', inboxChannelId: 'C0NOTES' };

let w: World;
beforeAll(async () => {
  // A short undo window: time to break the outbox between scheduling the reply and its flush.
  w = await startWorld({ REPLY_UNDO_SECONDS: '2' });
  await w.addAgent(ALEX);
});
afterAll(() => w.stop());

it('a failed send whose note could not be written at first still gets its note on the retry', async () => {
  expect((await w.sms('+15557770202', 'Do you ship abroad?')).status).toBe(200);
  const card = await eventually(
    async () => w.slack.messages(ALEX.inboxChannelId).find((m) => m.metadata?.event_type === 'rapport_card'),
    Boolean,
  );
  if (!card) throw new Error('no card');
  const customerId = String(card.metadata!.event_payload.customerId);
  const { CustomerSend } = w.t.app.models;

  // Messenger for an SMS-only customer: no route, so the send fails and the agent must be told.
  const { ts } = await w.agentReply(ALEX.inboxChannelId, card.ts, ALEX.slackUserId, 'messenger: Yes, we do');
  const key = `slack:${ALEX.inboxChannelId}:${ts}`;
  await eventually(async () => CustomerSend.findOne({ key }).lean(), Boolean);
  // The outbox's sequence counter breaks (as Redis or the database failing at that moment): the
  // note cannot be appended, and the flush job fails after deciding the send failed.
  const seqKey = `${w.t.app.config.queuePrefix}:seq:${customerId}`;
  const seq = await w.t.app.redis.get(seqKey);
  await w.t.app.redis.set(seqKey, 'broken');
  const attempted = await eventually(
    async () =>
      w.t.logs.filter((l) => l.includes('"queue":"to-customer"') && l.includes('will retry')).length,
    (n) => n > 0,
  );
  expect(attempted).toBeGreaterThan(0);
  await w.t.app.redis.set(seqKey, seq ?? '100');

  const note = await eventually(
    async () =>
      w.slack.thread(ALEX.inboxChannelId, card.ts).find((m) => m.text.includes('no Messenger address')),
    Boolean,
    30_000,
  );
  expect(note).toBeDefined();
  expect((await CustomerSend.findOne({ key }).lean())?.state).toBe('failed');
  expect(w.twilio.messages().filter((m) => m.body?.includes('Yes, we do'))).toHaveLength(0);
});

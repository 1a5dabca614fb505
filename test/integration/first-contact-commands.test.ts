/**
 * What a new customer's first message costs in database commands, the whole way (issue 22): identity
 * resolution, storing it, the owner pick, the acknowledgement sent to the customer, the card and the
 * thread records, the message's Slack post and the card refresh that follows. Counted with the
 * MongoDB driver's command monitoring (as bench/lib/db-monitor.ts does) on the real MongoDB-protocol
 * server, between the webhook and the moment nothing more is sent. A count, not a timing: it only
 * moves when the code paths do. Bench figure before the first-contact work: 45.75 per new customer.
 * This test: 45 before that work, 32 after its first round, 20 after the second (the acknowledgement
 * carried with its route, no conversation, thread or card-refresh reads for a customer the message
 * created, the card's identity from Redis), 17 with the owner-load work beside it (16, and the Slack
 * flush's one read per process start that lets it trust its listings), 15 with the acknowledgement's
 * opt-out check answered from Redis (src/router/opt-outs.ts: no `opt_outs` and no `erased_opt_outs`
 * read while the Redis copy is complete).
 */
import { uniqueName } from '../helpers/env';
import { eventually } from '../helpers/eventually';
import { startWorld, type World } from '../helpers/world';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const AGENT = { slackUserId: 'U0FIRSTC', name: 'Fay', inboxChannelId: 'C0FIRSTC' };
/** The first contact's commands after this work (45 before it, 32 before the second round, 17 before the opt-out copy). */
const FIRST_CONTACT_MAX = 15;

let w: World;
const seen: string[] = [];
let lastAt = 0;

beforeAll(async () => {
  w = await startWorld({ MONGODB_URI: `${MONGO}/rapport_${uniqueName('first')}?monitorCommands=true` });
  await w.t.app.mongo.ready;
  await w.addAgent(AGENT);
  w.t.app.mongo.connection
    .getClient()
    .on('commandStarted', (e: { commandName: string; command: Record<string, unknown> }) => {
      if (['hello', 'ismaster', 'isMaster', 'ping', 'endSessions', 'killCursors'].includes(e.commandName))
        return;
      seen.push(`${e.commandName} ${String(e.command[e.commandName])}`);
      lastAt = Date.now();
    });
});
afterAll(() => w.stop());

/**
 * A first contact by SMS, until its card and post are in Slack, the acknowledgement reached the
 * customer, and no command has been sent for 3 s (the card refresh included). Waits on the emulators
 * only, so the test's own waiting sends no database command.
 */
async function firstContact(from: string, returning = false): Promise<string[]> {
  const text = `first ${uniqueName('')}`;
  seen.length = 0;
  expect((await w.sms(from, text)).status).toBe(200);
  const posted = await eventually(
    async () => w.slack.messages(AGENT.inboxChannelId).some((m) => m.text.includes(text)),
    Boolean,
  );
  // A returning customer within the quiet period gets no second acknowledgement.
  const acknowledged =
    returning || (await eventually(async () => w.twilio.messages().some((m) => m.to === from), Boolean));
  const quiet = await eventually(async () => Date.now() - lastAt > 3_000, Boolean, 30_000);
  expect({ posted, acknowledged, quiet }).toEqual({ posted: true, acknowledged: true, quiet: true });
  return [...seen];
}

describe('a first contact', () => {
  it(`costs at most ${FIRST_CONTACT_MAX} database commands, acknowledgement and card included`, async () => {
    // A warm-up customer first: the agent's hot copy is in Redis, as it is for all but the first
    // customer of a running system.
    await firstContact('+14155550801');
    const commands = await firstContact('+14155550802');
    expect(commands.length).toBeLessThanOrEqual(FIRST_CONTACT_MAX);
    // Exactly once is still paid for: the acknowledgement is appended, marked `sending` before the
    // provider call and `sent` after it (with its accepted part), and the card's thread is recorded
    // once. Its opt-outs are checked in Redis (the warm-up's check had the copy built).
    const count = (c: string) => commands.filter((x) => x === c).length;
    expect(count('update customer_sends')).toBe(3);
    expect(count('find opt_outs')).toBe(0);
    expect(count('find erased_opt_outs')).toBe(0);
    expect(count('findAndModify slack_threads')).toBe(1);
    // And nothing is read that the message itself created or the router just wrote: the customer, its
    // conversation, its (absent) thread, its outbox, its identity for the send and the card, and the
    // card refresh after the thread opened (before: 8 of these reads; a thread record written twice).
    for (const read of [
      'find customers',
      'find conversations',
      'find current_threads',
      'find customer_sends',
      'find identities',
      'find slack_threads',
    ])
      expect([read, count(read)]).toEqual([read, 0]);
    expect(count('update current_threads')).toBe(1);
  });

  it('leaves what the next message needs: the first return costs 3 commands, no card refresh', async () => {
    await firstContact('+14155550803');
    const commands = await firstContact('+14155550803', true);
    // (Less the Slack flush's one read per process start that lets it trust its listings, if it
    // falls here: slack-delivery.ts `listingTrusted`.)
    expect(commands.filter((c) => c !== 'find agent_posts')).toEqual([
      'insert messages',
      'update agent_posts',
      'update agent_posts',
    ]);
  });
});

/**
 * A returning customer's ordinary message costs the card nothing (src/router/card-updates.ts
 * `afterInbound`): no refresh job, no database read, no chat.update. A message that changes what the
 * card shows still updates it: a window that was closed reopening, a name that arrives, an identity
 * linked by a verified claim. Real Redis, the MongoDB-protocol server and the Slack emulator.
 */
import { eventually } from '../helpers/eventually';
import { uniqueName } from '../helpers/env';
import { startWorld, type World } from '../helpers/world';
import { customerGenKey, epochKey } from '../../src/identity/cache';
import { cardKeysOf } from '../../src/router/card-updates';
import { agentGenKey, threadKeys } from '../../src/router/hot-state';
import type { CardSeen } from '../../src/router/card';
import { channelWaitKey } from '../../src/router/slack-delivery';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const ALEX = { slackUserId: 'U0SKIPALEX', name: 'Alex', inboxChannelId: 'C0SKIPALEX' };
const CHANNEL = ALEX.inboxChannelId;

let w: World;
const commands: string[] = [];

beforeAll(async () => {
  w = await startWorld({ MONGODB_URI: `${MONGO}/rapport_${uniqueName('skip')}?monitorCommands=true` });
  await w.t.app.mongo.ready;
  await w.addAgent(ALEX);
  w.t.app.mongo.connection
    .getClient()
    .on('commandStarted', (e: { commandName: string; command: Record<string, unknown> }) =>
      commands.push(
        `${e.commandName} ${String(e.command[e.commandName])} ${Object.keys((e.command.filter ?? e.command.query ?? {}) as object).join(',')}`.trim(),
      ),
    );
});
afterAll(() => w.stop());

const models = () => w.t.app.models;
const redis = () => w.t.app.redis;
const prefix = () => w.t.app.config.queuePrefix;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until a message with `text` is stored and posted to Slack; its customer's id. */
async function delivered(text: string): Promise<string> {
  const post = await eventually(
    async () =>
      (await models().AgentPost.find({ state: 'posted' }).lean()).find((p) => p.text.includes(text)),
    Boolean,
  );
  expect(post).toBeDefined();
  return String(post!.customerId);
}

/** The customer's card (the first post of its thread). */
async function cardOf(customerId: string) {
  const card = await eventually(
    async () =>
      w.slack
        .messages(CHANNEL)
        .find((m) => m.metadata?.event_type === 'rapport_card' && m.text.includes(customerId)),
    Boolean,
  );
  if (!card) throw new Error(`no card for ${customerId}`);
  return card;
}

const cardText = (ts: string) => w.slack.messages(CHANNEL).find((m) => m.ts === ts)?.text ?? '';
const updatesOf = (ts: string) => w.slack.callsTo('chat.update').filter((c) => c.args.ts === ts).length;

/**
 * Waits until the last refresh's record of what the card shows is current (its tokens are today's),
 * twice in a row: the card's first refresh and the first post's thread write are done.
 */
async function settled(customerId: string): Promise<void> {
  const current = async () => {
    const customer = await models().Customer.findById(customerId).lean();
    const [[text, gen, threadGen], epoch, agentGen] = await Promise.all([
      redis().mget(
        cardKeysOf(prefix(), customerId)[2]!,
        customerGenKey(prefix(), customerId),
        threadKeys(prefix(), customerId).gen,
      ),
      redis().get(epochKey(prefix())),
      customer?.ownerAgentId ? redis().get(agentGenKey(prefix(), customer.ownerAgentId)) : null,
    ]);
    const seen = text ? (JSON.parse(text) as CardSeen) : undefined;
    return Boolean(seen) && [epoch, gen, threadGen, agentGen].every((t, i) => t === seen!.tokens[i]);
  };
  for (let stable = 0; stable < 2;) {
    stable = (await eventually(current, Boolean)) ? stable + 1 : 0;
    await sleep(500);
  }
}

/** Longer than the refresh's coalescing delay: a refresh the message queued has run by then. */
const afterCoalescing = () => sleep(2_500);

/**
 * What only a card refresh reads on a returning customer's message: the customer's threads and
 * identities (the Slack flush reads its current thread from the hot state, or by id).
 */
const refreshReads = () =>
  commands.filter((c) => c.startsWith('find slack_threads') || c === 'find identities customerId');

describe('card refreshes after a customer message', () => {
  it("a returning customer's in-window message queues no refresh: no database read, no chat.update", async () => {
    await w.cloudWhatsApp('14155550401', 'hello 401', { name: 'Rae' });
    const id = await delivered('hello 401');
    const card = await cardOf(id);
    await settled(id);
    const before = updatesOf(card.ts);
    commands.length = 0;

    await w.cloudWhatsApp('14155550401', 'again 401', { name: 'Rae' });
    expect(await delivered('again 401')).toBe(id);
    await afterCoalescing();
    expect(refreshReads()).toEqual([]);
    expect(await redis().exists(cardKeysOf(prefix(), id)[0]!)).toBe(0);
    expect(updatesOf(card.ts)).toBe(before);
  });

  it("a first contact's card is recorded when its thread opens: the window's close is scheduled, and the first return queues no refresh", async () => {
    // The channel is rate limited for 3 s, so the card is posted well after the message was routed
    // (a refresh queued by the message itself would have run first and found no thread).
    await redis().set(channelWaitKey(prefix(), CHANNEL), '1', 'PX', 3_000);
    await w.cloudWhatsApp('14155550405', 'hello 405', { name: 'Noor' });
    const id = await delivered('hello 405');
    await cardOf(id);
    await settled(id);
    expect(Number(await redis().get(cardKeysOf(prefix(), id)[1]!))).toBeGreaterThan(Date.now());
    commands.length = 0;

    await w.cloudWhatsApp('14155550405', 'again 405', { name: 'Noor' });
    expect(await delivered('again 405')).toBe(id);
    await afterCoalescing();
    expect(refreshReads()).toEqual([]);
  });

  it('a message that reopens a closed WhatsApp window updates the card', async () => {
    const dayAgo = Math.floor((Date.now() - 25 * 3600_000) / 1000);
    await w.cloudWhatsApp('14155550402', 'old 402', { name: 'Sol', timestamp: dayAgo });
    const id = await delivered('old 402');
    const card = await cardOf(id);
    expect(card.text).toContain('WhatsApp window closed');
    await settled(id);

    await w.cloudWhatsApp('14155550402', 'new 402', { name: 'Sol' });
    await delivered('new 402');
    const shown = await eventually(
      async () => cardText(card.ts),
      (t) => t.includes('WhatsApp window open'),
    );
    expect(shown).toContain('WhatsApp window open');
  });

  it('a name that arrives with a later message updates the card', async () => {
    await w.cloudWhatsApp('14155550403', 'hi 403', { name: '' });
    const id = await delivered('hi 403');
    const card = await cardOf(id);
    expect(card.text).toContain('*New customer*');
    await settled(id);

    await w.cloudWhatsApp('14155550403', 'named 403', { name: 'Noor Haddad' });
    await delivered('named 403');
    const shown = await eventually(
      async () => cardText(card.ts),
      (t) => t.includes('*Noor Haddad*'),
    );
    expect(shown).toContain('*Noor Haddad*');
  });

  it('an identity linked by a verified claim (no merge) shows on the card', async () => {
    await w.messenger('7000000000000404', 'hello from messenger 404');
    const id = await delivered('hello from messenger 404');
    const card = await cardOf(id);
    await settled(id);

    await w.messenger('7000000000000404', 'my number is +1 415 555 0404');
    const code = await eventually(
      async () =>
        w.twilio.messages().find((m) => m.to === '+14155550404' && /\d{6} is your code/.test(m.body ?? '')),
      Boolean,
    );
    await settled(id);
    await w.messenger('7000000000000404', /(\d{6}) is your code/.exec(code!.body!)![1]!);
    const shown = await eventually(
      async () => cardText(card.ts),
      (t) => t.includes('+14155550404'),
    );
    const identities = /\*Identities:\* (.*)/.exec(shown)?.[1];
    expect(identities).toContain('Messenger user 7000000000000404');
    expect(identities).toContain('+14155550404');
  });
});

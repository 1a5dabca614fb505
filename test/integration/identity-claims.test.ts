/**
 * Claims. First the claim service against the real MongoDB-protocol server: a customer on Messenger
 * claims a phone number, gets a code and sends it back on Messenger; only the right code within 15
 * minutes merges. Then the whole app through its public interface (signed webhooks in; what the
 * Twilio, Graph and Slack emulators recorded, Redis and /metrics out): only explicit claims send a
 * code, a mere mention offers the agent a button only an agent may press, limits in Redis stop an
 * SMS cannon, opted-out numbers never get a code, every customer message still reaches the agent,
 * and each step is answered and noted once.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Address, InboundMessage } from '../../src/canonical';
import { createClaimService, MAX_CLAIM_ATTEMPTS, type ClaimService } from '../../src/identity/claims';
import { createMergeService } from '../../src/identity/merge';
import type { IdentityModels } from '../../src/identity/models';
import type { IdentityStore } from '../../src/identity/resolve';
import { claimLimitKeys } from '../../src/identity/claim-limits';
import { eventually } from '../helpers/eventually';
import { PAGE_ID, startWorld, type World } from '../helpers/world';
import { identityDb, type IdentityDb } from '../helpers/identity-db';

let db: IdentityDb;
let models: IdentityModels;
let store: IdentityStore;
let claims: ClaimService;

beforeAll(async () => {
  db = await identityDb('claims');
  models = db.models;
  store = db.store;
  claims = createClaimService({ models, merges: createMergeService(models) });
});

afterAll(async () => {
  await db.drop();
});

let n = 0;
function message(from: Address, at = new Date()): InboundMessage {
  const id = `m${++n}${randomBytes(3).toString('hex')}`;
  const provider = from.kind === 'psid' ? 'messenger' : 'twilio';
  return {
    key: `${provider}:${id}`,
    channel: from.kind === 'psid' ? 'messenger' : 'sms',
    provider,
    providerMessageId: id,
    from,
    to: 'x',
    parts: [],
    sentAt: at.toISOString(),
    receivedAt: at.toISOString(),
  };
}

/** A phone customer (older) and a Messenger customer (newer) who claims the phone's number. */
async function setup(withPhoneCustomer = true) {
  const e164 = `+1415555${String(2000 + ++n).padStart(4, '0')}`;
  const phoneCustomer = withPhoneCustomer
    ? await store.resolveCustomer(message({ kind: 'phone', e164 }, new Date(Date.now() - 60_000)))
    : undefined;
  const m = await store.resolveCustomer(message({ kind: 'psid', pageId: '42', psid: `p${++n}` }));
  const start = await claims.startClaim({
    customerId: m.customer._id,
    identityKey: m.identity.key,
    claim: { kind: 'phone', value: e164 },
  });
  return { e164, phoneCustomer, messenger: m, start };
}

const wrongCode = (code: string) => String((Number(code) + 1) % 1_000_000).padStart(6, '0');

describe('claims', () => {
  it('merges the two customers when the code comes back on the original channel', async () => {
    const { phoneCustomer, messenger, start } = await setup();
    expect(start.alreadyLinked).toBe(false);
    expect(start.code).toMatch(/^\d{6}$/);
    const stored = await models.Claim.findById(start.claimId).lean();
    expect(JSON.stringify(stored)).not.toContain(start.code);

    const result = await claims.verifyClaim({
      customerId: messenger.customer._id,
      identityKey: messenger.identity.key,
      text: ` ${start.code.slice(0, 3)} ${start.code.slice(3)} `,
    });
    expect(result.outcome).toBe('verified');
    const merge = result.outcome === 'verified' ? result.merge : undefined;
    expect(merge?.event.reason).toBe('claim');
    expect(merge?.event.actor).toBe(`customer:${messenger.identity.key}`);
    // The older (phone) customer survives; the Messenger identity now belongs to it.
    expect(String(merge?.event.survivorId)).toBe(String(phoneCustomer?.customer._id));
    const psid = await models.Identity.findOne({ key: messenger.identity.key }).lean();
    expect(String(psid?.customerId)).toBe(String(phoneCustomer?.customer._id));
    expect((await models.Claim.findById(start.claimId).lean())?.status).toBe('verified');
  });

  it('attaches the claimed number as a verified identity when nobody had it', async () => {
    const { e164, messenger, start } = await setup(false);
    const result = await claims.verifyClaim({
      customerId: messenger.customer._id,
      identityKey: messenger.identity.key,
      text: start.code,
    });
    expect(result).toMatchObject({ outcome: 'verified', merge: undefined });
    const identity = await models.Identity.findOne({ key: `phone:${e164}` }).lean();
    expect(String(identity?.customerId)).toBe(String(messenger.customer._id));
    expect(identity?.verified).toBe(true);
    expect(identity?.source).toBe('claim');
  });

  it('merges nothing on a wrong code, and locks after 5 wrong attempts', async () => {
    const { phoneCustomer, messenger, start } = await setup();
    const attempt = (text: string) =>
      claims.verifyClaim({ customerId: messenger.customer._id, identityKey: messenger.identity.key, text });
    for (let i = 1; i < MAX_CLAIM_ATTEMPTS; i++)
      expect(await attempt(wrongCode(start.code))).toMatchObject({ outcome: 'wrong' });
    expect(await attempt(wrongCode(start.code))).toMatchObject({ outcome: 'locked' });
    expect(await attempt(start.code)).toMatchObject({ outcome: 'locked' });
    expect(await models.MergeEvent.countDocuments({ mergedId: messenger.customer._id })).toBe(0);
    expect(await models.MergeEvent.countDocuments({ mergedId: phoneCustomer?.customer._id })).toBe(0);
    const psid = await models.Identity.findOne({ key: messenger.identity.key }).lean();
    expect(String(psid?.customerId)).toBe(String(messenger.customer._id));
  });

  it('never allows more than 5 attempts, even when guesses arrive at once', async () => {
    const { messenger, start } = await setup();
    const guesses = Array.from({ length: 20 }, (_, i) => String(i).padStart(6, '9'));
    const outcomes = await Promise.all(
      guesses
        .filter((g) => g !== start.code)
        .map((text) =>
          claims.verifyClaim({
            customerId: messenger.customer._id,
            identityKey: messenger.identity.key,
            text,
          }),
        ),
    );
    expect(outcomes.filter((o) => o.outcome === 'wrong').length).toBeLessThanOrEqual(MAX_CLAIM_ATTEMPTS - 1);
    expect(await models.ClaimAttempt.countDocuments({ claimId: start.claimId })).toBe(MAX_CLAIM_ATTEMPTS);
    const late = await claims.verifyClaim({
      customerId: messenger.customer._id,
      identityKey: messenger.identity.key,
      text: start.code,
    });
    expect(late.outcome).toBe('locked');
  });

  it('answers a retried job of the verifying message verified again (and nothing else)', async () => {
    const { phoneCustomer, messenger, start } = await setup();
    const input = {
      customerId: messenger.customer._id,
      identityKey: messenger.identity.key,
      text: start.code,
      attemptId: 'messenger:mid-that-verified',
    };
    const first = await claims.verifyClaim(input);
    const again = await claims.verifyClaim(input);
    expect(again).toMatchObject({ outcome: 'verified', claim: { kind: 'phone' } });
    const id = (r: typeof first) => (r.outcome === 'verified' ? String(r.merge?.event._id) : 'none');
    expect(id(again)).toBe(id(first));
    expect(String(first.outcome === 'verified' && first.merge?.event.survivorId)).toBe(
      String(phoneCustomer?.customer._id),
    );
    // The same code in another message is not a second verification.
    expect(await claims.verifyClaim({ ...input, attemptId: 'messenger:another' })).toEqual({
      outcome: 'none',
    });
  });

  it('merges nothing when the code comes back after 15 minutes', async () => {
    const { messenger, start } = await setup();
    await models.Claim.updateOne(
      { _id: start.claimId },
      { $set: { expiresAt: new Date(Date.now() - 1_000) } },
    );
    const result = await claims.verifyClaim({
      customerId: messenger.customer._id,
      identityKey: messenger.identity.key,
      text: start.code,
    });
    expect(result).toMatchObject({ outcome: 'expired' });
    expect(await models.MergeEvent.countDocuments({ mergedId: messenger.customer._id })).toBe(0);
  });

  it('does not accept the code on another channel, nor treat ordinary messages as attempts', async () => {
    const { phoneCustomer, messenger, start } = await setup();
    const other = await claims.verifyClaim({
      customerId: phoneCustomer!.customer._id,
      identityKey: phoneCustomer!.identity.key,
      text: start.code,
    });
    expect(other).toEqual({ outcome: 'none' });
    for (const text of ['thanks!', `code ${start.code}`, '12345', '1234567']) {
      expect(
        await claims.verifyClaim({
          customerId: messenger.customer._id,
          identityKey: messenger.identity.key,
          text,
        }),
      ).toEqual({ outcome: 'none' });
    }
    expect(await models.ClaimAttempt.countDocuments({ claimId: start.claimId })).toBe(0);
  });

  it('says alreadyLinked and sends no code when the number is already this customer', async () => {
    const e164 = '+14155559999';
    const c = await store.resolveCustomer(message({ kind: 'phone', e164 }));
    const r = await claims.startClaim({
      customerId: c.customer._id,
      identityKey: c.identity.key,
      claim: { kind: 'phone', value: e164 },
    });
    expect(r).toEqual({ claimId: '', code: '', alreadyLinked: true });
  });

  it('links trusted identities at once, recorded with the actor', async () => {
    const a = await store.resolveCustomer(
      message({ kind: 'phone', e164: '+14155559998' }, new Date(Date.now() - 60_000)),
    );
    const b = await store.resolveCustomer(message({ kind: 'psid', pageId: '42', psid: 'trusted1' }));
    const linked = await claims.linkIdentity({
      customerId: b.customer._id,
      claim: { kind: 'phone', value: '+14155559998' },
      actor: 'agent:U42',
      reason: 'agent',
    });
    expect('event' in linked && linked.event.actor).toBe('agent:U42');
    expect('event' in linked && String(linked.event.survivorId)).toBe(String(a.customer._id));

    const email = await claims.linkIdentity({
      customerId: a.customer._id,
      claim: { kind: 'email', value: 'ada@example.com' },
      actor: 'admin',
      reason: 'admin',
    });
    expect(email).toEqual({ attached: true });
    const customer = await models.Customer.findById(a.customer._id).lean();
    expect(customer?.profile.email).toMatchObject({ value: 'ada@example.com', source: 'admin' });
    expect((await models.Identity.findOne({ key: 'email:ada@example.com' }).lean())?.verified).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// The whole app, through its public interface.

const ALEX = { slackUserId: 'U0ALEX', name: 'Alex', inboxChannelId: 'C0ALEX' };
const SAM = { slackUserId: 'U0SAM', name: 'Sam', inboxChannelId: 'C0SAM' };
const BUSINESS = 'Acme Bikes';
const CODE_TEXT =
  /^Acme Bikes: (\d{6}) is your code to link this number to your (\w+) chat with Acme Bikes\. It expires in 15 minutes\./;

/** `eventually`, failing the test when the condition never holds. */
async function until<T>(fn: () => Promise<T>, accept: (v: T) => boolean, timeoutMs = 45_000): Promise<T> {
  const last = await eventually(fn, accept, timeoutMs);
  if (!accept(last))
    throw new Error(`condition never held; last value: ${JSON.stringify(last).slice(0, 400)}`);
  return last;
}

/** Records what Rapport posts to a button's `response_url` (the ephemeral answer). */
async function responseCatcher(): Promise<{ url: string; bodies: string[]; close(): Promise<void> }> {
  const bodies: string[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      bodies.push(body);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/respond`,
    bodies,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function claimHelpers(get: () => World) {
  const h = {
    codesTo: (e164: string) =>
      get()
        .twilio.messages()
        .filter((m) => m.to === e164 && CODE_TEXT.test(m.body ?? '')),
    codeSentTo: async (e164: string, n = 1) => {
      const codes = await until(
        async () => h.codesTo(e164),
        (c) => c.length >= n,
      );
      return CODE_TEXT.exec(codes[n - 1]?.body ?? '')?.[1] ?? '';
    },
    allCodes: () =>
      get()
        .twilio.messages()
        .filter((m) => CODE_TEXT.test(m.body ?? '')),
    messengerTo: (psid: string) =>
      get()
        .graph.messengerMessages()
        .filter((m) => m.recipientId === psid)
        .map((m) => String((m.message as { text?: string }).text ?? '')),
    /** Waits for a Messenger answer to `psid` matching `pattern`. */
    answered: (psid: string, pattern: RegExp, n = 1) =>
      until(
        async () => h.messengerTo(psid).filter((t) => pattern.test(t)),
        (a) => a.length >= n,
      ),
    posts: () => get().slack.messages(ALEX.inboxChannelId),
    /** The whole thread (card first) holding a post that contains `text`. */
    threadOf: async (text: string) => {
      const post = await until(async () => h.posts().find((m) => m.text.includes(text)), Boolean);
      return get().slack.thread(ALEX.inboxChannelId, post!.thread_ts ?? post!.ts);
    },
    /** The thread holding `text`, once `count` of its posts contain `also`. */
    threadWith: (text: string, also: string, count = 1) =>
      until(
        () => h.threadOf(text),
        (t) => t.filter((m) => m.text.includes(also)).length >= count,
      ),
    metric: async (outcome: string) => {
      const res = await fetch(`${get().t.baseUrl}/metrics`);
      const line = (await res.text())
        .split('\n')
        .find((l) => l.startsWith(`rapport_claim_codes_total{outcome="${outcome}"}`));
      return line ? Number(line.split(' ').pop()) : 0;
    },
    settle: () => new Promise((r) => setTimeout(r, 1200)),
  };
  return h;
}

describe('claims end to end', () => {
  let w: World;
  let catcher: Awaited<ReturnType<typeof responseCatcher>>;
  const h = claimHelpers(() => w);
  beforeAll(async () => {
    w = await startWorld({ BUSINESS_NAME: BUSINESS });
    await w.addAgent(ALEX);
    // A teammate who owns none of these customers (away, so every customer goes to Alex).
    const sam = await w.addAgent(SAM);
    expect((await w.admin('PATCH', `/agents/${sam.id}`, { status: 'away' })).status).toBe(200);
    catcher = await responseCatcher();
  });
  afterAll(async () => {
    await w.stop();
    await catcher.close();
  });

  /** A signed block_actions press of the claim offer's button, shaped as Slack sends it. */
  async function press(user: string, note: { ts: string; thread_ts?: string; blocks?: unknown[] }) {
    const button = JSON.stringify(note.blocks ?? []).match(/"value":"([^"]+)"/)?.[1] ?? '';
    const payload = {
      type: 'block_actions',
      user: { id: user, username: user.toLowerCase(), team_id: w.slack.teamId },
      api_app_id: 'A0RAPPORT',
      team: { id: w.slack.teamId, domain: 'rapport-test' },
      container: {
        type: 'message',
        message_ts: note.ts,
        channel_id: ALEX.inboxChannelId,
        is_ephemeral: false,
        thread_ts: note.thread_ts,
      },
      trigger_id: '1.2.3',
      channel: { id: ALEX.inboxChannelId, name: 'alex-inbox' },
      message: { type: 'message', ts: note.ts, thread_ts: note.thread_ts, text: 'offer' },
      response_url: catcher.url,
      actions: [
        {
          type: 'button',
          action_id: 'rapport_claim_send',
          block_id: 'b1',
          text: { type: 'plain_text', text: 'Send a code' },
          value: button,
          action_ts: `${Date.now() / 1000}`,
        },
      ],
    };
    const res = await w.interaction(payload);
    expect(res.status).toBe(200);
    return until(
      async () => catcher.bodies.length,
      (n) => n > 0,
    ).then(() => {
      const last = catcher.bodies.splice(0).pop() ?? '{}';
      return (JSON.parse(last) as { text: string }).text;
    });
  }

  it('sends nothing for a message that merely contains a number; the agent gets a "send a code" button only a permitted agent can use', async () => {
    await w.sms('+14155550301', 'AIRTEXT +1 (908) 555-0199');
    await w.messenger('7100000000000302', 'call my wife at +1 415 555 0302');
    const thread = await h.threadWith('AIRTEXT', 'mentions +19085550199');
    const offer = thread.find((m) => m.text.includes('mentions +19085550199'));
    await h.threadOf('call my wife');
    await until(
      async () => h.posts().filter((m) => m.text.includes('mentions +14155550302')),
      (m) => m.length === 1,
    );
    await h.settle();
    // Nothing went to either number; the customer's own message is in the thread before the offer.
    expect(h.codesTo('+19085550199')).toHaveLength(0);
    expect(h.codesTo('+14155550302')).toHaveLength(0);
    expect(w.twilio.messages().filter((m) => m.to === '+19085550199')).toHaveLength(0);
    expect(thread.findIndex((m) => m.text.includes('*[SMS]* AIRTEXT'))).toBeGreaterThan(0);
    expect(thread.findIndex((m) => m.text.includes('*[SMS]* AIRTEXT'))).toBeLessThan(thread.indexOf(offer!));
    expect(JSON.stringify(offer!.blocks)).toContain('"action_id":"rapport_claim_send"');
    expect(JSON.stringify(offer!.blocks)).toContain('Send a code to +19085550199');
    expect(await h.metric('offered')).toBe(2);

    // Someone who is not a Rapport agent presses it: refused, nothing sent.
    expect(await press('U0STRANGER', offer!)).toMatch(/Only active Rapport agents can act on customers/);
    // Nor an agent who neither owns nor covers this customer.
    expect(await press(SAM.slackUserId, offer!)).toMatch(/agents act only on the customers they own/);
    await h.settle();
    expect(h.codesTo('+19085550199')).toHaveLength(0);

    // The owner presses it: one code, the customer asked for it back, a note naming who sent it.
    expect(await press(ALEX.slackUserId, offer!)).toMatch(/A code is on its way to \+19085550199/);
    await h.codeSentTo('+19085550199');
    await until(
      async () =>
        (await h.threadOf('AIRTEXT')).filter((m) => m.text.includes('<@U0ALEX> sent a code to +19085550199')),
      (m) => m.length === 1,
    );
    const asked = await until(
      async () =>
        w.twilio
          .messages()
          .filter(
            (m) =>
              m.to === '+14155550301' && /sent a 6-digit code to your number ending 99/.test(m.body ?? ''),
          ),
      (m) => m.length === 1,
    );
    expect(asked).toHaveLength(1);
    // A second press sends nothing more.
    expect(await press(ALEX.slackUserId, offer!)).toMatch(/already sent/);
    await h.settle();
    expect(h.codesTo('+19085550199')).toHaveLength(1);
    // Neither number nor code reaches the logs (which do hold the presses, by Slack user id).
    expect(w.t.logs.filter((l) => l.includes('claim offer pressed') && l.includes('U0ALEX'))).toHaveLength(2);
    const code = CODE_TEXT.exec(h.codesTo('+19085550199')[0]!.body!)![1]!;
    expect(w.t.logs.filter((l) => /9085550199|4155550301/.test(l) || l.includes(code))).toEqual([]);
  });

  it.each([
    ['English', '7100000000000310', 'my number is +1 415 555 0310', '+14155550310'],
    ['Spanish', '7100000000000311', 'Mi número es +1 415 555 0311', '+14155550311'],
    ['Portuguese', '7100000000000312', 'meu número é +1 415 555 0312', '+14155550312'],
    ['French', '7100000000000313', 'mon numéro : +1 415 555 0313', '+14155550313'],
    ['a bare number', '7100000000000314', '+1 415-555-0314', '+14155550314'],
  ])('sends a code naming the business for an explicit claim (%s)', async (_lang, psid, text, e164) => {
    await w.messenger(psid, text);
    const code = await h.codeSentTo(e164);
    expect(code).toMatch(/^\d{6}$/);
    expect(CODE_TEXT.exec(h.codesTo(e164)[0]!.body!)?.[2]).toBe('Messenger');
    await h.answered(psid, new RegExp(`sent a 6-digit code to your number ending ${e164.slice(-2)}`));
    const thread = await h.threadWith(text.slice(0, 12), `a code to ${e164} by SMS`);
    expect(thread.filter((m) => m.text.includes(`a code to ${e164} by SMS`))).toHaveLength(1);
  });

  it('posts a wrong code to the agent and answers it, then confirms the right one with one note per thread', async () => {
    await w.sms('+14155550350', 'hello from my phone');
    await h.threadOf('hello from my phone');
    const psid = '7100000000000350';
    await w.messenger(psid, 'my number is +1 415 555 0350');
    const code = await h.codeSentTo('+14155550350');
    const wrong = code === '000000' ? '111111' : '000000';

    await w.messenger(psid, wrong);
    await h.answered(
      psid,
      /doesn't match the one we sent to your number ending 50\. Please check it and send it again \(4 tries left\)/,
    );
    const claimThread = await h.threadWith(`*[Messenger]* ${wrong}`, 'That was not the code');
    expect(claimThread.filter((m) => m.text.includes(`*[Messenger]* ${wrong}`))).toHaveLength(1);
    const wrongPost = claimThread.findIndex((m) => m.text.includes(`*[Messenger]* ${wrong}`));
    const wrongNote = claimThread.findIndex((m) =>
      m.text.includes('That was not the code sent to +14155550350'),
    );
    expect(wrongPost).toBeGreaterThan(0);
    expect(wrongNote).toBeGreaterThan(wrongPost);

    await w.messenger(psid, code);
    await h.answered(psid, /^Thanks — this chat is now linked to your number ending 50\.$/);
    // The code message joined the phone customer's (survivor's) thread, followed by one claim note.
    const survivor = await h.threadOf('hello from my phone');
    await until(
      async () =>
        (await h.threadOf('hello from my phone')).filter((m) => m.text.includes('sent back the code')),
      (m) => m.length === 1,
    );
    const after = await h.threadOf('hello from my phone');
    expect(after.filter((m) => m.text.includes(`*[Messenger]* ${code}`))).toHaveLength(1);
    expect(after.findIndex((m) => m.text.includes('sent back the code'))).toBeGreaterThan(
      after.findIndex((m) => m.text.includes(`*[Messenger]* ${code}`)),
    );
    expect(after.filter((m) => /Merged with customer/.test(m.text))).toHaveLength(0);
    expect(survivor[0]?.ts).toBe(after[0]?.ts);
    // The Messenger customer's thread says once where the conversation went, and never that its
    // history is here.
    await until(
      async () =>
        (await h.threadOf(`*[Messenger]* ${wrong}`)).filter((m) => m.text.includes('continues there')),
      (m) => m.length === 1,
    );
    const old = await h.threadOf(`*[Messenger]* ${wrong}`);
    expect(old.filter((m) => /history is in this thread|sent back the code/.test(m.text))).toHaveLength(0);
  });

  it('answers an expired code with what to do, and still posts it', async () => {
    const psid = '7100000000000360';
    await w.messenger(psid, 'my number is +1 415 555 0360');
    const code = await h.codeSentTo('+14155550360');
    await w.t.app.models.Claim.updateMany(
      { value: '+14155550360' },
      { $set: { expiresAt: new Date(Date.now() - 1000) } },
    );
    await w.messenger(psid, code);
    await h.answered(psid, /That code has expired .* send your number again/);
    const thread = await h.threadOf('my number is +1 415 555 0360');
    await until(
      async () =>
        (await h.threadOf('my number is +1 415 555 0360')).filter((m) => m.text.includes('had expired')),
      (m) => m.length === 1,
    );
    expect(
      (await h.threadOf(`*[Messenger]* ${code}`)).some((m) => m.text.includes(`*[Messenger]* ${code}`)),
    ).toBe(true);
    expect(thread.length).toBeGreaterThan(0);
  });

  it('keeps the attempt budget per number: a new claim does not reset it, and a spent number gets no new code', async () => {
    const psid = '7100000000000370';
    const e164 = '+14155550370';
    await w.messenger(psid, `my number is ${e164}`);
    const first = await h.codeSentTo(e164);
    const wrong = first === '999999' ? '888888' : '999999';
    for (let i = 1; i <= 3; i++) {
      await w.messenger(psid, wrong);
      await h.answered(psid, /doesn't match/, i);
    }
    await w.messenger(psid, `this is my number: ${e164}`);
    const second = await h.codeSentTo(e164, 2);
    const wrong2 = second === '777777' ? '666666' : '777777';
    await w.messenger(psid, wrong2);
    await h.answered(psid, /\(1 try left\)/);
    await w.messenger(psid, wrong2);
    await h.answered(psid, /didn't match too many times/);
    // Even the right code of the new claim is refused now, and nothing was linked.
    await w.messenger(psid, second);
    await h.answered(psid, /didn't match too many times/, 2);
    const { Identity } = w.t.app.models;
    expect(await Identity.countDocuments({ key: `phone:${e164}` })).toBe(0);
    // Another customer claiming that number gets no code today.
    await w.messenger('7100000000000371', `my number is ${e164}`);
    await h.answered('7100000000000371', /can't send a code to that number right now/);
    await until(
      async () =>
        h
          .posts()
          .filter(
            (m) =>
              m.text.includes(`No code was sent to ${e164}`) &&
              m.text.includes('CLAIM_ATTEMPTS_PER_TARGET_DAY'),
          ),
      (m) => m.length === 1,
    );
    expect(h.codesTo(e164)).toHaveLength(2);
    // Redis holds the budget (under a hash, not the number).
    const key = claimLimitKeys(w.t.app.config.queuePrefix).attempts(`phone:${e164}`);
    expect(await w.t.app.redis.zcard(key)).toBe(5);
    expect(key).not.toContain('4155550370');
  });

  it('limits codes per sender per hour and per number per day: the customer is told, the agent sees why, a metric counts', async () => {
    const psid = '7100000000000380';
    for (const n of ['0381', '0382', '0383']) {
      await w.messenger(psid, `my number is +1 415 555 ${n}`);
      await h.codeSentTo(`+1415555${n}`);
    }
    await w.messenger(psid, 'my number is +1 415 555 0384');
    await h.answered(psid, /We can't send another code right now/);
    await until(
      async () =>
        h
          .posts()
          .filter(
            (m) =>
              m.text.includes('No code was sent to +14155550384') &&
              m.text.includes('CLAIM_CODES_PER_SENDER_HOUR'),
          ),
      (m) => m.length === 1,
    );
    expect(h.codesTo('+14155550384')).toHaveLength(0);
    expect(await h.metric('limited_sender')).toBe(1);
    const senderKey = claimLimitKeys(w.t.app.config.queuePrefix).sender(`psid:${PAGE_ID}:${psid}`);
    expect(await w.t.app.redis.zcard(senderKey)).toBe(3);

    // Three customers claim one number: three codes; the fourth claimant is refused.
    for (const p of ['7100000000000391', '7100000000000392', '7100000000000393']) {
      await w.messenger(p, 'my number is +1 415 555 0390');
      await h.answered(p, /sent a 6-digit code/);
    }
    await w.messenger('7100000000000394', 'my number is +1 415 555 0390');
    await h.answered('7100000000000394', /can't send a code to that number right now/);
    await until(
      async () =>
        h
          .posts()
          .filter(
            (m) =>
              m.text.includes('No code was sent to +14155550390') &&
              m.text.includes('CLAIM_CODES_PER_TARGET_DAY'),
          ),
      (m) => m.length === 1,
    );
    expect(h.codesTo('+14155550390')).toHaveLength(3);
    expect(await h.metric('limited_target')).toBe(1);
  });

  it('shares the limits through Redis: codes another process counted for a number count here too', async () => {
    // Another api/worker process sent three codes to this number today: its counter is in Redis.
    const key = claimLimitKeys(w.t.app.config.queuePrefix).target('phone:+14155550397');
    const now = Date.now();
    await w.t.app.redis.zadd(key, now - 3000, 'other:1', now - 2000, 'other:2', now - 1000, 'other:3');
    await w.t.app.redis.pexpire(key, 86_400_000);
    await w.messenger('7100000000000397', 'my number is +1 415 555 0397');
    await h.answered('7100000000000397', /can't send a code to that number right now/);
    await h.settle();
    expect(h.codesTo('+14155550397')).toHaveLength(0);
    expect(await w.t.app.redis.zcard(key)).toBe(3);
  });

  it("never sends a code to a number that said STOP, nor to an erased customer's kept opt-out", async () => {
    await w.sms('+14155550395', 'STOP');
    await h.threadOf('opted out of SMS');
    await w.messenger('7100000000000395', 'my number is +1 415 555 0395');
    await h.answered('7100000000000395', /can't send a code to that number right now/);

    await w.sms('+14155550396', 'STOP');
    const found = await until(
      async () =>
        (await w.admin('GET', `/customers?phone=${encodeURIComponent('+14155550396')}`)).body.customers,
      (c) => Array.isArray(c) && c.length === 1,
    );
    const erased = await w.admin('DELETE', `/customers/${found[0].id}`);
    expect(erased.status).toBeLessThan(300);
    await until(
      async () => w.t.app.models.Identity.countDocuments({ key: 'phone:+14155550396' }),
      (n) => n === 0,
    );
    await w.messenger('7100000000000396', 'my number is +1 415 555 0396');
    await h.answered('7100000000000396', /can't send a code to that number right now/);
    await until(
      async () => h.posts().filter((m) => m.text.includes('opted out of our texts (STOP)')),
      (m) => m.length === 2,
    );
    await h.settle();
    expect(h.codesTo('+14155550395')).toHaveLength(0);
    expect(h.codesTo('+14155550396')).toHaveLength(0);
    expect(await h.metric('opted_out')).toBe(2);
  });
});

describe('claims are not an SMS cannon', () => {
  let w: World;
  const h = claimHelpers(() => w);
  beforeAll(async () => {
    w = await startWorld({ BUSINESS_NAME: BUSINESS, CLAIM_CODES_PER_HOUR: '5' });
    await w.addAgent(ALEX);
  });
  afterAll(() => w.stop());

  it('stops someone texting strangers: many targets from one sender, then many senders, never more than the limits', async () => {
    // One sender, six strangers: three codes (per sender per hour), three refusals.
    const attacker = '7200000000000001';
    for (let i = 0; i < 6; i++) await w.messenger(attacker, `my number is +1 212 555 01${10 + i}`);
    await until(
      async () => (await h.metric('sent')) + (await h.metric('limited_sender')),
      (n) => n === 6,
      60_000,
    );
    expect(await h.metric('sent')).toBe(3);

    // Six more senders, two strangers each, all at once: the global hourly cap (5) leaves two.
    const sends: Promise<Response>[] = [];
    for (let s = 0; s < 6; s++)
      for (let t = 0; t < 2; t++)
        sends.push(w.messenger(`72000000000001${s}0`, `my number is +1 646 555 0${s}${t}0`));
    expect((await Promise.all(sends)).every((r) => r.status === 200)).toBe(true);
    await until(
      async () =>
        (await h.metric('sent')) + (await h.metric('limited_sender')) + (await h.metric('limited_hour')),
      (n) => n === 18,
      60_000,
    );
    await until(
      async () => h.allCodes().length,
      (n) => n === 5,
    );
    await h.settle();
    expect(h.allCodes()).toHaveLength(5);
    expect(new Set(h.allCodes().map((m) => m.to)).size).toBe(5);
    expect(await h.metric('limited_sender')).toBe(3);
    expect(await h.metric('limited_hour')).toBe(10);
    // Every refused claimant was told, politely, on Messenger.
    await until(
      async () =>
        w.graph
          .messengerMessages()
          .filter((m) =>
            /We can't send another code right now/.test(String((m.message as { text?: string }).text)),
          ),
      (m) => m.length === 13,
      60_000,
    );
    const hourKey = claimLimitKeys(w.t.app.config.queuePrefix).hour;
    expect(await w.t.app.redis.zcard(hourKey)).toBe(5);
  });
});

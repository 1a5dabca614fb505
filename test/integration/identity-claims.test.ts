/**
 * Verified claims against the real MongoDB-protocol server: a customer on Messenger claims a phone
 * number, gets a code (the router would send it by SMS) and sends it back on Messenger. Only the
 * right code within 15 minutes merges; wrong, expired and locked codes merge nothing.
 */
import { randomBytes } from 'node:crypto';
import mongoose, { type Connection } from 'mongoose';
import type { Address, InboundMessage } from '../../src/canonical';
import { createClaimService, MAX_CLAIM_ATTEMPTS, type ClaimService } from '../../src/identity/claims';
import { createMergeService } from '../../src/identity/merge';
import { registerIdentityModels, type IdentityModels } from '../../src/identity/models';
import { createIdentityStore, type IdentityStore } from '../../src/identity/resolve';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';

let conn: Connection;
let models: IdentityModels;
let store: IdentityStore;
let claims: ClaimService;

beforeAll(async () => {
  conn = mongoose.createConnection(`${MONGO}/rapport_claims_${randomBytes(4).toString('hex')}`);
  await conn.asPromise();
  models = registerIdentityModels(conn);
  await Promise.all(Object.values(conn.models).map((m) => m.createIndexes()));
  store = createIdentityStore(models, { defaultRegion: 'US' });
  claims = createClaimService({ models, merges: createMergeService(models) });
});

afterAll(async () => {
  await conn.dropDatabase().catch(() => undefined);
  await conn.close();
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
    expect(result).toEqual({ outcome: 'verified', merge: undefined });
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
      expect(await attempt(wrongCode(start.code))).toEqual({ outcome: 'wrong' });
    expect(await attempt(wrongCode(start.code))).toEqual({ outcome: 'locked' });
    expect(await attempt(start.code)).toEqual({ outcome: 'locked' });
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
    expect(result).toEqual({ outcome: 'expired' });
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

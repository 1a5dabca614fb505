/**
 * Identity resolution against the real MongoDB-protocol server (FerretDB in CI): one database per
 * file, indexes built as the app builds them, no mocks.
 */
import mongoose from 'mongoose';
import pino from 'pino';
import type { Address, DeliveryStatus, InboundMessage } from '../../src/canonical';
import { PayloadError } from '../../src/errors';
import { createInboundProcessor, type InboundProcessor } from '../../src/identity/inbound-processor';
import type { IdentityModels } from '../../src/identity/models';
import { identityKeyOf, type IdentityStore } from '../../src/identity/resolve';
import { identityDb, inboundMessage, type IdentityDb } from '../helpers/identity-db';

let db: IdentityDb;
let models: IdentityModels;
let store: IdentityStore;
let processor: InboundProcessor;

beforeAll(async () => {
  db = await identityDb('id');
  models = db.models;
  store = db.store;
  processor = createInboundProcessor({ store, log: pino({ level: 'silent' }) });
});

afterAll(async () => {
  await db.drop();
});

const inbound = inboundMessage;

const phone = (e164: string): Address => ({ kind: 'phone', e164 });

describe('identity resolution', () => {
  it('files SMS, Twilio WhatsApp, WhatsApp Cloud and whatsapp-web forms of one number under one customer', async () => {
    const forms: InboundMessage[] = [
      inbound(phone('+14155550123'), { channel: 'sms', provider: 'twilio' }),
      inbound(phone('whatsapp:+14155550123'), { channel: 'whatsapp', provider: 'twilio' }),
      inbound(phone('14155550123'), { channel: 'whatsapp', provider: 'whatsapp-cloud' }),
      inbound(phone('14155550123@c.us'), { channel: 'whatsapp', provider: 'whatsapp-web' }),
    ];
    const results = [];
    for (const m of forms) results.push(await processor.process({ type: 'message', message: m }));

    const ids = new Set(results.map((r) => r.customerId));
    expect(ids.size).toBe(1);
    expect(results.every((r) => r.stored)).toBe(true);
    expect(await models.Identity.countDocuments({ key: 'phone:+14155550123' })).toBe(1);
    const [customerId] = [...ids];
    expect(await models.Customer.countDocuments({ _id: customerId })).toBe(1);

    const identity = await models.Identity.findOne({ key: 'phone:+14155550123' }).lean();
    // Each provider's raw address is kept for replies; each channel has its own messaging window.
    expect(identity?.lastAddress.twilio?.raw).toBe('whatsapp:+14155550123');
    expect(identity?.lastAddress['whatsapp-cloud']?.raw).toBe('14155550123');
    expect(identity?.lastAddress['whatsapp-web']?.raw).toBe('14155550123@c.us');
    expect(identity?.lastInboundAt.sms).toBeInstanceOf(Date);
    expect(identity?.lastInboundAt.whatsapp).toBeInstanceOf(Date);
    expect(await models.Message.countDocuments({ customerId })).toBe(4);
  });

  it('creates exactly one customer and one identity for 50 concurrent first messages from a new number', async () => {
    const from = phone('+14155550124');
    const messages = Array.from({ length: 50 }, () => inbound(from));
    const results = await Promise.all(messages.map((m) => store.resolveCustomer(m)));

    expect(new Set(results.map((r) => String(r.customer._id))).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(await models.Identity.countDocuments({ key: 'phone:+14155550124' })).toBe(1);
    const identity = await models.Identity.findOne({ key: 'phone:+14155550124' }).lean();
    expect(await models.Customer.countDocuments({ _id: identity?.customerId })).toBe(1);
    expect(String(identity?.customerId)).toBe(String(results[0]?.customer._id));
  });

  it('converges when a crash left an identity without its customer', async () => {
    // Step 1 happened (identity inserted with a fresh customer id), the process died before step 2.
    const customerId = new mongoose.Types.ObjectId();
    await models.Identity.create({
      key: 'phone:+14155550125',
      kind: 'phone',
      value: '+14155550125',
      customerId,
      verified: true,
      source: 'twilio',
    });
    const result = await store.resolveCustomer(inbound(phone('+14155550125')));
    expect(result.created).toBe(true);
    expect(String(result.customer._id)).toBe(String(customerId));
    expect(await models.Customer.countDocuments({ _id: customerId })).toBe(1);
  });

  it('stores a redelivered message once', async () => {
    const message = inbound(phone('+14155550126'), { id: 'SMredelivered' });
    const first = await processor.process({ type: 'message', message });
    const again = await processor.process({ type: 'message', message: { ...message } });
    const concurrent = await Promise.all(
      Array.from({ length: 10 }, () => processor.process({ type: 'message', message })),
    );
    expect(first.stored).toBe(true);
    expect(again.stored).toBe(false);
    expect(concurrent.every((r) => !r.stored)).toBe(true);
    expect(again.customerId).toBe(first.customerId);
    expect(await models.Message.countDocuments({ key: message.key })).toBe(1);
  });

  it('makes a Messenger PSID its own customer', async () => {
    const sms = await processor.process({ type: 'message', message: inbound(phone('+14155550127')) });
    const psid: Address = { kind: 'psid', pageId: '1234567890', psid: '998877' };
    const messenger = await processor.process({
      type: 'message',
      message: inbound(psid, { channel: 'messenger', provider: 'messenger' }),
    });
    expect(identityKeyOf(psid, 'US')?.key).toBe('psid:1234567890:998877');
    expect(messenger.customerId).toBeDefined();
    expect(messenger.customerId).not.toBe(sms.customerId);
    const identity = await models.Identity.findOne({ key: 'psid:1234567890:998877' }).lean();
    expect(identity?.kind).toBe('psid');
    expect(String(identity?.customerId)).toBe(messenger.customerId);
    expect(identity?.lastAddress.messenger?.raw).toBe('998877');
    expect(identity?.lastInboundAt.messenger).toBeInstanceOf(Date);
  });

  it("resolves a tombstoned (mergedInto) customer's identity to the survivor", async () => {
    const old = await store.resolveCustomer(inbound(phone('+14155550128')));
    const mid = await store.resolveCustomer(inbound(phone('+14155550129')));
    const survivor = await store.resolveCustomer(inbound(phone('+14155550130')));
    // A chain: old → mid → survivor, identities not moved yet (merge in progress).
    await models.Customer.updateOne({ _id: old.customer._id }, { $set: { mergedInto: mid.customer._id } });
    await models.Customer.updateOne(
      { _id: mid.customer._id },
      { $set: { mergedInto: survivor.customer._id } },
    );

    const message = inbound(phone('+14155550128'), { channel: 'whatsapp', provider: 'whatsapp-cloud' });
    const result = await processor.process({ type: 'message', message });
    expect(result.customerId).toBe(String(survivor.customer._id));
    const stored = await models.Message.findOne({ key: message.key }).lean();
    expect(String(stored?.customerId)).toBe(String(survivor.customer._id));
    const live = await models.Customer.findById(survivor.customer._id).lean();
    expect(live?.lastChannel).toBe('whatsapp');
    expect(live?.lastProvider).toBe('whatsapp-cloud');
  });

  it('fills displayName from profileName once, with provenance', async () => {
    const from = phone('14155550131');
    const first = await store.resolveCustomer(
      inbound(from, { channel: 'whatsapp', provider: 'whatsapp-cloud', profileName: '  Ada Lovelace ' }),
    );
    expect(first.customer.displayName).toBe('Ada Lovelace');
    expect(first.customer.profile.name?.value).toBe('Ada Lovelace');
    expect(first.customer.profile.name?.source).toBe('whatsapp-cloud');
    expect(first.customer.profile.name?.at).toBeInstanceOf(Date);

    const second = await store.resolveCustomer(
      inbound(from, { channel: 'whatsapp', provider: 'whatsapp-web', profileName: 'Ada L.' }),
    );
    expect(second.customer.displayName).toBe('Ada Lovelace');
    expect(second.customer.profile.name?.source).toBe('whatsapp-cloud');
  });

  it('never moves lastSeenAt or the messaging window backwards on a late redelivery', async () => {
    const from = phone('+14155550132');
    const recent = new Date();
    await store.resolveCustomer(inbound(from, { sentAt: recent.toISOString() }));
    const late = await store.resolveCustomer(
      inbound(from, { channel: 'whatsapp', sentAt: new Date(recent.getTime() - 60_000).toISOString() }),
    );
    expect(late.customer.lastSeenAt.getTime()).toBe(recent.getTime());
    expect(late.customer.lastChannel).toBe('sms');
    expect(late.identity.lastInboundAt.sms?.getTime()).toBe(recent.getTime());
  });

  it('updates a stored outbound message from a status event', async () => {
    const { customer, identity } = await store.resolveCustomer(inbound(phone('+14155550133')));
    await models.Message.create({
      key: 'twilio:SMout1',
      customerId: customer._id,
      direction: 'out',
      channel: 'sms',
      provider: 'twilio',
      providerMessageId: 'SMout1',
      identityKey: identity.key,
      parts: [{ kind: 'text', text: 'hi there' }],
      text: 'hi there',
      sentAt: new Date(),
    });
    const status = (state: DeliveryStatus['state']): DeliveryStatus => ({
      key: `twilio:SMout1:${state}`,
      channel: 'sms',
      provider: 'twilio',
      providerMessageId: 'SMout1',
      state,
      errors: [],
      at: new Date().toISOString(),
      receivedAt: new Date().toISOString(),
    });

    expect((await processor.process({ type: 'status', status: status('sent') })).stored).toBe(true);
    expect((await processor.process({ type: 'status', status: status('delivered') })).stored).toBe(true);
    // A repeated report is a no-op; a late 'sent' does not undo 'delivered'.
    expect((await processor.process({ type: 'status', status: status('delivered') })).stored).toBe(false);
    await processor.process({ type: 'status', status: { ...status('sent'), key: 'twilio:SMout1:sent:2' } });

    const message = await models.Message.findOne({ key: 'twilio:SMout1' }).lean();
    expect(message?.status?.state).toBe('delivered');
    expect(message?.statusHistory.map((h) => h.state)).toEqual(['sent', 'delivered', 'sent']);

    const failed = { ...status('failed'), errors: [{ code: '30003', title: 'Unreachable handset' }] };
    expect((await processor.process({ type: 'status', status: failed })).stored).toBe(true);
    const afterFailure = await models.Message.findOne({ key: 'twilio:SMout1' }).lean();
    expect(afterFailure?.status?.state).toBe('failed');
    expect(afterFailure?.status?.providerErrors).toEqual([{ code: '30003', title: 'Unreachable handset' }]);

    const unknown = await processor.process({
      type: 'status',
      status: { ...status('read'), providerMessageId: 'SMnope', key: 'twilio:SMnope:read' },
    });
    expect(unknown.stored).toBe(false);
    expect(await models.Message.countDocuments({ providerMessageId: 'SMnope' })).toBe(0);
  });

  it('rejects an unresolvable phone number as a non-retryable PayloadError', async () => {
    const message = inbound(phone('hello'));
    await expect(processor.process({ type: 'message', message })).rejects.toBeInstanceOf(PayloadError);
    await expect(store.resolveCustomer(inbound(phone('+999999')))).rejects.toMatchObject({
      retryable: false,
    });
    expect(await models.Message.countDocuments({ key: message.key })).toBe(0);
  });
});

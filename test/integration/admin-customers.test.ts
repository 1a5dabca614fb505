/**
 * The customer admin API over real HTTP (supertest) against the real MongoDB-protocol server: the
 * router mounted as the app mounts it (adminAuth, express.json, routes, errorHandler).
 */
import { randomBytes } from 'node:crypto';
import express from 'express';
import mongoose from 'mongoose';
import { Redis } from 'ioredis';
import pino from 'pino';
import request from 'supertest';
import type { Address, InboundMessage } from '../../src/canonical';
import { adminAuth } from '../../src/http/admin-auth';
import { customerAdminRoutes } from '../../src/http/admin-customers';
import { errorHandler, notFound } from '../../src/http/errors';
import { createClaimService } from '../../src/identity/claims';
import { createInboundProcessor, type InboundProcessor } from '../../src/identity/inbound-processor';
import { createMergeService, type MergeResult } from '../../src/identity/merge';
import type { IdentityModels } from '../../src/identity/models';
import { TEST_ADMIN_TOKEN } from '../helpers/env';
import { identityDb, type IdentityDb } from '../helpers/identity-db';

const auth = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` };

let db: IdentityDb;
const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', {
  maxRetriesPerRequest: null,
});
const prefix = `rapport-admincust-${randomBytes(4).toString('hex')}`;
let models: IdentityModels;
let processor: InboundProcessor;
let http: express.Express;
const notified: MergeResult[] = [];

beforeAll(async () => {
  db = await identityDb('admin');
  models = db.models;
  const store = db.store;
  processor = createInboundProcessor({ store, log: pino({ level: 'silent' }) });
  const merges = createMergeService(models);
  const claims = createClaimService({ models, merges });
  http = express();
  const api = express.Router();
  api.use(adminAuth({ tokens: [{ name: 'admin', token: TEST_ADMIN_TOKEN }], redis, prefix }));
  api.use(express.json());
  api.use(
    customerAdminRoutes({
      models,
      merges,
      claims,
      defaultRegion: 'US',
      onMerged: async (r) => void notified.push(r),
    }),
  );
  http.use('/api', api);
  http.use(notFound());
  http.use(errorHandler(pino({ level: 'silent' })));
});

afterAll(async () => {
  await db.drop();
  redis.disconnect();
});

let n = 0;
async function customer(from: Address, at = new Date(), profileName?: string): Promise<string> {
  const id = `m${++n}${randomBytes(3).toString('hex')}`;
  const provider = from.kind === 'psid' ? 'messenger' : 'twilio';
  const message: InboundMessage = {
    key: `${provider}:${id}`,
    channel: from.kind === 'psid' ? 'messenger' : 'sms',
    provider,
    providerMessageId: id,
    from,
    to: '+15550001111',
    text: `hi ${n}`,
    parts: [{ kind: 'text', text: `hi ${n}` }],
    profileName,
    sentAt: at.toISOString(),
    receivedAt: at.toISOString(),
  };
  return (await processor.process({ type: 'message', message })).customerId!;
}

const phone = (e164: string): Address => ({ kind: 'phone', e164 });

describe('customer admin API', () => {
  it('answers 401 with WWW-Authenticate without a token or with a wrong one', async () => {
    const id = new mongoose.Types.ObjectId().toHexString();
    for (const headers of [
      {},
      { authorization: 'Bearer wrong-token' },
      { authorization: TEST_ADMIN_TOKEN },
    ]) {
      const res = await request(http).get(`/api/customers/${id}`).set(headers);
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
      expect(res.body).toMatchObject({ error: { code: 'unauthorized' } });
    }
  });

  it('shows a customer with identities and recent messages, newest first', async () => {
    const id = await customer(phone('+14155550201'), new Date(Date.now() - 1_000), 'Grace');
    await customer(phone('whatsapp:+14155550201'));
    const res = await request(http).get(`/api/customers/${id}`).set(auth);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      id,
      displayName: 'Grace',
      ownerAgentId: null,
      lastChannel: 'sms',
      identities: [{ key: 'phone:+14155550201', kind: 'phone', verified: true, source: 'twilio' }],
    });
    expect(res.body.recent).toHaveLength(2);
    expect(res.body.recent[0]).toMatchObject({ direction: 'in', channel: 'sms', provider: 'twilio' });
    expect(new Date(res.body.recent[0].sentAt).getTime()).toBeGreaterThan(
      new Date(res.body.recent[1].sentAt).getTime(),
    );
  });

  it('finds customers by phone in any form, by email and by PSID', async () => {
    const id = await customer(phone('+14155550202'));
    for (const q of ['(415) 555-0202', '+1 415 555 0202', '14155550202']) {
      const res = await request(http).get('/api/customers').query({ phone: q }).set(auth);
      expect(res.status).toBe(200);
      expect(res.body.customers.map((c: { id: string }) => c.id)).toEqual([id]);
    }
    const psidCustomer = await customer({ kind: 'psid', pageId: '9', psid: '123' });
    const byPsid = await request(http).get('/api/customers').query({ psid: '9:123' }).set(auth);
    expect(byPsid.body.customers[0].id).toBe(psidCustomer);
    const none = await request(http).get('/api/customers').query({ email: 'nobody@example.com' }).set(auth);
    expect(none.body).toEqual({ customers: [] });
    const bad = await request(http).get('/api/customers').query({ phone: 'call me' }).set(auth);
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^phone:/);
    expect((await request(http).get('/api/customers').set(auth)).status).toBe(400);
  });

  it('merges two customers, tells the owner, shows the tombstone as the live customer, and undoes', async () => {
    const older = await customer(phone('+14155550203'), new Date(Date.now() - 60_000));
    const newer = await customer({ kind: 'psid', pageId: '9', psid: '456' });
    await models.Customer.updateOne({ _id: newer }, { $set: { ownerAgentId: 'agent-b' } });
    await models.Customer.updateOne({ _id: older }, { $set: { ownerAgentId: 'agent-a' } });

    const merged = await request(http)
      .post(`/api/customers/${newer}/merge`)
      .set(auth)
      .send({ otherId: older });
    expect(merged.status).toBe(200);
    expect(merged.body.merge).toMatchObject({
      survivorId: older,
      mergedId: newer,
      status: 'done',
      reason: 'admin',
      actor: 'admin',
      identityKeys: ['psid:9:456'],
      messagesMoved: 1,
      survivorOwnerAgentId: 'agent-a',
      mergedOwnerAgentId: 'agent-b',
    });
    expect(notified.at(-1)?.mergedOwnerAgentId).toBe('agent-b');

    const viaTombstone = await request(http).get(`/api/customers/${newer}`).set(auth);
    expect(viaTombstone.body).toMatchObject({ id: older, mergedFrom: newer });
    expect(viaTombstone.body.identities.map((i: { key: string }) => i.key).sort()).toEqual([
      'phone:+14155550203',
      'psid:9:456',
    ]);
    const raw = await request(http).get(`/api/customers/${newer}?follow=false`).set(auth);
    expect(raw.body).toMatchObject({ id: newer, mergedInto: older });

    const again = await request(http)
      .post(`/api/customers/${older}/merge`)
      .set(auth)
      .send({ otherId: newer });
    expect(again.body.merge.id).toBe(merged.body.merge.id);

    const undone = await request(http).post(`/api/merges/${merged.body.merge.id}/undo`).set(auth).send();
    expect(undone.status).toBe(200);
    expect(undone.body.merge).toMatchObject({ status: 'undone', undoActor: 'admin' });
    const back = await request(http).get(`/api/customers/${newer}`).set(auth);
    expect(back.body).toMatchObject({ id: newer, identities: [{ key: 'psid:9:456' }] });
    expect(back.body.mergedFrom).toBeUndefined();
  });

  it('answers 409 for self-merge and for merging a tombstone, 404 for unknown or malformed ids', async () => {
    const a = await customer(phone('+14155550204'), new Date(Date.now() - 60_000));
    const b = await customer(phone('+14155550205'));
    const c = await customer(phone('+14155550206'));
    const self = await request(http).post(`/api/customers/${a}/merge`).set(auth).send({ otherId: a });
    expect(self.status).toBe(409);
    await request(http).post(`/api/customers/${a}/merge`).set(auth).send({ otherId: b }).expect(200);
    const tomb = await request(http).post(`/api/customers/${b}/merge`).set(auth).send({ otherId: c });
    expect(tomb.status).toBe(409);
    expect(tomb.body.error.code).toBe('conflict');

    const unknown = new mongoose.Types.ObjectId().toHexString();
    expect((await request(http).get(`/api/customers/${unknown}`).set(auth)).status).toBe(404);
    expect((await request(http).get('/api/customers/not-an-id').set(auth)).status).toBe(404);
    expect(
      (await request(http).post(`/api/customers/${a}/merge`).set(auth).send({ otherId: unknown })).status,
    ).toBe(404);
    expect((await request(http).post('/api/merges/zzz/undo').set(auth).send()).status).toBe(404);
    expect((await request(http).post(`/api/merges/${unknown}/undo`).set(auth).send()).status).toBe(404);
  });

  it('answers 400 naming the field for bad bodies', async () => {
    const a = await customer(phone('+14155550207'));
    const missing = await request(http).post(`/api/customers/${a}/merge`).set(auth).send({});
    expect(missing.status).toBe(400);
    expect(missing.body.error.message).toMatch(/^otherId:/);
    const extra = await request(http)
      .post(`/api/customers/${a}/merge`)
      .set(auth)
      .send({ otherId: a, force: true });
    expect(extra.status).toBe(400);
    expect(extra.body.error.message).toMatch(/force/);
    const wrongType = await request(http).post(`/api/customers/${a}/merge`).set(auth).send({ otherId: 42 });
    expect(wrongType.status).toBe(400);
    const malformed = await request(http)
      .post(`/api/customers/${a}/merge`)
      .set({ ...auth, 'content-type': 'application/json' })
      .send('{"otherId":');
    expect(malformed.status).toBe(400);
    const both = await request(http)
      .post(`/api/customers/${a}/identities`)
      .set(auth)
      .send({ phone: '1', email: 'a@b.co' });
    expect(both.status).toBe(400);
    const badPhone = await request(http)
      .post(`/api/customers/${a}/identities`)
      .set(auth)
      .send({ phone: 'nope' });
    expect(badPhone.status).toBe(400);
    expect(badPhone.body.error.message).toMatch(/^phone:/);
    const badEmail = await request(http)
      .post(`/api/customers/${a}/identities`)
      .set(auth)
      .send({ email: 'nope' });
    expect(badEmail.status).toBe(400);
    expect(badEmail.body.error.message).toMatch(/^email:/);
  });

  it('links a phone or email to a customer as a trusted admin action', async () => {
    const older = await customer(phone('+14155550208'), new Date(Date.now() - 60_000));
    const psidCustomer = await customer({ kind: 'psid', pageId: '9', psid: '789' });
    const attached = await request(http)
      .post(`/api/customers/${psidCustomer}/identities`)
      .set(auth)
      .send({ email: 'Lin@Example.com' });
    expect(attached.status).toBe(200);
    expect(attached.body).toMatchObject({ attached: true, identity: { key: 'email:lin@example.com' } });

    const merged = await request(http)
      .post(`/api/customers/${psidCustomer}/identities`)
      .set(auth)
      .send({ phone: '415-555-0208' });
    expect(merged.status).toBe(200);
    expect(merged.body.merge).toMatchObject({ survivorId: older, mergedId: psidCustomer, reason: 'admin' });
    const found = await request(http).get('/api/customers').query({ email: 'lin@example.com' }).set(auth);
    expect(found.body.customers[0].id).toBe(older);
  });
});

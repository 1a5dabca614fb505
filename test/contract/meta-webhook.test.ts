/**
 * The Meta webhook adapter against Meta's wire format: fixtures are signed here with a test app
 * secret exactly as Meta signs them (HMAC-SHA256 of the raw bytes), then verified, parsed and
 * normalized through the adapter object the webhook route uses.
 */
import { createHmac } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { WebhookRequest } from '../../src/channels/adapter';
import { createMetaWebhook, type MetaWebhookOptions } from '../../src/channels/meta/adapter';
import { signMetaPayload, verifyMetaSignature } from '../../src/channels/meta/signature';
import { PayloadError } from '../../src/errors';
import { signatureErrorOf } from '../helpers/signing';

const APP_SECRET = 'f3a9c1e07b2d4c6e8a1b3d5f7092e4c6';
const VERIFY_TOKEN = 'rapport-verify-3b8e1f';
const FIXTURES = join(__dirname, '../fixtures/meta');

const options: MetaWebhookOptions = {
  appSecret: APP_SECRET,
  verifyToken: VERIFY_TOKEN,
  messengerEnabled: true,
  whatsappCloudEnabled: true,
};
const adapter = createMetaWebhook(options);

function raw(name: string): Buffer {
  return readFileSync(join(FIXTURES, `${name}.json`));
}

function post(rawBody: Buffer, signature?: string | string[]): WebhookRequest {
  return {
    method: 'POST',
    originalUrl: '/webhooks/meta',
    query: {},
    headers: {
      'content-type': 'application/json',
      ...(signature === undefined ? {} : { 'x-hub-signature-256': signature }),
    },
    rawBody,
  };
}

function get(query: Record<string, unknown>): WebhookRequest {
  return { method: 'GET', originalUrl: '/webhooks/meta', query, headers: {}, rawBody: Buffer.alloc(0) };
}

/** Runs a request through the adapter the way the webhook route does. */
function receive(req: WebhookRequest, receivedAt = new Date('2024-06-20T11:30:00.000Z')) {
  adapter.verify(req);
  return adapter.normalize(adapter.parse(req), receivedAt);
}

describe('Meta webhook signature', () => {
  const fixtureNames = readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.replace(/\.json$/, ''));

  it.each(fixtureNames)('accepts %s signed with the app secret', (name) => {
    const body = raw(name);
    expect(() => receive(post(body, signMetaPayload(APP_SECRET, body)))).not.toThrow();
  });

  it('takes a signed text message through to one canonical message', () => {
    const body = raw('messenger-text');
    const batch = receive(post(body, signMetaPayload(APP_SECRET, body)));
    expect(batch.ignored).toEqual([]);
    expect(batch.events).toHaveLength(1);
    expect(batch.events[0]).toMatchObject({
      type: 'message',
      message: { channel: 'messenger', text: 'Grüße äöå 👋' },
    });
  });

  it('rejects a tampered body with 403', () => {
    const body = raw('whatsapp-text');
    const signature = signMetaPayload(APP_SECRET, body);
    const tampered = Buffer.from(body.toString('utf8').replace('Grüße', 'Grüsse'), 'utf8');
    const err = signatureErrorOf(() => adapter.verify(post(tampered, signature)));
    expect(err.status).toBe(403);
  });

  it('rejects a body signed with another secret with 403', () => {
    const body = raw('messenger-text');
    const err = signatureErrorOf(() =>
      adapter.verify(post(body, signMetaPayload('not-the-app-secret', body))),
    );
    expect(err.status).toBe(403);
  });

  it('rejects a request without X-Hub-Signature-256 with 401', () => {
    const err = signatureErrorOf(() => adapter.verify(post(raw('messenger-text'))));
    expect(err.status).toBe(401);
    expect(err.code).toBe('invalid_signature');
  });

  it.each([
    ['an empty header', ''],
    ['a bare hex digest', signMetaPayload(APP_SECRET, raw('messenger-text')).slice('sha256='.length)],
    ['the SHA-1 header format', 'sha1=2fd4e1c67a2d28fced849ee1bb76e7391b93eb12'],
    ['a truncated digest', signMetaPayload(APP_SECRET, raw('messenger-text')).slice(0, -2)],
    ['non-hex characters', `sha256=${'z'.repeat(64)}`],
    ['a repeated header', [signMetaPayload(APP_SECRET, raw('messenger-text'))]],
  ])('rejects %s as malformed with 401', (_label, header) => {
    const err = signatureErrorOf(() => adapter.verify(post(raw('messenger-text'), header)));
    expect(err.status).toBe(401);
  });

  it('accepts an upper-case hex digest', () => {
    const body = raw('messenger-text');
    const signature = `sha256=${signMetaPayload(APP_SECRET, body).slice('sha256='.length).toUpperCase()}`;
    expect(() => adapter.verify(post(body, signature))).not.toThrow();
  });

  it('signs like Meta: sha256= and the hex HMAC-SHA256 of the raw bytes, keyed with the app secret', () => {
    const body = raw('messenger-text');
    const expected = createHmac('sha256', APP_SECRET).update(body).digest('hex');
    expect(signMetaPayload(APP_SECRET, body)).toBe(`sha256=${expected}`);
    expect(() => verifyMetaSignature(APP_SECRET, `sha256=${expected}`, body)).not.toThrow();
  });

  it('signs a string as its UTF-8 bytes', () => {
    const body = raw('whatsapp-text');
    expect(body.toString('utf8')).toContain('Grüße äöå 👋');
    expect(signMetaPayload(APP_SECRET, body.toString('utf8'))).toBe(signMetaPayload(APP_SECRET, body));
  });
});

describe('Meta webhook raw-bytes rule', () => {
  // Meta signs JSON whose non-ASCII is escaped (`ä` → `\u00e4`); parsing and re-serialising turns the
  // escapes into UTF-8, so a check over re-serialised JSON refuses every genuine non-ASCII message.
  it('verifies escaped-unicode bytes as received, while their re-serialisation signs differently', () => {
    const body = raw('messenger-text');
    const text = body.toString('utf8');
    expect(text).toContain('Gr\\u00fc\\u00dfe \\u00e4\\u00f6\\u00e5 \\ud83d\\udc4b');

    const reserialised = JSON.stringify(JSON.parse(text));
    expect(reserialised).toContain('Grüße äöå 👋');
    const metaSignature = signMetaPayload(APP_SECRET, body);
    expect(signMetaPayload(APP_SECRET, reserialised)).not.toBe(metaSignature);

    expect(() => verifyMetaSignature(APP_SECRET, metaSignature, body)).not.toThrow();
    const err = signatureErrorOf(() =>
      verifyMetaSignature(APP_SECRET, metaSignature, Buffer.from(reserialised)),
    );
    expect(err.status).toBe(403);
  });

  it('tells compact JSON apart from its re-serialisation by the escapes alone', () => {
    const compact = Buffer.from('{"object":"page","entry":[],"note":"\\u00e4\\u00f6\\u00e5"}', 'utf8');
    const reserialised = JSON.stringify(JSON.parse(compact.toString('utf8')));
    expect(reserialised).toBe('{"object":"page","entry":[],"note":"äöå"}');
    expect(signMetaPayload(APP_SECRET, reserialised)).not.toBe(signMetaPayload(APP_SECRET, compact));
  });
});

describe('Meta webhook parsing', () => {
  it('refuses a body that is not JSON with 400', () => {
    expect(() => adapter.parse(post(Buffer.from('object=page&entry=')))).toThrow(PayloadError);
  });

  it.each([
    ['an array', '[]'],
    ['a missing entry', '{"object":"page"}'],
    ['a non-array entry', '{"object":"page","entry":{}}'],
    ['a non-string object', '{"object":1,"entry":[]}'],
  ])('refuses %s at the top level with 400', (_label, json) => {
    let caught: unknown;
    try {
      adapter.parse(post(Buffer.from(json)));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PayloadError);
    expect(caught).toMatchObject({ status: 400, code: 'invalid_payload' });
  });

  it('keeps unknown top-level fields', () => {
    expect(adapter.parse(post(Buffer.from('{"object":"page","entry":[],"extra":true}')))).toEqual({
      object: 'page',
      entry: [],
      extra: true,
    });
  });

  it('answers success with EVENT_RECEIVED as plain text', () => {
    expect(adapter.name).toBe('meta');
    expect(adapter.contentTypes).toEqual(['application/json']);
    expect(adapter.successResponse()).toEqual({ contentType: 'text/plain', body: 'EVENT_RECEIVED' });
  });
});

describe('Meta webhook with a channel disabled', () => {
  it('answers a disabled channel’s events as ignored instead of taking them', () => {
    const whatsappOnly = createMetaWebhook({ ...options, messengerEnabled: false });
    const body = raw('messenger-batch');
    const req = post(body, signMetaPayload(APP_SECRET, body));
    whatsappOnly.verify(req);
    const batch = whatsappOnly.normalize(whatsappOnly.parse(req), new Date());
    expect(batch.events).toEqual([]);
    // Three messages, a reaction, a delivery and a read: all counted as not taken.
    expect(batch.ignored).toHaveLength(6);
    expect(batch.ignored.filter((i) => i.reason.startsWith('messenger is disabled'))).toHaveLength(6);
  });

  it('still takes the enabled channel’s events', () => {
    const whatsappOnly = createMetaWebhook({ ...options, messengerEnabled: false });
    const body = raw('whatsapp-text');
    const req = post(body, signMetaPayload(APP_SECRET, body));
    whatsappOnly.verify(req);
    expect(whatsappOnly.normalize(whatsappOnly.parse(req), new Date()).events).toHaveLength(1);
  });
});

describe('Meta webhook verification handshake', () => {
  const handshake = (query: Record<string, unknown>) => {
    if (!adapter.handshake) throw new Error('the Meta adapter has a handshake');
    return adapter.handshake(get(query));
  };

  it('echoes the challenge when the mode is subscribe and the token matches', () => {
    expect(
      handshake({ 'hub.mode': 'subscribe', 'hub.verify_token': VERIFY_TOKEN, 'hub.challenge': '1158201444' }),
    ).toEqual({ status: 200, body: '1158201444' });
  });

  it('refuses a wrong verify token with 403', () => {
    expect(
      handshake({ 'hub.mode': 'subscribe', 'hub.verify_token': 'guess', 'hub.challenge': '1158201444' }),
    ).toEqual({ status: 403, body: 'verification failed' });
  });

  it('refuses a mode other than subscribe with 403', () => {
    expect(
      handshake({
        'hub.mode': 'unsubscribe',
        'hub.verify_token': VERIFY_TOKEN,
        'hub.challenge': '1158201444',
      }),
    ).toEqual({ status: 403, body: 'verification failed' });
  });

  it.each([
    ['no parameters', {}],
    ['no challenge', { 'hub.mode': 'subscribe', 'hub.verify_token': VERIFY_TOKEN }],
    ['no token', { 'hub.mode': 'subscribe', 'hub.challenge': '1158201444' }],
    [
      'an empty challenge',
      { 'hub.mode': 'subscribe', 'hub.verify_token': VERIFY_TOKEN, 'hub.challenge': '' },
    ],
    [
      'a repeated token',
      {
        'hub.mode': 'subscribe',
        'hub.verify_token': [VERIFY_TOKEN, VERIFY_TOKEN],
        'hub.challenge': '1158201444',
      },
    ],
  ])('refuses a request with %s with 400', (_label, query) => {
    expect(handshake(query).status).toBe(400);
  });
});

/**
 * Slack's v0 request signature: what passes, and which failures are 401 (missing or malformed
 * headers: the caller is not Slack or is misconfigured) versus 403 (a signature or timestamp that
 * does not hold up).
 */
import { createHmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { signSlackRequest, verifySlackSignature } from '../../src/channels/slack/signature';
import { SignatureError } from '../../src/errors';
import { signatureErrorOf } from '../helpers/signing';

const SECRET = 'test-slack-signing-secret';
const BODY = Buffer.from('{"type":"event_callback","event_id":"Ev1","text":"caf\u00e9 &amp; cr\u00e8me"}');
const NOW_SEC = 1_718_883_000;
const NOW_MS = NOW_SEC * 1000;

function errorOf(headers: IncomingHttpHeaders, body = BODY, nowMs = NOW_MS): SignatureError {
  return signatureErrorOf(() => verifySlackSignature(SECRET, headers, body, nowMs));
}

describe('verifySlackSignature', () => {
  const valid = signSlackRequest(SECRET, BODY, NOW_SEC);

  it('accepts the signature Slack computes: v0= + hex HMAC-SHA256 of "v0:{ts}:{body}"', () => {
    const expected = createHmac('sha256', SECRET)
      .update(`v0:${NOW_SEC}:${BODY.toString('utf8')}`)
      .digest('hex');
    expect(valid).toEqual({
      'x-slack-request-timestamp': String(NOW_SEC),
      'x-slack-signature': `v0=${expected}`,
    });
    expect(() => verifySlackSignature(SECRET, valid, BODY, NOW_MS)).not.toThrow();
  });

  it('accepts a request signed 4 minutes ago or 4 minutes ahead (clock skew)', () => {
    expect(() =>
      verifySlackSignature(SECRET, signSlackRequest(SECRET, BODY, NOW_SEC - 240), BODY, NOW_MS),
    ).not.toThrow();
    expect(() =>
      verifySlackSignature(SECRET, signSlackRequest(SECRET, BODY, NOW_SEC + 240), BODY, NOW_MS),
    ).not.toThrow();
  });

  it('refuses a request with no signature headers with 401', () => {
    const err = errorOf({});
    expect(err.status).toBe(401);
    expect(err.code).toBe('invalid_signature');
    expect(err.retryable).toBe(false);
  });

  it('refuses a request missing only the timestamp, or only the signature, with 401', () => {
    expect(errorOf({ 'x-slack-signature': valid['x-slack-signature'] }).status).toBe(401);
    expect(errorOf({ 'x-slack-request-timestamp': valid['x-slack-request-timestamp'] }).status).toBe(401);
  });

  it('refuses a malformed signature header (not v0=<64 hex>) with 401', () => {
    expect(errorOf({ ...valid, 'x-slack-signature': 'v1=abc' }).status).toBe(401);
    expect(errorOf({ ...valid, 'x-slack-request-timestamp': 'yesterday' }).status).toBe(401);
  });

  it('refuses a tampered body with 403', () => {
    const tampered = Buffer.from(BODY.toString('utf8').replace('Ev1', 'Ev2'));
    expect(errorOf(valid, tampered).status).toBe(403);
  });

  it('refuses a signature made with another secret with 403', () => {
    expect(errorOf(signSlackRequest('someone-else', BODY, NOW_SEC)).status).toBe(403);
  });

  it('refuses a replay older than 5 minutes with 403, even with a correct signature', () => {
    expect(errorOf(signSlackRequest(SECRET, BODY, NOW_SEC - 301)).status).toBe(403);
  });

  it('refuses a timestamp more than 5 minutes in the future with 403', () => {
    expect(errorOf(signSlackRequest(SECRET, BODY, NOW_SEC + 301)).status).toBe(403);
  });

  it('refuses a signature whose timestamp header was swapped for a fresh one with 403', () => {
    const old = signSlackRequest(SECRET, BODY, NOW_SEC - 3600);
    expect(errorOf({ ...old, 'x-slack-request-timestamp': String(NOW_SEC) }).status).toBe(403);
  });

  it('signs a string body as its UTF-8 bytes', () => {
    expect(signSlackRequest(SECRET, BODY.toString('utf8'), NOW_SEC)).toEqual(valid);
  });

  it('refuses to verify with an empty signing secret, which would let anyone sign', () => {
    expect(() => verifySlackSignature('', valid, BODY, NOW_MS)).toThrow(/signingSecret is empty/);
  });
});

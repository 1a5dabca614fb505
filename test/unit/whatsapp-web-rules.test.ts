/** WhatsApp Web pure rules: what can be sent, how errors are read, backoff, start failures. */
import { OutboundError, type OutboundMessage } from '../../src/channels/sender';
import { backoffDelay, chromiumArgs } from '../../src/channels/whatsapp-web/config';
import {
  classifySendError,
  recipientDigits,
  parseSendJobResult,
  validateOutbound,
} from '../../src/channels/whatsapp-web/send';
import { classifyStartFailure } from '../../src/channels/whatsapp-web/session';

const base: OutboundMessage = {
  key: 'out-1',
  channel: 'whatsapp',
  provider: 'whatsapp-web',
  to: '+14155550123',
  text: 'hi',
};

function reasonOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof OutboundError ? err.reason : 'not an OutboundError';
  }
  return undefined;
}

describe('whatsapp-web send rules', () => {
  it('sends to the digits of an E.164 number, also when given as a raw WhatsApp jid', () => {
    expect(validateOutbound(base)).toEqual({ digits: '14155550123' });
    expect(recipientDigits('14155550123')).toBe('14155550123');
    expect(recipientDigits('14155550123@c.us')).toBe('14155550123');
    expect(recipientDigits('14155550123:7@s.whatsapp.net')).toBe('14155550123');
    expect(recipientDigits('whatsapp:+14155550123')).toBeUndefined();
    expect(recipientDigits('123456789012345@lid')).toBeUndefined();
    expect(recipientDigits('+0123')).toBeUndefined();
  });

  it('refuses templates as unsupported, empty messages as rejected, non-phone recipients as invalid', () => {
    expect(reasonOf(() => validateOutbound({ ...base, template: { id: 'order_update' } }))).toBe(
      'unsupported',
    );
    expect(reasonOf(() => validateOutbound({ ...base, text: '  ' }))).toBe('rejected');
    expect(reasonOf(() => validateOutbound({ ...base, to: 'not-a-number' }))).toBe('invalid_recipient');
  });

  it('reads a gone session as retryable and unknown errors as not retryable', () => {
    expect(classifySendError(new Error('Protocol error (Runtime.callFunctionOn): Session closed.'))).toBe(
      'unavailable',
    );
    expect(classifySendError(new Error('Evaluation failed: Error: wid error: invalid wid'))).toBe(
      'invalid_recipient',
    );
    expect(classifySendError(new Error('something new'))).toBe('rejected');
  });

  it('accepts only well-formed job results', () => {
    expect(parseSendJobResult({ ok: true, providerMessageId: 'a' })).toEqual({
      ok: true,
      providerMessageId: 'a',
      providerMessageIds: ['a'],
    });
    expect(parseSendJobResult({ ok: false, reason: 'invalid_recipient', message: 'no' })).toEqual({
      ok: false,
      reason: 'invalid_recipient',
      message: 'no',
    });
    expect(parseSendJobResult({ ok: false, reason: 'made_up' })).toBeUndefined();
    expect(parseSendJobResult('ok')).toBeUndefined();
  });
});

describe('whatsapp-web session rules', () => {
  it('backs off exponentially up to the cap', () => {
    const r = { initialMs: 1_000, maxMs: 30_000 };
    expect([1, 2, 3, 4, 5, 6, 50].map((n) => backoffDelay(n, r))).toEqual([
      1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000,
    ]);
  });

  it('reports a network failure to load WhatsApp Web as unreachable, naming the error', () => {
    expect(
      classifyStartFailure(new Error('net::ERR_CONNECTION_REFUSED at https://web.whatsapp.com/')),
    ).toEqual({
      state: 'unreachable',
      detail: 'cannot reach WhatsApp Web (net::ERR_CONNECTION_REFUSED)',
    });
    expect(classifyStartFailure('auth timeout').state).toBe('unreachable');
  });

  it('reports a Chromium that cannot start as failed', () => {
    const r = classifyStartFailure(new Error('Failed to launch the browser process!\nspawn /nope ENOENT'));
    expect(r.state).toBe('failed');
    expect(r.detail).toMatch(/^cannot start Chromium/);
  });

  it('always confines Chromium to no background traffic, adding extra flags once', () => {
    const args = chromiumArgs(['--no-sandbox', '--proxy-server=127.0.0.1:9']);
    expect(args).toEqual(
      expect.arrayContaining([
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
      ]),
    );
    expect(args.filter((a) => a === '--no-sandbox')).toHaveLength(1);
    expect(args).toContain('--proxy-server=127.0.0.1:9');
  });
});

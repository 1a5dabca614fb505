import {
  classifyMessengerFailure,
  classifyTwilioFailure,
  classifyWhatsAppCloudFailure,
  graphFailureFromBody,
  outboundErrorFrom,
  parseRetryAfter,
  redactText,
  type ProviderFailure,
} from '../../src/channels/send-errors';
import type { SendFailureReason } from '../../src/channels/sender';

type Row = [
  label: string,
  failure: ProviderFailure,
  reason: SendFailureReason,
  providerCode: string | undefined,
];

const NOW = Date.parse('2025-01-01T00:00:00Z');

describe('Twilio failures map to what the agent is told', () => {
  const rows: Row[] = [
    ['63016 outside the WhatsApp window', { status: 400, code: 63016 }, 'window_closed', '63016'],
    ['21610 customer sent STOP', { status: 400, code: 21610 }, 'opted_out', '21610'],
    ['20429 too many requests', { status: 429, code: 20429 }, 'rate_limited', '20429'],
    ['HTTP 429 without a code', { status: 429 }, 'rate_limited', '429'],
    ['503 service unavailable', { status: 503, code: 20500 }, 'unavailable', '20500'],
    ['500 with no body: may have been taken', { status: 500 }, 'uncertain', '500'],
    ['503 service unavailable: not handled', { status: 503, code: 20503 }, 'unavailable', '20503'],
    ['timeout after the request was written', { transport: 'timeout' }, 'uncertain', 'timeout'],
    ['reset after the request was written', { transport: 'network' }, 'uncertain', 'network'],
    ['connection refused: nothing written', { transport: 'refused' }, 'unavailable', 'refused'],
    ['21211 invalid To', { status: 400, code: 21211 }, 'invalid_recipient', '21211'],
    ['21614 not a mobile number', { status: 400, code: 21614 }, 'invalid_recipient', '21614'],
    ['21408 region not enabled (403)', { status: 403, code: 21408 }, 'invalid_recipient', '21408'],
    ['63003 channel cannot find To', { status: 400, code: 63003 }, 'invalid_recipient', '63003'],
    ['20003 bad credentials', { status: 401, code: 20003 }, 'auth', '20003'],
    ['HTTP 401 without a code', { status: 401 }, 'auth', '401'],
    ['21602 missing body', { status: 400, code: 21602 }, 'rejected', '21602'],
    ['404 unknown resource', { status: 404, code: 20404 }, 'rejected', '20404'],
  ];
  it.each(rows)('%s', (_label, failure, reason, providerCode) => {
    expect(classifyTwilioFailure(failure, NOW)).toMatchObject({ reason, providerCode });
  });
});

describe('WhatsApp Cloud failures map to what the agent is told', () => {
  const rows: Row[] = [
    ['131047 re-engagement (window closed)', { status: 400, code: 131047 }, 'window_closed', '131047'],
    ['4 application request limit', { status: 400, code: 4 }, 'rate_limited', '4'],
    ['80007 WABA rate limit', { status: 400, code: 80007 }, 'rate_limited', '80007'],
    ['130429 throughput reached', { status: 400, code: 130429 }, 'rate_limited', '130429'],
    ['131056 pair rate limit', { status: 400, code: 131056 }, 'rate_limited', '131056'],
    ['HTTP 429 without a code', { status: 429 }, 'rate_limited', '429'],
    ['131026 undeliverable', { status: 400, code: 131026 }, 'invalid_recipient', '131026'],
    ['131030 not in the allowed list', { status: 400, code: 131030 }, 'invalid_recipient', '131030'],
    ['190 expired token', { status: 401, code: 190, subcode: 463 }, 'auth', '190/463'],
    ['HTTP 403 without a body', { status: 403 }, 'auth', '403'],
    ['1 unknown error', { status: 400, code: 1 }, 'unavailable', '1'],
    ['2 temporary error', { status: 400, code: 2 }, 'unavailable', '2'],
    ['131000 something went wrong', { status: 500, code: 131000 }, 'unavailable', '131000'],
    ['131016 service unavailable', { status: 400, code: 131016 }, 'unavailable', '131016'],
    ['502 bad gateway: may have been taken', { status: 502 }, 'uncertain', '502'],
    ['bare 503: not handled', { status: 503 }, 'unavailable', '503'],
    [
      '500 with code 131000 (documented: failed to send)',
      { status: 500, code: 131000 },
      'unavailable',
      '131000',
    ],
    ['timeout after the request was written', { transport: 'timeout' }, 'uncertain', 'timeout'],
    ['connection refused', { transport: 'refused' }, 'unavailable', 'refused'],
    ['100 invalid parameter', { status: 400, code: 100 }, 'rejected', '100'],
    ['132001 template does not exist', { status: 404, code: 132001 }, 'rejected', '132001'],
  ];
  it.each(rows)('%s', (_label, failure, reason, providerCode) => {
    expect(classifyWhatsAppCloudFailure(failure, NOW)).toMatchObject({ reason, providerCode });
  });
});

describe('Messenger failures map to what the agent is told', () => {
  const rows: Row[] = [
    [
      '10/2018278 outside the window',
      { status: 400, code: 10, subcode: 2018278 },
      'window_closed',
      '10/2018278',
    ],
    ['10 without the window subcode (permission)', { status: 400, code: 10 }, 'rejected', '10'],
    [
      '551 person unavailable',
      { status: 400, code: 551, subcode: 1545041 },
      'invalid_recipient',
      '551/1545041',
    ],
    [
      '100/2018001 no matching user',
      { status: 400, code: 100, subcode: 2018001 },
      'invalid_recipient',
      '100/2018001',
    ],
    ['613 rate limit', { status: 400, code: 613 }, 'rate_limited', '613'],
    ['4 application limit', { status: 400, code: 4 }, 'rate_limited', '4'],
    ['HTTP 429', { status: 429 }, 'rate_limited', '429'],
    ['190 invalid token', { status: 401, code: 190 }, 'auth', '190'],
    ['2 temporary error', { status: 500, code: 2 }, 'unavailable', '2'],
    ['network error after writing', { transport: 'network' }, 'uncertain', 'network'],
    ['500 with code 2 (documented: retry)', { status: 500, code: 2 }, 'unavailable', '2'],
    ['100 invalid parameter', { status: 400, code: 100 }, 'rejected', '100'],
  ];
  it.each(rows)('%s', (_label, failure, reason, providerCode) => {
    expect(classifyMessengerFailure(failure, NOW)).toMatchObject({ reason, providerCode });
  });
});

describe('Retry-After', () => {
  it.each([
    ['delta seconds', '30', 30_000],
    ['fractional seconds', '1.5', 1_500],
    ['an HTTP date', 'Wed, 01 Jan 2025 00:00:20 GMT', 20_000],
    ['a date in the past', 'Tue, 31 Dec 2024 23:59:00 GMT', 0],
  ])('is read from %s', (_label, value, ms) => {
    expect(parseRetryAfter(value, NOW)).toBe(ms);
  });

  it('is ignored when unparseable or absent', () => {
    expect(parseRetryAfter('soon', NOW)).toBeUndefined();
    expect(parseRetryAfter(undefined, NOW)).toBeUndefined();
  });

  it('becomes retryAfterMs on a rate-limited or unavailable failure, never on a permanent one', () => {
    expect(classifyTwilioFailure({ status: 429, retryAfter: '7' }, NOW).retryAfterMs).toBe(7_000);
    expect(classifyWhatsAppCloudFailure({ status: 503, retryAfter: '2' }, NOW).retryAfterMs).toBe(2_000);
    expect(
      classifyMessengerFailure({ status: 400, code: 100, retryAfter: '9' }, NOW).retryAfterMs,
    ).toBeUndefined();
  });
});

describe('Graph error bodies', () => {
  it('are read in the wire snake_case', () => {
    const body = {
      error: { message: 'm', type: 'OAuthException', code: 10, error_subcode: 2018278, fbtrace_id: 'T' },
    };
    expect(graphFailureFromBody(400, body)).toEqual({
      status: 400,
      code: 10,
      subcode: 2018278,
      message: 'm',
      traceId: 'T',
    });
  });

  it("are read in messaging-api-messenger's camelCase", () => {
    const body = { error: { message: 'm', code: 10, errorSubcode: 2018278, fbtraceId: 'T' } };
    expect(graphFailureFromBody(400, body)).toMatchObject({ code: 10, subcode: 2018278, traceId: 'T' });
  });

  it('without an error object keep only the status', () => {
    expect(graphFailureFromBody(502, '<html>Bad gateway</html>', '5')).toEqual({
      status: 502,
      retryAfter: '5',
    });
  });
});

describe('error text', () => {
  it('never carries a configured secret nor a phone number', () => {
    const text = redactText("The 'To' number +14155550100 is invalid, token sekrit-token-123", [
      'sekrit-token-123',
    ]);
    expect(text).toBe("The 'To' number [number] is invalid, token [redacted]");
  });

  it('builds an OutboundError whose message, JSON and cause are free of the token', () => {
    const token = 'EAAB-page-token-xyz';
    const failure: ProviderFailure = { status: 400, code: 190, message: `Bad token ${token}` };
    const err = outboundErrorFrom('messenger', failure, classifyMessengerFailure(failure, NOW), [token]);
    expect(err).toMatchObject({
      reason: 'auth',
      providerCode: '190',
      retryable: false,
      provider: 'messenger',
    });
    expect(err.message).toBe('Messenger: credentials rejected (code 190, HTTP 400): Bad token [redacted]');
    expect(JSON.stringify(err)).not.toContain(token);
    expect(String((err.cause as Error).message)).not.toContain(token);
  });

  it('marks rate limits and outages retryable and keeps retryAfterMs', () => {
    const failure: ProviderFailure = { status: 429, code: 20429, retryAfter: '3' };
    const err = outboundErrorFrom('twilio', failure, classifyTwilioFailure(failure, NOW), []);
    expect(err).toMatchObject({
      reason: 'rate_limited',
      retryable: true,
      retryAfterMs: 3_000,
      code: 'send_rate_limited',
    });
  });
});

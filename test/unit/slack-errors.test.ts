/**
 * How the WebClient's errors map onto SlackApiError: the `retryable` flag decides whether the queue
 * retries a send or fails it for good, so each family of failure is pinned here.
 */
import {
  WebAPIHTTPError,
  WebAPIPlatformError,
  WebAPIRateLimitedError,
  WebAPIRequestError,
} from '@slack/web-api';
import { SlackApiError, toSlackApiError } from '../../src/channels/slack/client';

function mapped(err: unknown): SlackApiError {
  const result = toSlackApiError('chat.postMessage', err);
  if (!(result instanceof SlackApiError)) throw new Error('expected a SlackApiError');
  return result;
}

describe('toSlackApiError', () => {
  it('a rate limit is retryable after Retry-After seconds, in milliseconds', () => {
    expect(mapped(new WebAPIRateLimitedError(30))).toMatchObject({
      slackError: 'ratelimited',
      code: 'slack_ratelimited',
      retryable: true,
      retryAfterMs: 30_000,
      status: 502,
      method: 'chat.postMessage',
    });
  });

  it.each(['not_in_channel', 'channel_not_found', 'invalid_auth', 'is_archived', 'msg_too_long'])(
    'ok:false %s is not retryable',
    (error) => {
      expect(mapped(new WebAPIPlatformError({ ok: false, error }))).toMatchObject({
        slackError: error,
        code: `slack_${error}`,
        retryable: false,
      });
    },
  );

  it.each(['internal_error', 'fatal_error', 'service_unavailable', 'request_timeout'])(
    "ok:false %s is Slack's own trouble and retryable",
    (error) => {
      expect(mapped(new WebAPIPlatformError({ ok: false, error })).retryable).toBe(true);
    },
  );

  it('HTTP 5xx is retryable, other HTTP statuses are not', () => {
    expect(mapped(new WebAPIHTTPError(503, 'Service Unavailable', {}, '')).retryable).toBe(true);
    expect(mapped(new WebAPIHTTPError(404, 'Not Found', {}, '')).retryable).toBe(false);
    expect(mapped(new WebAPIHTTPError(404, 'Not Found', {}, '')).slackError).toBe('http_404');
  });

  it('a timed-out request is a retryable slack_timeout; a refused connection a retryable request_failed', () => {
    const timeout = Object.assign(new Error('The operation was aborted due to timeout'), {
      name: 'TimeoutError',
    });
    expect(mapped(new WebAPIRequestError(timeout))).toMatchObject({ slackError: 'timeout', retryable: true });
    expect(mapped(new WebAPIRequestError(new TypeError('fetch failed')))).toMatchObject({
      slackError: 'request_failed',
      retryable: true,
    });
  });

  it('an error that did not come from the WebClient is passed through unchanged (it is our bug)', () => {
    const bug = new TypeError('cannot read properties of undefined');
    expect(toSlackApiError('chat.postMessage', bug)).toBe(bug);
  });

  it('keeps the original error as the cause', () => {
    const original = new WebAPIPlatformError({ ok: false, error: 'not_in_channel' });
    expect(mapped(original).cause).toBe(original);
  });
});

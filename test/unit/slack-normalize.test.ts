/**
 * The pure Slack normalisers on the edge cases the fixtures do not cover: Slack's text escaping,
 * mention detection, loop prevention on edits and deletions, and malformed bodies.
 */
import {
  decodeSlackText,
  mentionsSomeone,
  parseInteraction,
  parseSlackEvent,
} from '../../src/channels/slack/normalize';
import { PayloadError } from '../../src/errors';

function envelope(event: Record<string, unknown>, eventId = 'Ev0TEST'): Buffer {
  return Buffer.from(
    JSON.stringify({
      type: 'event_callback',
      team_id: 'T0TEAM',
      api_app_id: 'A0APP',
      event_id: eventId,
      event,
    }),
  );
}

const reply = {
  type: 'message',
  channel: 'C0SUPPORT',
  user: 'U0AGENT',
  text: 'hello',
  ts: '1718883012.339209',
  thread_ts: '1718882950.112849',
};

describe('decodeSlackText', () => {
  it('decodes the three entities Slack escapes', () => {
    expect(decodeSlackText('a &amp; b &lt;c&gt;')).toBe('a & b <c>');
  });

  it('decodes in one pass, so an escaped entity stays an entity', () => {
    expect(decodeSlackText('&amp;lt;')).toBe('&lt;');
  });

  it('leaves other entities and plain text alone', () => {
    expect(decodeSlackText('&quot;hi&quot; &#39; caf\u00e9')).toBe('&quot;hi&quot; &#39; caf\u00e9');
  });
});

describe('mentionsSomeone', () => {
  it.each([
    ['<@U07AGENT002>'],
    ['ask <@U07AGENT002|joao> please'],
    ['<@W012A3CDE>'],
    ['<!here>'],
    ['<!channel>'],
    ['<!everyone>'],
    ['see <#C07SUPPORT1|support>'],
    ['<!subteam^S0614TZR7|@support-team>'],
  ])('is true for %s', (text) => {
    expect(mentionsSomeone(text)).toBe(true);
  });

  it.each([
    ['no one here'],
    ['email me at a@b.com'],
    ['&lt;@U07AGENT002&gt; typed literally'],
    ['<https://example.com|a link>'],
    ['<!date^1392734382^{date}|Feb 18>'],
  ])('is false for %s', (text) => {
    expect(mentionsSomeone(text)).toBe(false);
  });
});

describe('parseSlackEvent', () => {
  it('takes a human reply with no subtype as a thread_reply', () => {
    expect(parseSlackEvent(envelope(reply))).toMatchObject({
      type: 'thread_reply',
      user: 'U0AGENT',
      files: [],
    });
  });

  it('ignores a thread parent (thread_ts equal to ts)', () => {
    const parent = { ...reply, thread_ts: reply.ts };
    expect(parseSlackEvent(envelope(parent))).toMatchObject({
      type: 'ignored',
      reason: expect.stringContaining('top-level'),
    });
  });

  it('ignores any message carrying a bot_id, even with a user and in a thread', () => {
    expect(parseSlackEvent(envelope({ ...reply, bot_id: 'B0OURS' }))).toEqual({
      type: 'ignored',
      eventId: 'Ev0TEST',
      reason: 'bot message',
    });
  });

  it('ignores an edit of a bot message (our own chat.update echoed back)', () => {
    const event = {
      type: 'message',
      subtype: 'message_changed',
      channel: 'C0SUPPORT',
      ts: '1718883099.000100',
      message: { ...reply, text: 'new', bot_id: 'B0OURS' },
      previous_message: { ...reply, text: 'old', bot_id: 'B0OURS' },
    };
    expect(parseSlackEvent(envelope(event))).toMatchObject({
      type: 'ignored',
      reason: 'edit of a bot message',
    });
  });

  it('ignores a message_changed whose text did not change (an unfurl or reply-count update)', () => {
    const event = {
      type: 'message',
      subtype: 'message_changed',
      channel: 'C0SUPPORT',
      ts: '1718883099.000100',
      message: { ...reply, attachments: [{ from_url: 'https://example.com' }] },
      previous_message: reply,
    };
    expect(parseSlackEvent(envelope(event))).toMatchObject({ type: 'ignored' });
  });

  it('ignores the deletion of a bot message', () => {
    const event = {
      type: 'message',
      subtype: 'message_deleted',
      channel: 'C0SUPPORT',
      ts: '1718883099.000100',
      deleted_ts: reply.ts,
      previous_message: { ...reply, bot_id: 'B0OURS' },
    };
    expect(parseSlackEvent(envelope(event))).toMatchObject({
      type: 'ignored',
      reason: 'deletion of a bot message',
    });
  });

  it('takes the deleted ts from previous_message when deleted_ts is absent', () => {
    const event = {
      type: 'message',
      subtype: 'message_deleted',
      channel: 'C0SUPPORT',
      ts: '1718883099.000100',
      previous_message: reply,
    };
    expect(parseSlackEvent(envelope(event))).toEqual({
      type: 'message_deleted',
      eventId: 'Ev0TEST',
      channel: 'C0SUPPORT',
      ts: reply.ts,
      threadTs: reply.thread_ts,
    });
  });

  it('ignores an app_rate_limited envelope', () => {
    const body = Buffer.from(
      JSON.stringify({
        token: 'x',
        type: 'app_rate_limited',
        team_id: 'T0TEAM',
        minute_rate_limited: 1518467820,
        api_app_id: 'A0APP',
      }),
    );
    expect(parseSlackEvent(body)).toEqual({ type: 'ignored', reason: 'envelope type app_rate_limited' });
  });

  it('throws PayloadError on a body that is not JSON', () => {
    expect(() => parseSlackEvent(Buffer.from('payload=%7B%7D'))).toThrow(PayloadError);
  });

  it('throws PayloadError on an event_callback without event_id', () => {
    const body = Buffer.from(JSON.stringify({ type: 'event_callback', team_id: 'T0TEAM', event: reply }));
    expect(() => parseSlackEvent(body)).toThrow(PayloadError);
  });

  it('throws PayloadError on a message event without channel', () => {
    const { channel: _channel, ...noChannel } = reply;
    expect(() => parseSlackEvent(envelope(noChannel))).toThrow(PayloadError);
  });

  it('throws PayloadError on a url_verification without challenge', () => {
    expect(() => parseSlackEvent(Buffer.from('{"type":"url_verification"}'))).toThrow(PayloadError);
  });
});

describe('parseInteraction', () => {
  function form(payload: unknown): Buffer {
    return Buffer.from(new URLSearchParams({ payload: JSON.stringify(payload) }).toString());
  }

  it('reads the chosen option of a static select as the action value', () => {
    const payload = {
      type: 'block_actions',
      user: { id: 'U0AGENT' },
      container: { type: 'message', message_ts: '1718882950.112849', channel_id: 'C0SUPPORT' },
      actions: [
        {
          action_id: 'rapport_away',
          selected_option: { value: '2h', text: { type: 'plain_text', text: '2 hours' } },
        },
      ],
    };
    expect(parseInteraction(form(payload))).toEqual({
      type: 'block_actions',
      userId: 'U0AGENT',
      channelId: 'C0SUPPORT',
      messageTs: '1718882950.112849',
      actions: [{ actionId: 'rapport_away', value: '2h' }],
    });
  });

  it('ignores block_actions from a modal (no channel, no message)', () => {
    const payload = {
      type: 'block_actions',
      user: { id: 'U0AGENT' },
      container: { type: 'view', view_id: 'V0VIEW' },
      view: { id: 'V0VIEW' },
      actions: [{ action_id: 'x', value: 'y' }],
    };
    expect(parseInteraction(form(payload))).toEqual({
      type: 'ignored',
      reason: 'block_actions from a view surface',
    });
  });

  it('throws PayloadError when payload is not JSON', () => {
    expect(() => parseInteraction(Buffer.from('payload=%7Bnot-json'))).toThrow(PayloadError);
  });
});

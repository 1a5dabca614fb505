/** A Messenger event without a timestamp keeps its key across redeliveries (never the arrival time). */
import { normalizeMessengerPayload } from '../../src/channels/messenger/normalize';

const payload = (event: Record<string, unknown>) => ({
  object: 'page',
  entry: [{ id: '104857392018374', time: 1700000000000, messaging: [event] }],
});

function keysAt(event: Record<string, unknown>, at: string): string[] {
  const batch = normalizeMessengerPayload(payload(event), new Date(at));
  return batch.events.map((e) => (e.type === 'message' ? e.message.key : e.status.key));
}

describe('Messenger event keys without a timestamp', () => {
  const party = { sender: { id: '7302918465012837' }, recipient: { id: '104857392018374' } };
  const cases: Record<string, Record<string, unknown>> = {
    'an unreadable event': { ...party, delivery: { mids: 'not-a-list' } },
    'a reaction': { ...party, reaction: { mid: 'm_abc', action: 'react', emoji: '👍', reaction: 'like' } },
    'a referral': { ...party, referral: { ref: 'spring', source: 'SHORTLINK', type: 'OPEN_THREAD' } },
  };
  it.each(Object.entries(cases))('%s gets the same key when redelivered later', (_name, event) => {
    const first = keysAt(event, '2026-12-06T10:00:00.000Z');
    expect(first).toHaveLength(1);
    expect(keysAt(event, '2026-12-06T11:30:00.000Z')).toEqual(first);
  });

  it('two different events without timestamps get different keys', () => {
    const a = keysAt({ ...party, reaction: { mid: 'm_a', action: 'react', emoji: '👍' } }, '2026-12-06T10:00:00Z');
    const b = keysAt({ ...party, reaction: { mid: 'm_a', action: 'react', emoji: '😮' } }, '2026-12-06T10:00:00Z');
    expect(a).not.toEqual(b);
  });
});

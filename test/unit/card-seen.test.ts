import { Types } from 'mongoose';
import { cardSeen, inboundChangesCard, WINDOW_CLOSING_MS, WINDOW_MS } from '../../src/router/card';
import type { Customer, Identity } from '../../src/identity/models';

const NOW = Date.parse('2026-12-06T12:00:00Z');
const HOUR = 3_600_000;

const customer = {
  _id: new Types.ObjectId(),
  displayName: 'Dana',
  lastChannel: 'whatsapp',
  ownerAgentId: 'agent-1',
} as unknown as Customer;

const phone = {
  key: 'phone:+14155550101',
  kind: 'phone',
  value: '+14155550101',
  lastInboundAt: { whatsapp: new Date(NOW - 2 * HOUR), sms: new Date(NOW - 50 * HOUR) },
} as unknown as Identity;

const seen = cardSeen(customer, [phone], ['epoch', 'gen', 'thread', 'agent']);
const message = (
  over: Partial<{ customer: Partial<Customer>; identityKey: string; channel: string }> = {},
) => ({
  customer: { ...customer, ...over.customer },
  identityKey: over.identityKey ?? phone.key,
  channel: over.channel ?? 'whatsapp',
});

describe('inboundChangesCard', () => {
  it('an in-window message on a known identity and channel changes nothing (SMS has no window)', () => {
    expect(inboundChangesCard(seen, message(), NOW)).toBe(false);
    const smsLast = cardSeen({ ...customer, lastChannel: 'sms' } as Customer, [phone], seen.tokens);
    expect(
      inboundChangesCard(smsLast, message({ channel: 'sms', customer: { lastChannel: 'sms' } }), NOW),
    ).toBe(false);
  });

  it('a window that closed, or closes within a minute, reopening changes the card', () => {
    const closesAt = NOW - 2 * HOUR + WINDOW_MS;
    expect(inboundChangesCard(seen, message(), closesAt - WINDOW_CLOSING_MS - 1)).toBe(false);
    expect(inboundChangesCard(seen, message(), closesAt - WINDOW_CLOSING_MS + 1)).toBe(true);
    expect(inboundChangesCard(seen, message(), closesAt + HOUR)).toBe(true);
  });

  it('a name, a last channel, an owner, a new identity or a first message on a channel changes the card', () => {
    expect(inboundChangesCard(seen, message({ channel: 'sms', customer: { lastChannel: 'sms' } }), NOW)).toBe(
      true,
    );
    expect(inboundChangesCard(seen, message({ customer: { displayName: 'Dana Smith' } }), NOW)).toBe(true);
    expect(inboundChangesCard(seen, message({ customer: { ownerAgentId: 'agent-2' } }), NOW)).toBe(true);
    expect(inboundChangesCard(seen, message({ identityKey: 'phone:+14155550102' }), NOW)).toBe(true);
    expect(inboundChangesCard(seen, message({ channel: 'messenger' }), NOW)).toBe(true);
  });

  it('keeps no phone number in what it stores', () => {
    expect(JSON.stringify(seen)).not.toContain('4155550101');
  });
});

/** Pure parts of the privacy module: audit route shapes, opt-out markers, identifying strings. */
import { Types } from 'mongoose';
import { routeShape } from '../../src/http/admin-audit';
import { needlesOf, optOutMarker, optOutMarkerKey } from '../../src/privacy/erase';
import type { Identity } from '../../src/identity/models';

const identity = (over: Partial<Identity>): Identity =>
  ({
    _id: new Types.ObjectId(),
    customerId: new Types.ObjectId(),
    verified: true,
    source: 'twilio',
    lastAddress: {},
    lastInboundAt: {},
    createdAt: new Date(),
    updatedAt: new Date(),
    ...over,
  }) as Identity;

describe('admin audit route shapes', () => {
  it('keeps ids as targets and drops anything that could be personal data', () => {
    expect(routeShape('/api/customers/65A000000000000000000001/merge')).toEqual({
      route: '/api/customers/:id/merge',
      targets: ['65a000000000000000000001'],
    });
    expect(routeShape('/api/customers/+14155550101').route).toBe('/api/customers/:param');
    expect(routeShape('/api/agents').route).toBe('/api/agents');
  });
});

describe('erased opt-out markers', () => {
  it('are keyed: the same number and channel give the same marker only under the same key', () => {
    const key = optOutMarkerKey('an-admin-token-0123456789');
    const a = optOutMarker(key, 'phone:+14155550101', 'sms');
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(optOutMarker(key, 'phone:+14155550101', 'sms')).toBe(a);
    expect(optOutMarker(key, 'phone:+14155550101', 'whatsapp')).not.toBe(a);
    expect(optOutMarker(optOutMarkerKey('another-admin-token-012345'), 'phone:+14155550101', 'sms')).not.toBe(
      a,
    );
    expect(a).not.toContain('4155550101');
  });
});

describe('identifying strings of an identity', () => {
  it('covers every spelling of a phone number and the raw provider addresses', () => {
    const needles = needlesOf([
      identity({
        key: 'phone:+14155550101',
        kind: 'phone',
        value: '+14155550101',
        lastAddress: { 'whatsapp-web': { raw: '14155550101@c.us', to: 'x', at: new Date() } },
      }),
      identity({ key: 'psid:100:7000000000000101', kind: 'psid', value: '100:7000000000000101' }),
    ]);
    expect(needles).toEqual(
      expect.arrayContaining([
        '+14155550101',
        '14155550101',
        '4155550101',
        '14155550101@c.us',
        '7000000000000101',
      ]),
    );
  });
});

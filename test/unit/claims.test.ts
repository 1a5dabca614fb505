/** detectClaim: which messages are a claim to a phone number or email, and which are conversation. */
import { detectClaim } from '../../src/identity/claims';

describe('detectClaim', () => {
  it.each([
    ['+44 20 7946 0958', 'US', { kind: 'phone', value: '+442079460958' }],
    ['my number is +44 20 7946 0958', 'US', { kind: 'phone', value: '+442079460958' }],
    ["it's (415) 555-0123", 'US', { kind: 'phone', value: '+14155550123' }],
    ['415.555.0123', 'US', { kind: 'phone', value: '+14155550123' }],
    ['020 7946 0958', 'GB', { kind: 'phone', value: '+442079460958' }],
    ['+55 11 98765-4321', 'US', { kind: 'phone', value: '+5511987654321' }],
    ['5491123456789', 'US', { kind: 'phone', value: '+541123456789' }],
    ['Ada.Lovelace@Example.COM', 'US', { kind: 'email', value: 'ada.lovelace@example.com' }],
    ['my email is ada@example.co.uk.', 'US', { kind: 'email', value: 'ada@example.co.uk' }],
  ] as const)('reads %j as a claim', (text, region, expected) => {
    expect(detectClaim(text, region)).toEqual(expected);
  });

  it.each([
    ['hello'],
    ['123456'],
    ['my order 4155550123 has not arrived yet and I am waiting since Monday'],
    ['call 415 555 0123 or 415 555 0124'],
    ['I paid 1234567 dollars'],
    ['write to ada@example.com or bob@example.com'],
    ['+999999'],
    [''],
    ['a'.repeat(200)],
  ])('does not read %j as a claim', (text) => {
    expect(detectClaim(text, 'US')).toBeUndefined();
  });
});

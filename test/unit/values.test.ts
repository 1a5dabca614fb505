/**
 * Plain-value helpers (src/values.ts): NUL characters are found and dropped the same way, keys
 * included, and `isRecord` admits objects only.
 */
import { hasNul, isRecord, mapStrings, withoutNul } from '../../src/values';

describe('values', () => {
  it('withoutNul drops NUL characters from strings and keys, through arrays and plain objects', () => {
    const event = { text: 'hi\u0000there', parts: [{ 'k\u0000': 'a\u0000' }], n: 3, at: new Date(0) };
    expect(withoutNul(event)).toEqual({ text: 'hithere', parts: [{ k: 'a' }], n: 3, at: new Date(0) });
    expect(hasNul(withoutNul(event))).toBe(false);
  });

  it('withoutNul returns a value without NUL as it is (no copy per inbound event)', () => {
    const event = { text: 'hi', parts: [{ k: 'a' }], n: 3, at: new Date(0) };
    expect(withoutNul(event)).toBe(event);
    const nested = { a: [{ b: 'x\u0000' }] };
    expect(withoutNul(nested)).not.toBe(nested);
    expect(withoutNul(nested)).toEqual({ a: [{ b: 'x' }] });
  });

  it('hasNul finds a NUL in a value or a key, and stops 32 levels down', () => {
    expect(hasNul({ a: ['x', 'y\u0000'] })).toBe(true);
    expect(hasNul({ 'a\u0000': 1 })).toBe(true);
    expect(hasNul(Object.fromEntries(new URLSearchParams('text=a%00b')))).toBe(true);
    expect(hasNul({ a: 'plain', b: [1, null] })).toBe(false);
    let deep: unknown = 'x\u0000';
    for (let i = 0; i < 40; i++) deep = { d: deep };
    expect(hasNul(deep)).toBe(false);
  });

  it('mapStrings leaves everything but strings as it was', () => {
    const at = new Date(0);
    expect(mapStrings({ at, n: 1, b: true, s: 'a' }, (s) => s.toUpperCase())).toEqual({
      AT: at,
      N: 1,
      B: true,
      S: 'A',
    });
  });

  it('isRecord admits non-null objects that are not arrays', () => {
    expect(isRecord({})).toBe(true);
    expect(isRecord([])).toBe(false);
    expect(isRecord(null)).toBe(false);
    expect(isRecord('x')).toBe(false);
  });
});

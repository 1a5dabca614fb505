import {
  getExampleNumber,
  parsePhoneNumberFromString,
  type CountryCode,
  type PhoneNumber,
} from 'libphonenumber-js/max';
import examples from 'libphonenumber-js/mobile/examples';
import { normalizePhone, phoneIdentityKey, phoneVariants } from '../../src/identity/phone';

describe('phone identity: one US number', () => {
  const key = 'phone:+14155550123';

  it.each<[string, string, CountryCode]>([
    ['Twilio SMS', '+14155550123', 'US'],
    ['Twilio WhatsApp', 'whatsapp:+14155550123', 'US'],
    ['WhatsApp Cloud wa_id in its own region', '14155550123', 'US'],
    ['WhatsApp Cloud wa_id with a foreign default region', '14155550123', 'GB'],
    ['whatsapp-web.js', '14155550123@c.us', 'GB'],
    ['WhatsApp JID with a device suffix', '14155550123:7@s.whatsapp.net', 'DE'],
    ['national with parentheses and dash', '(415) 555-0123', 'US'],
    ['national with dots', '415.555.0123', 'US'],
    ['national with trunk 1 and spaces', '1 415 555 0123', 'US'],
    ['international with spaces', '+1 415 555 0123', 'DE'],
    ['international with the 00 prefix', '00 1 415 555 0123', 'GB'],
    ['US international prefix 011', '011 1 415 555 0123', 'US'],
    ['surrounding whitespace', '  +1 (415) 555-0123 ', 'US'],
  ])('maps the %s form (%s, region %s) to the one key', (_label, raw, region) => {
    expect(phoneIdentityKey(raw, region)).toBe(key);
  });

  it('returns the E.164 form without the key prefix from normalizePhone', () => {
    expect(normalizePhone('whatsapp:+14155550123', 'US')).toBe('+14155550123');
  });

  it('does not re-read a parenthesised national number of another region as international', () => {
    expect(normalizePhone('(415) 555-0123', 'GB')).toBeUndefined();
  });
});

describe('phone identity: GB', () => {
  it.each<[string, CountryCode]>([
    ['020 7946 0958', 'GB'],
    ['+44 20 7946 0958', 'US'],
    ['0044 20 7946 0958', 'GB'],
    ['0044 20 7946 0958', 'US'],
    ['442079460958', 'US'],
    ['whatsapp:+442079460958', 'US'],
    ['442079460958@c.us', 'US'],
  ])('maps %s (region %s) to +442079460958', (raw, region) => {
    expect(phoneIdentityKey(raw, region)).toBe('phone:+442079460958');
  });
});

describe('phone identity: default region with variable-length numbers (DE)', () => {
  it.each<[string, CountryCode]>([
    ['4915123456789', 'DE'],
    ['4915123456789', 'US'],
    ['+49 1512 3456789', 'DE'],
    ['0151 23456789', 'DE'],
    ['0049 151 23456789', 'DE'],
  ])('reads %s (region %s) as +4915123456789, not as a national number beginning 49', (raw, region) => {
    expect(phoneIdentityKey(raw, region)).toBe('phone:+4915123456789');
  });

  it('still reads a national number with its trunk 0 in the default region', () => {
    expect(phoneIdentityKey('030 123456', 'DE')).toBe('phone:+4930123456');
  });
});

describe('phone identity: Brazil ninth digit', () => {
  it.each<[string, CountryCode]>([
    ['551187654321', 'US'],
    ['551187654321@c.us', 'US'],
    ['whatsapp:+551187654321', 'US'],
    ['+55 11 98765-4321', 'US'],
    ['5511987654321', 'US'],
    ['(11) 98765-4321', 'BR'],
    ['(11) 8765-4321', 'BR'],
    ['551187654321', 'BR'],
  ])('maps %s (region %s) to the form with the 9', (raw, region) => {
    expect(phoneIdentityKey(raw, region)).toBe('phone:+5511987654321');
  });

  it('leaves a landline (subscriber starting 2-5) unchanged', () => {
    expect(phoneIdentityKey('+55 11 3456-7890', 'US')).toBe('phone:+551134567890');
    expect(phoneIdentityKey('551134567890', 'US')).toBe('phone:+551134567890');
  });

  it('lists the 10-digit form as a variant of a mobile, but none for a landline', () => {
    expect(phoneVariants('+5511987654321')).toEqual(['+5511987654321', '+551187654321']);
    expect(phoneVariants('+551187654321')).toEqual(['+5511987654321', '+551187654321']);
    expect(phoneVariants('+551134567890')).toEqual(['+551134567890']);
  });
});

describe('phone identity: Argentina mobile 9 and 15', () => {
  it.each<[string, CountryCode]>([
    ['5491123456789', 'US'],
    ['5491123456789@c.us', 'US'],
    ['whatsapp:+5491123456789', 'US'],
    ['+54 9 11 2345-6789', 'US'],
    ['+54 11 2345-6789', 'US'],
    ['+54 11 15 2345-6789', 'US'],
    ['011 15 2345-6789', 'AR'],
    ['011 2345-6789', 'AR'],
    ['11 15 2345-6789', 'AR'],
  ])('maps %s (region %s) to +54 + 10 digits, without the 9', (raw, region) => {
    expect(phoneIdentityKey(raw, region)).toBe('phone:+541123456789');
  });

  it('handles a 3-digit area code the same way', () => {
    expect(phoneIdentityKey('0351 15 234-5678', 'AR')).toBe('phone:+543512345678');
    expect(phoneIdentityKey('5493512345678', 'US')).toBe('phone:+543512345678');
  });

  it('lists the 549 form as a variant', () => {
    expect(phoneVariants('+541123456789')).toEqual(['+541123456789', '+5491123456789']);
    expect(phoneVariants('+5491123456789')).toEqual(['+541123456789', '+5491123456789']);
  });
});

describe('phone identity: Mexico mobile 1', () => {
  it.each<[string, CountryCode]>([
    ['5215512345678', 'US'],
    ['5215512345678@c.us', 'US'],
    ['whatsapp:+5215512345678', 'US'],
    ['+52 1 55 1234 5678', 'US'],
    ['+52 55 1234 5678', 'US'],
    ['55 1234 5678', 'MX'],
    ['1 55 1234 5678', 'MX'],
  ])('maps %s (region %s) to +52 + 10 digits, without the 1', (raw, region) => {
    expect(phoneIdentityKey(raw, region)).toBe('phone:+525512345678');
  });

  it('lists the 521 form as a variant', () => {
    expect(phoneVariants('+525512345678')).toEqual(['+525512345678', '+5215512345678']);
  });
});

describe('phone identity: rejects what is not a phone number', () => {
  it.each<[string, CountryCode]>([
    ['hello', 'US'],
    ['123', 'US'],
    ['', 'US'],
    ['   ', 'US'],
    ['+999999', 'US'],
    ['+', 'US'],
    ['whatsapp:', 'US'],
    ['@c.us', 'US'],
    ['1-800-FLOWERS', 'US'],
    ['+1 415 555 0123 ext 5', 'US'],
    ['+1 415 +555 0123', 'US'],
    ['+0044 20 7946 0958', 'US'],
    ['120363025246125888@g.us', 'US'],
    ['1'.repeat(100), 'US'],
  ])('returns undefined for %j (region %s)', (raw, region) => {
    expect(normalizePhone(raw, region)).toBeUndefined();
    expect(phoneIdentityKey(raw, region)).toBeUndefined();
  });

  it('has no variants for something that is not a + number', () => {
    expect(phoneVariants('hello')).toEqual([]);
    expect(phoneVariants('14155550123')).toEqual([]);
  });
});

describe('phone identity: different numbers never collide', () => {
  it('gives distinct keys to neighbouring and look-alike numbers', () => {
    const raws = [
      '+14155550123',
      '+14155550124',
      '+442079460958',
      '+5511987654321',
      '+551187654322',
      '+551134567890',
      '+5511934567890',
      '+541123456789',
      '+541123456788',
      '+525512345678',
      '+525512345679',
      '+919876543210',
      '+4915123456789',
    ];
    const keys = raws.map((raw) => phoneIdentityKey(raw, 'US'));
    expect(keys).not.toContain(undefined);
    expect(new Set(keys).size).toBe(raws.length);
  });
});

/** Deterministic PRNG (mulberry32) so a failure reproduces. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COUNTRIES: CountryCode[] = ['US', 'GB', 'BR', 'AR', 'MX', 'IN', 'DE'];

/** ~200 valid numbers: the example mobile number of each country with random subscriber digits. */
function randomValidNumbers(count: number): { country: CountryCode; number: PhoneNumber }[] {
  const random = prng(20261123);
  const digit = (): string => String(Math.floor(random() * 10));
  const out: { country: CountryCode; number: PhoneNumber }[] = [];
  const seen = new Set<string>();
  for (let attempt = 0; out.length < count && attempt < count * 200; attempt++) {
    const country = COUNTRIES[attempt % COUNTRIES.length] ?? 'US';
    const example = getExampleNumber(country, examples);
    if (!example) throw new Error(`no example number for ${country}`);
    const national = String(example.nationalNumber);
    // Keep a short prefix (area code / mobile range) and randomise the rest; a 1-digit prefix
    // also reaches landlines and other area codes.
    const keep = random() < 0.5 ? 1 : Math.min(3, national.length - 4);
    let candidate = national.slice(0, keep);
    while (candidate.length < national.length) candidate += digit();
    const e164 = `+${String(example.countryCallingCode)}${candidate}`;
    const number = parsePhoneNumberFromString(e164);
    if (!number || !number.isValid() || number.country !== country || seen.has(e164)) continue;
    seen.add(e164);
    out.push({ country, number });
  }
  return out;
}

describe('phone identity: every form of a random valid number maps to one key', () => {
  const numbers = randomValidNumbers(210);

  it('generates enough valid numbers in every country', () => {
    expect(numbers.length).toBeGreaterThanOrEqual(200);
    for (const country of COUNTRIES) {
      expect(numbers.filter((n) => n.country === country).length).toBeGreaterThanOrEqual(10);
    }
  });

  it('maps E.164, whatsapp:, wa_id, @c.us and national forms to the same key', () => {
    const failures: string[] = [];
    for (const { country, number } of numbers) {
      const e164 = String(number.number);
      const digits = e164.slice(1);
      const key = phoneIdentityKey(e164, country);
      if (key === undefined) {
        failures.push(`${e164}: no key`);
        continue;
      }
      const forms: [string, CountryCode][] = [
        [e164, 'US'],
        [`whatsapp:${e164}`, 'US'],
        [digits, country],
        [digits, country === 'GB' ? 'US' : 'GB'],
        [`${digits}@c.us`, 'US'],
        [number.formatNational(), country],
        [number.formatInternational(), 'US'],
      ];
      for (const [raw, region] of forms) {
        const got = phoneIdentityKey(raw, region);
        if (got !== key)
          failures.push(`${e164}: ${JSON.stringify(raw)} in ${region} → ${String(got)}, want ${key}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('maps every variant back to the canonical key, canonical first', () => {
    const failures: string[] = [];
    for (const { number } of numbers) {
      const key = phoneIdentityKey(String(number.number), 'US') ?? '';
      const variants = phoneVariants(key.slice('phone:'.length));
      if (variants[0] !== key.slice('phone:'.length)) failures.push(`${key}: variants ${variants.join(',')}`);
      for (const variant of variants) {
        const got = phoneIdentityKey(variant, 'US');
        if (got !== key) failures.push(`${key}: variant ${variant} → ${String(got)}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('never gives two different numbers the same key', () => {
    const byKey = new Map<string, string>();
    for (const { number } of numbers) {
      const e164 = String(number.number);
      const key = phoneIdentityKey(e164, 'US') ?? `none:${e164}`;
      const other = byKey.get(key);
      expect(other === undefined || other === e164).toBe(true);
      byKey.set(key, e164);
    }
  });
});

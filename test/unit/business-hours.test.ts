import {
  addBusinessTime,
  describeOpening,
  isOpen,
  nextOpening,
  parseBusinessHours,
} from '../../src/router/business-hours';

const HOUR = 3_600_000;
const MINUTE = 60_000;
const at = (iso: string) => new Date(iso);
const officeHours = (timeZone: string) => parseBusinessHours('Mon-Fri 09:00-17:00', timeZone);

// January 2025 (no DST anywhere relevant): Mon 6, Fri 10, Sat 11, Mon 13. London is on UTC then.
describe('parseBusinessHours', () => {
  it('reads day ranges, day lists, several intervals a day and 24:00 as an end', () => {
    const hours = parseBusinessHours(
      'Mon-Fri 09:00-17:00; Sat 10:00-14:00; Tue,Thu 18:00-24:00; Sun 09:00-12:00,13:00-15:30',
      'Europe/London',
    );
    expect(hours).toEqual({
      timeZone: 'Europe/London',
      always: false,
      week: [
        [
          { start: 540, end: 720 },
          { start: 780, end: 930 },
        ],
        [{ start: 540, end: 1020 }],
        [
          { start: 540, end: 1020 },
          { start: 1080, end: 1440 },
        ],
        [{ start: 540, end: 1020 }],
        [
          { start: 540, end: 1020 },
          { start: 1080, end: 1440 },
        ],
        [{ start: 540, end: 1020 }],
        [{ start: 600, end: 840 }],
      ],
    });
  });

  it('accepts any case, spaces around dashes, and a range that wraps over the weekend', () => {
    const hours = parseBusinessHours(' fri - MON 08:00 - 12:00 ; ', 'Asia/Kolkata');
    const open = hours.week.map((intervals) => intervals.length > 0);
    expect(open).toEqual([true, true, false, false, false, true, true]);
  });

  it.each([undefined, '', '   '])('treats %p as always open', (spec) => {
    expect(parseBusinessHours(spec, undefined)).toMatchObject({ always: true, timeZone: 'UTC' });
    expect(parseBusinessHours(spec, 'America/New_York')).toMatchObject({
      always: true,
      timeZone: 'America/New_York',
    });
  });

  it.each([
    [
      'a misspelt day',
      'Mon-Fry 09:00-17:00',
      'Europe/London',
      "'Fry' is not a day (use Mon Tue Wed Thu Fri Sat Sun)",
    ],
    [
      'an hour past 24',
      'Mon 09:00-25:00',
      'Europe/London',
      "'25:00' is not a valid time (00:00 to 23:59, or 24:00 as an end)",
    ],
    ['24:00 as a start', 'Mon 24:00-24:00', 'Europe/London', "'24:00' is not a valid time"],
    [
      'an end before the start',
      'Mon 17:00-09:00',
      'Europe/London',
      "'17:00-09:00' ends before it starts (split overnight hours",
    ],
    ['an empty interval', 'Mon 09:00-09:00', 'Europe/London', "'09:00-09:00' ends before it starts"],
    [
      'overlapping intervals in one clause',
      'Mon 09:00-12:00,11:00-13:00',
      'Europe/London',
      'Mon 09:00-12:00 overlaps 11:00-13:00',
    ],
    [
      'overlapping intervals across clauses',
      'Mon-Fri 09:00-17:00; Wed 16:00-18:00',
      'Europe/London',
      'Wed 09:00-17:00 overlaps 16:00-18:00',
    ],
    ['a malformed time', 'Mon 9am-5pm', 'Europe/London', "'9am-5pm' is not a time range like 09:00-17:00"],
    ['hours without days', '09:00-17:00', 'Europe/London', "'09:00-17:00' should be days then hours"],
    [
      'an unknown time zone',
      'Mon 09:00-17:00',
      'Europe/Londinium',
      "'Europe/Londinium' is not a known IANA time zone",
    ],
    ['no time zone', 'Mon 09:00-17:00', undefined, 'business hours need a time zone, e.g. Europe/London'],
  ])('rejects %s with a clear message', (_label, spec, timeZone, message) => {
    expect(() => parseBusinessHours(spec, timeZone)).toThrow(message);
  });

  it('rejects an unknown time zone even when no hours are configured', () => {
    expect(() => parseBusinessHours(undefined, 'Mars/Olympus_Mons')).toThrow(
      "'Mars/Olympus_Mons' is not a known IANA time zone",
    );
  });

  it('names every problem in one error so config validation can list them all', () => {
    expect(() => parseBusinessHours('Tue 10:00-25:00; Mox 09:00-17:00', 'Nowhere/City')).toThrow(
      "'Nowhere/City' is not a known IANA time zone (e.g. Europe/London, America/New_York); " +
        "'25:00' is not a valid time (00:00 to 23:59, or 24:00 as an end); " +
        "'Mox' is not a day (use Mon Tue Wed Thu Fri Sat Sun)",
    );
  });
});

describe('isOpen', () => {
  const london = officeHours('Europe/London');

  it.each([
    ['one millisecond before opening', '2025-01-06T08:59:59.999Z', false],
    ['exactly at opening (start is inclusive)', '2025-01-06T09:00:00.000Z', true],
    ['one millisecond before closing', '2025-01-06T16:59:59.999Z', true],
    ['exactly at closing (end is exclusive)', '2025-01-06T17:00:00.000Z', false],
    ['on a Saturday afternoon', '2025-01-11T12:00:00.000Z', false],
  ])('in London, %s is %p', (_label, iso, expected) => {
    expect(isOpen(london, at(iso))).toBe(expected);
  });

  it('uses local time in half- and quarter-hour zones', () => {
    const kolkata = officeHours('Asia/Kolkata'); // UTC+05:30
    const kathmandu = officeHours('Asia/Kathmandu'); // UTC+05:45
    expect(isOpen(kolkata, at('2025-01-06T03:29:59.999Z'))).toBe(false);
    expect(isOpen(kolkata, at('2025-01-06T03:30:00Z'))).toBe(true);
    expect(isOpen(kathmandu, at('2025-01-06T03:14:59.999Z'))).toBe(false);
    expect(isOpen(kathmandu, at('2025-01-06T03:15:00Z'))).toBe(true);
    expect(isOpen(kathmandu, at('2025-01-06T11:15:00Z'))).toBe(false);
  });

  it('includes the last minute of a day that runs to 24:00', () => {
    const late = parseBusinessHours('Mon 18:00-24:00', 'America/New_York');
    expect(isOpen(late, at('2025-01-07T04:59:59Z'))).toBe(true); // Mon 23:59:59 EST
    expect(isOpen(late, at('2025-01-07T05:00:00Z'))).toBe(false); // Tue 00:00 EST
  });
});

describe('nextOpening', () => {
  const london = officeHours('Europe/London');

  it('jumps from Friday evening over the weekend to Monday 09:00', () => {
    expect(nextOpening(london, at('2025-01-10T17:00:00Z'))).toEqual(at('2025-01-13T09:00:00Z'));
    expect(nextOpening(london, at('2025-01-11T23:59:00Z'))).toEqual(at('2025-01-13T09:00:00Z'));
  });

  it('returns the moment itself when already open', () => {
    expect(nextOpening(london, at('2025-01-08T12:34:56.789Z'))).toEqual(at('2025-01-08T12:34:56.789Z'));
  });

  it('opens at the first valid instant when the opening time falls in the spring-forward gap', () => {
    // New York, Sun 10 Mar 2024: 02:00 EST jumps to 03:00 EDT, so 02:30 never happens.
    const gap = parseBusinessHours('Sun 02:30-04:00', 'America/New_York');
    expect(nextOpening(gap, at('2024-03-10T05:00:00Z'))).toEqual(at('2024-03-10T07:00:00Z'));
  });

  it('is open both times round when the autumn fall-back repeats the opening hours', () => {
    // London, Sun 27 Oct 2024: 01:15-01:45 happens in BST (00:15Z) and again in GMT (01:15Z).
    const repeated = parseBusinessHours('Sun 01:15-01:45', 'Europe/London');
    expect(nextOpening(repeated, at('2024-10-27T00:00:00Z'))).toEqual(at('2024-10-27T00:15:00Z'));
    expect(nextOpening(repeated, at('2024-10-27T00:50:00Z'))).toEqual(at('2024-10-27T01:15:00Z'));
    expect(addBusinessTime(repeated, at('2024-10-27T00:15:00Z'), HOUR)).toEqual(at('2024-10-27T01:45:00Z'));
  });
});

describe('addBusinessTime', () => {
  const london = officeHours('Europe/London');
  const newYork = officeHours('America/New_York');

  it('adds plainly within one open stretch', () => {
    expect(addBusinessTime(london, at('2025-01-06T10:00:00Z'), 90 * MINUTE)).toEqual(
      at('2025-01-06T11:30:00Z'),
    );
  });

  it('stops the clock overnight', () => {
    expect(addBusinessTime(london, at('2025-01-06T16:30:00Z'), HOUR)).toEqual(at('2025-01-07T09:30:00Z'));
  });

  it('stops the clock over the weekend, and starts it at opening when begun while closed', () => {
    expect(addBusinessTime(london, at('2025-01-10T16:00:00Z'), 2 * HOUR)).toEqual(at('2025-01-13T10:00:00Z'));
    expect(addBusinessTime(london, at('2025-01-11T12:00:00Z'), 2 * HOUR)).toEqual(at('2025-01-13T11:00:00Z'));
  });

  it.each([
    ['London into BST (31 Mar 2024)', london, '2024-03-29T16:00:00Z', '2024-04-01T09:00:00Z'],
    ['London back to GMT (27 Oct 2024)', london, '2024-10-25T15:00:00Z', '2024-10-28T10:00:00Z'],
    ['New York into EDT (10 Mar 2024)', newYork, '2024-03-08T21:00:00Z', '2024-03-11T14:00:00Z'],
    ['New York back to EST (3 Nov 2024)', newYork, '2024-11-01T20:00:00Z', '2024-11-04T15:00:00Z'],
  ])(
    'keeps to local 09:00-17:00 across the DST change, %s: Fri 16:00 + 2h is Mon 10:00',
    (_label, hours, from, to) => {
      expect(addBusinessTime(hours, at(from), 2 * HOUR)).toEqual(at(to));
    },
  );

  it('counts real elapsed time through the DST gap inside open hours', () => {
    // London Sun 31 Mar 2024 00:00-06:00 local is only 5 real hours (01:00 GMT → 02:00 BST).
    const sunday = parseBusinessHours('Sun 00:00-06:00', 'Europe/London');
    expect(addBusinessTime(sunday, at('2024-03-31T00:00:00Z'), 5 * HOUR)).toEqual(at('2024-03-31T05:00:00Z'));
    expect(addBusinessTime(sunday, at('2024-03-31T00:00:00Z'), 5.5 * HOUR)).toEqual(
      at('2024-04-06T23:30:00Z'),
    );
  });

  it('handles a quarter-hour zone over a weekend', () => {
    // Kathmandu is UTC+05:45: Fri 16:00 NPT + 2h = Mon 10:00 NPT.
    const kathmandu = officeHours('Asia/Kathmandu');
    expect(addBusinessTime(kathmandu, at('2025-01-10T10:15:00Z'), 2 * HOUR)).toEqual(
      at('2025-01-13T04:15:00Z'),
    );
  });

  it('steps interval by interval, so 30 days of open time (18 working weeks, across DST) is exact', () => {
    // 720h of Mon-Fri 09:00-17:00 from Mon 6 Jan 2025 ends at closing on Fri 9 May (BST).
    expect(addBusinessTime(london, at('2025-01-06T09:00:00Z'), 30 * 24 * HOUR)).toEqual(
      at('2025-05-09T16:00:00Z'),
    );
  });

  it('ends at closing time when the duration fills the day exactly, and adds nothing for zero', () => {
    expect(addBusinessTime(london, at('2025-01-10T09:00:00Z'), 8 * HOUR)).toEqual(at('2025-01-10T17:00:00Z'));
    expect(addBusinessTime(london, at('2025-01-11T12:00:00Z'), 0)).toEqual(at('2025-01-11T12:00:00Z'));
  });

  it('rejects a negative or non-finite duration', () => {
    expect(() => addBusinessTime(london, at('2025-01-06T10:00:00Z'), -1)).toThrow(RangeError);
    expect(() => addBusinessTime(london, at('2025-01-06T10:00:00Z'), Infinity)).toThrow(RangeError);
  });
});

describe('describeOpening', () => {
  const newYork = officeHours('America/New_York');

  it.each([
    ['now while open', '2025-01-06T15:00:00Z', 'now'], // Mon 10:00 EST
    ['later today', '2025-01-06T12:00:00Z', 'today at 09:00'], // Mon 07:00 EST
    ['tomorrow, by the local date (UTC is already Tuesday)', '2025-01-07T01:00:00Z', 'tomorrow at 09:00'],
    ['a weekday name over the weekend', '2025-01-10T23:00:00Z', 'Monday at 09:00'], // Fri 18:00 EST
  ])('says %s', (_label, now, phrase) => {
    expect(describeOpening(newYork, at(now), at(now))).toBe(phrase);
  });

  it('adds the date when the next opening is a week or more away', () => {
    const mondays = parseBusinessHours('Mon 09:00-17:00', 'America/New_York');
    const now = at('2025-01-06T23:00:00Z'); // Mon 18:00 EST
    expect(describeOpening(mondays, now, now)).toBe('Monday 13 January at 09:00');
  });

  it('shows the local wall time in a quarter-hour zone', () => {
    const kathmandu = parseBusinessHours('Mon-Fri 09:30-17:00', 'Asia/Kathmandu');
    const now = at('2025-01-06T02:00:00Z'); // Mon 07:45 NPT
    expect(describeOpening(kathmandu, now, now)).toBe('today at 09:30');
  });
});

describe('always open (no BUSINESS_HOURS)', () => {
  const always = parseBusinessHours(undefined, 'Europe/London');

  it('is open at any moment and opens now', () => {
    expect(isOpen(always, at('2025-01-11T03:00:00Z'))).toBe(true);
    expect(nextOpening(always, at('2025-01-11T03:00:00Z'))).toEqual(at('2025-01-11T03:00:00Z'));
    expect(describeOpening(always, at('2025-01-11T03:00:00Z'), at('2025-01-11T03:00:00Z'))).toBe('now');
  });

  it('adds durations plainly, even across a DST change', () => {
    expect(addBusinessTime(always, at('2024-03-30T12:00:00Z'), 24 * HOUR)).toEqual(
      at('2024-03-31T12:00:00Z'),
    );
  });
});

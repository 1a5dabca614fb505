/**
 * Business hours: when the humans behind Rapport are expected to be at their desks, in the
 * business's own IANA time zone. SLA timers and the acknowledgements we send customers ("we'll
 * get back to you tomorrow at 09:00") must respect opening hours, so the SLA clock here stops
 * outside them. Everything is computed on local wall time through Intl, never with a fixed UTC
 * offset, so results stay right across DST changes and in half- and quarter-hour zones.
 *
 * Pure: no I/O and no clock reads (callers pass `at` / `now`); nothing beyond Node's built-in Intl.
 */

/** Parsed opening hours in one IANA time zone. */
export interface BusinessHours {
  /** IANA zone name, e.g. 'Europe/London'. */
  timeZone: string;
  /** Per weekday 0=Sunday..6=Saturday: open intervals in minutes since local midnight, sorted, non-overlapping. Empty = closed all day. */
  week: { start: number; end: number }[][];
  /** Always open (no BUSINESS_HOURS configured). */
  always: boolean;
}

type Interval = { start: number; end: number };

/** Spec day names in the order ranges run (Mon-Fri, Sat-Sun); index i is JS weekday (i + 1) % 7. */
const SPEC_DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
const DAY_ABBREVIATIONS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;
const DAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] as const;
const MONTH_NAMES = [
  'January', 'February', 'March', 'April', 'May', 'June',
  'July', 'August', 'September', 'October', 'November', 'December',
] as const; // prettier-ignore
const MINUTES_PER_DAY = 24 * 60;
const MS_PER_MINUTE = 60_000;
const MS_PER_DAY = 86_400_000;

/**
 * Parses e.g. 'Mon-Fri 09:00-17:00; Sat 10:00-14:00'. Days are Mon Tue Wed Thu Fri Sat Sun
 * (any case), as ranges (Mon-Fri; Fri-Mon wraps over the weekend) or lists (Mon,Wed); a day may
 * have several intervals ('Mon 09:00-12:00,13:00-17:00'); '24:00' is allowed as an end. Empty or
 * undefined means always open. Throws one Error naming every problem found.
 */
export function parseBusinessHours(spec: string | undefined, timeZone: string | undefined): BusinessHours {
  const problems: string[] = [];
  const zoneName = timeZone?.trim() ?? '';
  let zone = 'UTC';
  if (zoneName !== '') {
    try {
      zone = new Intl.DateTimeFormat('en-US', { timeZone: zoneName }).resolvedOptions().timeZone;
    } catch {
      problems.push(`'${zoneName}' is not a known IANA time zone (e.g. Europe/London, America/New_York)`);
    }
  }
  const week: Interval[][] = Array.from({ length: 7 }, () => []);
  const text = spec?.trim() ?? '';
  if (text === '') {
    if (problems.length > 0) throw new Error(problems.join('; '));
    return { timeZone: zone, week, always: true };
  }
  if (zoneName === '') problems.push('business hours need a time zone, e.g. Europe/London');

  for (const clause of text.split(';').map((c) => c.trim())) {
    if (clause === '') continue;
    const match = /^([^\d]*?)\s*(\d.*)$/.exec(clause);
    if (!match?.[1] || !match[2]) {
      problems.push(`'${clause}' should be days then hours, e.g. 'Mon-Fri 09:00-17:00'`);
      continue;
    }
    const days = parseDays(match[1], problems);
    const intervals = parseIntervals(match[2], problems);
    for (const day of days) week[day]?.push(...intervals);
  }

  week.forEach((intervals, day) => {
    intervals.sort((a, b) => a.start - b.start);
    for (let i = 1; i < intervals.length; i++) {
      const [previous, current] = [intervals[i - 1]!, intervals[i]!];
      if (current.start < previous.end) {
        problems.push(
          `${DAY_ABBREVIATIONS[day]} ${formatInterval(previous)} overlaps ${formatInterval(current)}`,
        );
      }
    }
  });
  if (problems.length > 0) throw new Error(problems.join('; '));
  return { timeZone: zone, week, always: false };
}

/** JS weekdays (0=Sunday) named by a days part such as 'Mon-Fri', 'Mon,Wed' or 'Sat-Sun'. */
function parseDays(text: string, problems: string[]): number[] {
  const days: number[] = [];
  const indexOf = (name: string): number | undefined => {
    const index = SPEC_DAYS.indexOf(name.trim().toLowerCase() as (typeof SPEC_DAYS)[number]);
    if (index >= 0) return index;
    problems.push(`'${name.trim()}' is not a day (use Mon Tue Wed Thu Fri Sat Sun)`);
    return undefined;
  };
  for (const item of text.split(',')) {
    const ends = item.split('-').map(indexOf);
    const [first, last] = [ends[0], ends[ends.length - 1]];
    if (ends.length > 2) problems.push(`'${item.trim()}' is not a day or a range like Mon-Fri`);
    if (ends.length > 2 || first === undefined || last === undefined) continue;
    for (let i = first; ; i = (i + 1) % 7) {
      days.push((i + 1) % 7);
      if (i === last) break;
    }
  }
  return days;
}

/** Intervals from an hours part such as '09:00-17:00' or '09:00-12:00,13:00-17:00'. */
function parseIntervals(text: string, problems: string[]): Interval[] {
  const intervals: Interval[] = [];
  for (const item of text.split(',').map((i) => i.trim())) {
    const match = /^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$/.exec(item);
    if (!match) {
      problems.push(`'${item}' is not a time range like 09:00-17:00`);
      continue;
    }
    const [startHour = 0, startMinute = 0, endHour = 0, endMinute = 0] = match.slice(1).map(Number);
    const start = toMinutes(startHour, startMinute, false, problems);
    const end = toMinutes(endHour, endMinute, true, problems);
    if (start === undefined || end === undefined) continue;
    if (end <= start) {
      problems.push(
        `'${item}' ends before it starts (split overnight hours, e.g. 'Mon 22:00-24:00; Tue 00:00-06:00')`,
      );
      continue;
    }
    intervals.push({ start, end });
  }
  return intervals;
}

function toMinutes(hour: number, minute: number, isEnd: boolean, problems: string[]): number | undefined {
  if ((hour <= 23 && minute <= 59) || (isEnd && hour === 24 && minute === 0)) return hour * 60 + minute;
  problems.push(`'${pad(hour)}:${pad(minute)}' is not a valid time (00:00 to 23:59, or 24:00 as an end)`);
  return undefined;
}

export function isOpen(hours: BusinessHours, at: Date): boolean {
  return hours.always || stretchAt(hours, zoneClock(hours.timeZone), instant(at)).open;
}

/** The next moment at or after `at` when it is open (at itself when open now). */
export function nextOpening(hours: BusinessHours, at: Date): Date {
  let t = instant(at);
  if (hours.always) return new Date(t);
  assertSomeHours(hours);
  const clock = zoneClock(hours.timeZone);
  for (let stretch = stretchAt(hours, clock, t); !stretch.open; stretch = stretchAt(hours, clock, t)) {
    t = stretch.until;
  }
  return new Date(t);
}

/**
 * `at` plus `durationMs` of OPEN time (an SLA clock that stops outside business hours): the
 * earliest instant by which that much open time has elapsed, so a duration ending exactly at
 * closing time gives the closing time and 0 gives `at`. Always-open: plain addition.
 */
export function addBusinessTime(hours: BusinessHours, at: Date, durationMs: number): Date {
  if (!Number.isFinite(durationMs) || durationMs < 0) {
    throw new RangeError(`duration must be a finite number of milliseconds >= 0, got ${durationMs}`);
  }
  let t = instant(at);
  if (hours.always || durationMs === 0) return new Date(t + durationMs);
  assertSomeHours(hours);
  const clock = zoneClock(hours.timeZone);
  let remaining = durationMs;
  for (;;) {
    const stretch = stretchAt(hours, clock, t);
    if (stretch.open) {
      if (remaining <= stretch.until - t) return new Date(t + remaining);
      remaining -= stretch.until - t;
    }
    t = stretch.until;
  }
}

/**
 * A short human phrase, in the business's zone, for when we next open at or after `at`,
 * relative to `now`: 'now', 'today at 09:00', 'tomorrow at 09:00', 'Monday at 09:00', or
 * beyond the coming week 'Monday 14 July at 09:00'.
 */
export function describeOpening(hours: BusinessHours, at: Date, now: Date): string {
  const opening = nextOpening(hours, at).getTime();
  const nowMs = instant(now);
  if (opening <= nowMs) return 'now';
  const clock = zoneClock(hours.timeZone);
  const [when, today] = [clock(opening), clock(nowMs)];
  const days = Math.round((when.localMidnight - today.localMidnight) / MS_PER_DAY);
  const time = `${pad(Math.floor(when.minute / 60))}:${pad(when.minute % 60)}`;
  const date = new Date(when.localMidnight);
  const day =
    days === 0 ? 'today'
    : days === 1 ? 'tomorrow'
    : days < 7 ? DAY_NAMES[when.weekday]
    : `${DAY_NAMES[when.weekday]} ${date.getUTCDate()} ${MONTH_NAMES[date.getUTCMonth()]}`; // prettier-ignore
  return `${day} at ${time}`;
}

/** Local wall time of an instant in one zone. */
interface WallTime {
  /** The local calendar date's midnight, as if it were UTC (a day number in ms). */
  localMidnight: number;
  weekday: number;
  /** Whole minutes since local midnight. */
  minute: number;
  /** Local wall time minus UTC, in ms (whole seconds). */
  offsetMs: number;
}
type Clock = (ms: number) => WallTime;

/** One formatter per call of a public function: cheap to reuse, and no module-level cache. */
function zoneClock(timeZone: string): Clock {
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  return (ms) => {
    const parts = format.formatToParts(ms);
    const field = (type: Intl.DateTimeFormatPartTypes) => Number(parts.find((p) => p.type === type)?.value);
    const localMidnight = Date.UTC(field('year'), field('month') - 1, field('day'));
    const minute = field('hour') * 60 + field('minute');
    const wholeSecond = ms - (((ms % 1000) + 1000) % 1000);
    const offsetMs = localMidnight + minute * MS_PER_MINUTE + field('second') * 1000 - wholeSecond;
    return { localMidnight, weekday: new Date(localMidnight).getUTCDay(), minute, offsetMs };
  };
}

/**
 * Whether it is open at `t`, and the instant (> t) until which that certainly holds: the next
 * interval edge or local midnight, or an earlier UTC-offset change. Stopping at offset changes
 * keeps wall-time arithmetic exact: a start inside a spring-forward gap opens at the first
 * valid instant, and hours repeated by a fall-back are open both times round.
 */
function stretchAt(hours: BusinessHours, clock: Clock, t: number): { open: boolean; until: number } {
  const wall = clock(t);
  const intervals = hours.week[wall.weekday] ?? [];
  const current = intervals.find((i) => i.start <= wall.minute && wall.minute < i.end);
  const edge = current?.end ?? intervals.find((i) => i.start > wall.minute)?.start ?? MINUTES_PER_DAY;
  const candidate = wall.localMidnight + edge * MS_PER_MINUTE - wall.offsetMs;
  const until =
    clock(candidate).offsetMs === wall.offsetMs
      ? candidate
      : offsetChange(clock, t, candidate, wall.offsetMs);
  return { open: current !== undefined, until };
}

/** The first whole second in (from, to] whose UTC offset is not `offsetMs` (one exists at `to`). */
function offsetChange(clock: Clock, from: number, to: number, offsetMs: number): number {
  let [low, high] = [Math.floor(from / 1000), Math.ceil(to / 1000)];
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (clock(middle * 1000).offsetMs === offsetMs) low = middle;
    else high = middle;
  }
  return high * 1000;
}

function assertSomeHours(hours: BusinessHours): void {
  if (hours.week.every((intervals) => intervals.length === 0)) {
    throw new RangeError('business hours are never open (every day is closed)');
  }
}

function instant(date: Date): number {
  const ms = date.getTime();
  if (Number.isNaN(ms)) throw new RangeError('expected a valid Date');
  return ms;
}

function formatInterval({ start, end }: Interval): string {
  return `${pad(Math.floor(start / 60))}:${pad(start % 60)}-${pad(Math.floor(end / 60))}:${pad(end % 60)}`;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

/**
 * Phone-number identity rules: pure functions, no I/O.
 *
 * One person texting us over SMS, Twilio WhatsApp, WhatsApp Cloud and whatsapp-web.js must be ONE
 * customer (docs: DESIGN.md "Identity resolution"). The providers spell the same line differently:
 *
 *   Twilio SMS            +14155550123
 *   Twilio WhatsApp       whatsapp:+14155550123
 *   WhatsApp Cloud wa_id  14155550123              (international digits, no '+')
 *   whatsapp-web.js       14155550123@c.us         (also `@s.whatsapp.net`, optionally `:<device>`)
 *   agents / customers    (415) 555-0123, 020 7946 0958, 0044 20 7946 0958, …
 *
 * so every form is reduced to one canonical E.164 string ("+<digits>") and the identity key is
 * `phone:<that>`.
 *
 * Parsing
 * - '+…', `whatsapp:…` and `…@c.us` / `…@s.whatsapp.net` are international: the digits include the
 *   country calling code.
 * - Anything else is ambiguous (a wa_id `14155550123` looks like a national number). It is parsed
 *   in the default region first; if that is not a valid number, a leading `00` is read as the
 *   international prefix, and finally the bare digits are read as international (this is what
 *   makes wa_ids work). The last step is skipped for text that is clearly national (a leading
 *   trunk '0' or parentheses), so `(415) 555-0123` in region GB is not re-read as +41 (CH).
 * - Exception to "default region first": digits that begin with the default region's own calling
 *   code are read as international first. In countries with variable-length numbers a home
 *   customer's wa_id is often ALSO a valid national number: with region DE, `4915123456789` is
 *   +49 151 23456789 (the wa_id) but also parses as the national number 0491 5123456789 (Leer).
 *   People write national numbers with the trunk '0' (`0151 …`), machines send wa_ids, so the
 *   international reading wins when it is valid; otherwise the national reading is still tried.
 * - Validity uses libphonenumber-js `max` metadata (number ranges, not only lengths). Input that
 *   is explicitly international (it came from a provider that delivered it) is still accepted when
 *   it has a possible length for its country but falls in a range the metadata does not know yet:
 *   refusing a real customer because our copy of the number plan is stale is worse than a rare
 *   junk key. Letters, extensions, '+' in the middle, and over-long input are rejected.
 *
 * WhatsApp quirks (one person stays one customer whichever variant arrives; each canonical form is
 * chosen so that it is stable, i.e. canonicalising twice changes nothing)
 * - Brazil (+55): mobiles have 11 national digits: 2-digit area code + '9' + 8 digits (the 9 was
 *   added nationally 2012–2016). wa_ids of accounts created before that omit the 9 (10 national
 *   digits, subscriber part starting 6–9). Canonical = WITH the 9. Landlines (10 digits, subscriber
 *   starting 2–5) are left alone.
 * - Argentina (+54): WhatsApp (and libphonenumber's own E.164) writes mobiles as +54 9 <area>
 *   <number>, SMS senders and people write +54 <area> <number>, and national forms carry the
 *   mobile prefix `15` after the area code (`011 15 2345-6789`; libphonenumber turns that into the
 *   9 form). The 9 (international) and 15 (national) are dialling markers meaning "this is a
 *   mobile", not part of the subscriber number: all these denote the same line. Canonical = WITHOUT
 *   the 9: '+54' + the 10 national digits (area code + number).
 * - Mexico (+52): mobiles used to be dialled with a '1' after the country code, and old WhatsApp
 *   ids still read 521 + 10 digits. Since 2019 Mexico has a closed 10-digit plan with no mobile
 *   '1'. Canonical = without the 1 ('+52' + 10 digits).
 *
 * `phoneVariants` lists the other spellings of a canonical number (10-digit BR, 549 AR, 521 MX),
 * canonical first, for lookups by agents or data imported from elsewhere.
 */
import {
  getCountryCallingCode,
  parsePhoneNumberFromString,
  type CountryCode,
  type PhoneNumber,
} from 'libphonenumber-js/max';

/** Longer input is not a phone number (and is not worth running through the parser). */
const MAX_INPUT_LENGTH = 64;
/** `whatsapp:` (Twilio). */
const WHATSAPP_PREFIX = /^whatsapp:/i;
/** whatsapp-web.js / Baileys JIDs: `<digits>[:<device>]@c.us` or `@s.whatsapp.net`. */
const WHATSAPP_JID = /^(\d+)(?::\d+)?@(?:c\.us|s\.whatsapp\.net)$/i;
/** What a typed phone number may consist of: an optional leading '+', digits and separators. */
const PHONE_TEXT = /^\+?[\d\s().\-/\u2010-\u2015]+$/;

interface Input {
  /** The text to hand to libphonenumber in the default region. */
  text: string;
  /** All digits of the input, in order. */
  digits: string;
  /** The digits include the country calling code. */
  international: boolean;
}

function readInput(raw: string): Input | undefined {
  let text = raw.trim();
  if (text.length === 0 || text.length > MAX_INPUT_LENGTH) return undefined;

  const jid = WHATSAPP_JID.exec(text);
  if (jid) {
    const digits = jid[1] ?? '';
    return { text: `+${digits}`, digits, international: true };
  }

  let international = false;
  if (WHATSAPP_PREFIX.test(text)) {
    text = text.replace(WHATSAPP_PREFIX, '').trim();
    international = true;
  }
  if (!PHONE_TEXT.test(text)) return undefined;
  const digits = text.replace(/\D/g, '');
  if (digits.length === 0) return undefined;
  if (text.startsWith('+')) international = true;
  return { text, digits, international };
}

/** Parses digits that start with a country calling code. */
function parseInternational(digits: string): PhoneNumber | undefined {
  return parsePhoneNumberFromString(`+${digits}`);
}

/** Applies the BR/AR/MX WhatsApp rules to (country calling code, national number). */
function canonicalNational(callingCode: string, national: string): string {
  switch (callingCode) {
    case '55': {
      // BR mobile without the ninth digit: AA + [6-9]XXXXXXX → AA + 9 + [6-9]XXXXXXX.
      const m = /^(\d{2})([6-9]\d{7})$/.exec(national);
      return m ? `${m[1] ?? ''}9${m[2] ?? ''}` : national;
    }
    case '54': {
      // AR mobile marker: 9 + 10 digits → 10 digits. (No AR area code starts with 9.)
      const m = /^9(\d{10})$/.exec(national);
      return m?.[1] ?? national;
    }
    case '52': {
      // MX old mobile '1': 1 + 10 digits → 10 digits.
      const m = /^1(\d{10})$/.exec(national);
      return m?.[1] ?? national;
    }
    default:
      return national;
  }
}

/** Every spelling of (calling code, canonical national number), canonical first, as E.164. */
function variantsOf(callingCode: string, national: string): string[] {
  const canonical = `+${callingCode}${national}`;
  switch (callingCode) {
    case '55': {
      const m = /^(\d{2})9([6-9]\d{7})$/.exec(national);
      return m ? [canonical, `+55${m[1] ?? ''}${m[2] ?? ''}`] : [canonical];
    }
    case '54':
      return /^\d{10}$/.test(national) ? [canonical, `+549${national}`] : [canonical];
    case '52':
      return /^\d{10}$/.test(national) ? [canonical, `+521${national}`] : [canonical];
    default:
      return [canonical];
  }
}

type Check = 'valid' | 'possible';

/**
 * The canonical E.164 of a parsed number if it (or another spelling of the same line — the
 * metadata knows AR mobiles only in the 9 form, BR mobiles only with the ninth digit) passes
 * `check`.
 */
function accept(parsed: PhoneNumber | undefined, check: Check): string | undefined {
  if (!parsed) return undefined;
  const callingCode = String(parsed.countryCallingCode);
  const national = canonicalNational(callingCode, String(parsed.nationalNumber));
  const variants = variantsOf(callingCode, national);
  const ok = variants.some((v) => {
    const p = parseInternational(v.slice(1));
    return p !== undefined && (check === 'valid' ? p.isValid() : p.isPossible());
  });
  return ok ? variants[0] : undefined;
}

/**
 * The canonical E.164 form ("+<digits>") of a phone number in any form a provider or a person
 * writes it, or undefined if it is not a plausible phone number. See the module comment.
 */
export function normalizePhone(raw: string, defaultRegion: CountryCode): string | undefined {
  const input = readInput(raw);
  if (!input) return undefined;

  if (input.international) {
    if (input.digits.startsWith('0')) return undefined;
    const parsed = parseInternational(input.digits);
    return accept(parsed, 'valid') ?? accept(parsed, 'possible');
  }

  const national = (): PhoneNumber | undefined => parsePhoneNumberFromString(input.text, defaultRegion);
  const international = (): PhoneNumber | undefined => parseInternational(input.digits);
  let candidates: (() => PhoneNumber | undefined)[];
  if (input.digits.startsWith('00')) {
    candidates = [national, () => parseInternational(input.digits.slice(2))];
  } else if (input.digits.startsWith('0') || /[()]/.test(input.text)) {
    candidates = [national];
  } else if (input.digits.startsWith(getCountryCallingCode(defaultRegion))) {
    // A wa_id of a home-country customer: read as international first (see the module comment).
    candidates = [international, national];
  } else {
    candidates = [national, international];
  }
  for (const candidate of candidates) {
    const e164 = accept(candidate(), 'valid');
    if (e164) return e164;
  }
  return undefined;
}

/** The identity key (`phone:+<E.164>`) of a phone number in any form, or undefined. */
export function phoneIdentityKey(raw: string, defaultRegion: CountryCode): string | undefined {
  const e164 = normalizePhone(raw, defaultRegion);
  return e164 === undefined ? undefined : `phone:${e164}`;
}

/**
 * The E.164 spellings under which the line of `e164` may be known, canonical first: for BR the
 * 10-digit form without the ninth digit, for AR the +549 form, for MX the +521 form; for other
 * countries just the canonical form. `e164` may be any spelling ('+' and digits). Empty if it is
 * not a '+' number.
 */
export function phoneVariants(e164: string): string[] {
  if (!/^\+\d{1,17}$/.test(e164)) return [];
  const parsed = parseInternational(e164.slice(1));
  if (!parsed) return [];
  const callingCode = String(parsed.countryCallingCode);
  return variantsOf(callingCode, canonicalNational(callingCode, String(parsed.nationalNumber)));
}

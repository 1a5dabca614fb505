/**
 * Corpus: generated people (300 in the suite, 2,000 with `npm run test:corpus`), each writing from several channels with the spellings real
 * providers use for their number (SMS E.164, Twilio `whatsapp:`, WhatsApp Cloud wa_id digits,
 * whatsapp-web.js `@c.us`, national and `00` forms, Brazil's missing ninth digit, Argentina's 549,
 * Mexico's 521), and some with a Messenger identity linked by a verified claim. Outcome: every
 * person is exactly one customer and no two people share one. Against the real MongoDB-protocol
 * server, with a bounded pool (people in parallel, each person's messages in order).
 */
import { type Types } from 'mongoose';
import type { Address, Channel, InboundMessage, Provider } from '../../src/canonical';
import { createClaimService, type ClaimService } from '../../src/identity/claims';
import { createMergeService } from '../../src/identity/merge';
import type { IdentityModels } from '../../src/identity/models';
import { normalizePhone } from '../../src/identity/phone';
import type { IdentityStore } from '../../src/identity/resolve';
import { liveCustomerById } from '../../src/identity/tombstones';
import { identityDb, type IdentityDb } from '../helpers/identity-db';

/** CORPUS_PEOPLE sets the size: 300 in the suite (FerretDB v1 manages ~20 resolutions/s on 2 cores), 2,000 with `npm run test:corpus`. */
const PEOPLE = Number(process.env.CORPUS_PEOPLE ?? 300);
const CONCURRENCY = 8;
/** FerretDB v1 does some 20–60 resolutions/s on this 2-core machine: 2,000 people take minutes. */
const TIMEOUT_MS = 900_000;

/** Work still running (even after a timeout): afterAll waits for it before dropping the database. */
const running = new Set<Promise<unknown>>();

let db: IdentityDb;
let models: IdentityModels;
let store: IdentityStore;
let claims: ClaimService;

beforeAll(async () => {
  db = await identityDb('corpus');
  models = db.models;
  store = db.store;
  claims = createClaimService({ models, merges: createMergeService(models) });
});

afterAll(async () => {
  // Dropping a FerretDB v1 database under in-flight writes crashes the server (SIGBUS).
  await Promise.allSettled([...running]);
  await db.drop();
});

/** Deterministic PRNG (mulberry32), so a failure can be reproduced. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(20240607);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const digits = (n: number, first = '0123456789') =>
  pick([...first]) + Array.from({ length: n - 1 }, () => String(Math.floor(random() * 10))).join('');

interface Form {
  raw: string;
  channel: Channel;
  provider: Provider;
}

/** A person's number: its canonical E.164 and the spellings its messages arrive in. */
interface Line {
  canonical: string;
  forms: Form[];
}

const sms = (raw: string): Form => ({ raw, channel: 'sms', provider: 'twilio' });
const twilioWa = (raw: string): Form => ({ raw: `whatsapp:${raw}`, channel: 'whatsapp', provider: 'twilio' });
const cloud = (raw: string): Form => ({ raw, channel: 'whatsapp', provider: 'whatsapp-cloud' });
const web = (raw: string): Form => ({ raw: `${raw}@c.us`, channel: 'whatsapp', provider: 'whatsapp-web' });

const COUNTRIES: (() => Line)[] = [
  // US (default region): national forms too.
  () => {
    const area = pick(['212', '213', '305', '312', '404', '415', '512', '617', '646', '702']);
    const exch = digits(3, '23456789');
    const sub = digits(4);
    const n = `${area}${exch}${sub}`;
    return {
      canonical: `+1${n}`,
      forms: [
        sms(`+1${n}`),
        twilioWa(`+1${n}`),
        cloud(`1${n}`),
        web(`1${n}`),
        sms(`(${area}) ${exch}-${sub}`),
        sms(`${area}.${exch}.${sub}`),
        sms(`+1 ${area} ${exch} ${sub}`),
      ],
    };
  },
  // GB mobile.
  () => {
    const n = `7${pick(['4', '5', '7', '8', '9'])}${digits(8)}`;
    return {
      canonical: `+44${n}`,
      forms: [
        sms(`+44${n}`),
        twilioWa(`+44${n}`),
        cloud(`44${n}`),
        web(`44${n}`),
        sms(`0044 ${n}`),
        sms(`011 44 ${n}`),
      ],
    };
  },
  // BR mobile: canonical with the ninth digit; WhatsApp ids of older accounts without it.
  () => {
    const area = pick(['11', '21', '31', '41', '51', '61', '71', '81']);
    const sub = digits(8, '6789');
    return {
      canonical: `+55${area}9${sub}`,
      forms: [
        sms(`+55${area}9${sub}`),
        sms(`+55 ${area} 9${sub.slice(0, 4)}-${sub.slice(4)}`),
        twilioWa(`+55${area}9${sub}`),
        cloud(`55${area}${sub}`),
        web(`55${area}${sub}`),
        cloud(`55${area}9${sub}`),
      ],
    };
  },
  // AR mobile: canonical without the 9; WhatsApp sends 549.
  () => {
    const n = `11${digits(8, '2345678')}`;
    return {
      canonical: `+54${n}`,
      forms: [
        sms(`+54${n}`),
        twilioWa(`+549${n}`),
        cloud(`549${n}`),
        web(`549${n}`),
        sms(`+54 9 ${n.slice(0, 2)} ${n.slice(2)}`),
      ],
    };
  },
  // MX: canonical without the old mobile 1.
  () => {
    const n = `55${digits(8, '123456789')}`;
    return {
      canonical: `+52${n}`,
      forms: [sms(`+52${n}`), twilioWa(`+52${n}`), cloud(`521${n}`), web(`521${n}`)],
    };
  },
  // DE mobile.
  () => {
    const n = `15${pick(['1', '2', '7'])}${digits(8)}`;
    return {
      canonical: `+49${n}`,
      forms: [sms(`+49${n}`), cloud(`49${n}`), web(`49${n}`), twilioWa(`+49${n}`)],
    };
  },
];

interface Person {
  line: Line;
  /** The forms this person writes with, in order. */
  writes: Form[];
  /** Messenger PSID linked by a verified claim: before their phone messages, or after. */
  messenger?: { psid: string; claimFirst: boolean };
}

function people(): Person[] {
  const seen = new Set<string>();
  const out: Person[] = [];
  while (out.length < PEOPLE) {
    const line = pick(COUNTRIES)();
    // The generator must produce real numbers (in ranges the metadata knows: a bare wa_id is only
    // accepted when valid), and each person a different one.
    if (normalizePhone(line.canonical.slice(1), 'US') !== line.canonical || seen.has(line.canonical))
      continue;
    seen.add(line.canonical);
    const count = random() < 0.3 ? 3 : 2;
    const shuffled = [...line.forms].sort(() => random() - 0.5);
    const writes = shuffled.slice(0, count);
    // At least two different channels/providers per person.
    if (new Set(writes.map((w) => `${w.channel}/${w.provider}`)).size < 2) {
      writes.push(line.forms.find((f) => f.provider !== writes[0]!.provider) ?? line.forms[0]!);
    }
    const i = out.length;
    out.push({
      line,
      writes,
      messenger: i % 20 === 0 ? { psid: `psid${i}`, claimFirst: i % 40 === 0 } : undefined,
    });
  }
  return out;
}

let seq = 0;
function message(from: Address, form: { channel: Channel; provider: Provider }): InboundMessage {
  const id = `c${++seq}`;
  const at = new Date().toISOString();
  return {
    key: `${form.provider}:${id}`,
    channel: form.channel,
    provider: form.provider,
    providerMessageId: id,
    from,
    to: '+15550001111',
    parts: [],
    sentAt: at,
    receivedAt: at,
  };
}

/**
 * Runs `work` over `items`, `concurrency` at a time. On the first failure it stops taking items and
 * waits for the running ones before rethrowing: dropping the database under in-flight writes
 * crashes FerretDB v1 (SIGBUS), taking every other test down with it.
 */
async function pool<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const all = Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (!failure && next < items.length) {
        try {
          await work(items[next++]!);
        } catch (error) {
          failure ??= { error };
        }
      }
    }),
  );
  running.add(all);
  await all;
  running.delete(all);
  if (failure) throw failure.error;
}

const PAGE = '5550001';
const MESSENGER = { channel: 'messenger' as const, provider: 'messenger' as const };

/** The Messenger side writes the number, gets the code, sends it back on Messenger. */
async function claimByMessenger(person: Person): Promise<void> {
  const from: Address = { kind: 'psid', pageId: PAGE, psid: person.messenger!.psid };
  const m = await store.resolveCustomer(message(from, MESSENGER));
  const start = await claims.startClaim({
    customerId: m.customer._id,
    identityKey: m.identity.key,
    claim: { kind: 'phone', value: person.line.canonical },
  });
  const verified = await claims.verifyClaim({
    customerId: m.customer._id,
    identityKey: m.identity.key,
    text: start.code,
  });
  if (verified.outcome !== 'verified') throw new Error(`claim not verified: ${verified.outcome}`);
}

describe('identity corpus', () => {
  it(
    `makes each of ${PEOPLE} people writing from several apps exactly one customer, and no two people one`,
    async () => {
      const corpus = people();
      const started = Date.now();
      await pool(corpus, CONCURRENCY, async (person) => {
        if (person.messenger?.claimFirst) await claimByMessenger(person);
        for (const form of person.writes)
          await store.resolveCustomer(message({ kind: 'phone', e164: form.raw }, form));
        if (person.messenger && !person.messenger.claimFirst) await claimByMessenger(person);
      });
      const elapsed = Date.now() - started;

      // Every identity of a person leads to one live customer; no customer serves two people.
      const owner = new Map<string, number>();
      let messengerPeople = 0;
      await pool(
        corpus.map((p, i) => ({ p, i })),
        CONCURRENCY,
        async ({ p, i }) => {
          const keys = [`phone:${p.line.canonical}`];
          if (p.messenger) {
            keys.push(`psid:${PAGE}:${p.messenger.psid}`);
            messengerPeople++;
          }
          const live = new Set<string>();
          for (const key of keys) {
            const identity = await models.Identity.findOne({ key }).lean();
            expect(identity).not.toBeNull();
            const customer = await liveCustomerById(models.Customer, identity!.customerId as Types.ObjectId);
            live.add(String(customer?._id));
          }
          expect(live.size).toBe(1);
          const [id] = [...live];
          expect(owner.has(id!)).toBe(false);
          owner.set(id!, i);
        },
      );
      expect(owner.size).toBe(PEOPLE);
      expect(messengerPeople).toBe(PEOPLE / 20);
      // Live customers = people; every other customer is a tombstone of a claim merge.
      expect(await models.Customer.countDocuments({ mergedInto: null })).toBe(PEOPLE);
      expect(await models.Identity.countDocuments({ kind: 'phone' })).toBe(PEOPLE);
      const resolutions = corpus.reduce((sum, p) => sum + p.writes.length, 0);
      console.info(
        `corpus: ${PEOPLE} people, ${resolutions} phone messages, ${messengerPeople} claims in ${elapsed} ms`,
      );
    },
    TIMEOUT_MS,
  );
});

/**
 * The real-payload corpus (test/fixtures/real/, sources in INDEX.md): every payload recorded from
 * the providers' documentation and other open-source projects goes through the real route, signed
 * with the test secret, into a whole Rapport (real Redis, FerretDB, the Slack emulator). Each must be
 * answered 2xx; what the agent then reads in Slack for it is the committed snapshot; delivered a
 * second time, it adds nothing (one post per event).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { InboundEvent } from '../../src/canonical';
import { signMetaPayload } from '../../src/channels/meta/signature';
import { normalizeMessengerPayload } from '../../src/channels/messenger/normalize';
import { signSlackRequest } from '../../src/channels/slack/signature';
import { parseForm } from '../../src/channels/twilio/adapter';
import { normalizeTwilioMessage } from '../../src/channels/twilio/normalize';
import { signTwilioRequest } from '../../src/channels/twilio/signature';
import { normalizeWhatsAppCloudPayload } from '../../src/channels/whatsapp-cloud/normalize';
import { TEST_META, TEST_TWILIO } from '../helpers/env';
import { eventually } from '../helpers/eventually';
import { PUBLIC_URL, SLACK_SECRET, startWorld, type World } from '../helpers/world';

interface Entry {
  file: string;
  route: string;
  source: string;
  licence: string;
  changes: string;
}

const ROOT = path.join(__dirname, '../fixtures/real');
const INDEX = JSON.parse(readFileSync(path.join(ROOT, 'index.json'), 'utf8')) as Entry[];
const INBOX = 'C0REALINBOX';

function bytesOf(entry: Entry): Buffer {
  const raw = readFileSync(path.join(ROOT, entry.file));
  return entry.file.endsWith('.form') ? Buffer.from(raw.toString('utf8').trim()) : raw;
}

function headersFor(entry: Entry, body: Buffer): Record<string, string> {
  if (entry.route.startsWith('/webhooks/twilio'))
    return {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': signTwilioRequest(TEST_TWILIO.authToken, PUBLIC_URL + entry.route, parseForm(body)),
    };
  if (entry.route === '/webhooks/meta')
    return { 'content-type': 'application/json', 'x-hub-signature-256': signMetaPayload(TEST_META.appSecret, body) };
  return { 'content-type': 'application/json', ...signSlackRequest(SLACK_SECRET, body.toString('utf8')) };
}

/** The keys of the customer messages in a payload: where to find its posts in Slack. */
function messageKeys(entry: Entry, body: Buffer): string[] {
  let events: InboundEvent[] = [];
  if (entry.route === '/webhooks/twilio') {
    const message = normalizeTwilioMessage(parseForm(body), new Date());
    events = message ? [{ type: 'message', message }] : [];
  } else if (entry.route === '/webhooks/meta') {
    const json = JSON.parse(body.toString('utf8')) as { object: string };
    const batch =
      json.object === 'page'
        ? normalizeMessengerPayload(json, new Date())
        : normalizeWhatsAppCloudPayload(json, new Date());
    events = batch.events;
  }
  return events.flatMap((e) => (e.type === 'message' ? [e.message.key] : []));
}

/** Every message Rapport posted in Slack for an event key (its outbox key is in the metadata). */
function postsFor(w: World, key: string): string[] {
  return w.slack
    .callsTo('chat.postMessage')
    .filter((c) => {
      const metadata = c.args.metadata as { event_payload?: { key?: string } } | undefined;
      return metadata?.event_payload?.key === key;
    })
    .map((c) => String(c.args.text));
}

async function deliver(w: World, entry: Entry): Promise<number> {
  const body = bytesOf(entry);
  const res = await fetch(`${w.t.baseUrl}${entry.route}`, {
    method: 'POST',
    body,
    headers: headersFor(entry, body),
  });
  await res.arrayBuffer();
  return res.status;
}

describe('real payloads through the real routes', () => {
  let w: World;
  const keys = new Map<string, string[]>();

  beforeAll(async () => {
    w = await startWorld();
    await w.addAgent({ slackUserId: 'U0REALAGENT', name: 'Ana', inboxChannelId: INBOX });
    for (const entry of INDEX) keys.set(entry.file, messageKeys(entry, bytesOf(entry)));
  }, 60_000);
  afterAll(async () => {
    await w.stop();
  });

  it('holds at least 60 payloads, each named with its source and licence', () => {
    expect(INDEX.length).toBeGreaterThanOrEqual(60);
    for (const entry of INDEX) {
      expect(entry.source).not.toBe('');
      expect(entry.licence).not.toBe('');
    }
    const routes = new Set(INDEX.map((e) => `${e.route} ${e.file.split('/')[0]}`));
    expect([...routes].sort()).toEqual([
      '/slack/events slack',
      '/webhooks/meta messenger',
      '/webhooks/meta whatsapp-cloud',
      '/webhooks/twilio twilio',
      '/webhooks/twilio/status twilio',
    ]);
  });

  it('answers every payload 2xx and shows the agent what each customer sent', async () => {
    const statuses: Record<string, number> = {};
    for (const entry of INDEX) statuses[entry.file] = await deliver(w, entry);
    expect(Object.entries(statuses).filter(([, s]) => s < 200 || s > 299)).toEqual([]);

    const expected = [...keys.values()].flat();
    await eventually(
      async () => expected.filter((k) => postsFor(w, k).length === 0),
      (missing) => missing.length === 0,
      60_000,
    );
    const shown: Record<string, string[]> = {};
    for (const entry of INDEX) shown[entry.file] = (keys.get(entry.file) ?? []).flatMap((k) => postsFor(w, k));
    expect(shown).toMatchSnapshot();
  }, 120_000);

  it('posts each event once when every payload is delivered again', async () => {
    for (const entry of INDEX) expect(await deliver(w, entry)).toBeLessThan(300);
    // A redelivery is caught at intake; give any (wrongly) queued work time to reach Slack.
    await new Promise((r) => setTimeout(r, 1_500));
    const counts = [...keys.values()].flat().map((k) => [k, postsFor(w, k).length]);
    expect(counts.filter(([, n]) => n !== 1)).toEqual([]);
  }, 60_000);
});

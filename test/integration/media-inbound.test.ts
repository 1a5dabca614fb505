/**
 * Customers' files reach the agent's Slack thread as files: fetched with each provider's own
 * authentication from the emulators (Graph media lookup + token-checked, expiring URL; Twilio Basic
 * auth + redirect; Messenger CDN URL), stored in GridFS, uploaded with Slack's external upload flow
 * into the thread, in order, exactly once. Bytes are compared end to end. Oversize, expired and
 * refused files produce a clear line and lose the message's text nothing.
 *
 * Wire formats: test/fixtures/meta/whatsapp-image.json (Meta's documented image webhook),
 * test/fixtures/meta/messenger-attachment.json, test/fixtures/twilio/whatsapp-media.form.
 */
import { randomBytes } from 'node:crypto';
import { eventually } from '../helpers/eventually';
import { fixtureBytes, twilioFixture } from '../helpers/fixtures';
import { CLOUD_PHONE_ID, PAGE_ID, startWorld, type World } from '../helpers/world';
import { Registry } from 'prom-client';
import { TEST_ADMIN_TOKEN, TEST_TWILIO } from '../helpers/env';
import { createMediaStore } from '../../src/media/store';
import { createRetentionPurge } from '../../src/privacy/retention';
import type { EmulatedMessage } from '../emulators/slack';
import { mediaThreads } from '../helpers/media-thread';

const ALEX = { slackUserId: 'U0ALEXM', name: 'Alex', inboxChannelId: 'C0MEDIA' };
const MAX = 200_000;

function cloudImage(waId: string, mediaId: string, caption?: string, mime = 'image/jpeg') {
  const payload = JSON.parse(fixtureBytes('meta/whatsapp-image.json').toString('utf8'));
  const value = payload.entry[0].changes[0].value;
  value.metadata.phone_number_id = CLOUD_PHONE_ID;
  value.contacts[0].wa_id = waId;
  const message = value.messages[0];
  message.from = waId;
  message.id = `wamid.${randomBytes(12).toString('hex')}`;
  message.timestamp = String(Math.floor(Date.now() / 1000));
  message.image = { ...message.image, id: mediaId, mime_type: mime };
  if (caption === undefined) delete message.image.caption;
  else message.image.caption = caption;
  return payload;
}

function messengerAttachment(psid: string, url: string) {
  const payload = JSON.parse(fixtureBytes('meta/messenger-attachment.json').toString('utf8'));
  payload.entry[0].id = PAGE_ID;
  const event = payload.entry[0].messaging[0];
  event.sender.id = psid;
  event.recipient.id = PAGE_ID;
  event.timestamp = Date.now();
  event.message.mid = `m_${randomBytes(12).toString('hex')}`;
  event.message.attachments[0].payload.url = url;
  return payload;
}

function twilioMedia(from: string, mediaUrl: string, body: string) {
  const { form } = twilioFixture('whatsapp-media');
  const sid = `MM${randomBytes(16).toString('hex')}`;
  return {
    ...(form as Record<string, string>),
    From: `whatsapp:${from}`,
    WaId: from.slice(1),
    To: 'whatsapp:+15550002222',
    AccountSid: TEST_TWILIO.accountSid,
    MessageSid: sid,
    SmsSid: sid,
    SmsMessageSid: sid,
    MediaUrl0: mediaUrl,
    Body: body,
  };
}

describe('inbound media: customers’ files in the Slack thread', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ MEDIA_MAX_BYTES: String(MAX) });
    await w.addAgent(ALEX);
  });
  afterAll(() => w.stop());

  const thread = () => mediaThreads(w, ALEX.inboxChannelId);
  const threadOf: ReturnType<typeof mediaThreads>['replies'] = (marker, done) =>
    thread().replies(marker, done);
  const fileBytes = (m: EmulatedMessage | undefined) => thread().fileBytes(m);

  test('a WhatsApp Cloud photo is fetched with the token and uploaded into the thread with its caption', async () => {
    const bytes = randomBytes(60_000);
    const mediaId = w.graph.addWhatsAppMedia(bytes, 'image/jpeg');
    const res = await w.metaWebhook(
      cloudImage('15550107001', mediaId, 'The box <!channel> arrived like this'),
    );
    expect(res.status).toBe(200);
    const replies = await threadOf(
      (m) => m.text.includes('The box'),
      (r) => r.some((m) => m.files),
    );
    const text = replies.find((m) => m.text.includes('The box'))!;
    expect(text.text).toContain(':paperclip: image-1.jpg\nThe box &lt;!channel&gt; arrived like this');
    const file = replies.find((m) => m.files)!;
    expect(replies.indexOf(file)).toBe(replies.indexOf(text) + 1);
    expect(file.files![0]!.name).toBe('image-1.jpg');
    expect(fileBytes(file)!.equals(bytes)).toBe(true);
    const lookups = w.graph.requests.filter((r) => r.path.endsWith(`/${mediaId}`));
    expect(lookups).toHaveLength(1);
    expect(lookups[0]!.headers.authorization).toBe('Bearer test-cloud-token');
    const download = w.graph.requests.find((r) => r.path === '/whatsapp_business/attachments/');
    expect(download?.headers.authorization).toBe('Bearer test-cloud-token');
    // Slack's current flow, into the thread.
    const complete = w.slack.callsTo('files.completeUploadExternal').at(-1)!;
    expect(complete.args.thread_ts).toBeDefined();
    expect(complete.args.channel_id).toBe(ALEX.inboxChannelId);
  });

  test('an expired WhatsApp media URL is asked for again', async () => {
    const bytes = randomBytes(30_000);
    const mediaId = w.graph.addWhatsAppMedia(bytes, 'application/pdf');
    w.graph.expireNextMediaUrls(1);
    await w.metaWebhook(cloudImage('15550107002', mediaId, 'receipt', 'application/pdf'));
    const replies = await threadOf(
      (m) => m.text.includes('receipt'),
      (r) => r.some((m) => m.files),
    );
    expect(fileBytes(replies.find((m) => m.files))!.equals(bytes)).toBe(true);
    expect(w.graph.requests.filter((r) => r.path.endsWith(`/${mediaId}`))).toHaveLength(2);
  });

  test('a URL that stays expired, and a refused lookup, each leave a clear line and keep the caption', async () => {
    const gone = w.graph.addWhatsAppMedia(randomBytes(1000), 'image/png');
    w.graph.expireNextMediaUrls(2);
    await w.metaWebhook(cloudImage('15550107003', gone, 'first try', 'image/png'));
    const first = await threadOf(
      (m) => m.text.includes('first try'),
      (r) => r.length > 0,
    );
    expect(first[0]!.text).toMatch(
      /:warning: The customer sent image\/png; it cannot be shown here: .*expired/,
    );
    expect(first.some((m) => m.files)).toBe(false);

    const refused = w.graph.addWhatsAppMedia(randomBytes(1000), 'image/png');
    w.graph.failNext({ status: 400, code: 100 }, { path: new RegExp(`/${refused}$`) });
    await w.metaWebhook(cloudImage('15550107004', refused, 'second try', 'image/png'));
    const second = await threadOf(
      (m) => m.text.includes('second try'),
      (r) => r.length > 0,
    );
    expect(second[0]!.text).toMatch(/it cannot be shown here: the provider refused the download \(.*400\)/);
  });

  test('a file over MEDIA_MAX_BYTES is described with its type, size and why, and nothing is uploaded', async () => {
    const mediaId = w.graph.addWhatsAppMedia(randomBytes(MAX + 50_000), 'video/mp4');
    const uploadsBefore = w.slack.callsTo('files.getUploadURLExternal').length;
    await w.metaWebhook(cloudImage('15550107005', mediaId, 'big video', 'video/mp4'));
    const replies = await threadOf(
      (m) => m.text.includes('big video'),
      (r) => r.length > 0,
    );
    expect(replies[0]!.text).toContain(
      'The customer sent video/mp4, 250 KB; it cannot be shown here: over the 200 KB limit (MEDIA_MAX_BYTES).',
    );
    expect(w.slack.callsTo('files.getUploadURLExternal').length).toBe(uploadsBefore);
  });

  test('a Twilio WhatsApp photo is fetched with Basic auth through the redirect, in order with the next message', async () => {
    const bytes = randomBytes(40_000);
    const mediaUrl = w.twilio.addMedia(bytes, 'image/jpeg');
    const from = '+15550107010';
    expect((await w.twilioWebhook(twilioMedia(from, mediaUrl, 'damaged box'))).status).toBe(200);
    expect((await w.twilioWhatsApp(from, 'and one more thing')).status).toBe(200);
    const replies = await threadOf(
      (m) => m.text.includes('damaged box'),
      (r) => r.some((m) => m.text.includes('one more thing')),
    );
    const order = replies.map((m) => (m.files ? 'file' : m.text.includes('damaged') ? 'text' : 'next'));
    expect(order).toEqual(expect.arrayContaining(['text', 'file', 'next']));
    expect(order.indexOf('file')).toBe(order.indexOf('text') + 1);
    expect(order.indexOf('next')).toBeGreaterThan(order.indexOf('file'));
    expect(fileBytes(replies.find((m) => m.files))!.equals(bytes)).toBe(true);
    const mediaGet = w.twilio.requests.find((r) => r.method === 'GET' && r.path.includes('/Media/ME'));
    expect(mediaGet?.authUser).toBe(TEST_TWILIO.accountSid);
  });

  test('a Messenger attachment is fetched from its payload URL', async () => {
    const bytes = randomBytes(20_000);
    const url = w.graph.addMessengerAttachment(bytes, 'image/png');
    await w.metaWebhook(messengerAttachment('7302918465099001', url));
    const replies = await eventually(
      async () => w.slack.messages(ALEX.inboxChannelId).filter((m) => m.files && fileBytes(m)?.equals(bytes)),
      (r) => r.length > 0,
    );
    expect(replies).toHaveLength(1);
    expect(replies[0]!.files![0]!.name).toBe('image-1.png');
  });

  test('a Slack answer lost after the upload completed does not post the file twice', async () => {
    const bytes = randomBytes(10_000);
    const mediaId = w.graph.addWhatsAppMedia(bytes, 'image/jpeg');
    w.slack.failNext('files.completeUploadExternal', { status: 500, after: true });
    await w.metaWebhook(cloudImage('15550107020', mediaId, 'only once'));
    const replies = await threadOf(
      (m) => m.text.includes('only once'),
      (r) => r.some((m) => m.files),
    );
    // Give the retry time to run; it must find the file and not upload again.
    await new Promise((r) => setTimeout(r, 2_500));
    const again = await threadOf(
      (m) => m.text.includes('only once'),
      () => true,
    );
    expect(again.filter((m) => m.files)).toHaveLength(1);
    expect(fileBytes(replies.find((m) => m.files))!.equals(bytes)).toBe(true);
  });
});

describe('customers’ files in export, erasure and retention', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld();
    await w.addAgent(ALEX);
  });
  afterAll(() => w.stop());

  async function customerWithFile(waId: string, bytes: Buffer): Promise<string> {
    const mediaId = w.graph.addWhatsAppMedia(bytes, 'image/jpeg');
    await w.metaWebhook(cloudImage(waId, mediaId, `photo from ${waId}`));
    const found = await eventually(
      async () => (await w.admin('GET', `/customers?phone=%2B${waId}`)).body?.customers?.[0]?.id as string,
      Boolean,
    );
    await eventually(
      async () => (await w.admin('GET', `/customers/${found}/export`)).body.files.length,
      (n) => n === 1,
    );
    return found;
  }

  test('the export lists the file and its bytes download through the admin API', async () => {
    const bytes = randomBytes(25_000);
    const id = await customerWithFile('15550108001', bytes);
    const data = (await w.admin('GET', `/customers/${id}/export`)).body;
    expect(data.files[0]).toMatchObject({ direction: 'in', contentType: 'image/jpeg', bytes: 25_000 });
    const res = await fetch(`${w.t.baseUrl}${data.files[0].download}`, {
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
    });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
    const other = await fetch(`${w.t.baseUrl}/api/customers/${id}/files/in-nope`, {
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
    });
    expect(other.status).toBe(404);
  });

  test("erasing the customer deletes their files, and Slack's copy of each file Rapport uploaded", async () => {
    const bytes = randomBytes(5_000);
    const id = await customerWithFile('15550108002', bytes);
    const store = createMediaStore(w.t.app.mongo.connection);
    expect(await store.forCustomer(id)).toHaveLength(1);
    const slackFileId = await eventually(async () => {
      const post = await w.t.app.models.AgentPost.findOne({ customerId: id, 'files.0': { $exists: true } }).lean();
      return post?.files?.[0]?.posted ? post.files[0].slackFileId : undefined;
    }, Boolean);
    expect(w.slack.fileContent(slackFileId!)?.equals(bytes)).toBe(true);
    const erased = await w.admin('DELETE', `/customers/${id}`);
    expect([200, 202]).toContain(erased.status);
    expect(await store.forCustomer(id)).toHaveLength(0);
    expect(
      await eventually(async () => w.slack.fileContent(slackFileId!), (content) => content === undefined),
    ).toBeUndefined();
    const chunks = await w.t.app.mongo.connection.collection('media.chunks').countDocuments({});
    const files = await w.t.app.mongo.connection.collection('media.files').countDocuments({});
    // Only the other tests' files remain, each with its one chunk.
    expect(chunks).toBe(files);
  });

  test('retention deletes files older than MEDIA_RETENTION_DAYS and keeps newer ones', async () => {
    const id = await customerWithFile('15550108003', randomBytes(5_000));
    const store = createMediaStore(w.t.app.mongo.connection);
    const purge = createRetentionPurge({
      config: { retention: {} },
      models: w.t.app.models,
      registry: new Registry(),
      log: w.t.app.log,
      media: { store, days: 30 },
    });
    expect((await purge.runOnce(new Date())).files).toBe(0);
    expect(await store.forCustomer(id)).toHaveLength(1);
    const later = await purge.runOnce(new Date(Date.now() + 31 * 86_400_000));
    expect(later.files).toBeGreaterThanOrEqual(1);
    expect(await store.forCustomer(id)).toHaveLength(0);
  });
});

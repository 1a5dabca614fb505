/**
 * Agents' files reach the customer: a `file_share` reply in the customer's thread is downloaded
 * from Slack with the bot token (url_private_download), checked against the channel's limits and
 * sent — WhatsApp Cloud by uploading to /{phone-number-id}/media and sending by id; Twilio and
 * Messenger by a signed, expiring Rapport URL that serves exactly the bytes. Bytes are compared end
 * to end; a file the channel cannot carry gets the agent an explanation, never a silent drop.
 *
 * Wire format of the Slack event: test/fixtures/slack/file-share-reply.json (Slack's documented
 * `message` event with subtype `file_share`).
 */
import { randomBytes } from 'node:crypto';
import { signMediaUrl } from '../../src/media/outbound';
import { eventually } from '../helpers/eventually';
import { mediaThreads } from '../helpers/media-thread';
import { PUBLIC_URL, startWorld, type World } from '../helpers/world';

const ALEX = { slackUserId: 'U0ALEXO', name: 'Alex', inboxChannelId: 'C0OUTMEDIA' };

describe('outbound media: agents’ files reach the customer', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld();
    await w.addAgent(ALEX);
  });
  afterAll(() => w.stop());

  const threadWith = (text: string) => mediaThreads(w, ALEX.inboxChannelId).cardWith(text);
  const noteWith = (threadTs: string, marker: string) =>
    mediaThreads(w, ALEX.inboxChannelId).noteWith(threadTs, marker);

  /** Fetches a Rapport media URL through the test app (PUBLIC_URL is not this host). */
  const fetchRapport = (url: string) => fetch(url.replace(PUBLIC_URL, w.t.baseUrl));

  test('WhatsApp Cloud: the file is uploaded to /{phone-number-id}/media and sent by id with the caption', async () => {
    await w.cloudWhatsApp('15550109001', 'can you send the label?');
    const thread = await threadWith('can you send the label?');
    const png = randomBytes(30_000);
    const { ts } = await w.agentFileReply(ALEX.inboxChannelId, thread, ALEX.slackUserId, 'Here it is', {
      name: 'label.png',
      mimetype: 'image/png',
      data: png,
    });
    const sent = await eventually(
      async () => w.graph.whatsappMessages().find((m) => m.type === 'image' && m.waId === '15550109001'),
      Boolean,
    );
    const image = sent!.body.image as { id: string; caption?: string };
    expect(image.caption).toBe('Here it is');
    expect(w.graph.uploadedMedia(image.id)?.data.equals(png)).toBe(true);
    await eventually(
      async () => w.slack.thread(ALEX.inboxChannelId, thread).find((m) => m.ts === ts)?.reactions ?? [],
      (r) => r.includes('outbox_tray'),
    );
  });

  test('Twilio WhatsApp: MediaUrl is a signed Rapport URL serving exactly the file, only while valid', async () => {
    await w.twilioWhatsApp('+15550109002', 'the invoice please');
    const thread = await threadWith('the invoice please');
    const pdf = randomBytes(40_000);
    await w.agentFileReply(ALEX.inboxChannelId, thread, ALEX.slackUserId, 'Invoice attached', {
      name: 'invoice.pdf',
      mimetype: 'application/pdf',
      data: pdf,
    });
    const sent = await eventually(
      async () => w.twilio.messages().find((m) => m.to === 'whatsapp:+15550109002' && m.mediaUrls.length > 0),
      Boolean,
    );
    const url = sent!.mediaUrls[0]!;
    expect(url.startsWith(`${PUBLIC_URL}/media/out-`)).toBe(true);
    expect(sent!.body).toBe('Invoice attached');
    const res = await fetchRapport(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/pdf');
    expect(Buffer.from(await res.arrayBuffer()).equals(pdf)).toBe(true);

    const tampered = url.replace(/sig=[^&]+/, 'sig=' + 'A'.repeat(43));
    expect((await fetchRapport(tampered)).status).toBe(403);
    const id = decodeURIComponent(new URL(url).pathname.split('/').pop()!);
    const config = w.t.app.config.media;
    const expired = signMediaUrl(
      { publicUrl: PUBLIC_URL, urlSecret: config.urlSecret, urlTtlMs: 1_000 },
      id,
      Date.now() - 60_000,
    );
    expect((await fetchRapport(expired)).status).toBe(410);
    const otherId = signMediaUrl(
      { publicUrl: PUBLIC_URL, urlSecret: config.urlSecret, urlTtlMs: 60_000 },
      'in-x',
    );
    expect((await fetchRapport(otherId)).status).toBe(404);
  });

  test('Messenger: the attachment URL is the signed Rapport URL', async () => {
    await w.messenger('7302918465077001', 'photo of the part?');
    const thread = await threadWith('photo of the part?');
    const jpg = randomBytes(12_000);
    await w.agentFileReply(ALEX.inboxChannelId, thread, ALEX.slackUserId, '', {
      name: 'part.jpg',
      mimetype: 'image/jpeg',
      data: jpg,
    });
    const sent = await eventually(
      async () =>
        w.graph.messengerMessages().find((m) => m.recipientId === '7302918465077001' && m.message.attachment),
      Boolean,
    );
    const attachment = sent!.message.attachment as { type: string; payload: { url: string } };
    expect(attachment.type).toBe('image');
    const res = await fetchRapport(attachment.payload.url);
    expect(Buffer.from(await res.arrayBuffer()).equals(jpg)).toBe(true);
  });

  test('SMS cannot carry a PDF: the agent is told why and what to do instead, and nothing is sent', async () => {
    await w.sms('+15550109003', 'send me the form');
    const thread = await threadWith('send me the form');
    const before = w.twilio.messages().filter((m) => m.to === '+15550109003').length;
    const { ts } = await w.agentFileReply(ALEX.inboxChannelId, thread, ALEX.slackUserId, 'Form attached', {
      name: 'form <!here>.pdf',
      mimetype: 'application/pdf',
      data: randomBytes(2_000),
    });
    const note = await noteWith(thread, 'Not sent');
    expect(note).toContain('SMS cannot take "form &lt;!here&gt;.pdf": it cannot carry application/pdf files');
    expect(note).toContain('share a link to the file');
    expect(note).toContain('`whatsapp:`');
    await eventually(
      async () => w.slack.thread(ALEX.inboxChannelId, thread).find((m) => m.ts === ts)?.reactions ?? [],
      (r) => r.includes('x'),
    );
    expect(w.twilio.messages().filter((m) => m.to === '+15550109003').length).toBe(before);
  });

  test('a WhatsApp image over 5 MB is refused before downloading, with its size', async () => {
    await w.cloudWhatsApp('15550109004', 'big photo please');
    const thread = await threadWith('big photo please');
    await w.agentFileReply(ALEX.inboxChannelId, thread, ALEX.slackUserId, 'here', {
      name: 'huge.jpg',
      mimetype: 'image/jpeg',
      data: randomBytes(5_200_000),
    });
    const note = await noteWith(thread, 'Not sent');
    expect(note).toContain('images there can be at most 5.0 MB and this one is 5.2 MB');
  });

  test('a provider refusing the upload is reported to the agent', async () => {
    await w.cloudWhatsApp('15550109005', 'one more file');
    const thread = await threadWith('one more file');
    w.graph.failNext({ status: 400, code: 131053, message: 'Media upload error' }, { path: /\/media$/ });
    await w.agentFileReply(ALEX.inboxChannelId, thread, ALEX.slackUserId, 'try this', {
      name: 'doc.pdf',
      mimetype: 'application/pdf',
      data: randomBytes(3_000),
    });
    const note = await noteWith(thread, 'Not delivered');
    expect(note).toContain('Not delivered on WhatsApp');
  });
});

/**
 * WhatsApp Web files both ways, end to end through the whole app (WHATSAPP_WEB_ENABLED, the session
 * in this process) with the one allowed fake: the whatsapp-web.js client
 * (test/fakes/whatsapp-web-client.ts), which hands media over as the library does (`hasMedia`,
 * `_data` metadata, `downloadMedia()` → `MessageMedia`) and records what `sendMessage` is given.
 *
 * In: the session keeps the file, the inbound worker stores it in GridFS and uploads it into the
 * customer's thread with Slack's external upload flow (bytes compared). Out: an agent's file is
 * downloaded from the Slack emulator with the bot token (`url_private_download`), stored, read back
 * by the session and sent as `sendMessage(chatId, MessageMedia, { caption })` (bytes compared).
 * Oversize files, downloads that fail on either side, and WhatsApp refusing a send each leave the
 * agent a clear line, and the customer's text (or the agent's reply) is not lost.
 */
import { randomBytes } from 'node:crypto';
import type { WwebMedia } from '../../src/channels/whatsapp-web/wire';
import { createMediaStore } from '../../src/media/store';
import {
  fakeClientFactory,
  fakeMediaMessage,
  fakeMessage,
  type FakeWhatsAppWebClient,
  type SentRecord,
} from '../fakes/whatsapp-web-client';
import { eventually } from '../helpers/eventually';
import { mediaThreads } from '../helpers/media-thread';
import { startWorld, type World } from '../helpers/world';

const ALEX = { slackUserId: 'U0ALEXW', name: 'Alex', inboxChannelId: 'C0WWEBMEDIA' };
const MAX = 200_000;

describe('WhatsApp Web media: customers’ files in the thread, agents’ files to the customer', () => {
  let w: World;
  let client: FakeWhatsAppWebClient;
  const factory = fakeClientFactory();
  const thread = () => mediaThreads(w, ALEX.inboxChannelId);

  beforeAll(async () => {
    w = await startWorld(
      { WHATSAPP_WEB_ENABLED: 'true', MEDIA_MAX_BYTES: String(MAX) },
      { whatsappWebClient: (o) => factory.create(o) },
    );
    await w.addAgent(ALEX);
    client = (await eventually(
      async () => (w.t.app.whatsappWeb?.state().state === 'ready' ? factory.latest() : undefined),
      Boolean,
    ))!;
  });
  afterAll(() => w.stop());

  const jid = (digits: string) => `${digits}@c.us`;
  const uploads = () => w.slack.callsTo('files.getUploadURLExternal').length;

  describe('customer → agent', () => {
    test('a photo with a caption is uploaded into the thread right after its line, bytes intact', async () => {
      const bytes = randomBytes(60_000);
      client.receive(
        fakeMediaMessage(jid('15550110001'), {
          type: 'image',
          mimetype: 'image/jpeg',
          bytes,
          caption: 'The box <!channel> arrived like this',
        }),
      );
      const replies = await thread().replies(
        (m) => m.text.includes('The box'),
        (r) => r.some((m) => m.files),
      );
      const line = replies.find((m) => m.text.includes('The box'))!;
      expect(line.text).toContain(':paperclip: image-1.jpg\nThe box &lt;!channel&gt; arrived like this');
      const file = replies.find((m) => m.files)!;
      expect(replies.indexOf(file)).toBe(replies.indexOf(line) + 1);
      expect(file.files![0]!.name).toBe('image-1.jpg');
      expect(thread().fileBytes(file)!.equals(bytes)).toBe(true);
      const complete = w.slack.callsTo('files.completeUploadExternal').at(-1)!;
      expect(complete.args.channel_id).toBe(ALEX.inboxChannelId);
      expect(complete.args.thread_ts).toBeDefined();
    });

    test('a voice note arrives as a file, in order with the next message', async () => {
      const bytes = randomBytes(24_000);
      client.receive(fakeMessage({ from: jid('15550110002'), body: 'listen to this' }));
      client.receive(
        fakeMediaMessage(jid('15550110002'), { type: 'ptt', mimetype: 'audio/ogg; codecs=opus', bytes }),
      );
      client.receive(fakeMessage({ from: jid('15550110002'), body: 'and one more thing' }));
      const replies = await thread().replies(
        (m) => m.text.includes('listen to this'),
        (r) => r.some((m) => m.text.includes('one more thing')),
      );
      const file = replies.find((m) => m.files)!;
      expect(file.files![0]!.name).toBe('audio-1.ogg');
      expect(thread().fileBytes(file)!.equals(bytes)).toBe(true);
      const order = replies.map((m) =>
        m.files
          ? 'file'
          : m.text.includes('listen')
            ? 'first'
            : m.text.includes('one more')
              ? 'next'
              : 'other',
      );
      expect(order.indexOf('file')).toBeGreaterThan(order.indexOf('first'));
      expect(order.indexOf('next')).toBeGreaterThan(order.indexOf('file'));
    });

    test('a document keeps its name, and the stored copy belongs to the customer', async () => {
      const bytes = randomBytes(40_000);
      client.receive(
        fakeMediaMessage(jid('15550110003'), {
          type: 'document',
          mimetype: 'application/pdf',
          bytes,
          filename: 'invoice March.pdf',
          caption: 'my invoice',
        }),
      );
      const replies = await thread().replies(
        (m) => m.text.includes('my invoice'),
        (r) => r.some((m) => m.files),
      );
      const file = replies.find((m) => m.files)!;
      expect(file.files![0]!.name).toBe('invoice March.pdf');
      expect(thread().fileBytes(file)!.equals(bytes)).toBe(true);
      const customer = await eventually(
        async () =>
          (await w.admin('GET', '/customers?phone=%2B15550110003')).body?.customers?.[0]?.id as string,
        Boolean,
      );
      const stored = await createMediaStore(w.t.app.mongo.connection).forCustomer(customer);
      expect(stored.map((f) => f.metadata.filename)).toEqual(['invoice March.pdf']);
    });

    test('a file over MEDIA_MAX_BYTES is described with type, size and why; the caption stays', async () => {
      const before = uploads();
      client.receive(
        fakeMediaMessage(jid('15550110004'), {
          type: 'video',
          mimetype: 'video/mp4',
          bytes: randomBytes(MAX + 50_000),
          caption: 'big video',
        }),
      );
      const replies = await thread().replies(
        (m) => m.text.includes('big video'),
        (r) => r.length > 0,
      );
      expect(replies[0]!.text).toContain(
        'The customer sent video/mp4, 250 KB; it cannot be shown here: over the 200 KB limit (MEDIA_MAX_BYTES).',
      );
      expect(replies[0]!.text).toContain('big video');
      expect(uploads()).toBe(before);
    });

    test.each([
      ['expired', '15550110005'],
      ['error', '15550110006'],
    ] as const)(
      'a download that WhatsApp does not complete (%s) leaves a clear line and the caption',
      async (how, digits) => {
        const before = uploads();
        client.receive(
          fakeMediaMessage(
            jid(digits),
            {
              type: 'document',
              mimetype: 'application/pdf',
              bytes: randomBytes(5_000),
              caption: `receipt ${how}`,
            },
            how,
          ),
        );
        const replies = await thread().replies(
          (m) => m.text.includes(`receipt ${how}`),
          (r) => r.length > 0,
        );
        expect(replies[0]!.text).toContain(
          ':warning: The customer sent application/pdf; it cannot be shown here: the provider did not deliver it (unreachable or timed out).',
        );
        expect(replies[0]!.text).toContain(`receipt ${how}`);
        expect(uploads()).toBe(before);
      },
    );
  });

  describe('agent → customer', () => {
    async function threadOfCustomer(digits: string, text: string): Promise<string> {
      client.receive(fakeMessage({ from: jid(digits), body: text }));
      return thread().cardWith(text);
    }

    /** What went to the customer, but for Rapport's automatic first answer. */
    const sentTo = (digits: string) =>
      client.sent.filter(
        (s) =>
          s.chatId === jid(digits) &&
          !(typeof s.content === 'string' && s.content.startsWith('Thanks for your message')),
      );
    const mediaOf = (s: SentRecord | undefined) =>
      s && typeof s.content !== 'string' ? (s.content as WwebMedia) : undefined;

    test('an attached file is sent as MessageMedia with the reply as its caption, bytes intact', async () => {
      const threadTs = await threadOfCustomer('15550110010', 'can you send the label?');
      const png = randomBytes(30_000);
      const { ts } = await w.agentFileReply(ALEX.inboxChannelId, threadTs, ALEX.slackUserId, 'Here it is', {
        name: 'label.png',
        mimetype: 'image/png',
        data: png,
      });
      const sent = await eventually(async () => sentTo('15550110010').find((s) => mediaOf(s)), Boolean);
      const media = mediaOf(sent)!;
      expect(media.mimetype).toBe('image/png');
      expect(media.filename).toBe('label.png');
      // The emulator serves the bytes only with the bot token (else Slack's sign-in page).
      expect(Buffer.from(media.data, 'base64').equals(png)).toBe(true);
      expect(sent!.options).toEqual({ caption: 'Here it is' });
      expect(sentTo('15550110010')).toHaveLength(1);
      await eventually(
        async () => thread().reactions(threadTs, ts),
        (r) => r.includes('outbox_tray'),
      );
    });

    test('WhatsApp carries any type as a document: an archive goes with its name', async () => {
      const threadTs = await threadOfCustomer('15550110011', 'send me the logs');
      const zip = randomBytes(8_000);
      await w.agentFileReply(ALEX.inboxChannelId, threadTs, ALEX.slackUserId, '', {
        name: 'logs.zip',
        mimetype: 'application/zip',
        data: zip,
      });
      const sent = await eventually(async () => sentTo('15550110011').find((s) => mediaOf(s)), Boolean);
      expect(mediaOf(sent)!.filename).toBe('logs.zip');
      expect(Buffer.from(mediaOf(sent)!.data, 'base64').equals(zip)).toBe(true);
      expect(sent!.options).toBeUndefined();
    });

    test('a file over MEDIA_MAX_BYTES is not sent, nor the reply, and the agent is told why', async () => {
      const threadTs = await threadOfCustomer('15550110012', 'the full manual please');
      const { ts } = await w.agentFileReply(
        ALEX.inboxChannelId,
        threadTs,
        ALEX.slackUserId,
        'Manual attached',
        {
          name: 'manual.pdf',
          mimetype: 'application/pdf',
          data: randomBytes(MAX + 100_000),
        },
      );
      const note = await thread().noteWith(threadTs, 'Not sent');
      expect(note).toContain('WhatsApp cannot take "manual.pdf": it is larger than the 200 KB allowed there');
      expect(note).toContain('share a link to the file');
      await eventually(
        async () => thread().reactions(threadTs, ts),
        (r) => r.includes('x'),
      );
      expect(sentTo('15550110012')).toHaveLength(0);
    });

    test('a download from Slack that fails is explained, and nothing half-sent', async () => {
      const threadTs = await threadOfCustomer('15550110013', 'the photo again?');
      w.slack.failNext('url_private_download', { status: 500 });
      await w.agentFileReply(ALEX.inboxChannelId, threadTs, ALEX.slackUserId, 'Here', {
        name: 'photo.jpg',
        mimetype: 'image/jpeg',
        data: randomBytes(10_000),
      });
      const note = await thread().noteWith(threadTs, 'Not sent');
      expect(note).toContain('Slack answered 500 when downloading it; attach it again');
      expect(sentTo('15550110013')).toHaveLength(0);
    });

    test('WhatsApp refusing the file is reported to the agent', async () => {
      const threadTs = await threadOfCustomer('15550110014', 'one more file');
      client.sendError = new Error('Evaluation failed: Error: Media upload failed');
      try {
        await w.agentFileReply(ALEX.inboxChannelId, threadTs, ALEX.slackUserId, 'try this', {
          name: 'doc.pdf',
          mimetype: 'application/pdf',
          data: randomBytes(3_000),
        });
        const note = await thread().noteWith(threadTs, 'Not delivered');
        expect(note).toContain('Not delivered on WhatsApp');
      } finally {
        client.sendError = undefined;
      }
    });
  });
});

/**
 * What customers control never becomes Slack markup: hostile names, texts, file names, captions and
 * URLs arrive on every channel (signed Twilio SMS and WhatsApp webhooks, signed Meta webhooks for
 * WhatsApp Cloud and Messenger, the whatsapp-web session's canonical message through the real
 * intake), and what the Slack emulator recorded — posts, their `username`, the card's text and
 * blocks, notes, the SLA escalation and ephemeral answers — holds them only escaped.
 *
 * Payloads are the repository's wire fixtures (test/fixtures/twilio/whatsapp-media.form,
 * meta/whatsapp-image.json, meta/messenger-attachment.json, shaped as in Twilio's and Meta's webhook
 * references) with the customer-controlled fields replaced.
 */
import { normalizeWhatsAppWebMessage } from '../../src/channels/whatsapp-web/normalize';
import type { EmulatedMessage } from '../../src/sandbox/emulators/slack';
import { eventually } from '../helpers/eventually';
import { fixtureBytes, twilioFixture } from '../helpers/fixtures';
import { TEST_TWILIO } from '../helpers/env';
import { CLOUD_PHONE_ID, ESCALATION, PAGE_ID, startWorld, type World } from '../helpers/world';
import { fakeMessage, OWN_JID } from '../fakes/whatsapp-web-client';

const ALEX = { slackUserId: 'U0ALEX', name: 'Alex', inboxChannelId: 'C0ALEX' };

/** A name and a text as an attacker would write them. */
const HOSTILE_NAME = '<!channel> <@U123> <https://evil.example|bank.com> &amp;';
const hostileText = (marker: string) =>
  `${marker} <!here> <!channel> <@U123> pay at <https://evil.example/login|https://bank.com> &amp; more`;

/** Markup a customer could smuggle in; none of it may reach Slack unescaped. */
const LIVE_MARKUP = /<!channel>|<!here>|<@U123>|<https:\/\/evil|<https:\/\/scontent/;

function textsOf(m: EmulatedMessage): string[] {
  const out = [m.text, m.username ?? ''];
  for (const block of m.blocks ?? []) out.push(JSON.stringify(block));
  return out;
}

describe('customer-controlled strings reach Slack escaped, on every channel', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ SLA_FIRST_RESPONSE: '2s', SLA_ESCALATE: '3s' });
    await w.addAgent(ALEX);
  });
  afterAll(() => w.stop());

  /** The customer's thread (card first) once it holds `posts` customer posts containing `marker`. */
  async function threadWith(marker: string, posts = 1): Promise<EmulatedMessage[]> {
    const find = async () => {
      for (const card of w.slack.messages(ALEX.inboxChannelId)) {
        const thread = w.slack.thread(ALEX.inboxChannelId, card.ts);
        const found = thread.filter(
          (m) => m.metadata?.event_type === 'rapport_post' && m.text.includes(marker),
        );
        if (found.length >= posts) return thread;
      }
      return [];
    };
    const thread = await eventually(find, (t) => t.length > 0);
    expect(thread.length).toBeGreaterThan(0);
    return thread;
  }

  function expectNoLiveMarkup(messages: EmulatedMessage[]): void {
    const leaks = messages.flatMap(textsOf).filter((t) => LIVE_MARKUP.test(t));
    expect(leaks).toEqual([]);
  }
  /** The webhook was taken (200); the thread holding `marker`, checked for live markup. */
  async function delivered(webhook: Promise<Response>, marker: string): Promise<EmulatedMessage[]> {
    expect((await webhook).status).toBe(200);
    const thread = await threadWith(marker);
    expectNoLiveMarkup(thread);
    return thread;
  }

  function customerPost(thread: EmulatedMessage[], marker: string): EmulatedMessage {
    const post = thread.find((m) => m.metadata?.event_type === 'rapport_post' && m.text.includes(marker));
    expect(post).toBeDefined();
    return post!;
  }

  it('Twilio SMS: the text is shown literally (mentions, disguised link and a typed &amp;)', async () => {
    const thread = await delivered(w.sms('+14155550601', hostileText('m-sms')), 'm-sms');
    const post = customerPost(thread, 'm-sms');
    expect(post.text).toContain(
      'm-sms &lt;!here&gt; &lt;!channel&gt; &lt;@U123&gt; pay at &lt;https://evil.example/login|https://bank.com&gt; &amp;amp; more',
    );
  });

  it('Twilio WhatsApp: the ProfileName (card, post username) and an image URL are escaped and visible', async () => {
    const { form } = twilioFixture('whatsapp-media');
    const sid = 'MMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01';
    const hostile = {
      ...(form as Record<string, string>),
      AccountSid: TEST_TWILIO.accountSid,
      From: 'whatsapp:+14155550602',
      WaId: '14155550602',
      ProfileName: HOSTILE_NAME,
      Body: hostileText('m-twa'),
      MessageSid: sid,
      SmsSid: sid,
      SmsMessageSid: sid,
      MediaUrl0: `https://api.twilio.com/2010-04-01/Accounts/${TEST_TWILIO.accountSid}/Messages/${sid}/Media/ME1?a=1&b=2`,
    };
    const thread = await delivered(w.twilioWebhook(hostile), 'm-twa');
    const card = thread[0]!;
    expect(card.text).toContain(
      '*&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|bank.com&gt; &amp;amp;*',
    );
    expect(JSON.stringify(card.blocks)).toContain('&lt;!channel&gt;');
    const post = customerPost(thread, 'm-twa');
    expect(post.username).toBe(
      '&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|bank.com&gt; &amp;amp; (WhatsApp)',
    );
    // The attachment is its plain URL (no `<url|label>`), `&` escaped as Slack wants.
    expect(post.text).toContain(`/Media/ME1?a=1&amp;b=2`);
    expect(post.text).not.toMatch(/<https?:/);
  });

  it('WhatsApp Cloud: the contact name, a document file name and its caption are escaped', async () => {
    expect(
      (await w.cloudWhatsApp('14155550603', hostileText('m-cloud'), { name: HOSTILE_NAME })).status,
    ).toBe(200);
    const payload = JSON.parse(fixtureBytes('meta/whatsapp-image.json').toString('utf8'));
    const value = payload.entry[0].changes[0].value;
    value.metadata.phone_number_id = CLOUD_PHONE_ID;
    value.contacts = [{ profile: { name: HOSTILE_NAME }, wa_id: '14155550603' }];
    const message = value.messages[0];
    message.from = '14155550603';
    message.id = 'wamid.HBgLMTQxNTU1NTA2MDMVAgASGBQzQUJGNDdDMTlEMkUwODQ2QjVBOAA=';
    message.timestamp = String(Math.floor(Date.now() / 1000));
    message.type = 'document';
    message.document = {
      ...message.image,
      mime_type: 'application/pdf',
      filename: '<!channel>invoice<@U123>.pdf',
      caption: 'm-doc <https://evil.example|bank.com>',
    };
    delete message.image;
    const thread = await delivered(w.metaWebhook(payload), 'm-doc');
    expect(customerPost(thread, 'm-cloud').text).toContain('&lt;!here&gt;');
    const doc = customerPost(thread, 'm-doc');
    expect(doc.text).toContain('&lt;!channel&gt;invoice&lt;@U123&gt;.pdf');
    expect(doc.text).toContain('m-doc &lt;https://evil.example|bank.com&gt;');
  });

  it('Messenger: text, a shared link title and an attachment URL are escaped; the URL stays visible', async () => {
    expect((await w.messenger('7302918465012001', hostileText('m-msgr'))).status).toBe(200);
    const payload = JSON.parse(fixtureBytes('meta/messenger-attachment.json').toString('utf8'));
    const entry = payload.entry[0];
    entry.id = PAGE_ID;
    const event = entry.messaging[0];
    event.sender.id = '7302918465012001';
    event.recipient.id = PAGE_ID;
    event.timestamp = Date.now();
    event.message.mid = 'm_markup_attachment_0001';
    const imageUrl: string = event.message.attachments[0].payload.url;
    event.message.attachments.push({
      type: 'fallback',
      payload: {
        url: 'https://evil.example/x?a=1&b=2',
        title: 'm-link <!here> <https://evil.example|bank.com>',
      },
    });
    const thread = await delivered(w.metaWebhook(payload), 'm-link');
    expect(customerPost(thread, 'm-msgr').text).toContain('&lt;!channel&gt;');
    const post = customerPost(thread, 'm-link');
    expect(post.text).toContain('m-link &lt;!here&gt; &lt;https://evil.example|bank.com&gt;');
    expect(post.text).toContain('https://evil.example/x?a=1&amp;b=2');
    expect(post.text).toContain(imageUrl.replaceAll('&', '&amp;'));
  });

  it('whatsapp-web: the notify name and text of a session message are escaped', async () => {
    const msg = fakeMessage({
      from: '14155550604@c.us',
      body: hostileText('m-wweb'),
      _data: { notifyName: HOSTILE_NAME },
      timestamp: Math.floor(Date.now() / 1000),
    });
    const message = normalizeWhatsAppWebMessage(msg, { ownJid: OWN_JID, receivedAt: new Date() });
    expect(message).toBeDefined();
    await w.t.app.intake.accept([{ type: 'message', message: message! }]);
    const thread = await threadWith('m-wweb');
    expectNoLiveMarkup(thread);
    expect(customerPost(thread, 'm-wweb').username).toBe(
      '&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|bank.com&gt; &amp;amp; (WhatsApp)',
    );
  });

  it('whois, the SLA reminder and the escalation show the hostile name escaped', async () => {
    const thread = await threadWith('m-twa');
    const whois = await w.command(ALEX.slackUserId, ALEX.inboxChannelId, 'whois', thread[0]!.ts);
    expect(whois.status).toBe(200);
    expect(whois.text).toContain('*&lt;!channel&gt; &lt;@U123&gt;');
    expect(whois.text).not.toMatch(LIVE_MARKUP);
    const escalations = await eventually(
      async () => w.slack.messages(ESCALATION).filter((m) => m.text.includes('&lt;!channel&gt;')),
      (m) => m.length >= 1,
    );
    expect(escalations.length).toBeGreaterThanOrEqual(1);
    expectNoLiveMarkup(w.slack.messages(ESCALATION));
    const reminders = await eventually(
      async () =>
        w.slack.thread(ALEX.inboxChannelId, thread[0]!.ts).filter((m) => m.text.includes(':alarm_clock:')),
      (m) => m.length >= 1,
    );
    expect(reminders[0]?.text).toContain('&lt;!channel&gt;');
    expectNoLiveMarkup(w.slack.thread(ALEX.inboxChannelId, thread[0]!.ts));
  });
});

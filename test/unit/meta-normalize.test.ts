/** The Messenger and WhatsApp Cloud normalizers over Meta's wire-format fixtures: pure, no I/O. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InboundEvent } from '../../src/canonical';
import { eventKey } from '../../src/canonical';
import { createMetaWebhook } from '../../src/channels/meta/adapter';
import { normalizeMessengerPayload } from '../../src/channels/messenger/normalize';
import { normalizeWhatsAppCloudPayload } from '../../src/channels/whatsapp-cloud/normalize';
import { PayloadError } from '../../src/errors';

const RECEIVED_AT = new Date('2024-06-20T11:30:00.000Z');
const PAGE_ID = '104857392018374';
const PSID = '7302918465012837';
const BUSINESS_NUMBER = '+15550481234';

function fixture(name: string): unknown {
  return JSON.parse(readFileSync(join(__dirname, '../fixtures/meta', `${name}.json`), 'utf8'));
}

/** A Messenger payload with one entry holding these `messaging[]` events. */
function messengerPayload(...messaging: unknown[]): unknown {
  return { object: 'page', entry: [{ id: PAGE_ID, time: 1718882345678, messaging }] };
}

function messengerEvent(fields: Record<string, unknown>): Record<string, unknown> {
  return { sender: { id: PSID }, recipient: { id: PAGE_ID }, timestamp: 1718882345123, ...fields };
}

/** A WhatsApp Cloud payload with one `messages` change holding this value. */
function whatsAppPayload(value: Record<string, unknown>, field = 'messages'): unknown {
  return {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '118273645509182',
        changes: [
          {
            field,
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: '15550481234', phone_number_id: '109876543210987' },
              ...value,
            },
          },
        ],
      },
    ],
  };
}

function whatsAppMessage(fields: Record<string, unknown>): Record<string, unknown> {
  return {
    from: '4915112345678',
    id: 'wamid.HBgNNDkxNTExMjM0NTY3OBUCABIYFjNFQjBBQ0RFRjAxMjM0NTY3ODkA',
    timestamp: '1718882345',
    ...fields,
  };
}

function onlyMessage(events: InboundEvent[]) {
  expect(events).toHaveLength(1);
  const [event] = events;
  if (event?.type !== 'message') throw new Error(`expected a message event, got ${event?.type}`);
  return event.message;
}

function statusesOf(events: InboundEvent[]) {
  return events.map((event) => {
    if (event.type !== 'status') throw new Error(`expected a status event, got ${event.type}`);
    return event.status;
  });
}

/** The batch holds no events, only these ignored reasons (in order). */
function expectOnlyIgnored(batch: { events: unknown[]; ignored: { reason: string }[] }, reasons: string[]) {
  expect(batch).toEqual({ events: [], ignored: reasons.map((reason) => ({ reason })) });
}

describe('Messenger normalizer', () => {
  it('turns a text message into one canonical message, non-ASCII text intact', () => {
    const batch = normalizeMessengerPayload(fixture('messenger-text'), RECEIVED_AT);
    const mid = 'm_5Fq2kLr8vXzN1hPcT9wYbJ3eGaRd7uMsQ0oKiVnB4tH6yWxZcL2fAjE8gSpDmU1rOqN5vTk3hYbXw7eIaF9sGdQ';
    expect(batch).toEqual({
      events: [
        {
          type: 'message',
          message: {
            key: `messenger:${mid}`,
            channel: 'messenger',
            provider: 'messenger',
            providerMessageId: mid,
            from: { kind: 'psid', pageId: PAGE_ID, psid: PSID },
            to: PAGE_ID,
            text: 'Grüße äöå 👋',
            parts: [{ kind: 'text', text: 'Grüße äöå 👋' }],
            sentAt: '2024-06-20T11:19:05.123Z',
            receivedAt: '2024-06-20T11:30:00.000Z',
          },
        },
      ],
      ignored: [],
    });
  });

  it('turns an image attachment into a media part with its URL and an image/* hint', () => {
    const message = onlyMessage(
      normalizeMessengerPayload(fixture('messenger-attachment'), RECEIVED_AT).events,
    );
    expect(message).toEqual({
      key: 'messenger:m_Tz8cQw1LbN4sVx7RkP2yHd9GfJ0aMu3eKo6iWq5BnC8tYrXl1ZvS4hDgA7pEjF2mUcO9kNwRb3sLy6TqHx0eIdVa',
      channel: 'messenger',
      provider: 'messenger',
      providerMessageId:
        'm_Tz8cQw1LbN4sVx7RkP2yHd9GfJ0aMu3eKo6iWq5BnC8tYrXl1ZvS4hDgA7pEjF2mUcO9kNwRb3sLy6TqHx0eIdVa',
      from: { kind: 'psid', pageId: PAGE_ID, psid: PSID },
      to: PAGE_ID,
      parts: [
        {
          kind: 'media',
          url: expect.stringMatching(/^https:\/\/scontent\.xx\.fbcdn\.net\/v\/t1\.15752-9\/448291735_/),
          contentType: 'image/*',
        },
      ],
      sentAt: '2024-06-20T11:20:01.000Z',
      receivedAt: '2024-06-20T11:30:00.000Z',
    });
    expect(message.text).toBeUndefined();
  });

  it('turns a postback into a message with a postback part keyed by its mid', () => {
    const message = onlyMessage(normalizeMessengerPayload(fixture('messenger-postback'), RECEIVED_AT).events);
    const mid = 'm_Hb4nR7tYq2wXe9LkS1dZp6cVa3uMo8iGf0jNs5BhT2yWrQl7KxC4vE9gDmP1zFuA6oIkJ3sRn8bTq0eHwY5cLdXa';
    expect(message).toEqual({
      key: `messenger:${mid}`,
      channel: 'messenger',
      provider: 'messenger',
      providerMessageId: mid,
      from: { kind: 'psid', pageId: PAGE_ID, psid: PSID },
      to: PAGE_ID,
      text: 'Talk to a person',
      parts: [{ kind: 'postback', title: 'Talk to a person', payload: 'HUMAN_HANDOFF' }],
      sentAt: '2024-06-20T11:21:52.345Z',
      receivedAt: '2024-06-20T11:30:00.000Z',
    });
  });

  it('keys a postback without a mid by sender and timestamp', () => {
    const payload = messengerPayload(
      messengerEvent({ postback: { title: 'Get Started', payload: 'GET_STARTED' } }),
    );
    const message = onlyMessage(normalizeMessengerPayload(payload, RECEIVED_AT).events);
    expect(message.key).toBe(`messenger:postback:${PSID}:1718882345123`);
    expect(message.providerMessageId).toBe(`postback:${PSID}:1718882345123`);
    expect(message.parts).toEqual([{ kind: 'postback', title: 'Get Started', payload: 'GET_STARTED' }]);
  });

  it('reports a delivery receipt as one delivered status per mid', () => {
    const batch = normalizeMessengerPayload(fixture('messenger-delivery'), RECEIVED_AT);
    const first =
      'm_Kp3xW8qZ1vN6rT0yLb5hJc2dGs9aEu4iMf7oQk3BwR8tYn1XlC6vS0hDgA5pEjF9mUcO2kNwRb7sLy4TqHx3eIdVg';
    const second =
      'm_Rq7vB2nX9kL4tW1yPc8hZd3gJs6aEu0iMf5oQk2BwR7tYn4XlC1vS9hDgA6pEjF3mUcO8kNwRb0sLy5TqHx2eIdVm';
    const status = (mid: string) => ({
      type: 'status',
      status: {
        key: `messenger:${mid}:delivered`,
        channel: 'messenger',
        provider: 'messenger',
        providerMessageId: mid,
        state: 'delivered',
        watermark: '2024-06-20T11:19:59.876Z',
        recipient: { kind: 'psid', pageId: PAGE_ID, psid: PSID },
        errors: [],
        // Delivery receipts carry no timestamp: the watermark stands in.
        at: '2024-06-20T11:19:59.876Z',
        receivedAt: '2024-06-20T11:30:00.000Z',
      },
    });
    expect(batch).toEqual({ events: [status(first), status(second)], ignored: [] });
  });

  it('reports a delivery receipt without mids as one watermark status', () => {
    const payload = messengerPayload(
      messengerEvent({ timestamp: undefined, delivery: { watermark: 1718882399876 } }),
    );
    const [status, ...rest] = statusesOf(normalizeMessengerPayload(payload, RECEIVED_AT).events);
    expect(rest).toEqual([]);
    expect(status).toEqual({
      key: `messenger:watermark:${PAGE_ID}:${PSID}:delivered:1718882399876`,
      channel: 'messenger',
      provider: 'messenger',
      state: 'delivered',
      watermark: '2024-06-20T11:19:59.876Z',
      recipient: { kind: 'psid', pageId: PAGE_ID, psid: PSID },
      errors: [],
      at: '2024-06-20T11:19:59.876Z',
      receivedAt: '2024-06-20T11:30:00.000Z',
    });
    expect(status).not.toHaveProperty('providerMessageId');
  });

  it('reports a read receipt as a read watermark status', () => {
    const statuses = statusesOf(normalizeMessengerPayload(fixture('messenger-read'), RECEIVED_AT).events);
    expect(statuses).toEqual([
      {
        key: `messenger:watermark:${PAGE_ID}:${PSID}:read:1718882399876`,
        channel: 'messenger',
        provider: 'messenger',
        state: 'read',
        watermark: '2024-06-20T11:19:59.876Z',
        recipient: { kind: 'psid', pageId: PAGE_ID, psid: PSID },
        errors: [],
        at: '2024-06-20T11:21:00.101Z',
        receivedAt: '2024-06-20T11:30:00.000Z',
      },
    ]);
  });

  it('ignores echoes of the Page’s own messages', () => {
    expect(normalizeMessengerPayload(fixture('messenger-echo'), RECEIVED_AT)).toEqual({
      events: [],
      ignored: [{ reason: 'echo' }],
    });
  });

  it('yields every event of every entry of a batch, in order, and names what it ignored', () => {
    const batch = normalizeMessengerPayload(fixture('messenger-batch'), RECEIVED_AT);
    expect(batch.events.map(eventKey)).toEqual([
      'messenger:m_Ae1bC2dE3fG4hI5jK6lM7nO8pQ9rS0tU1vW2xY3zA4bC5dE6fG7hI8jK9lM0nO1pQ2rS3tU4vW5xY6zA7bC8dE9f',
      'messenger:m_Lc9kD2sW7qP4xN1vB8mZ3tR6yH0gF5jA2eU9iO4oK7lM1nQ8bV3cX6zS0dT5wY2rE9uI4pA7hG1fJ6kL3mN8oB5q',
      'messenger:reaction:m_Rq7vB2nX9kL4tW1yPc8hZd3gJs6aEu0iMf5oQk2BwR7tYn4XlC1vS9hDgA6pEjF3mUcO8kNwRb0sLy5TqHx2eIdVm:react:1718883001101',
      'messenger:m_Zx8yW7vU6tS5rQ4pO3nM2lK1jI0hG9fE8dC7bA6zY5xW4vU3tS2rQ1pO0nM9lK8jI7hG6fE5dC4bA3zY2xW1vU0t',
      'messenger:m_Kp3xW8qZ1vN6rT0yLb5hJc2dGs9aEu4iMf7oQk3BwR8tYn1XlC6vS0hDgA5pEjF9mUcO2kNwRb7sLy4TqHx3eIdVg:delivered',
      `messenger:watermark:${PAGE_ID}:6841203957712046:read:1718883001500`,
    ]);
    expect(batch.ignored).toEqual([]);
  });

  it('keeps a reaction as a reaction part on the message it reacts to', () => {
    const batch = normalizeMessengerPayload(fixture('messenger-batch'), RECEIVED_AT);
    const reaction = batch.events[2];
    expect(reaction?.type === 'message' && reaction.message.parts).toEqual([
      {
        kind: 'reaction',
        targetId:
          'm_Rq7vB2nX9kL4tW1yPc8hZd3gJs6aEu0iMf5oQk2BwR7tYn4XlC1vS9hDgA6pEjF3mUcO8kNwRb0sLy5TqHx2eIdVm',
        emoji: expect.any(String),
      },
    ]);
  });

  it('keeps a quick reply’s payload as a postback part', () => {
    const batch = normalizeMessengerPayload(fixture('messenger-batch'), RECEIVED_AT);
    const first = batch.events[0];
    expect(first?.type === 'message' && first.message).toMatchObject({
      text: 'Where is my order?',
      parts: [{ kind: 'postback', title: 'Where is my order?', payload: 'ORDER_STATUS' }],
    });
  });

  it('turns a shared location into a location part', () => {
    const batch = normalizeMessengerPayload(fixture('messenger-batch'), RECEIVED_AT);
    const second = batch.events[1];
    expect(second?.type === 'message' && second.message).toEqual({
      key: 'messenger:m_Lc9kD2sW7qP4xN1vB8mZ3tR6yH0gF5jA2eU9iO4oK7lM1nQ8bV3cX6zS0dT5wY2rE9uI4pA7hG1fJ6kL3mN8oB5q',
      channel: 'messenger',
      provider: 'messenger',
      providerMessageId:
        'm_Lc9kD2sW7qP4xN1vB8mZ3tR6yH0gF5jA2eU9iO4oK7lM1nQ8bV3cX6zS0dT5wY2rE9uI4pA7hG1fJ6kL3mN8oB5q',
      from: { kind: 'psid', pageId: PAGE_ID, psid: PSID },
      to: PAGE_ID,
      parts: [{ kind: 'location', latitude: 52.520008, longitude: 13.404954, name: "Kim's Location" }],
      sentAt: '2024-06-20T11:30:00.877Z',
      receivedAt: '2024-06-20T11:30:00.000Z',
    });
  });

  it('records which message a reply quotes', () => {
    const batch = normalizeMessengerPayload(fixture('messenger-batch'), RECEIVED_AT);
    const fourth = batch.events[3];
    expect(fourth?.type === 'message' && fourth.message.replyTo).toBe(
      'm_Kp3xW8qZ1vN6rT0yLb5hJc2dGs9aEu4iMf7oQk3BwR8tYn1XlC6vS0hDgA5pEjF9mUcO2kNwRb7sLy4TqHx3eIdVg',
    );
  });

  it('keeps unknown attachment types as unsupported parts, shared links as links and file names', () => {
    const payload = messengerPayload(
      messengerEvent({
        message: {
          mid: 'm_attachments',
          attachments: [
            { type: 'ig_post', payload: { ig_post_media_id: '18012345678901234' } },
            { type: 'fallback', title: 'Returns policy', url: 'https://shop.example/returns', payload: null },
            { type: 'audio', payload: { url: 'https://cdn.fbsbx.com/v/t59.3654-21/voice.mp4' } },
            { type: 'file', payload: { url: 'https://cdn.fbsbx.com/v/t59.2708-21/invoice.pdf' } },
          ],
        },
      }),
    );
    expect(onlyMessage(normalizeMessengerPayload(payload, RECEIVED_AT).events).parts).toEqual([
      { kind: 'unsupported', providerType: 'ig_post' },
      { kind: 'link', url: 'https://shop.example/returns', title: 'Returns policy' },
      { kind: 'media', url: 'https://cdn.fbsbx.com/v/t59.3654-21/voice.mp4', contentType: 'audio/*' },
      { kind: 'media', url: 'https://cdn.fbsbx.com/v/t59.2708-21/invoice.pdf', filename: 'invoice.pdf' },
    ]);
  });

  it('counts a sticker sent as both sticker and image attachments once', () => {
    const url =
      'https://scontent.xx.fbcdn.net/v/t39.1997-6/39178562_1505197616293642_5411344281094848512_n.png';
    const payload = messengerPayload(
      messengerEvent({
        message: {
          mid: 'm_sticker',
          sticker_id: 369239263222822,
          attachments: [
            { type: 'sticker', payload: { url, sticker_id: 369239263222822 } },
            { type: 'image', payload: { url, sticker_id: 369239263222822 } },
          ],
        },
      }),
    );
    expect(onlyMessage(normalizeMessengerPayload(payload, RECEIVED_AT).events).parts).toEqual([
      { kind: 'media', url, contentType: 'image/*' },
    ]);
  });

  it('ignores standby events and postbacks from users known only by user_ref', () => {
    const payload = {
      object: 'page',
      entry: [
        {
          id: PAGE_ID,
          time: 1718882345678,
          standby: [messengerEvent({ message: { mid: 'm_standby', text: 'hi' } })],
        },
        {
          id: PAGE_ID,
          time: 1718882345678,
          messaging: [
            {
              ...messengerEvent({ postback: { title: 'Yes', payload: 'YES' } }),
              sender: { user_ref: 'ref_1' },
            },
          ],
        },
      ],
    };
    expectOnlyIgnored(normalizeMessengerPayload(payload, RECEIVED_AT), [
      'messenger standby event (thread owned by another app)',
      'messenger postback from a user_ref without a PSID',
    ]);
  });

  it('keeps a message it cannot read as unsupported, and the rest of the batch', () => {
    const payload = {
      object: 'page',
      entry: [
        {
          id: PAGE_ID,
          time: 1718882345678,
          messaging: [
            messengerEvent({ message: { text: 'no id' } }),
            messengerEvent({ postback: { payload: 'ONLY_A_PAYLOAD' } }),
            messengerEvent({ message: { mid: 'm_next', text: 'still here' } }),
          ],
        },
      ],
    };
    const batch = normalizeMessengerPayload(payload, RECEIVED_AT);
    expect(batch.events.map((e) => e.type === 'message' && e.message.parts)).toEqual([
      [{ kind: 'unsupported', providerType: 'message', detail: expect.stringContaining('message.mid') }],
      [{ kind: 'postback', payload: 'ONLY_A_PAYLOAD' }],
      [{ kind: 'text', text: 'still here' }],
    ]);
  });

  it('ignores, without refusing the batch, an event it cannot tie to a customer', () => {
    const payload = messengerPayload({
      ...messengerEvent({ message: { mid: 'm_x', text: 'hi' } }),
      sender: undefined,
    });
    expect(normalizeMessengerPayload(payload, RECEIVED_AT)).toEqual({
      events: [],
      ignored: [{ reason: 'messenger message from a sender without a PSID' }],
    });
  });

  it('refuses a payload that is not a Messenger page object', () => {
    expect(() => normalizeMessengerPayload(fixture('whatsapp-text'), RECEIVED_AT)).toThrow(PayloadError);
    expect(() => normalizeMessengerPayload({ object: 'page', entry: [42] }, RECEIVED_AT)).toThrow(
      PayloadError,
    );
  });
});

describe('WhatsApp Cloud normalizer', () => {
  it('turns a text message into one canonical message with the contact’s profile name', () => {
    const batch = normalizeWhatsAppCloudPayload(fixture('whatsapp-text'), RECEIVED_AT);
    const id = 'wamid.HBgNNDkxNTExMjM0NTY3OBUCABIYFjNFQjBCMEQ3RjA0QTlGMkQ2QjE4N0YA';
    expect(batch).toEqual({
      events: [
        {
          type: 'message',
          message: {
            key: `whatsapp-cloud:${id}`,
            channel: 'whatsapp',
            provider: 'whatsapp-cloud',
            providerMessageId: id,
            from: { kind: 'phone', e164: '+4915112345678' },
            to: BUSINESS_NUMBER,
            text: 'Grüße äöå 👋',
            parts: [{ kind: 'text', text: 'Grüße äöå 👋' }],
            profileName: 'Jürgen Müller',
            sentAt: '2024-06-20T11:19:05.000Z',
            receivedAt: '2024-06-20T11:30:00.000Z',
          },
        },
      ],
      ignored: [],
    });
  });

  it('turns an image into a media part fetched by id, its caption as the text', () => {
    const message = onlyMessage(normalizeWhatsAppCloudPayload(fixture('whatsapp-image'), RECEIVED_AT).events);
    const id = 'wamid.HBgMNDQ3NzAwOTAwMTIzFQIAEhgUM0FCRjQ3QzE5RDJFMDg0NkI1QTcA';
    expect(message).toEqual({
      key: `whatsapp-cloud:${id}`,
      channel: 'whatsapp',
      provider: 'whatsapp-cloud',
      providerMessageId: id,
      from: { kind: 'phone', e164: '+447700900123' },
      to: BUSINESS_NUMBER,
      text: 'The box arrived like this',
      parts: [
        {
          kind: 'media',
          providerMediaId: '1053964812293847',
          contentType: 'image/jpeg',
          caption: 'The box arrived like this',
        },
      ],
      profileName: 'Priya Shah',
      sentAt: '2024-06-20T11:20:01.000Z',
      receivedAt: '2024-06-20T11:30:00.000Z',
    });
  });

  it('turns a location into a location part and records the message it replies to', () => {
    const message = onlyMessage(
      normalizeWhatsAppCloudPayload(fixture('whatsapp-location'), RECEIVED_AT).events,
    );
    expect(message.parts).toEqual([
      {
        kind: 'location',
        latitude: 51.5007292,
        longitude: -0.1246254,
        name: 'Westminster Pier',
        address: 'Victoria Embankment, London SW1A 2JH',
      },
    ]);
    expect(message.text).toBeUndefined();
    expect(message.replyTo).toBe('wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgSNkQ3QjE5RTI0QTBDODNGMTJFAA==');
    expect(message.sentAt).toBe('2024-06-20T11:21:00.000Z');
  });

  it('reports sent, delivered and failed statuses, with the failure’s error', () => {
    const statuses = statusesOf(
      normalizeWhatsAppCloudPayload(fixture('whatsapp-statuses'), RECEIVED_AT).events,
    );
    const germanId = 'wamid.HBgNNDkxNTExMjM0NTY3OBUCABEYEjk0QzFBN0UzRjI4QjYwRDU3OQA=';
    const ukId = 'wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgSQjM4RTdGMkE5QzE0RDA1NkIA';
    const status = (id: string, state: string, e164: string, at: string, errors: unknown[] = []) => ({
      channel: 'whatsapp',
      provider: 'whatsapp-cloud',
      receivedAt: '2024-06-20T11:30:00.000Z',
      key: `whatsapp-cloud:${id}:${state}`,
      providerMessageId: id,
      state,
      recipient: { kind: 'phone', e164 },
      errors,
      at,
    });
    expect(statuses).toEqual([
      status(germanId, 'sent', '+4915112345678', '2024-06-20T11:21:40.000Z'),
      status(germanId, 'delivered', '+4915112345678', '2024-06-20T11:21:42.000Z'),
      status(ukId, 'failed', '+447700900123', '2024-06-21T11:23:20.000Z', [
        {
          code: '131047',
          title: 'Re-engagement message',
          // `message` only repeats the title, so the details are kept.
          detail:
            'Message failed to send because more than 24 hours have passed since the customer last replied to this number.',
        },
      ]),
    ]);
  });

  it('uses error_data.details as the error detail when the message is absent', () => {
    const payload = whatsAppPayload({
      statuses: [
        {
          id: 'wamid.x',
          status: 'failed',
          timestamp: '1718882500',
          recipient_id: '4915112345678',
          errors: [
            {
              code: 131026,
              title: 'Message undeliverable',
              error_data: { details: 'Receiver is incapable of receiving this message' },
            },
          ],
        },
      ],
    });
    expect(statusesOf(normalizeWhatsAppCloudPayload(payload, RECEIVED_AT).events)[0]?.errors).toEqual([
      {
        code: '131026',
        title: 'Message undeliverable',
        detail: 'Receiver is incapable of receiving this message',
      },
    ]);
  });

  it('keeps reactions as reaction parts and unsupported messages with Meta’s reason', () => {
    const batch = normalizeWhatsAppCloudPayload(fixture('whatsapp-unsupported'), RECEIVED_AT);
    expect(batch.ignored).toEqual([]);
    expect(batch.events).toHaveLength(2);
    expect(batch.events.map((e) => e.type === 'message' && e.message.parts)).toEqual([
      [
        {
          kind: 'reaction',
          targetId: 'wamid.HBgNNDkxNTExMjM0NTY3OBUCABEYEjk0QzFBN0UzRjI4QjYwRDU3OQA=',
          emoji: '👍',
        },
      ],
      [
        {
          kind: 'unsupported',
          providerType: 'unsupported',
          detail: 'Message type is currently not supported.',
        },
      ],
    ]);
    expect(batch.events.map((e) => e.type === 'message' && e.message.text)).toEqual([undefined, undefined]);
    expect(batch.events.map((e) => e.type === 'message' && e.message.profileName)).toEqual([
      'Jürgen Müller',
      'Jürgen Müller',
    ]);
  });

  it('turns template buttons, reply buttons and list rows into postback parts', () => {
    const payload = whatsAppPayload({
      messages: [
        whatsAppMessage({
          id: 'wamid.button',
          type: 'button',
          button: { text: 'Stop promotions', payload: 'STOP' },
        }),
        whatsAppMessage({
          id: 'wamid.reply',
          type: 'interactive',
          interactive: { type: 'button_reply', button_reply: { id: 'yes-ship', title: 'Yes, ship it' } },
        }),
        whatsAppMessage({
          id: 'wamid.list',
          type: 'interactive',
          interactive: {
            type: 'list_reply',
            list_reply: { id: 'slot-2', title: 'Tomorrow 9–12', description: 'Morning' },
          },
        }),
        whatsAppMessage({
          id: 'wamid.flow',
          type: 'interactive',
          interactive: { type: 'nfm_reply', nfm_reply: {} },
        }),
      ],
    });
    const parts = normalizeWhatsAppCloudPayload(payload, RECEIVED_AT).events.map(
      (e) => e.type === 'message' && e.message.parts,
    );
    expect(parts).toEqual([
      [{ kind: 'postback', title: 'Stop promotions', payload: 'STOP' }],
      [{ kind: 'postback', title: 'Yes, ship it', payload: 'yes-ship' }],
      [{ kind: 'postback', title: 'Tomorrow 9–12', payload: 'slot-2' }],
      [{ kind: 'unsupported', providerType: 'interactive.nfm_reply' }],
    ]);
  });

  it('addresses the business by display number digits, or by phone number id when there is none', () => {
    const message = whatsAppMessage({ type: 'text', text: { body: 'hi' } });
    const formatted = whatsAppPayload({
      metadata: { display_phone_number: '+1 555-048-1234', phone_number_id: '109876543210987' },
      messages: [message],
    });
    const bare = whatsAppPayload({ metadata: { phone_number_id: '109876543210987' }, messages: [message] });
    expect(onlyMessage(normalizeWhatsAppCloudPayload(formatted, RECEIVED_AT).events).to).toBe('+15550481234');
    expect(onlyMessage(normalizeWhatsAppCloudPayload(bare, RECEIVED_AT).events).to).toBe('109876543210987');
  });

  it('leaves the profile name out when no contact matches the sender', () => {
    const payload = whatsAppPayload({
      contacts: [{ profile: { name: 'Someone Else' }, wa_id: '15551234567' }],
      messages: [whatsAppMessage({ type: 'text', text: { body: 'hi' } })],
    });
    expect(
      onlyMessage(normalizeWhatsAppCloudPayload(payload, RECEIVED_AT).events).profileName,
    ).toBeUndefined();
  });

  it('ignores changes of other fields, unknown statuses and error notifications', () => {
    const otherField = whatsAppPayload(
      { event: 'APPROVED', message_template_id: 123 },
      'message_template_status_update',
    );
    expect(normalizeWhatsAppCloudPayload(otherField, RECEIVED_AT)).toEqual({
      events: [],
      ignored: [{ reason: 'whatsapp-cloud field message_template_status_update not handled' }],
    });
    const odd = whatsAppPayload({
      statuses: [
        { id: 'wamid.x', status: 'deleted', timestamp: '1718882500', recipient_id: '4915112345678' },
      ],
      errors: [{ code: 130429, title: 'Rate limit hit' }],
    });
    expectOnlyIgnored(normalizeWhatsAppCloudPayload(odd, RECEIVED_AT), [
      'whatsapp-cloud status deleted not handled',
      'whatsapp-cloud error notification 130429',
    ]);
  });

  it('ignores a message without an id and keeps the rest of the batch', () => {
    const payload = whatsAppPayload({
      messages: [
        whatsAppMessage({ id: undefined, type: 'text', text: { body: 'hi' } }),
        whatsAppMessage({ id: 'wamid.next', type: 'text', text: { body: 'still here' } }),
      ],
    });
    const batch = normalizeWhatsAppCloudPayload(payload, RECEIVED_AT);
    expect(batch.ignored).toEqual([
      { reason: expect.stringContaining('entry[0].changes[0].value.messages[0]: not a message') },
    ]);
    expect(onlyMessage(batch.events).text).toBe('still here');
  });

  it('keeps a message whose type names content that is missing as unsupported, with Meta’s reason', () => {
    // Recorded by pywa (tests/data/updates/message.json#interactive_message_with_err): Meta sends an
    // interactive message without its body and explains why in the value's errors[].
    const payload = whatsAppPayload({
      messages: [whatsAppMessage({ type: 'interactive' }), whatsAppMessage({ type: 'image' })],
      errors: [
        {
          code: 131000,
          title: 'Something went wrong',
          error_data: { details: 'Unsupported webhook payload' },
        },
      ],
    });
    const batch = normalizeWhatsAppCloudPayload(payload, RECEIVED_AT);
    expect(batch.events.map((e) => e.type === 'message' && e.message.parts)).toEqual([
      [{ kind: 'unsupported', providerType: 'interactive', detail: 'Unsupported webhook payload' }],
      [{ kind: 'unsupported', providerType: 'image', detail: 'Unsupported webhook payload' }],
    ]);
  });

  it('ignores a status without a recipient instead of refusing the batch', () => {
    const payload = whatsAppPayload({
      statuses: [{ id: 'wamid.x', status: 'sent', timestamp: '1718882500' }],
    });
    expect(normalizeWhatsAppCloudPayload(payload, RECEIVED_AT)).toEqual({
      events: [],
      ignored: [{ reason: expect.stringContaining('statuses[0]') }],
    });
  });
});

describe('Meta adapter dispatch', () => {
  const adapter = createMetaWebhook({
    appSecret: 'test-app-secret',
    verifyToken: 'test-verify-token',
    messengerEnabled: true,
    whatsappCloudEnabled: true,
  });

  it('sends page objects to Messenger and whatsapp_business_account objects to WhatsApp Cloud', () => {
    const messenger = adapter.normalize({ object: 'page', entry: [] }, RECEIVED_AT);
    expect(messenger).toEqual({ events: [], ignored: [] });
    const events = adapter.normalize(
      {
        object: 'whatsapp_business_account',
        entry: (fixture('whatsapp-text') as { entry: unknown[] }).entry,
      },
      RECEIVED_AT,
    ).events;
    expect(onlyMessage(events).provider).toBe('whatsapp-cloud');
  });

  it('ignores objects it does not know', () => {
    expect(
      adapter.normalize({ object: 'instagram', entry: [{ id: '17841400000000000' }] }, RECEIVED_AT),
    ).toEqual({
      events: [],
      ignored: [{ reason: 'unknown object instagram' }],
    });
  });
});

/** WhatsApp Web normalisation: which chats are customers, how each message type reads, acks → statuses. */
import {
  classifyInbound,
  deliveryStateOfAck,
  jidKind,
  normalizeWhatsAppWebAck,
  normalizeWhatsAppWebMessage,
} from '../../src/channels/whatsapp-web/normalize';
import type { WwebMessageFields } from '../../src/channels/whatsapp-web/wire';

const RECEIVED = new Date('2026-03-01T12:00:00.000Z');
const OWN = '15550009999@c.us';

function message(overrides: Partial<WwebMessageFields> = {}): WwebMessageFields {
  const from = overrides.from ?? '14155550123@c.us';
  return {
    id: { fromMe: false, id: '3EB0ABCDEF', _serialized: `false_${from}_3EB0ABCDEF` },
    from,
    to: OWN,
    body: 'Hi, where is my order?',
    type: 'chat',
    timestamp: 1_772_366_000,
    fromMe: false,
    hasMedia: false,
    ...overrides,
  };
}

describe('whatsapp-web normalisation', () => {
  it('turns a customer text into a canonical whatsapp message keyed by the serialized id', () => {
    const m = normalizeWhatsAppWebMessage(message({ _data: { notifyName: 'Ada' } }), {
      receivedAt: RECEIVED,
      ownJid: OWN,
    });
    expect(m).toEqual({
      key: 'whatsapp-web:false_14155550123@c.us_3EB0ABCDEF',
      channel: 'whatsapp',
      provider: 'whatsapp-web',
      providerMessageId: 'false_14155550123@c.us_3EB0ABCDEF',
      from: { kind: 'phone', e164: '14155550123@c.us' },
      to: OWN,
      text: 'Hi, where is my order?',
      parts: [{ kind: 'text', text: 'Hi, where is my order?' }],
      profileName: 'Ada',
      sentAt: new Date(1_772_366_000 * 1000).toISOString(),
      receivedAt: RECEIVED.toISOString(),
    });
  });

  it('ignores our own messages, groups, status updates, broadcast lists and channels', () => {
    expect(classifyInbound(message({ fromMe: true }))).toEqual({ customer: false, reason: 'from_me' });
    expect(classifyInbound(message({ from: '120363025555555555@g.us', author: '14155550123@c.us' }))).toEqual(
      {
        customer: false,
        reason: 'group',
      },
    );
    expect(classifyInbound(message({ from: 'status@broadcast' }))).toEqual({
      customer: false,
      reason: 'status',
    });
    expect(classifyInbound(message({ isStatus: true }))).toEqual({ customer: false, reason: 'status' });
    expect(classifyInbound(message({ from: '1699999999@broadcast' }))).toEqual({
      customer: false,
      reason: 'broadcast',
    });
    expect(classifyInbound(message({ from: '120363111111111111@newsletter' }))).toEqual({
      customer: false,
      reason: 'newsletter',
    });
    expect(
      normalizeWhatsAppWebMessage(message({ from: '120363025555555555@g.us' }), { receivedAt: RECEIVED }),
    ).toBeUndefined();
  });

  it('ignores system notices that carry no customer content', () => {
    for (const type of ['e2e_notification', 'notification_template', 'call_log', 'revoked', 'ciphertext']) {
      expect(classifyInbound(message({ type }))).toEqual({ customer: false, reason: 'non_content' });
    }
  });

  it('keeps a LID sender as a customer and uses the phone jid when the session resolved one', () => {
    const lid = message({ from: '123456789012345@lid' });
    expect(classifyInbound(lid)).toEqual({ customer: true, from: 'lid' });
    expect(
      normalizeWhatsAppWebMessage(lid, { receivedAt: RECEIVED, senderPhoneJid: '14155550123@c.us' })?.from,
    ).toEqual({ kind: 'phone', e164: '14155550123@c.us' });
    // Unresolved: the raw LID is kept (identity rejects it, so it ends as a visible dead letter).
    expect(normalizeWhatsAppWebMessage(lid, { receivedAt: RECEIVED })?.from).toEqual({
      kind: 'phone',
      e164: '123456789012345@lid',
    });
  });

  it('describes a stored media file by reference, with its caption, type and name, never its bytes', () => {
    const m = normalizeWhatsAppWebMessage(
      message({ type: 'document', hasMedia: true, body: 'the invoice' }),
      {
        receivedAt: RECEIVED,
        media: {
          stored: true,
          id: 'whatsapp-web-media:false_14155550123@c.us_3EB0ABCDEF',
          contentType: 'application/pdf',
          filename: 'invoice.pdf',
          bytes: 1234,
        },
      },
    );
    expect(m?.parts).toEqual([
      {
        kind: 'media',
        providerMediaId: 'whatsapp-web-media:false_14155550123@c.us_3EB0ABCDEF',
        contentType: 'application/pdf',
        filename: 'invoice.pdf',
        caption: 'the invoice',
      },
    ]);
    expect(m?.text).toBe('the invoice');
  });

  it('still reports a media message whose file was too large to keep, without a reference', () => {
    const m = normalizeWhatsAppWebMessage(message({ type: 'video', hasMedia: true, body: '' }), {
      receivedAt: RECEIVED,
      media: { stored: false, reason: 'too_large', contentType: 'video/mp4', bytes: 90_000_000 },
    });
    // With its declared size, so the agent's line says how large it was.
    expect(m?.parts).toEqual([{ kind: 'media', contentType: 'video/mp4', bytes: 90_000_000 }]);
    expect(m?.text).toBeUndefined();
    const lost = normalizeWhatsAppWebMessage(message({ type: 'video', hasMedia: true, body: '' }), {
      receivedAt: RECEIVED,
      media: { stored: false, reason: 'unavailable', contentType: 'video/mp4', bytes: 5_000 },
    });
    expect(lost?.parts).toEqual([{ kind: 'media', contentType: 'video/mp4' }]);
  });

  it('reads a location from its coordinates and never uses the thumbnail body as text', () => {
    const m = normalizeWhatsAppWebMessage(
      message({
        type: 'location',
        body: '/9j/4AAQSkZJRgABAQAAAQABAAD',
        location: {
          latitude: '51.5033',
          longitude: '-0.1196',
          name: 'London Eye',
          address: 'Riverside Building',
        },
      }),
      { receivedAt: RECEIVED },
    );
    expect(m?.parts).toEqual([
      {
        kind: 'location',
        latitude: 51.5033,
        longitude: -0.1196,
        name: 'London Eye',
        address: 'Riverside Building',
      },
    ]);
    expect(m?.text).toBeUndefined();
  });

  it('keeps message types it cannot render as unsupported parts instead of dropping them', () => {
    const m = normalizeWhatsAppWebMessage(message({ type: 'poll_creation', body: 'Lunch?' }), {
      receivedAt: RECEIVED,
    });
    expect(m?.parts).toEqual([{ kind: 'unsupported', providerType: 'poll_creation' }]);
  });

  it('reads a shared contact card: its name and numbers', () => {
    // The vCard WhatsApp Web sends for a shared contact (whatsapp-web.js `Message.vCards`).
    const vcard = [
      'BEGIN:VCARD',
      'VERSION:3.0',
      'N:Doe;Jane;;;',
      'FN:Jane Doe',
      'item1.TEL;waid=15551234567:+1 555-123-4567',
      'item1.X-ABLabel:Mobile',
      'END:VCARD',
    ].join('\n');
    const m = normalizeWhatsAppWebMessage(message({ type: 'vcard', body: vcard, vCards: [vcard] }), {
      receivedAt: RECEIVED,
    });
    expect(m?.parts).toEqual([
      { kind: 'contacts', contacts: [{ name: 'Jane Doe', phones: ['+1 555-123-4567'] }] },
    ]);
  });

  it('links a reply to the message it quotes', () => {
    const m = normalizeWhatsAppWebMessage(
      message({ hasQuotedMsg: true, _data: { quotedStanzaID: '3EB0QUOTED' } }),
      { receivedAt: RECEIVED },
    );
    expect(m?.replyTo).toBe('3EB0QUOTED');
  });

  it('maps acks 1/2/3/4/-1 to sent/delivered/read/played/failed and ignores pending', () => {
    expect([1, 2, 3, 4, -1, 0].map(deliveryStateOfAck)).toEqual([
      'sent',
      'delivered',
      'read',
      'played',
      'failed',
      undefined,
    ]);
  });

  it('turns an ack on a message we sent into a status keyed by id and state', () => {
    const sent = {
      id: { fromMe: true, id: 'X1', _serialized: 'true_14155550123@c.us_X1' },
      fromMe: true,
      to: '14155550123@c.us',
    };
    expect(normalizeWhatsAppWebAck(sent, 3, RECEIVED)).toEqual({
      key: 'whatsapp-web:true_14155550123@c.us_X1:read',
      channel: 'whatsapp',
      provider: 'whatsapp-web',
      providerMessageId: 'true_14155550123@c.us_X1',
      state: 'read',
      recipient: { kind: 'phone', e164: '14155550123@c.us' },
      errors: [],
      at: RECEIVED.toISOString(),
      receivedAt: RECEIVED.toISOString(),
    });
    expect(normalizeWhatsAppWebAck(sent, -1, RECEIVED)?.errors).toHaveLength(1);
  });

  it('ignores acks on messages we received and on group chats', () => {
    const received = {
      id: { fromMe: false, id: 'Y', _serialized: 'false_14155550123@c.us_Y' },
      fromMe: false,
      to: OWN,
    };
    expect(normalizeWhatsAppWebAck(received, 3, RECEIVED)).toBeUndefined();
    const group = {
      id: { fromMe: true, id: 'Z', _serialized: 'true_1203@g.us_Z' },
      fromMe: true,
      to: '1203@g.us',
    };
    expect(normalizeWhatsAppWebAck(group, 2, RECEIVED)).toBeUndefined();
  });

  it('names jids by kind', () => {
    expect(
      [
        '14155550123@c.us',
        '14155550123:12@s.whatsapp.net',
        '99887766@lid',
        '1203@g.us',
        'status@broadcast',
        'x@y',
      ].map(jidKind),
    ).toEqual(['phone', 'phone', 'lid', 'group', 'status', 'unknown']);
  });
});

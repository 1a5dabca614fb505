/** The agent-facing text of inbound messages: every part a person can read, in order. */
import type { InboundMessage, MessagePart } from '../../src/canonical';
import { article, describeParts } from '../../src/router/inbound-text';

function message(parts: MessagePart[]): InboundMessage {
  return {
    key: 'whatsapp-web:1',
    channel: 'whatsapp',
    provider: 'whatsapp-web',
    providerMessageId: '1',
    from: { kind: 'phone', e164: '+14155550100' },
    to: '+15550002222',
    parts,
    sentAt: '2026-01-01T00:00:00.000Z',
    receivedAt: '2026-01-01T00:00:00.000Z',
  };
}

type OrderPart = Extract<MessagePart, { kind: 'order' }>;
/** What the agent reads for an order of `items` (with the customer's `text`). */
const order = (items: OrderPart['items'], text?: string) =>
  describeParts(message([{ kind: 'order', items, ...(text !== undefined ? { text } : {}) }]));

describe('describeParts', () => {
  it('shows a stored file’s name, type and caption (whatsapp-web keeps no URL)', () => {
    const text = describeParts(
      message([
        {
          kind: 'media',
          providerMediaId: 'm1',
          contentType: 'application/pdf',
          filename: 'invoice-7.pdf',
          caption: 'Is this amount right?',
        },
      ]),
    );
    expect(text).toBe(':paperclip: file invoice-7.pdf (application/pdf)\nIs this amount right?');
    expect(text).not.toContain('media id');
  });

  it('says "an" before a vowel and "a" before a consonant', () => {
    expect(article('order')).toBe('an');
    expect(article('interactive')).toBe('an');
    expect(article('poll')).toBe('a');
    expect(describeParts(message([{ kind: 'unsupported', providerType: 'order' }]))).toMatch(
      /^:grey_question: sent an order message that Rapport cannot show\./,
    );
  });

  it('totals an order in one currency and leaves the total out when currencies differ', () => {
    const one = order(
      [
        { id: 'TEA', quantity: 2, price: 3.5, currency: 'EUR' },
        { id: 'CAKE', quantity: 1, price: 4, currency: 'EUR' },
      ],
      'no sugar',
    );
    expect(one).toBe(
      ':shopping_trolley: sent an order (2 items; total 11 EUR)\n• 2 × TEA at 3.5 EUR\n• 1 × CAKE at 4 EUR\nno sugar',
    );
    const mixed = order([
      { id: 'A', quantity: 1, price: 1, currency: 'EUR' },
      { id: 'B', quantity: 1, price: 1, currency: 'USD' },
    ]);
    expect(mixed.split('\n')[0]).toBe(':shopping_trolley: sent an order (2 items)');
  });

  it('puts an edit’s new text after the message it edits', () => {
    const text = describeParts(
      message([
        { kind: 'edit', targetId: 'old' },
        { kind: 'text', text: 'Tuesday works better' },
      ]),
      (id) => (id === 'old' ? 'Monday works' : undefined),
    );
    expect(text).toBe(':pencil2: edited “Monday works”: Tuesday works better');
  });

  it('names shared contacts with their numbers, and says when a card has none', () => {
    expect(
      describeParts(
        message([
          {
            kind: 'contacts',
            contacts: [{ name: 'Jane Doe', phones: ['+1 555-123-4567'] }, { phones: [] }],
          },
        ]),
      ),
    ).toBe(
      ':bust_in_silhouette: shared *Jane Doe*: +1 555-123-4567\n:bust_in_silhouette: shared a contact (no number)',
    );
  });

  it('keeps a button payload from closing the code span', () => {
    expect(describeParts(message([{ kind: 'postback', payload: 'A`B' }]))).toBe(
      ":radio_button: pressed a button (payload `A'B`)",
    );
  });
});

/**
 * The WhatsApp Cloud sender (plain fetch) against the local Graph emulator: the exact `/messages`
 * bodies each kind of reply becomes, and how Graph's failures reach the agent.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import {
  createWhatsAppCloudSender,
  type WhatsAppCloudSenderOptions,
} from '../../src/channels/whatsapp-cloud/send';
import type { OutboundMessage } from '../../src/channels/sender';
import { startGraphEmulator, type GraphEmulator } from '../emulators/graph';
import { failureOf, outbound } from '../helpers/outbound';

const TOKEN = 'EAAG-cloud-secret-token-77';
const PHONE_NUMBER_ID = '106540352242922';
const CUSTOMER = '+14155550100';
const HEAD = { messaging_product: 'whatsapp', recipient_type: 'individual', to: CUSTOMER };

let graph: GraphEmulator;

beforeAll(async () => {
  graph = await startGraphEmulator({
    whatsappToken: TOKEN,
    pageToken: 'page-token',
    phoneNumberId: PHONE_NUMBER_ID,
  });
});
afterEach(() => graph.reset());
afterAll(() => graph.close());

function sender(overrides: Partial<WhatsAppCloudSenderOptions> = {}) {
  return createWhatsAppCloudSender({
    accessToken: TOKEN,
    phoneNumberId: PHONE_NUMBER_ID,
    graphBaseUrl: graph.url,
    graphVersion: 'v21.0',
    ...overrides,
  });
}

const reply = (overrides: Partial<OutboundMessage> = {}) =>
  outbound({ channel: 'whatsapp', provider: 'whatsapp-cloud', to: CUSTOMER }, overrides);

const bodies = () => graph.requests.map((r) => r.body);

describe('WhatsApp Cloud sender: requests', () => {
  it('sends text with a Bearer token to /{version}/{phoneNumberId}/messages and returns the wamid', async () => {
    const result = await sender().send(reply());

    expect(graph.requests).toHaveLength(1);
    expect(graph.requests[0]).toMatchObject({
      method: 'POST',
      path: `/v21.0/${PHONE_NUMBER_ID}/messages`,
      query: {},
    });
    expect(graph.requests[0]?.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(bodies()).toEqual([
      { ...HEAD, type: 'text', text: { body: 'Hello from Ana', preview_url: false } },
    ]);
    expect(result).toEqual({
      provider: 'whatsapp-cloud',
      providerMessageId: graph.whatsappMessages()[0]?.id,
    });
    expect(result.providerMessageId).toMatch(/^wamid\./);
  });

  it('always sends the number with + (Meta would otherwise prepend our own country code)', async () => {
    await sender().send(reply({ to: '14155550100' }));
    await sender().send(reply({ to: `whatsapp:${CUSTOMER}` }));
    expect(bodies().map((b) => (b as { to: string }).to)).toEqual([CUSTOMER, CUSTOMER]);
  });

  it('sends a template with its language and body parameters in numeric order', async () => {
    await sender().send(
      reply({ template: { id: 'follow_up', language: 'es', variables: { '10': 'c', '2': 'b', '1': 'a' } } }),
    );
    expect(bodies()).toEqual([
      {
        ...HEAD,
        type: 'template',
        template: {
          name: 'follow_up',
          language: { code: 'es' },
          components: [
            {
              type: 'body',
              parameters: [
                { type: 'text', text: 'a' },
                { type: 'text', text: 'b' },
                { type: 'text', text: 'c' },
              ],
            },
          ],
        },
      },
    ]);
  });

  it('sends a template without variables with language en and no components', async () => {
    await sender().send(reply({ text: undefined, template: { id: 'hello_world' } }));
    expect(bodies()).toEqual([
      { ...HEAD, type: 'template', template: { name: 'hello_world', language: { code: 'en' } } },
    ]);
  });

  it('sends each media item as its own message, the text as the first caption, and returns the first id', async () => {
    const result = await sender().send(
      reply({
        media: [
          { url: 'https://cdn.example.test/a.jpg', contentType: 'image/jpeg' },
          {
            url: 'https://cdn.example.test/invoice',
            contentType: 'application/pdf',
            filename: 'invoice.pdf',
          },
          { url: 'https://cdn.example.test/clip.mp4' },
        ],
      }),
    );
    expect(bodies()).toEqual([
      {
        ...HEAD,
        type: 'image',
        image: { link: 'https://cdn.example.test/a.jpg', caption: 'Hello from Ana' },
      },
      {
        ...HEAD,
        type: 'document',
        document: { link: 'https://cdn.example.test/invoice', filename: 'invoice.pdf' },
      },
      { ...HEAD, type: 'video', video: { link: 'https://cdn.example.test/clip.mp4' } },
    ]);
    expect(result.providerMessageId).toBe(graph.whatsappMessages()[0]?.id);
  });

  it('sends the text on its own before audio, which cannot carry a caption', async () => {
    await sender().send(
      reply({ media: [{ url: 'https://cdn.example.test/v.ogg', contentType: 'audio/ogg' }] }),
    );
    expect(bodies()).toEqual([
      { ...HEAD, type: 'text', text: { body: 'Hello from Ana', preview_url: false } },
      { ...HEAD, type: 'audio', audio: { link: 'https://cdn.example.test/v.ogg' } },
    ]);
  });

  it('refuses a message with nothing to send without calling Graph', async () => {
    const err = await failureOf(sender().send(reply({ text: '' })));
    expect(err).toMatchObject({ reason: 'unsupported', provider: 'whatsapp-cloud' });
    expect(graph.requests).toHaveLength(0);
  });
});

describe('WhatsApp Cloud sender: failures', () => {
  it('outside the 24-hour window a free-form reply is window_closed (131047) but a template goes through', async () => {
    graph.closeWindowFor('14155550100');
    const err = await failureOf(sender().send(reply()));
    expect(err).toMatchObject({ reason: 'window_closed', retryable: false, providerCode: '131047' });
    await expect(sender().send(reply({ template: { id: 'follow_up' } }))).resolves.toMatchObject({
      provider: 'whatsapp-cloud',
    });
  });

  it('a 503 is unavailable and retryable', async () => {
    graph.failNext({ status: 503 });
    const err = await failureOf(sender().send(reply()));
    expect(err).toMatchObject({ reason: 'unavailable', retryable: true, providerCode: '2' });
  });

  it('a 429 with Retry-After is rate_limited with retryAfterMs', async () => {
    graph.failNext({ status: 429, code: 130429, message: '(#130429) Rate limit hit', retryAfterSec: 4 });
    const err = await failureOf(sender().send(reply()));
    expect(err).toMatchObject({
      reason: 'rate_limited',
      retryable: true,
      retryAfterMs: 4_000,
      providerCode: '130429',
    });
  });

  it('a number outside the test allowed list is invalid_recipient (131030)', async () => {
    graph.failNext({
      status: 400,
      code: 131030,
      message: '(#131030) Recipient phone number not in allowed list',
    });
    const err = await failureOf(sender().send(reply()));
    expect(err).toMatchObject({ reason: 'invalid_recipient', providerCode: '131030' });
  });

  it('a subcode is kept in providerCode', async () => {
    graph.failNext({ status: 400, code: 100, subcode: 2494010 });
    const err = await failureOf(sender().send(reply()));
    expect(err).toMatchObject({ reason: 'rejected', providerCode: '100/2494010' });
  });

  it('a wrong token is auth (190) and no error carries the token', async () => {
    const err = await failureOf(sender({ accessToken: 'wrong-token-abc' }).send(reply()));
    expect(err).toMatchObject({ reason: 'auth', retryable: false, providerCode: '190' });
    graph.failNext({ status: 500, message: `oops ${TOKEN}` });
    const echoed = await failureOf(sender().send(reply()));
    for (const e of [err, echoed]) {
      for (const text of [e.message, JSON.stringify(e), inspect(e, { depth: 10 })]) {
        expect(text).not.toContain(TOKEN);
        expect(text).not.toContain('wrong-token-abc');
      }
    }
  });

  it('a refused connection is unavailable and retryable', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await failureOf(sender({ graphBaseUrl: `http://127.0.0.1:${port}` }).send(reply()));
    expect(err).toMatchObject({ reason: 'unavailable', retryable: true, providerCode: 'refused' });
  });
});

describe('WhatsApp Cloud sender: lost answers and parts', () => {
  const media = [
    { url: 'https://cdn.example.test/p1.jpg', contentType: 'image/jpeg' },
    { url: 'https://cdn.example.test/p2.jpg', contentType: 'image/jpeg' },
    { url: 'https://cdn.example.test/p3.jpg', contentType: 'image/jpeg' },
  ];
  const links = () => graph.whatsappMessages().map((m) => (m.body.image as { link: string }).link);
  const recorder = () => {
    const done: string[] = [];
    return { done, onPart: async (_i: number, id: string) => void done.push(id) };
  };

  it('a lost answer is uncertain and not retryable: Graph did take the message', async () => {
    graph.loseNext();
    const err = await failureOf(sender().send(reply()));
    expect(err).toMatchObject({ reason: 'uncertain', retryable: false });
    expect(graph.whatsappMessages()).toHaveLength(1);
  });

  it('a 5xx without a documented code is uncertain; code 2 (documented: retry) is retryable', async () => {
    graph.failNext({ status: 500, code: 1234 });
    expect(await failureOf(sender().send(reply()))).toMatchObject({ reason: 'uncertain', retryable: false });
    graph.failNext({ status: 500, code: 2 });
    expect(await failureOf(sender().send(reply()))).toMatchObject({ reason: 'unavailable', retryable: true });
  });

  it('records each accepted part; a retry resumes after the last one and sends no part twice', async () => {
    graph.failNext({ status: 503 }, { skip: 1 });
    const progress = recorder();
    const err = await failureOf(sender().send(reply({ media }), progress));
    expect(err).toMatchObject({ reason: 'unavailable', retryable: true });
    expect(progress.done).toHaveLength(1);
    const result = await sender().send(reply({ media }), progress);
    expect(links()).toEqual(media.map((m) => m.url));
    expect(progress.done).toEqual(graph.whatsappMessages().map((m) => m.id));
    expect(result.providerMessageId).toBe(progress.done[0]);
  });
});

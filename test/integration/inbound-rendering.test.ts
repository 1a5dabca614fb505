/**
 * What the agent sees, end to end through signed webhooks, the real pipeline and the Slack emulator:
 * a batch holding an event Meta could not render is answered 2xx and every other event still
 * reaches the thread; a reaction names the message it reacts to; captions and file names show;
 * delivery receipts keep one reaction for the reply's current state (read replaces delivered, a
 * failure removes both) and a failure reads as a sentence with the provider's reason and what to do;
 * unsupported content is counted in /metrics.
 */
import { eventually } from '../helpers/eventually';
import { cloudChange } from '../../src/sandbox/wire-builders';
import { CLOUD_ACCOUNT, PAGE_ID, startWorld, type World } from '../helpers/world';

const AGENT = { slackUserId: 'U0RENDER', name: 'Rina', inboxChannelId: 'C0RENDER' };

/** A WhatsApp Cloud `messages` change from `waId`, as Meta sends it. */
function cloudValue(waId: string, value: Record<string, unknown>) {
  return cloudChange(CLOUD_ACCOUNT, {
    contacts: [{ profile: { name: 'Rendering Customer' }, wa_id: waId }],
    ...value,
  });
}

const now = () => String(Math.floor(Date.now() / 1000));

describe('inbound rendering and receipts', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld();
    await w.addAgent(AGENT);
  });
  afterAll(() => w.stop());

  /** The customer posts in the agent's inbox (texts of thread replies, cards left out). */
  const posts = () =>
    w.slack
      .messages(AGENT.inboxChannelId)
      .filter((m) => m.metadata?.event_type === 'rapport_card')
      .flatMap((card) => w.slack.thread(AGENT.inboxChannelId, card.ts).slice(1))
      .map((m) => m.text);
  const shown = (needle: string) =>
    eventually(
      async () => posts().filter((t) => t.includes(needle)),
      (found) => found.length > 0,
    );

  it('answers a batch holding an interactive message without a body 200, and shows every event of it', async () => {
    // pywa's recorded sample (interactive without its body, errors[] 131000) next to a text and a
    // video with a caption, in one delivery: the old code refused the whole batch with 400.
    // The files are on the Graph emulator, so Rapport fetches them and posts them with their captions.
    w.graph.addWhatsAppMedia(Buffer.from('video bytes 701'), 'video/mp4', { id: '701701' });
    w.graph.addWhatsAppMedia(Buffer.from('%PDF-1.4 701'), 'application/pdf', { id: '701702' });
    const res = await w.metaWebhook(
      cloudValue('4915100000701', {
        messages: [
          { from: '4915100000701', id: 'wamid.render.701a', timestamp: now(), type: 'interactive' },
          {
            from: '4915100000701',
            id: 'wamid.render.701b',
            timestamp: now(),
            type: 'text',
            text: { body: 'hello 701' },
          },
          {
            from: '4915100000701',
            id: 'wamid.render.701c',
            timestamp: now(),
            type: 'video',
            video: { id: '701701', mime_type: 'video/mp4', caption: 'Why does it make this noise? 701' },
          },
          {
            from: '4915100000701',
            id: 'wamid.render.701d',
            timestamp: now(),
            type: 'document',
            document: { id: '701702', mime_type: 'application/pdf', filename: 'warranty-701.pdf' },
          },
        ],
        errors: [
          {
            code: 131000,
            title: 'Something went wrong',
            message: 'Something went wrong',
            error_data: { details: 'Unsupported webhook payload' },
          },
        ],
      }),
    );
    expect(res.status).toBe(200);
    expect(await shown('hello 701')).toHaveLength(1);
    expect((await shown('Unsupported webhook payload'))[0]).toMatch(
      /sent an interactive message that Rapport cannot show/,
    );
    expect((await shown('noise? 701'))[0]).toMatch(
      /:paperclip: video-1\.mp4\nWhy does it make this noise\? 701/,
    );
    expect((await shown('warranty-701.pdf'))[0]).toContain(':paperclip: warranty-701.pdf');

    const metrics = await (await fetch(`${w.t.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(
      /rapport_inbound_unsupported_total\{channel="whatsapp-cloud",type="interactive"\} 1/,
    );
  });

  it('answers a Messenger postback with only a payload 200 and shows the press', async () => {
    const res = await w.metaWebhook({
      object: 'page',
      entry: [
        {
          id: PAGE_ID,
          time: Date.now(),
          messaging: [
            {
              sender: { id: '7020000000000702' },
              recipient: { id: PAGE_ID },
              timestamp: Date.now(),
              postback: { payload: 'MENU_ORDERS_702' },
            },
            {
              sender: { id: '7020000000000702' },
              recipient: { id: PAGE_ID },
              timestamp: Date.now() + 1,
              message: {
                mid: 'm_render_702',
                attachments: [
                  {
                    type: 'fallback',
                    payload: null,
                    title: 'Size guide 702',
                    URL: 'https://shop.example/size-702',
                  },
                ],
              },
            },
          ],
        },
      ],
    });
    expect(res.status).toBe(200);
    expect((await shown('MENU_ORDERS_702'))[0]).toContain('pressed a button (payload `MENU_ORDERS_702`)');
    expect((await shown('Size guide 702'))[0]).toContain(
      ':link: shared a link: Size guide 702: https://shop.example/size-702',
    );
  });

  it('shows a reaction on the agent’s reply it reacts to, and keeps one receipt reaction per state', async () => {
    const waId = '4915100000703';
    expect((await w.cloudWhatsApp(waId, 'question 703', { id: 'wamid.render.703q' })).status).toBe(200);
    const card = await eventually(
      async () =>
        w.slack
          .messages(AGENT.inboxChannelId)
          .find((c) =>
            w.slack.thread(AGENT.inboxChannelId, c.ts).some((m) => m.text.includes('question 703')),
          ),
      Boolean,
    );
    const reply = await w.agentReply(AGENT.inboxChannelId, card!.ts, AGENT.slackUserId, 'Answer 703 <b>');
    const send = await eventually(
      () => w.t.app.models.CustomerSend.findOne({ key: `slack:${AGENT.inboxChannelId}:${reply.ts}` }).lean(),
      (s) => s?.state === 'sent',
    );
    const wamid = send!.providerMessageId as string;

    // The customer reacts to the agent's reply.
    await w.metaWebhook(
      cloudValue(waId, {
        messages: [
          {
            from: waId,
            id: 'wamid.render.703r',
            timestamp: now(),
            type: 'reaction',
            reaction: { message_id: wamid, emoji: '👍' },
          },
        ],
      }),
    );
    expect((await shown('reacted 👍'))[0]).toContain('reacted 👍 to “Answer 703 &lt;b&gt;”');
    // A reaction asks nothing: the conversation is not waiting for an answer again (no SLA clock).
    await new Promise((r) => setTimeout(r, 500));
    const conversation = await w.t.app.models.Conversation.findById(send!.customerId).lean();
    expect(conversation?.awaitingSince).toBeUndefined();

    const reactions = () =>
      w.slack.thread(AGENT.inboxChannelId, card!.ts).find((m) => m.ts === reply.ts)?.reactions ?? [];
    const status = (state: string, errors?: unknown[]) =>
      w.metaWebhook(
        cloudValue(waId, {
          statuses: [
            { id: wamid, status: state, timestamp: now(), recipient_id: waId, ...(errors ? { errors } : {}) },
          ],
        }),
      );
    // read before delivered (out of order): delivered must not bring the tick back.
    await status('read');
    await eventually(
      async () => reactions(),
      (r) => r.includes('eyes'),
    );
    await status('delivered');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(reactions().filter((r) => ['white_check_mark', 'eyes', 'x'].includes(r))).toEqual(['eyes']);

    await status('failed', [
      {
        code: 131026,
        title: 'Message undeliverable',
        message: 'Message undeliverable',
        error_data: { details: 'Message failed to send because the user is not on WhatsApp.' },
      },
    ]);
    const final = await eventually(
      async () => reactions(),
      (r) => r.includes('x') && !r.includes('eyes'),
    );
    expect(final.filter((r) => ['white_check_mark', 'eyes', 'x'].includes(r))).toEqual(['x']);
    const note = (await shown('could not deliver your reply'))[0];
    expect(note).toBe(
      ':x: WhatsApp could not deliver your reply: “Message undeliverable — Message failed to send because the user is not on WhatsApp”. ' +
        'The provider says this address cannot receive messages (wrong number, blocked or not on this app): ' +
        'check the number with the customer, or reach them on another channel. (provider code 131026)',
    );
  });

  it('shows a Messenger read watermark on the replies it covers, and an older delivery does not step it back', async () => {
    const psid = '7040000000000704';
    expect((await w.messenger(psid, 'question 704')).status).toBe(200);
    const card = await eventually(
      async () =>
        w.slack
          .messages(AGENT.inboxChannelId)
          .find((c) =>
            w.slack.thread(AGENT.inboxChannelId, c.ts).some((m) => m.text.includes('question 704')),
          ),
      Boolean,
    );
    const reply = await w.agentReply(AGENT.inboxChannelId, card!.ts, AGENT.slackUserId, 'Answer 704');
    await eventually(
      () => w.t.app.models.CustomerSend.findOne({ key: `slack:${AGENT.inboxChannelId}:${reply.ts}` }).lean(),
      (s) => s?.state === 'sent',
    );
    const receipt = (field: 'read' | 'delivery', watermark: number) =>
      w.metaWebhook({
        object: 'page',
        entry: [
          {
            id: PAGE_ID,
            time: Date.now(),
            messaging: [
              {
                sender: { id: psid },
                recipient: { id: PAGE_ID },
                ...(field === 'read' ? { timestamp: watermark } : {}),
                [field]: { watermark },
              },
            ],
          },
        ],
      });
    const reactions = () =>
      (w.slack.thread(AGENT.inboxChannelId, card!.ts).find((m) => m.ts === reply.ts)?.reactions ?? []).filter(
        (r) => ['white_check_mark', 'eyes', 'x'].includes(r),
      );
    expect((await receipt('read', Date.now() + 60_000)).status).toBe(200);
    expect(
      await eventually(
        async () => reactions(),
        (r) => r.includes('eyes'),
      ),
    ).toEqual(['eyes']);
    expect((await receipt('delivery', Date.now() + 30_000)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(reactions()).toEqual(['eyes']);
  });
});

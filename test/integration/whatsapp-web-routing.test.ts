/**
 * The WhatsApp Web channel around a scripted client (the only fake), with real Redis, BullMQ and
 * MongoDB: messages and acks reach the real inbound queue once, sends travel through the real
 * `whatsapp-web-out` queue to the session's client exactly once, and a lost client is rebuilt with
 * backoff, alerting after repeated failures.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { OutboundError, type OutboundMessage } from '../../src/channels/sender';
import { jobIdFor } from '../../src/queue/names';
import type { InboundEvent } from '../../src/canonical';
import { eventually } from '../helpers/eventually';
import {
  OWN_JID,
  createWhatsAppWebHarness,
  fakeClientFactory,
  fakeMessage,
  type WhatsAppWebHarness,
} from '../fakes/whatsapp-web-client';

const CUSTOMER = '14155550123@c.us';

describe('whatsapp-web channel routing', () => {
  let h: WhatsAppWebHarness;
  beforeAll(async () => {
    h = await createWhatsAppWebHarness('wwebroute');
  });
  afterAll(() => h.close());

  const jobData = async (key: string): Promise<InboundEvent | undefined> => {
    const job = await h.queues.inbound.getJob(jobIdFor(key));
    return job?.data as InboundEvent | undefined;
  };
  /** The inbound job queued under `key`, waited for (up to 5 s). */
  const queuedJob = (key: string) =>
    eventually(
      () => jobData(key),
      (d) => d !== undefined,
      5_000,
    );

  async function readyChannel(clientId: string, extra: Parameters<WhatsAppWebHarness['channel']>[0] = {}) {
    const factory = fakeClientFactory();
    const channel = h.channel({ clientId, createClient: (o) => factory.create(o), ...extra });
    await channel.start();
    await eventually(
      async () => channel.state().state,
      (s) => s === 'ready',
      5_000,
    );
    expect(channel.state().state).toBe('ready');
    return { channel, factory, client: factory.latest()! };
  }

  it('queues a customer text once as a canonical whatsapp message, even when the event repeats', async () => {
    const { client, channel } = await readyChannel('inbound-text');
    const msg = fakeMessage({
      from: CUSTOMER,
      body: 'Hello, is my parcel on its way?',
      _data: { notifyName: 'Ada' },
    });
    client.receive(msg);
    client.receive(msg);
    const key = `whatsapp-web:${msg.id._serialized}`;
    const data = await queuedJob(key);
    expect(data).toMatchObject({
      type: 'message',
      message: {
        key,
        channel: 'whatsapp',
        provider: 'whatsapp-web',
        from: { kind: 'phone', e164: CUSTOMER },
        to: OWN_JID,
        text: 'Hello, is my parcel on its way?',
        profileName: 'Ada',
      },
    });
    await eventually(
      async () => (await h.registry.getSingleMetricAsString('rapport_whatsapp_web_inbound_total')) ?? '',
      (m) => m.includes('outcome="duplicate"'),
      5_000,
    );
    const all = await h.queues.inbound.getJobs(['waiting']);
    expect(all.filter((j) => j.id === jobIdFor(key))).toHaveLength(1);
    await channel.stop();
  });

  it('does not queue our own messages, group messages or status updates', async () => {
    const { client, channel } = await readyChannel('inbound-ignored');
    const ignored = [
      fakeMessage({ from: CUSTOMER, fromMe: true, to: CUSTOMER, body: 'sent from the phone' }),
      fakeMessage({ from: '120363025555555555@g.us', author: CUSTOMER, body: 'group chatter' }),
      fakeMessage({ from: 'status@broadcast', author: CUSTOMER, body: 'my holiday' }),
    ];
    const marker = fakeMessage({ from: CUSTOMER, body: 'a real one' });
    for (const m of [...ignored, marker]) client.receive(m);
    await queuedJob(`whatsapp-web:${marker.id._serialized}`);
    for (const m of ignored) expect(await jobData(`whatsapp-web:${m.id._serialized}`)).toBeUndefined();
    await channel.stop();
  });

  it('keeps a media file in MongoDB and puts only a reference, type and name in the event', async () => {
    const { client, channel } = await readyChannel('inbound-media');
    const bytes = Buffer.from('%PDF-1.7 fake invoice body '.repeat(200));
    const msg = fakeMessage(
      {
        from: CUSTOMER,
        type: 'document',
        body: 'invoice attached',
        _data: { mimetype: 'application/pdf', size: bytes.length },
      },
      { mimetype: 'application/pdf', data: bytes.toString('base64'), filename: 'invoice.pdf' },
    );
    client.receive(msg);
    const key = `whatsapp-web:${msg.id._serialized}`;
    const data = await queuedJob(key);
    expect(data?.type).toBe('message');
    const part = data?.type === 'message' ? data.message.parts[0] : undefined;
    expect(part).toEqual({
      kind: 'media',
      providerMediaId: `whatsapp-web-media:${msg.id._serialized}`,
      contentType: 'application/pdf',
      filename: 'invoice.pdf',
      caption: 'invoice attached',
    });
    expect(JSON.stringify(data)).not.toContain(bytes.toString('base64').slice(0, 40));
    const kept = await channel.media(`whatsapp-web-media:${msg.id._serialized}`);
    expect(kept?.data.equals(bytes)).toBe(true);
    expect(kept?.contentType).toBe('application/pdf');
    await channel.stop();
  });

  it('does not download a file larger than the limit but still reports that it was sent', async () => {
    const { client, channel } = await readyChannel('inbound-big', { maxMediaBytes: 1024 });
    const msg = fakeMessage(
      { from: CUSTOMER, type: 'video', _data: { mimetype: 'video/mp4', size: 50_000_000 } },
      { mimetype: 'video/mp4', data: 'AAAA' },
    );
    client.receive(msg);
    const data = await queuedJob(`whatsapp-web:${msg.id._serialized}`);
    // The declared size travels with it, so the agent's line can say how large it was.
    expect(data?.type === 'message' ? data.message.parts : []).toEqual([
      { kind: 'media', contentType: 'video/mp4', bytes: 50_000_000 },
    ]);
    await channel.stop();
  });

  it('resolves a LID sender to the phone number WhatsApp knows for it', async () => {
    const { client, channel } = await readyChannel('inbound-lid');
    client.lids.set('123456789012345@lid', CUSTOMER);
    const msg = fakeMessage({ from: '123456789012345@lid', body: 'hi from a LID' });
    client.receive(msg);
    const data = await queuedJob(`whatsapp-web:${msg.id._serialized}`);
    expect(data?.type === 'message' ? data.message.from : undefined).toEqual({
      kind: 'phone',
      e164: CUSTOMER,
    });
    await channel.stop();
  });

  it('turns acks on a message we sent into delivery statuses on the inbound queue', async () => {
    const { client, channel } = await readyChannel('acks');
    const sent = fakeMessage({ from: OWN_JID, to: CUSTOMER, fromMe: true, body: 'Your parcel ships today' });
    for (const ack of [1, 2, 3]) client.ack(sent, ack);
    for (const state of ['sent', 'delivered', 'read']) {
      const key = `whatsapp-web:${sent.id._serialized}:${state}`;
      const data = await queuedJob(key);
      expect(data).toMatchObject({
        type: 'status',
        status: { key, state, providerMessageId: sent.id._serialized },
      });
    }
    await channel.stop();
  });

  it('sends through the queue to the session client exactly once and returns its message id, from any process', async () => {
    const { client, channel } = await readyChannel('send-once');
    // Another process: same queue, never started, so it holds no session.
    const elsewhere = h.channel({
      clientId: 'send-once',
      createClient: () => {
        throw new Error('must not build');
      },
    });
    const message: OutboundMessage = {
      key: 'agent-reply-1',
      channel: 'whatsapp',
      provider: 'whatsapp-web',
      to: '+14155550123',
      text: 'It ships today!',
    };
    const result = await elsewhere.sender().send(message);
    expect(client.sent).toHaveLength(1);
    expect(client.sent[0]).toMatchObject({ chatId: CUSTOMER, content: 'It ships today!' });
    expect(result).toEqual({ provider: 'whatsapp-web', providerMessageId: client.sent[0]!.id });

    // The caller retries the same message (e.g. it timed out): the recorded result, no second send.
    expect(await channel.sender().send(message)).toEqual(result);
    expect(client.sent).toHaveLength(1);
    await elsewhere.stop();
    await channel.stop();
  });

  it('sends a media URL as a file with the text as its caption', async () => {
    const server: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(Buffer.from('89504e470d0a1a0a', 'hex'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const { client, channel } = await readyChannel('send-media');
      await channel.sender().send({
        key: 'agent-photo-1',
        channel: 'whatsapp',
        provider: 'whatsapp-web',
        to: '+14155550123',
        text: 'Here is the label',
        media: [{ url: `http://127.0.0.1:${port}/label.png` }],
      });
      expect(client.sent).toHaveLength(1);
      const content = client.sent[0]!.content;
      expect(typeof content === 'string' ? undefined : content.data).toBe(
        Buffer.from('89504e470d0a1a0a', 'hex').toString('base64'),
      );
      expect(client.sent[0]!.options).toEqual({ caption: 'Here is the label' });
      await channel.stop();
    } finally {
      server.close();
    }
  });

  it('answers invalid_recipient when the number is not on WhatsApp, and unsupported for templates', async () => {
    const { client, channel } = await readyChannel('send-refused');
    client.unregistered.add('14155550000');
    const send = (m: Partial<OutboundMessage>) =>
      channel.sender().send({
        key: `k-${Math.random()}`,
        channel: 'whatsapp',
        provider: 'whatsapp-web',
        to: '+14155550000',
        text: 'hi',
        ...m,
      });
    await expect(send({})).rejects.toMatchObject({ reason: 'invalid_recipient', retryable: false });
    await expect(send({ to: '+14155550123', template: { id: 'x' } })).rejects.toMatchObject({
      reason: 'unsupported',
    });
    expect(client.sent).toHaveLength(0);
    await channel.stop();
  });

  it('answers a retryable unavailable when no session sends in time', async () => {
    const channel = h.channel({ clientId: 'send-nobody', sendTimeoutMs: 400 });
    const err: unknown = await channel
      .sender()
      .send({
        key: 'nobody-1',
        channel: 'whatsapp',
        provider: 'whatsapp-web',
        to: '+14155550123',
        text: 'hello?',
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundError);
    expect(err).toMatchObject({ reason: 'unavailable', retryable: true });
    await channel.stop();
  });

  it('does not deliver a send that waited too long, but sends it when the caller retries', async () => {
    const message: OutboundMessage = {
      key: 'stale-1',
      channel: 'whatsapp',
      provider: 'whatsapp-web',
      to: '14155550123@c.us',
      text: 'late?',
    };
    const waiting = h.channel({ clientId: 'stale', sendTimeoutMs: 300 });
    await expect(waiting.sender().send(message)).rejects.toMatchObject({ reason: 'unavailable' });
    await new Promise((r) => setTimeout(r, 300));

    const { client, channel } = await readyChannel('stale', { maxSendAgeMs: 250, sendTimeoutMs: 3_000 });
    // The session comes up and finds the old job: expired, so not sent.
    await eventually(
      async () => (await h.registry.getSingleMetricAsString('rapport_whatsapp_web_sends_total')) ?? '',
      (m) => /client_id="stale",outcome="unavailable"/.test(m),
      5_000,
    );
    expect(client.sent).toHaveLength(0);
    // The caller's retry (same key) replaces the expired job and goes out now, once.
    const result = await waiting.sender().send(message);
    expect(client.sent).toHaveLength(1);
    expect(result.providerMessageId).toBe(client.sent[0]!.id);
    await waiting.stop();
    await channel.stop();
  });

  it('builds a new client after a backoff when the session disconnects, and sends with it', async () => {
    const factory = fakeClientFactory();
    const channel = h.channel({
      clientId: 'reconnect',
      createClient: (o) => factory.create(o),
      reconnect: { initialMs: 300, maxMs: 1_000, alertAfter: 5 },
    });
    await channel.start();
    await eventually(
      async () => channel.state().state,
      (s) => s === 'ready',
      5_000,
    );
    const first = factory.latest()!;
    first.disconnect('CONFLICT');
    expect(channel.state()).toMatchObject({
      state: 'disconnected',
      detail: 'WhatsApp Web disconnected: CONFLICT',
    });
    // Not rebuilt at once: the backoff comes first.
    expect(factory.clients).toHaveLength(1);
    await eventually(
      async () => channel.state().state,
      (s) => s === 'ready',
      5_000,
    );
    expect(factory.clients).toHaveLength(2);
    expect(first.destroyed).toBeGreaterThanOrEqual(1);

    // Events of the dead client no longer count.
    first.receive(fakeMessage({ from: CUSTOMER, body: 'ghost' }));
    const second = factory.latest()!;
    await channel.sender().send({
      key: 'after-reconnect',
      channel: 'whatsapp',
      provider: 'whatsapp-web',
      to: '+14155550123',
      text: 'back',
    });
    expect(first.sent).toHaveLength(0);
    expect(second.sent).toHaveLength(1);
    await channel.stop();
  });

  it('alerts once after the configured number of consecutive failures, and again when it recovers', async () => {
    const notes: string[] = [];
    const unreachable = new Error('net::ERR_CONNECTION_REFUSED at https://web.whatsapp.com/');
    const factory = fakeClientFactory((n) =>
      n < 4 ? { kind: 'reject', error: unreachable } : { kind: 'ready' },
    );
    const channel = h.channel({
      clientId: 'alerting',
      createClient: (o) => factory.create(o),
      reconnect: { initialMs: 20, maxMs: 80, alertAfter: 3 },
      notify: async (text) => void notes.push(text),
    });
    await channel.start();
    expect(channel.state()).toMatchObject({
      state: 'unreachable',
      detail: 'cannot reach WhatsApp Web (net::ERR_CONNECTION_REFUSED)',
    });
    expect(channel.readiness()).toMatchObject({ ok: false, state: 'unreachable' });
    await eventually(
      async () => channel.state().state,
      (s) => s === 'ready',
      5_000,
    );
    expect(factory.clients).toHaveLength(5);
    expect(factory.clients.slice(0, 4).every((c) => c.destroyed >= 1)).toBe(true);
    await eventually(
      async () => notes.length,
      (n) => n >= 2,
      2_000,
    );
    expect(notes).toHaveLength(2);
    expect(notes[0]).toMatch(/failed 3 times in a row — unreachable: cannot reach WhatsApp Web/);
    expect(notes[1]).toMatch(/connected again/);
    expect(channel.readiness()).toEqual({ ok: true, state: 'ready' });
    await channel.stop();
  });

  it('treats a start that never shows a QR or becomes ready as a failure and retries', async () => {
    const factory = fakeClientFactory((n) => (n === 0 ? { kind: 'hang' } : { kind: 'ready' }));
    const channel = h.channel({
      clientId: 'hung',
      createClient: (o) => factory.create(o),
      startTimeoutMs: 200,
      reconnect: { initialMs: 50, maxMs: 100, alertAfter: 5 },
    });
    await channel.start();
    await eventually(
      async () => channel.state().state,
      (s) => s === 'ready',
      5_000,
    );
    expect(factory.clients).toHaveLength(2);
    expect(factory.clients[0]!.destroyed).toBeGreaterThanOrEqual(1);
    await channel.stop();
  });

  it('offers a login QR to the admin page and Slack as a PNG, without writing it to the log', async () => {
    const qr = '2@Y2hhbGxlbmdlLXRva2VuLXRoYXQtaXMtYS1zZWNyZXQ=,c2VjcmV0LWtleQ==,aWRlbnRpdHk=,YWR2,1';
    const images: { text: string; filename?: string; png?: Buffer }[] = [];
    const factory = fakeClientFactory(() => ({ kind: 'qr', qr }));
    const channel = h.channel({
      clientId: 'login',
      createClient: (o) => factory.create(o),
      notify: async (text, image) =>
        void images.push({ text, ...(image ? { filename: image.filename, png: image.data } : {}) }),
    });
    await channel.start();
    await eventually(
      async () => channel.state().state,
      (s) => s === 'qr',
      5_000,
    );
    expect(channel.state()).toMatchObject({ state: 'qr', qr });
    expect(channel.readiness()).toMatchObject({ ok: false, state: 'qr' });
    expect(await channel.qrPngDataUrl()).toMatch(/^data:image\/png;base64,/);
    await eventually(
      async () => images.length,
      (n) => n === 1,
      5_000,
    );
    expect(images[0]!.filename).toBe('whatsapp-web-login-qr.png');
    expect(images[0]!.png!.subarray(1, 4).toString()).toBe('PNG');
    expect(h.logs.some((l) => l.includes('login QR code issued'))).toBe(true);
    expect(h.logs.some((l) => l.includes('Y2hhbGxlbmdl'))).toBe(false);

    factory.latest()!.becomeReady();
    expect(channel.state().state).toBe('ready');
    expect(await channel.qrPngDataUrl()).toBeUndefined();
    await channel.stop();
  });

  it('picks up unread messages of 1:1 chats after ready', async () => {
    const factory = fakeClientFactory();
    const missed = fakeMessage({ from: CUSTOMER, body: 'sent while you were down' });
    const ours = fakeMessage({ from: OWN_JID, to: CUSTOMER, fromMe: true, body: 'our earlier reply' });
    const original = factory.create.bind(factory);
    const channel = h.channel({
      clientId: 'catch-up',
      catchUp: { maxChats: 10, maxMessagesPerChat: 10 },
      createClient: (o) => {
        const c = original(o);
        c.chats = [
          {
            id: { _serialized: CUSTOMER },
            isGroup: false,
            unreadCount: 2,
            fetchMessages: async () => [ours, missed],
          },
          {
            id: { _serialized: '1203@g.us' },
            isGroup: true,
            unreadCount: 5,
            fetchMessages: async () => [fakeMessage({ from: '1203@g.us', body: 'x' })],
          },
        ];
        return c;
      },
    });
    await channel.start();
    const data = await queuedJob(`whatsapp-web:${missed.id._serialized}`);
    expect(data).toMatchObject({ type: 'message', message: { text: 'sent while you were down' } });
    expect(await jobData(`whatsapp-web:${ours.id._serialized}`)).toBeUndefined();
    await channel.stop();
  });

  it('exports the current state per number as rapport_whatsapp_web_state', async () => {
    const { channel } = await readyChannel('metrics');
    const text = await h.registry.metrics();
    expect(text).toContain('rapport_whatsapp_web_state{client_id="metrics",state="ready"} 1');
    expect(text).toContain('rapport_whatsapp_web_state{client_id="metrics",state="starting"} 0');
    expect(text).toMatch(/rapport_whatsapp_web_state_changes_total\{client_id="metrics",state="ready"\} 1/);
    await channel.stop();
  });
});

/**
 * The units the WhatsApp Web channel is built from (src/channels/whatsapp-web/session.ts wires
 * them): the failure streak and its alerts, the state with its metrics, QR notices, in-flight work,
 * the catch-up scan and the inbound pipeline's order and retries. Each is driven directly; the
 * whole channel is covered by test/integration/whatsapp-web-*.test.ts.
 */
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import type { InboundEvent } from '../../src/canonical';
import { catchUpUnread } from '../../src/channels/whatsapp-web/catch-up';
import { InboundPipeline } from '../../src/channels/whatsapp-web/inbound';
import { Inflight } from '../../src/channels/whatsapp-web/inflight';
import type { InboundMediaRef } from '../../src/channels/whatsapp-web/normalize';
import { sessionMetrics } from '../../src/channels/whatsapp-web/metrics';
import { QrPresenter, safeNotifier, type NotifyImage } from '../../src/channels/whatsapp-web/qr';
import { FailureStreak } from '../../src/channels/whatsapp-web/reconnect';
import { SessionState } from '../../src/channels/whatsapp-web/state';
import type { WwebChat, WwebMessage } from '../../src/channels/whatsapp-web/wire';
import { FakeWhatsAppWebClient, OWN_JID, capturedLog, fakeMessage } from '../fakes/whatsapp-web-client';

async function metricValue(registry: Registry, name: string, labels: Record<string, string>) {
  const metric = await registry.getSingleMetric(name)?.get();
  const found = metric?.values.find((v) =>
    Object.entries(labels).every(([k, value]) => v.labels[k] === value),
  );
  return found?.value ?? 0;
}

describe('FailureStreak', () => {
  const policy = { initialMs: 100, maxMs: 1_000, alertAfter: 3 };

  it('backs off exponentially and alerts once, on the failure that crosses alertAfter', () => {
    const streak = new FailureStreak('main', policy);
    const results = [1, 2, 3, 4, 5, 6].map(() => streak.fail('unreachable', 'net::ERR_NAME_NOT_RESOLVED'));
    expect(results.map((r) => r.delayMs)).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(results.map((r) => r.alert !== undefined)).toEqual([false, false, true, false, false, false]);
    expect(results[2]!.alert).toContain('WhatsApp Web (main) has failed 3 times in a row — unreachable');
  });

  it('sends a recovery notice only after an alert, and starts the count again', () => {
    const streak = new FailureStreak('main', policy);
    streak.fail('disconnected', 'x');
    expect(streak.succeed()).toBeUndefined();
    for (let i = 0; i < 3; i++) streak.fail('disconnected', 'x');
    expect(streak.succeed()).toContain('WhatsApp Web (main) is connected again');
    expect(streak.failures).toBe(0);
    expect(streak.succeed()).toBeUndefined();
    expect(streak.fail('failed', 'y').delayMs).toBe(100);
  });
});

describe('SessionState and its metrics', () => {
  it('starts disabled, keeps `since` while the state stays, and shows one state at a time', async () => {
    const registry = new Registry();
    const { log } = capturedLog();
    const state = new SessionState(sessionMetrics(registry, 'n1'), log);
    expect(state.current()).toMatchObject({ state: 'disabled', detail: 'not started' });
    expect(
      await metricValue(registry, 'rapport_whatsapp_web_state', { client_id: 'n1', state: 'disabled' }),
    ).toBe(1);

    state.set('ready');
    const since = state.current().since;
    await new Promise((r) => setTimeout(r, 5));
    state.set('ready', 'WhatsApp socket TIMEOUT');
    expect(state.current()).toEqual({ state: 'ready', since, detail: 'WhatsApp socket TIMEOUT' });
    expect(
      await metricValue(registry, 'rapport_whatsapp_web_state', { client_id: 'n1', state: 'ready' }),
    ).toBe(1);
    expect(
      await metricValue(registry, 'rapport_whatsapp_web_state', { client_id: 'n1', state: 'disabled' }),
    ).toBe(0);
    // Refreshing a detail is not a transition.
    expect(
      await metricValue(registry, 'rapport_whatsapp_web_state_changes_total', {
        client_id: 'n1',
        state: 'ready',
      }),
    ).toBe(1);
  });

  it('is ready for /readyz only when ready, standby or disabled', () => {
    const { log } = capturedLog();
    const state = new SessionState(sessionMetrics(new Registry(), 'n1'), log);
    const ok = (s: Parameters<SessionState['set']>[0]) => {
      state.set(s, 'why');
      return state.readiness().ok;
    };
    expect(['ready', 'standby', 'disabled'].map((s) => ok(s as 'ready'))).toEqual([true, true, true]);
    expect(
      ['starting', 'qr', 'authenticated', 'disconnected', 'unreachable', 'failed'].map((s) => ok(s as 'qr')),
    ).toEqual([false, false, false, false, false, false]);
    expect(state.readiness()).toEqual({ ok: false, state: 'failed', detail: 'why' });
  });

  it('never logs the QR string', () => {
    const { log, lines } = capturedLog();
    const state = new SessionState(sessionMetrics(new Registry(), 'n1'), log);
    state.set('qr', 'scan it', '2@SECRET-QR-PAYLOAD');
    expect(state.current().qr).toBe('2@SECRET-QR-PAYLOAD');
    expect(lines.join('\n')).not.toContain('SECRET-QR-PAYLOAD');
  });

  it('two numbers share one set of metrics on a registry, told apart by client id', async () => {
    const registry = new Registry();
    const a = sessionMetrics(registry, 'a');
    const b = sessionMetrics(registry, 'b');
    a.send('sent');
    b.send('sent');
    b.send('rejected');
    expect(
      await metricValue(registry, 'rapport_whatsapp_web_sends_total', { client_id: 'b', outcome: 'sent' }),
    ).toBe(1);
    expect(
      await metricValue(registry, 'rapport_whatsapp_web_sends_total', { client_id: 'a', outcome: 'sent' }),
    ).toBe(1);
  });
});

describe('QR notices', () => {
  function presenter(now: { t: number }, notify?: (text: string, image?: NotifyImage) => Promise<void>) {
    const { log, lines } = capturedLog();
    const drawn: string[] = [];
    const terminal = new Writable({
      write(chunk: Buffer, _enc, done) {
        drawn.push(chunk.toString('utf8'));
        done();
      },
    });
    const qr = new QrPresenter({
      clientId: 'main',
      terminal,
      notifier: safeNotifier(notify, log),
      notifyIntervalMs: 60_000,
      log,
      now: () => now.t,
    });
    return { qr, drawn, lines };
  }

  it('draws every QR, and posts a PNG at most once per interval', async () => {
    const posts: { text: string; image?: NotifyImage }[] = [];
    const now = { t: 1_000_000 };
    const { qr, drawn } = presenter(now, async (text, image) => {
      posts.push({ text, ...(image ? { image } : {}) });
    });
    await qr.show('2@first');
    now.t += 30_000;
    await qr.show('2@second');
    now.t += 31_000;
    await qr.show('2@third');
    expect(drawn).toHaveLength(3);
    expect(drawn[0]).toContain('WhatsApp Web (main): scan this QR code');
    expect(posts).toHaveLength(2);
    expect(posts[0]!.image!.filename).toBe('whatsapp-web-main-qr.png');
    expect(posts[0]!.image!.data.subarray(1, 4).toString('latin1')).toBe('PNG');
  });

  it('a notice that cannot be posted is logged, not thrown', async () => {
    const { qr, lines } = presenter({ t: 10_000_000 }, async () => {
      throw new Error('slack down');
    });
    await expect(qr.show('2@qr')).resolves.toBeUndefined();
    expect(lines.some((l) => l.includes('whatsapp web notification failed'))).toBe(true);
  });
});

describe('Inflight', () => {
  it('forgets settled work and stops waiting for hung work after the bound', async () => {
    const inflight = new Inflight();
    await inflight.track(Promise.resolve(1));
    await inflight.track(Promise.reject(new Error('x'))).catch(() => undefined);
    await new Promise((r) => setImmediate(r));
    expect(inflight.size).toBe(0);
    void inflight.track(new Promise(() => undefined));
    const started = Date.now();
    await inflight.settle(50);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(inflight.size).toBe(1);
  });
});

function chat(jid: string, unreadCount: number, messages: WwebMessage[], isGroup = false): WwebChat {
  return {
    id: { _serialized: jid },
    isGroup,
    unreadCount,
    async fetchMessages({ limit }) {
      return messages.slice(-limit);
    },
  };
}

describe('catchUpUnread', () => {
  const limits = { maxChats: 2, maxMessagesPerChat: 2 };

  it('hands over the unread customer messages of unread 1:1 chats, within the limits', async () => {
    const client = new FakeWhatsAppWebClient({} as never, { kind: 'ready' });
    const a1 = fakeMessage({ from: '15550100001@c.us', body: 'a1' });
    const a2 = fakeMessage({ from: '15550100001@c.us', body: 'a2' });
    const a3 = fakeMessage({ from: '15550100001@c.us', body: 'a3' });
    const mine = fakeMessage({ from: OWN_JID, to: '15550100002@c.us', fromMe: true, body: 'mine' });
    const b1 = fakeMessage({ from: '15550100002@c.us', body: 'b1' });
    client.chats = [
      chat(
        '120363000000000001@g.us',
        5,
        [fakeMessage({ from: '120363000000000001@g.us', body: 'group' })],
        true,
      ),
      chat('status@broadcast', 3, [fakeMessage({ from: 'status@broadcast', body: 'status' })]),
      chat('15550100001@c.us', 3, [a1, a2, a3]),
      chat('15550100003@c.us', 0, [fakeMessage({ from: '15550100003@c.us', body: 'read' })]),
      chat('15550100002@c.us', 2, [mine, b1]),
      chat('15550100004@c.us', 1, [fakeMessage({ from: '15550100004@c.us', body: 'over the chat limit' })]),
    ];
    const delivered: string[] = [];
    const { log } = capturedLog();
    await catchUpUnread(client, {
      limits,
      isCurrent: () => true,
      deliver: (m) => delivered.push(m.body),
      log,
    });
    expect(delivered).toEqual(['a2', 'a3', 'b1']);
  });

  it('stops when the client is no longer current, and never throws', async () => {
    const client = new FakeWhatsAppWebClient({} as never, { kind: 'ready' });
    client.chats = [
      chat('15550100001@c.us', 1, [fakeMessage({ from: '15550100001@c.us', body: 'one' })]),
      chat('15550100002@c.us', 1, [fakeMessage({ from: '15550100002@c.us', body: 'two' })]),
    ];
    const delivered: string[] = [];
    let current = true;
    const { log, lines } = capturedLog();
    await catchUpUnread(client, {
      limits,
      isCurrent: () => current,
      deliver: (m) => {
        delivered.push(m.body);
        current = false;
      },
      log,
    });
    expect(delivered).toEqual(['one']);

    client.getChats = async () => {
      throw new Error('Session closed');
    };
    await expect(
      catchUpUnread(client, { limits, isCurrent: () => true, deliver: () => undefined, log }),
    ).resolves.toBeUndefined();
    expect(lines.some((l) => l.includes('catch-up of unread chats failed'))).toBe(true);
  });
});

describe('InboundPipeline', () => {
  function pipeline(intake: (events: InboundEvent[]) => Promise<{ queued: string[]; duplicates: string[] }>) {
    const registry = new Registry();
    const { log, lines } = capturedLog();
    let recovered = 0;
    const kept: string[] = [];
    const p = new InboundPipeline({
      intake: { accept: intake as never },
      mediaStore: {
        async keep(message): Promise<InboundMediaRef> {
          kept.push(message.id.id);
          return {
            stored: true,
            id: `whatsapp-web-media:${message.id._serialized}`,
            contentType: 'image/jpeg',
            bytes: 3,
          };
        },
      },
      metrics: sessionMetrics(registry, 'n1'),
      log,
      inflight: new Inflight(),
      isStopped: () => false,
      onIntakeRecovered: () => (recovered += 1),
      retryDelayMs: () => 5,
    });
    return { p, registry, lines, kept, recovered: () => recovered };
  }

  const client = () => {
    const c = new FakeWhatsAppWebClient({} as never, { kind: 'ready' });
    c.becomeReady();
    return c;
  };

  it('hands messages over one at a time in arrival order, with media kept first', async () => {
    const seen: string[] = [];
    let inFlight = 0;
    const { p, kept } = pipeline(async (events) => {
      inFlight += 1;
      expect(inFlight).toBe(1);
      await new Promise((r) => setTimeout(r, 5));
      const e = events[0]!;
      if (e.type === 'message') seen.push(e.message.parts.map((x) => ('text' in x ? x.text : x.kind)).join());
      inFlight -= 1;
      return { queued: ['k'], duplicates: [] };
    });
    const c = client();
    p.message(c, fakeMessage({ from: '15550100001@c.us', body: 'first' }), 'live');
    const photo = fakeMessage(
      { from: '15550100001@c.us', type: 'image', body: '' },
      { mimetype: 'image/jpeg', data: 'AAAA' },
    );
    p.message(c, photo, 'live');
    p.message(c, fakeMessage({ from: '15550100001@c.us', body: 'third' }), 'catch_up');
    await p.idle();
    expect(seen).toEqual(['first', 'media', 'third']);
    expect(kept).toEqual([photo.id.id]);
  });

  it('ignores what is not a customer message and counts why', async () => {
    const accepted: InboundEvent[] = [];
    const { p, registry } = pipeline(async (events) => {
      accepted.push(...events);
      return { queued: ['k'], duplicates: [] };
    });
    p.message(client(), fakeMessage({ from: '120363000000000001@g.us', body: 'group chat' }), 'live');
    await p.idle();
    expect(accepted).toHaveLength(0);
    const metric = await registry.getSingleMetric('rapport_whatsapp_web_inbound_total')!.get();
    expect(metric.values.some((v) => String(v.labels.outcome).startsWith('ignored_'))).toBe(true);
  });

  it('retries a failed hand-over until the intake answers, then asks for a catch-up', async () => {
    let calls = 0;
    const { p, recovered, registry } = pipeline(async () => {
      calls += 1;
      if (calls < 4) throw new Error('Connection is closed.');
      return { queued: [], duplicates: ['k'] };
    });
    p.message(client(), fakeMessage({ from: '15550100001@c.us', body: 'while redis was down' }), 'live');
    await p.idle();
    expect(calls).toBe(4);
    expect(recovered()).toBe(1);
    expect(
      await metricValue(registry, 'rapport_whatsapp_web_inbound_total', {
        kind: 'message',
        outcome: 'duplicate',
      }),
    ).toBe(1);
  });

  it('turns an ack into a status event', async () => {
    const accepted: InboundEvent[] = [];
    const { p } = pipeline(async (events) => {
      accepted.push(...events);
      return { queued: ['k'], duplicates: [] };
    });
    const sent = fakeMessage({ from: OWN_JID, to: '15550100001@c.us', fromMe: true, body: 'hi' });
    p.ack(sent, 3);
    await p.idle();
    expect(accepted).toHaveLength(1);
    expect(accepted[0]!.type).toBe('status');
  });
});

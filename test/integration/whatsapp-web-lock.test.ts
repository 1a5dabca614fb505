/**
 * One live session per number across processes, on real Redis: of two channel instances for the
 * same number only one builds a client (the other is `standby`); when the holder stops, the
 * standby takes over; a holder whose lease is taken away stops its session at once.
 */
import { lockKeyFor } from '../../src/channels/whatsapp-web/lock';
import { eventually } from '../helpers/eventually';
import {
  createWhatsAppWebHarness,
  fakeClientFactory,
  type WhatsAppWebHarness,
} from '../fakes/whatsapp-web-client';

describe('whatsapp-web session lock', () => {
  let h: WhatsAppWebHarness;
  beforeAll(async () => {
    h = await createWhatsAppWebHarness('wweblock');
  });
  afterAll(() => h.close());

  const twoProcesses = (clientId: string) => {
    const a = fakeClientFactory();
    const b = fakeClientFactory();
    const options = { clientId, lockTtlMs: 1_500, lockRetryMs: 200 };
    return {
      a,
      b,
      first: h.channel({ ...options, createClient: (o) => a.create(o) }),
      second: h.channel({ ...options, createClient: (o) => b.create(o) }),
    };
  };

  it('lets only one of two processes start a session; the other stays standby', async () => {
    const { a, b, first, second } = twoProcesses('shared-number');
    await Promise.all([first.start(), second.start()]);
    await eventually(
      async () => [first.state().state, second.state().state].sort().join(','),
      (s) => s === 'ready,standby',
      5_000,
    );
    const [holder, standby, standbyFactory] =
      first.state().state === 'ready' ? [first, second, b] : [second, first, a];
    expect(a.clients.length + b.clients.length).toBe(1);
    expect(standby.state().detail).toMatch(/^session held by another process/);
    expect(standby.readiness()).toMatchObject({ ok: true, state: 'standby' });

    // Still only one after several standby retries.
    await new Promise((r) => setTimeout(r, 700));
    expect(a.clients.length + b.clients.length).toBe(1);

    await holder.stop();
    await eventually(
      async () => standby.state().state,
      (s) => s === 'ready',
      5_000,
    );
    expect(standbyFactory.clients).toHaveLength(1);
    await standby.stop();
  });

  it('does not block a different number', async () => {
    const one = fakeClientFactory();
    const two = fakeClientFactory();
    const x = h.channel({ clientId: 'number-one', createClient: (o) => one.create(o) });
    const y = h.channel({ clientId: 'number-two', createClient: (o) => two.create(o) });
    await Promise.all([x.start(), y.start()]);
    const states = await eventually(
      async () => [x.state().state, y.state().state].join(','),
      (s) => s === 'ready,ready',
      5_000,
    );
    // Both run a session at once: each built its own client and holds its own lease in Redis.
    expect(states).toBe('ready,ready');
    expect([one.clients.length, two.clients.length]).toEqual([1, 1]);
    const [lockOne, lockTwo] = await Promise.all([
      h.redis.get(lockKeyFor(h.prefix, 'number-one')),
      h.redis.get(lockKeyFor(h.prefix, 'number-two')),
    ]);
    expect(lockOne).toBeTruthy();
    expect(lockTwo).toBeTruthy();
    await Promise.all([x.stop(), y.stop()]);
    // Stopping releases both leases.
    expect(await h.redis.get(lockKeyFor(h.prefix, 'number-one'))).toBeNull();
    expect(await h.redis.get(lockKeyFor(h.prefix, 'number-two'))).toBeNull();
  });

  it('stops the session when another process has taken the lease', async () => {
    const factory = fakeClientFactory();
    const channel = h.channel({
      clientId: 'stolen',
      lockTtlMs: 600,
      lockRetryMs: 5_000,
      createClient: (o) => factory.create(o),
    });
    await channel.start();
    await eventually(
      async () => channel.state().state,
      (s) => s === 'ready',
      5_000,
    );
    // What a second process does once it believes the lease expired.
    await h.redis.set(lockKeyFor(h.prefix, 'stolen'), 'other-host:1:abc', 'PX', 10_000);
    await eventually(
      async () => channel.state().state,
      (s) => s === 'standby',
      3_000,
    );
    expect(channel.state().detail).toBe('session lock lost (taken)');
    expect(factory.latest()!.destroyed).toBeGreaterThanOrEqual(1);
    expect(await h.redis.get(lockKeyFor(h.prefix, 'stolen'))).toBe('other-host:1:abc');
    await channel.stop();
  });
});

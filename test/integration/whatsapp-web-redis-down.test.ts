/**
 * A live WhatsApp Web message while Redis (the intake's) is down for longer than the old ~15 s of
 * retries: it is queued once Redis is back, not dropped, and the unread chats are caught up on that
 * reconnect as well (not only after `ready`). A private redis-server is SIGKILLed and restarted.
 */
import { once } from 'node:events';
import { createRedisConnection } from '../../src/queue/connection';
import { createIntake } from '../../src/queue/intake';
import { jobIdFor } from '../../src/queue/names';
import { closeQueues, createQueues } from '../../src/queue/queues';
import { eventually } from '../helpers/eventually';
import { privateRedis } from '../helpers/services';
import {
  createWhatsAppWebHarness,
  fakeClientFactory,
  fakeMessage,
  type WhatsAppWebHarness,
} from '../fakes/whatsapp-web-client';

jest.setTimeout(90_000);

const CUSTOMER = '14155550124@c.us';
const OTHER = '14155550125@c.us';

describe('whatsapp-web inbound while Redis is down', () => {
  let h: WhatsAppWebHarness;
  const redisServer = privateRedis();
  beforeAll(async () => {
    h = await createWhatsAppWebHarness('wwebdown');
    await redisServer.start();
  });
  afterAll(async () => {
    await h.close();
    await redisServer.destroy();
  });

  it('queues a live message sent 20 s into an outage once Redis is back, and catches up unread chats', async () => {
    const redis = createRedisConnection(redisServer.url, 'producer');
    if (redis.status !== 'ready') await once(redis, 'ready');
    const queues = createQueues(redis, { prefix: h.prefix });
    const intake = createIntake({ queue: queues.inbound, redis, prefix: h.prefix });
    const factory = fakeClientFactory();
    const missed = fakeMessage({ from: OTHER, body: 'unread while Redis was down' });
    const channel = h.channel({
      clientId: 'redis-down',
      intake,
      catchUp: { maxChats: 10, maxMessagesPerChat: 10 },
      createClient: (o) => factory.create(o),
    });
    await channel.start();
    factory.latest()!.becomeReady();
    await redisServer.stop();
    const live = fakeMessage({ from: CUSTOMER, body: 'sent during the outage' });
    factory.latest()!.receive(live);
    // Meanwhile another customer writes and the message stays unread (no event reaches us for it).
    factory.latest()!.chats = [
      { id: { _serialized: OTHER }, isGroup: false, unreadCount: 1, fetchMessages: async () => [missed] },
    ];
    await new Promise((r) => setTimeout(r, 20_000));
    await redisServer.start();
    const job = (key: string) => queues.inbound.getJob(jobIdFor(key)).catch(() => undefined);
    const queued = await eventually(() => job(`whatsapp-web:${live.id._serialized}`), Boolean, 30_000);
    expect(queued?.data).toMatchObject({ type: 'message', message: { text: 'sent during the outage' } });
    const caught = await eventually(() => job(`whatsapp-web:${missed.id._serialized}`), Boolean, 15_000);
    expect(caught?.data).toMatchObject({ type: 'message', message: { text: 'unread while Redis was down' } });
    await channel.stop();
    await closeQueues(queues);
    redis.disconnect();
  });
});

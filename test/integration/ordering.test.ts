/**
 * Per-customer order with several worker processes: messages from one customer reach the owner's
 * Slack thread in the order they were sent, while two apps (each with every worker) consume the same
 * queues, and other customers' messages are interleaved.
 */
import { buildApp, type RapportApp } from '../../src/app';
import { eventually } from '../helpers/eventually';
import { startWorld, type World } from '../helpers/world';

describe('per-customer order', () => {
  let w: World;
  let second: RapportApp;
  beforeAll(async () => {
    w = await startWorld({ INBOUND_PARTITIONS: '4' });
    second = buildApp(w.t.app.config, { role: 'worker' });
    await second.mongo.ready;
    await w.addAgent({ slackUserId: 'U0ORD', name: 'Ola', inboxChannelId: 'C0ORD', capacity: 1000 });
  });
  afterAll(async () => {
    await second.close();
    await w.stop();
  });

  it('posts 3 customers x 10 messages into their threads in the order each customer sent them', async () => {
    const customers = ['+14155550301', '+14155550302', '+14155550303'];
    for (let i = 0; i < 10; i++) {
      // Each customer's messages are sent one after another (as the provider delivers them); the
      // three customers write at the same time.
      await Promise.all(
        customers.map((c, k) =>
          k === 1 ? w.twilioWhatsApp(c, `m${i} from ${k}`) : w.sms(c, `m${i} from ${k}`),
        ),
      );
    }
    const threads = await eventually(
      async () => {
        const cards = w.slack.messages('C0ORD').filter((m) => m.metadata?.event_type === 'rapport_card');
        return cards.map((card) =>
          w.slack.thread('C0ORD', card.ts).filter((m) => m.metadata?.event_type === 'rapport_post'),
        );
      },
      (ts) => ts.length === 3 && ts.every((t) => t.length === 10),
      60_000,
    );
    expect(threads).toHaveLength(3);
    for (const posts of threads) {
      const order = posts.map((p) => Number(/m(\d+) from/.exec(p.text)?.[1]));
      expect(order).toEqual([...Array(10).keys()]);
      expect(new Set(posts.map((p) => /from (\d)/.exec(p.text)?.[1])).size).toBe(1);
    }
  });
});

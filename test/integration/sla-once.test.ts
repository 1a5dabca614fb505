/**
 * SLA escalations once per breach: a retried timer (here: the escalation's chat.postMessage was
 * carried out but its answer lost, so the timer job fails and runs again) posts one escalation, and
 * the breach metric counts the breach once.
 */
import { eventually } from '../helpers/eventually';
import { ESCALATION, startWorld, type World } from '../helpers/world';

const ALEX = { slackUserId: 'U0ALEX', name: 'Alex', inboxChannelId: 'C0ALEX' };

async function breaches(w: World, kind: string): Promise<number> {
  const text = await (await fetch(`${w.t.baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`rapport_sla_breaches_total{kind="${kind}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('SLA escalation is not doubled by a retried timer', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ SLA_FIRST_RESPONSE: '2s', SLA_ESCALATE: '4s' });
    await w.addAgent(ALEX);
  });
  afterAll(() => w.stop());

  it('a lost answer to the escalation post: one escalation, one breach counted', async () => {
    w.slack.failNext('chat.postMessage', { lost: true }, { channel: ESCALATION });
    expect((await w.sms('+14155550901', 'nobody answers 901')).status).toBe(200);
    const escalations = () => w.slack.messages(ESCALATION).filter((m) => m.text.includes('has waited'));
    await eventually(
      async () => escalations(),
      (m) => m.length > 0,
      30_000,
    );
    // The failed timer job is retried after its backoff; give it the time to run again.
    await new Promise((r) => setTimeout(r, 6_000));
    expect(escalations()).toHaveLength(1);
    expect(w.slack.callsTo('chat.postMessage').filter((c) => c.args.channel === ESCALATION)).toHaveLength(1);
    expect(await breaches(w, 'escalate')).toBe(1);
    expect(await breaches(w, 'remind')).toBe(1);
  }, 60_000);
});

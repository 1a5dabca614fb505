/**
 * Assigning a first contact on a real team (issue 22): with a dozen agents, picking the least-loaded
 * one reads the shared open counts in Redis (src/router/owner-load.ts), not one count per agent nor
 * an aggregate over all open conversations per pick: at most one aggregate (the counts' snapshot,
 * taken at most every 15 s) for several first contacts, and the active agents from their hot copy —
 * counted with the MongoDB driver's command monitoring. The choice is the same: fewest open
 * customers, ties to the longest-standing agent; an away agent is passed over.
 */
import { eventually } from '../helpers/eventually';
import { uniqueName } from '../helpers/env';
import { startWorld, type World } from '../helpers/world';

const MONGO = process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017';
const AGENTS = Array.from({ length: 12 }, (_, i) => ({
  slackUserId: `U0PICK${String(i).padStart(3, '0')}`,
  name: `Agent ${i}`,
  inboxChannelId: `C0PICK${String(i).padStart(3, '0')}`,
}));

let w: World;
let aggregates: string[] = [];
let agentLists = 0;

beforeAll(async () => {
  w = await startWorld({ MONGODB_URI: `${MONGO}/rapport_${uniqueName('pick')}?monitorCommands=true` });
  await w.t.app.mongo.ready;
  for (const a of AGENTS) await w.addAgent(a);
  w.t.app.mongo.connection.getClient().on('commandStarted', (e: { commandName: string; command: Record<string, unknown> }) => {
    if (e.commandName === 'aggregate' && e.command.aggregate === 'conversations') aggregates.push(JSON.stringify(e.command.pipeline));
    if (e.commandName === 'find' && e.command.find === 'agents' && JSON.stringify(e.command.filter).includes('active')) agentLists++;
  });
});
afterAll(() => w.stop());

/** The inbox channel whose thread carries `text`. */
const channelOf = (text: string) =>
  AGENTS.map((a) => a.inboxChannelId).find((c) => w.slack.messages(c).some((m) => m.text.includes(text)) ||
    w.slack.messages(c).some((m) => w.slack.thread(c, m.ts).some((r) => r.text.includes(text))));

describe('picking an owner for a first contact', () => {
  it('costs no aggregate per pick for 12 agents and spreads new customers to the least-loaded, oldest first, skipping an away agent', async () => {
    // Agent 1 is away: passed over while others are available.
    const away = await w.command(AGENTS[1]!.slackUserId, AGENTS[1]!.inboxChannelId, 'away');
    expect(away.status).toBe(200);
    aggregates = [];
    agentLists = 0;
    const chosen: (string | undefined)[] = [];
    for (const n of [1, 2, 3]) {
      const text = `first contact ${n} ${uniqueName('')}`;
      expect((await w.sms(`+1415555020${n}`, text)).status).toBe(200);
      chosen.push(await eventually(async () => channelOf(text), Boolean));
    }
    expect(chosen).toEqual([AGENTS[0]!.inboxChannelId, AGENTS[2]!.inboxChannelId, AGENTS[3]!.inboxChannelId]);
    // At most one aggregate for the three (the counts' snapshot; before: one per first contact) and
    // one read of the team (the away command replaced its copy; before: one per first contact).
    expect(aggregates.length).toBeLessThanOrEqual(1);
    expect(agentLists).toBeLessThanOrEqual(1);
  });
});

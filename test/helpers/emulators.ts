/**
 * The three provider emulators (Slack, Twilio, Graph) on loopback, started together, for the test
 * world and the benchmarks. `name` goes into the tokens (`xoxb-<name>-token`, …).
 */
import { startGraphEmulator, type GraphEmulator } from '../../src/sandbox/emulators/graph';
import { startSlackEmulator, type SlackEmulator } from '../../src/sandbox/emulators/slack';
import { startTwilioEmulator, type TwilioEmulator } from '../../src/sandbox/emulators/twilio';

export interface Emulators {
  slack: SlackEmulator;
  twilio: TwilioEmulator;
  graph: GraphEmulator;
  close(): Promise<void>;
}

export async function startEmulators(o: {
  name: string;
  twilio: { accountSid: string; authToken: string };
  phoneNumberId: string;
  pageId: string;
}): Promise<Emulators> {
  const slack = await startSlackEmulator({ token: `xoxb-${o.name}-token` });
  const twilio = await startTwilioEmulator(o.twilio);
  const graph = await startGraphEmulator({
    whatsappToken: `${o.name}-cloud-token`,
    pageToken: `${o.name}-page-token`,
    phoneNumberId: o.phoneNumberId,
    pageId: o.pageId,
  });
  return {
    slack,
    twilio,
    graph,
    close: async () => void (await Promise.all([slack.close(), twilio.close(), graph.close()])),
  };
}

/**
 * Reading a customer's Slack thread in the media tests: the replies after the card (files and
 * lines), a file's bytes as the Slack emulator received them, the card of the thread a customer's
 * text opened, and Rapport's notes to the agent there.
 */
import type { EmulatedMessage } from '../emulators/slack';
import { eventually } from './eventually';
import type { World } from './world';

export function mediaThreads(w: World, inboxChannelId: string) {
  const cards = () =>
    w.slack.messages(inboxChannelId).filter((m) => m.metadata?.event_type === 'rapport_card');
  return {
    /** The replies after the card of the thread holding `marker`, once `done` holds for them. */
    replies(
      marker: (m: EmulatedMessage) => boolean,
      done: (replies: EmulatedMessage[]) => boolean,
    ): Promise<EmulatedMessage[]> {
      return eventually(async () => {
        const card = cards().find((c) => w.slack.thread(inboxChannelId, c.ts).some(marker));
        return card ? w.slack.thread(inboxChannelId, card.ts).slice(1) : [];
      }, done);
    },
    /** The bytes Slack received for a message's first file. */
    fileBytes(m: EmulatedMessage | undefined): Buffer | undefined {
      return m?.files?.[0] ? w.slack.fileContent(m.files[0].id) : undefined;
    },
    /** The `ts` of the card whose thread has a reply containing `text`. */
    async cardWith(text: string): Promise<string> {
      const card = await eventually(
        async () =>
          cards().find((c) => w.slack.thread(inboxChannelId, c.ts).some((r) => r.text.includes(text))),
        Boolean,
      );
      return card!.ts;
    },
    /** Rapport's own lines in a thread (notes to the agent). */
    notes(threadTs: string): string[] {
      return w.slack
        .thread(inboxChannelId, threadTs)
        .filter((m) => m.username === 'Rapport')
        .map((m) => m.text);
    },
    /** Rapport's first note in a thread containing `marker`, once there is one. */
    async noteWith(threadTs: string, marker: string): Promise<string> {
      const found = await eventually(
        async () => this.notes(threadTs).find((t) => t.includes(marker)),
        Boolean,
      );
      return found!;
    },
    /** The reactions on one message of a thread. */
    reactions(threadTs: string, ts: string): string[] {
      return w.slack.thread(inboxChannelId, threadTs).find((m) => m.ts === ts)?.reactions ?? [];
    },
  };
}

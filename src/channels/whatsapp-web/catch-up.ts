/**
 * Catch-up: messages that arrived while no session was up are not replayed as `message` events;
 * unread 1:1 chats still hold them. Re-reading them is safe: intake dedupes on the message key.
 */
import type { Logger } from '../../logger';
import { jidKind } from './normalize';
import type { WhatsAppWebClientLike, WwebMessage } from './wire';

export interface CatchUpLimits {
  maxChats: number;
  maxMessagesPerChat: number;
}

export interface CatchUpOptions {
  limits: CatchUpLimits;
  /** False once the client was replaced or the channel stopped: the scan ends there. */
  isCurrent: () => boolean;
  /** Hands one customer message to the inbound pipeline (in order). */
  deliver: (message: WwebMessage) => void;
  log: Logger;
}

/** Hands the unread messages of unread 1:1 chats to `deliver`; never throws. */
export async function catchUpUnread(c: WhatsAppWebClientLike, o: CatchUpOptions): Promise<void> {
  if (!c.getChats) return;
  try {
    const chats = (await c.getChats())
      .filter((chat) => !chat.isGroup && chat.unreadCount > 0)
      .filter((chat) => ['phone', 'lid'].includes(jidKind(chat.id._serialized)))
      .slice(0, o.limits.maxChats);
    let found = 0;
    for (const chat of chats) {
      if (!o.isCurrent()) return;
      const recent = await chat.fetchMessages({
        limit: Math.min(chat.unreadCount, o.limits.maxMessagesPerChat),
      });
      for (const message of recent) {
        if (message.fromMe || message.id.fromMe) continue;
        found += 1;
        o.deliver(message);
      }
    }
    o.log.info({ chats: chats.length, messages: found }, 'whatsapp web catch-up of unread chats queued');
  } catch (err) {
    o.log.warn({ err }, 'whatsapp web catch-up of unread chats failed');
  }
}

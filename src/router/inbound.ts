/**
 * What happens to one stored customer message: the router's half of the `inbound` worker.
 *
 * In order, each step idempotent (a retried job repeats them all and changes nothing twice):
 * 1. opt-out keywords (STOP / START) on SMS and WhatsApp are recorded and shown to the agent;
 * 2. claims: a 6-digit code may verify a pending claim (merge), or a message that is just a phone
 *    number or email starts one (a code is sent over the claimed channel);
 * 3. the owner is ensured (assigned on first contact, sticky after);
 * 4. the acknowledgement: the first message of a conversation, or the first after a quiet period,
 *    gets an automatic reply naming the owner (away owner: when they are back and who covers;
 *    outside business hours: when we open);
 * 5. the message is appended to the customer's Slack outbox (posted in order by slack-delivery.ts);
 * 6. the SLA clock starts if the customer was not already waiting.
 */
import type { Queue } from 'bullmq';
import type { Types } from 'mongoose';
import type { InboundMessage } from '../canonical';
import type { RouterConfig } from '../config';
import type { Customer, IdentityModels } from '../identity/models';
import type { Logger } from '../logger';
import type { RedisClient } from '../queue/connection';
import { conversationLockKey, withLock } from '../queue/lock';
import { escapeSlackText } from '../channels/slack/escape';
import { addBusinessTime, describeOpening, isOpen } from './business-hours';
import type { Agent, Conversation, RouterModels } from './models';
import type { Outbox } from './outbox';
import type { Ownership } from './ownership';
import { channelLabel, fill } from './texts';
import type { TimerJob } from './sla';

/** SMS: the carriers' (and Twilio's) opt-out and opt-in keywords. */
export const STOP_WORDS = ['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'OPTOUT'];
export const START_WORDS = ['START', 'UNSTOP', 'YES', 'OPTIN'];
/**
 * WhatsApp and Messenger: "cancel", "end" or "yes" are everyday answers there (cancel my order), so
 * only the configured unambiguous words opt out (CHAT_OPT_OUT_WORDS) and only these opt back in.
 */
export const CHAT_START_WORDS = ['START', 'UNSTOP'];

export type ClaimOutcome =
  | { kind: 'none' }
  | { kind: 'verified'; survivorId?: string; mergedId?: string; mergeId?: string; otherOwnerAgentId?: string }
  | { kind: 'rejected'; reason: 'wrong' | 'expired' | 'locked' }
  | { kind: 'code_needed'; claimKey: string; code: string; value: string; claimKind: 'phone' | 'email' }
  | { kind: 'already_linked' };

/** The identity module's claims, seen from the router (wired in router/index.ts). */
export interface ClaimsPort {
  handle(input: {
    customerId: Types.ObjectId;
    identityKey: string;
    message: InboundMessage;
  }): Promise<ClaimOutcome>;
}

export interface InboundRouterOptions {
  models: RouterModels & IdentityModels;
  outbox: Outbox;
  ownership: Ownership;
  timers: Queue<TimerJob>;
  config: RouterConfig;
  claims?: ClaimsPort;
  redis: RedisClient;
  prefix: string;
  log: Logger;
  /** Tell the owner of a merged-away customer (router/index.ts). */
  onMerged?: (outcome: Extract<ClaimOutcome, { kind: 'verified' }>) => Promise<void>;
}

function keyword(text: string | undefined): string | undefined {
  return text
    ?.trim()
    .toUpperCase()
    .replace(/[.!]+$/, '');
}

export function createInboundRouter(o: InboundRouterOptions) {
  const { models, outbox, ownership, config, log } = o;
  const { Conversation, OptOut } = models;

  async function recordOptOut(identityKey: string, message: InboundMessage): Promise<string | undefined> {
    const word = keyword(message.text);
    if (!word) return undefined;
    const sms = message.channel === 'sms';
    const stop = sms ? STOP_WORDS : config.chatOptOutWords;
    const start = sms ? START_WORDS : CHAT_START_WORDS;
    const optedOut = stop.includes(word) ? true : start.includes(word) ? false : undefined;
    if (optedOut === undefined) return undefined;
    await OptOut.updateOne(
      { key: `${identityKey}|${message.channel}` },
      { $set: { identityKey, channel: message.channel, optedOut, at: new Date() } },
      { upsert: true },
    );
    return optedOut
      ? `:no_bell: The customer opted out of ${channelLabel(message.channel)} (${word}). Nothing will be sent there until they write START.`
      : `:bell: The customer opted back in on ${channelLabel(message.channel)} (${word}).`;
  }

  function ackText(agent: Agent | undefined, backup: Agent | undefined, at: Date): string {
    const name = agent?.name ?? 'Our team';
    if (!isOpen(config.businessHours, at)) {
      return fill(config.texts.ackClosed, {
        agent: name,
        opening: describeOpening(config.businessHours, at, at),
      });
    }
    if (agent && agent.status !== 'available') {
      const back = agent.awayUntil
        ? describeOpening({ ...config.businessHours, always: true }, agent.awayUntil, at)
        : 'soon';
      return fill(config.texts.ackAway, { agent: name, back, cover: backup?.name ?? 'a teammate' });
    }
    return fill(config.texts.ack, { agent: name });
  }

  async function scheduleSla(customerId: Types.ObjectId, since: Date): Promise<void> {
    const hours = config.businessHours;
    const now = Date.now();
    const remindAt = addBusinessTime(hours, since, config.slaFirstResponseMs).getTime();
    const escalateAt = addBusinessTime(hours, since, config.slaEscalateMs).getTime();
    const base = `${String(customerId)}~${since.getTime()}`;
    const data = { customerId: String(customerId), awaitingSince: since.toISOString() };
    await o.timers.add(
      'sla',
      { ...data, kind: 'remind' },
      { jobId: `sla~remind~${base}`, delay: Math.max(0, remindAt - now) },
    );
    await o.timers.add(
      'sla',
      { ...data, kind: 'escalate' },
      { jobId: `sla~escalate~${base}`, delay: Math.max(0, escalateAt - now) },
    );
  }

  return {
    /** Routes one stored inbound message of `customer` (the live one) from `identityKey`. */
    async route(message: InboundMessage, customer: Customer, identityKey: string): Promise<void> {
      const customerId = customer._id;
      const at = new Date(message.sentAt);
      const sentAt = Number.isNaN(at.getTime()) ? new Date() : at;
      const name = customer.displayName ?? 'Customer';

      const optNote = await recordOptOut(identityKey, message);
      if (optNote)
        await outbox.postToAgent(customerId, {
          key: `optout:${message.key}`,
          kind: 'note',
          text: optNote,
          username: 'Rapport',
        });

      const claim = o.claims
        ? await o.claims.handle({ customerId, identityKey, message })
        : { kind: 'none' as const };
      if (claim.kind === 'code_needed') {
        if (claim.claimKind === 'phone') {
          await outbox.sendToCustomer(customerId, {
            key: `claim-code:${message.key}`,
            origin: 'claim_code',
            toIdentityKey: claim.claimKey,
            text: `Your verification code is ${claim.code}. Send it back on ${channelLabel(message.channel)} within 15 minutes to link this number to your conversation.`,
          });
          await outbox.sendToCustomer(customerId, {
            key: `claim-ask:${message.key}`,
            origin: 'auto',
            text: `We've sent a 6-digit code to ${claim.value}. Please send it here to confirm it's yours.`,
          });
        }
        await outbox.postToAgent(customerId, {
          key: `claim-note:${message.key}`,
          kind: 'note',
          username: 'Rapport',
          text:
            claim.claimKind === 'phone'
              ? `:key: The customer says ${escapeSlackText(claim.value)} is theirs; a verification code was sent there. Their profiles are merged once they send it back here.`
              : `:key: The customer says their email is ${escapeSlackText(claim.value)}. Rapport cannot email a code; if you trust it, run \`/rapport link ${escapeSlackText(claim.value)}\` in this thread.`,
        });
      } else if (claim.kind === 'verified') {
        await outbox.postToAgent(customerId, {
          key: `claim-verified:${message.key}`,
          kind: 'note',
          username: 'Rapport',
          text: ':white_check_mark: The customer confirmed the code: their identities are now linked and their history is in this thread.',
        });
        await o.onMerged?.(claim);
        // The code itself is not a message for the agent.
        return;
      } else if (claim.kind === 'rejected') {
        await outbox.sendToCustomer(customerId, {
          key: `claim-rejected:${message.key}`,
          origin: 'auto',
          text:
            claim.reason === 'wrong'
              ? "That code doesn't match. Please check it and try again."
              : claim.reason === 'expired'
                ? 'That code has expired. Send the number again to get a new one.'
                : 'Too many wrong codes; the link was cancelled. Send the number again to start over.',
        });
        return;
      }

      // The conversation's owner is written below, under the conversation lock.
      const { agent } = await ownership.ensureOwner(customerId, 'rapport', {
        customer,
        syncUnchanged: false,
      });
      // One writer at a time on the conversation document (see src/queue/lock.ts).
      await withLock(
        o.redis,
        conversationLockKey(o.prefix, String(customerId)),
        30_000,
        async () => {
          const before = await Conversation.findById(customerId).lean<Conversation>();
          // Acknowledge the first message of a conversation (and the first after a quiet period). A
          // retried job finds lastCustomerMessageAt already at this message (not quiet), and the ack
          // appended by the first run under its own key.
          const last = before?.lastCustomerMessageAt?.getTime();
          const quiet = last === undefined || sentAt.getTime() - last > config.ackQuietPeriodMs;
          if (quiet) {
            const backup = agent?.backupAgentId ? await ownership.agentById(agent.backupAgentId) : undefined;
            await outbox.sendToCustomer(customerId, {
              key: `ack:${message.key}`,
              origin: 'auto',
              text: ackText(agent, backup, new Date()),
            });
          }

          if (agent && agent.status !== 'available' && agent.backupAgentId) {
            const backup = await ownership.agentById(agent.backupAgentId);
            if (backup) {
              await outbox.postToAgent(customerId, {
                key: `cover:${String(customerId)}:${agent.awaySince?.getTime() ?? 0}`,
                kind: 'note',
                username: 'Rapport',
                text: `<@${backup.slackUserId}> ${agent.name} is away${agent.awayUntil ? ` until ${agent.awayUntil.toISOString().slice(0, 16).replace('T', ' ')} UTC` : ''}; you're covering. Replies here are sent and attributed to you; ${agent.name} stays the owner.`,
              });
            }
          }

          await outbox.postToAgent(customerId, {
            key: message.key,
            kind: 'message',
            channel: message.channel,
            text: describeParts(message),
            username: `${name} (${channelLabel(message.channel)})`,
          });

          const awaitingSince = before?.awaitingSince ?? sentAt;
          await Conversation.updateOne(
            { _id: customerId },
            {
              $set: {
                open: true,
                ...(agent ? { ownerAgentId: String(agent._id) } : {}),
                awaitingSince,
                lastCustomerMessageAt:
                  last !== undefined && last > sentAt.getTime() ? new Date(last) : sentAt,
                ...(quiet ? { lastAckAt: new Date() } : {}),
              },
            },
            { upsert: true },
          );
          if (!before?.awaitingSince) await scheduleSla(customerId, sentAt);
        },
        { waitMs: 10_000 },
      );
      log.debug({ key: message.key, customerId: String(customerId) }, 'message routed');
    },
  };
}

/**
 * The message for Slack, as plain text (slack-delivery escapes it): its text, then attachments,
 * locations and buttons, so nothing is invisible. A link is shown as the URL itself, never behind a
 * label the customer chose.
 */
export function describeParts(message: InboundMessage): string {
  const parts = message.parts.map((p) => {
    switch (p.kind) {
      case 'media': {
        const file = p.url
          ? `:paperclip: ${p.filename ?? p.contentType ?? 'attachment'}: ${p.url}`
          : `:paperclip: ${p.filename ?? p.contentType ?? 'attachment'} (media id ${p.providerMediaId ?? '?'})`;
        return p.caption ? `${file}\n${p.caption}` : file;
      }
      case 'location':
        return `:round_pushpin: ${p.name ?? 'Location'} ${p.latitude},${p.longitude}`;
      case 'postback':
        return `:radio_button: ${p.title}`;
      case 'unsupported':
        return `:grey_question: a ${p.providerType} message Rapport cannot show yet`;
      case 'text':
        return p.text;
    }
  });
  if (message.parts.length === 0 && message.text) return message.text;
  return parts.join('\n') || '(empty message)';
}

/**
 * SLA timers (the `timers` queue). When a customer starts waiting, two delayed jobs are queued: a
 * reminder after SLA_FIRST_RESPONSE (in the thread, mentioning the owner) and an escalation after
 * SLA_ESCALATE (in SLACK_ESCALATION_CHANNEL), both counted in business hours. A reply in the thread
 * clears `awaitingSince`; a timer whose `awaitingSince` no longer matches is stale and does nothing,
 * so no job has to be found and cancelled.
 *
 * Once per breach, however often a timer runs (a retry after a failure or a lost answer): the breach
 * metric counts a breach once (a Redis marker per customer, kind and `awaitingSince`); the reminder
 * is an outbox note with a key; the escalation records its attempt before posting and a retry looks
 * it up in the escalation channel by its metadata key before posting again.
 */
import type { Job } from 'bullmq';
import type { RedisClient } from '../queue/connection';
import { SlackApiError, type SlackClient } from '../channels/slack/client';
import type { Customer, IdentityModels } from '../identity/models';
import type { Logger } from '../logger';
import type { Conversation, CurrentThread, RouterModels } from './models';
import { toObjectId, type Outbox } from './outbox';
import type { Ownership } from './ownership';
import { noteRateLimit, respectChannelLimit } from './slack-delivery';
import { ago } from './texts';
import { escapeSlackText } from '../channels/slack/escape';

export interface TimerJob {
  kind: 'remind' | 'escalate';
  customerId: string;
  awaitingSince: string;
}

export interface SlaOptions {
  models: RouterModels & IdentityModels;
  outbox: Outbox;
  ownership: Ownership;
  slack?: SlackClient;
  redis: RedisClient;
  prefix: string;
  escalationChannel?: string;
  log: Logger;
  onBreach?: (kind: 'remind' | 'escalate') => void;
}

const ESCALATION_EVENT_TYPE = 'rapport_escalation';
/** How long the once-per-breach markers live. */
const MARK_TTL_S = 7 * 24 * 3600;

export function createSla(o: SlaOptions) {
  const { models, outbox, ownership, log } = o;

  /**
   * True if this breach's escalation is already in the channel: posted (marker), or attempted
   * before and found there by its metadata key (a lost answer). Records this attempt otherwise.
   */
  async function alreadyEscalated(
    slack: SlackClient,
    channel: string,
    breach: string,
    key: string,
  ): Promise<boolean> {
    if (await o.redis.get(`${breach}:posted`)) return true;
    const oldest = String(Math.floor(Date.now() / 1000) - 60);
    const first = await o.redis.set(`${breach}:attempt`, oldest, 'EX', MARK_TTL_S, 'NX');
    if (first === 'OK') return false;
    const since = (await o.redis.get(`${breach}:attempt`)) ?? oldest;
    const found = await slack.findInChannel(channel, since, ESCALATION_EVENT_TYPE, 'key', key);
    if (found) await o.redis.set(`${breach}:posted`, '1', 'EX', MARK_TTL_S);
    return found !== undefined;
  }

  return {
    async handle(job: Job<TimerJob>): Promise<void> {
      const { kind, customerId, awaitingSince } = job.data;
      const id = toObjectId(customerId);
      const conversation = await models.Conversation.findById(id).lean<Conversation>();
      if (conversation?.awaitingSince?.toISOString() !== awaitingSince) return; // answered since
      const customer = await models.Customer.findById(id).lean<Customer>();
      if (!customer || customer.mergedInto) return;
      const owner = await ownership.agentById(customer.ownerAgentId);
      const waited = ago(Date.now() - new Date(awaitingSince).getTime());
      const name = escapeSlackText(customer.displayName ?? 'A customer');
      const breach = `${o.prefix}:sla:${kind}:${customerId}:${awaitingSince}`;
      if ((await o.redis.set(`${breach}:counted`, '1', 'EX', MARK_TTL_S, 'NX')) === 'OK') o.onBreach?.(kind);
      if (kind === 'remind') {
        await outbox.postToAgent(id, {
          key: `sla-remind:${customerId}:${awaitingSince}`,
          kind: 'note',
          username: 'Rapport',
          text: `:alarm_clock: ${owner ? `<@${owner.slackUserId}> ` : ''}${name} has been waiting ${waited} for a reply.`,
        });
        log.info({ customerId, kind }, 'SLA reminder');
        return;
      }
      if (!o.slack || !o.escalationChannel) {
        log.warn({ customerId }, 'SLA escalation due but SLACK_ESCALATION_CHANNEL is not set');
        return;
      }
      await respectChannelLimit(o.redis, o.prefix, o.escalationChannel);
      const key = `${customerId}:${awaitingSince}`;
      if (await alreadyEscalated(o.slack, o.escalationChannel, breach, key)) return;
      const thread = await models.CurrentThread.findById(id).lean<CurrentThread>();
      try {
        await o.slack.postMessage({
          channel: o.escalationChannel,
          text:
            `:rotating_light: ${name} has waited ${waited} without a reply from ${owner?.name ?? 'anyone'}` +
            (thread ? ` — thread in <#${thread.channel}> (ts ${thread.ts}).` : '.') +
            ` Customer id \`${customerId}\`.`,
          metadata: {
            eventType: ESCALATION_EVENT_TYPE,
            payload: { customerId, awaitingSince, key },
          },
        });
        await o.redis.set(`${breach}:posted`, '1', 'EX', MARK_TTL_S);
      } catch (err) {
        await noteRateLimit(o.redis, o.prefix, o.escalationChannel, err);
        if (err instanceof SlackApiError && !err.retryable)
          log.error({ customerId, slackError: err.slackError }, 'SLA escalation could not be posted');
        throw err;
      }
      log.info({ customerId, kind }, 'SLA escalation');
    },
  };
}

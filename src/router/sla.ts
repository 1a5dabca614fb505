/**
 * SLA timers (the `timers` queue). When a customer starts waiting, two delayed jobs are queued: a
 * reminder after SLA_FIRST_RESPONSE (in the thread, mentioning the owner) and an escalation after
 * SLA_ESCALATE (in SLACK_ESCALATION_CHANNEL), both counted in business hours. A reply in the thread
 * clears `awaitingSince`; a timer whose `awaitingSince` no longer matches is stale and does nothing,
 * so no job has to be found and cancelled.
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

export function createSla(o: SlaOptions) {
  const { models, outbox, ownership, log } = o;
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
      o.onBreach?.(kind);
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
      const thread = await models.CurrentThread.findById(id).lean<CurrentThread>();
      try {
        await o.slack.postMessage({
          channel: o.escalationChannel,
          text:
            `:rotating_light: ${name} has waited ${waited} without a reply from ${owner?.name ?? 'anyone'}` +
            (thread ? ` — thread in <#${thread.channel}> (ts ${thread.ts}).` : '.') +
            ` Customer id \`${customerId}\`.`,
          metadata: { eventType: 'rapport_escalation', payload: { customerId, awaitingSince } },
        });
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

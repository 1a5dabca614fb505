/**
 * Prometheus metrics, in a registry per app (no global registry, so two apps can live side by side
 * in one test process).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  inboundEvents: Counter<'channel' | 'kind' | 'outcome'>;
  /** Inbound messages (or parts) Rapport could not render, by source and the provider's raw type. */
  unsupportedInbound: Counter<'channel' | 'type'>;
  webhookRejections: Counter<'route' | 'reason'>;
  lastInbound: Gauge<'channel'>;
  jobs: Counter<'queue' | 'outcome'>;
  sends: Counter<'channel' | 'provider' | 'outcome'>;
  slaBreaches: Counter<'kind'>;
  slackRateLimited: Counter;
  /** How long jobs ran (processedOn → finishedOn), completed or failed; see queue/queue-metrics.ts. */
  jobDuration: Histogram<'queue'>;
  /** Slack and channel-provider call failures by provider and reason (rate_limited, server_error, …). */
  providerErrors: Counter<'provider' | 'reason'>;
  /** Claim code decisions: sent, offered (to an agent), opted_out, limited_<sender|target|hour|day|attempts>. */
  claimCodes: Counter<'outcome'>;
  /** Slack commands, buttons and thread replies refused by src/router/authorize.ts. */
  slackRefusals: Counter<'action' | 'reason'>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'rapport_' });
  return {
    registry,
    httpDuration: new Histogram({
      name: 'rapport_http_request_duration_seconds',
      help: 'HTTP request duration by route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    inboundEvents: new Counter({
      name: 'rapport_inbound_events_total',
      help: 'Inbound webhook events by channel, kind (message/status/ignored) and outcome (queued/duplicate/ignored)',
      labelNames: ['channel', 'kind', 'outcome'],
      registers: [registry],
    }),
    unsupportedInbound: new Counter({
      name: 'rapport_inbound_unsupported_total',
      help: 'Inbound message parts Rapport could not render (kept and shown to the agent as unsupported), by channel and provider type',
      labelNames: ['channel', 'type'],
      registers: [registry],
    }),
    webhookRejections: new Counter({
      name: 'rapport_webhook_rejections_total',
      help: 'Webhook requests refused, by route and reason (signature, payload, too_large, content_type, unavailable)',
      labelNames: ['route', 'reason'],
      registers: [registry],
    }),
    lastInbound: new Gauge({
      name: 'rapport_last_inbound_timestamp_seconds',
      help: 'Unix time of the last inbound customer message accepted, per channel (alert on time() - this)',
      labelNames: ['channel'],
      registers: [registry],
    }),
    jobs: new Counter({
      name: 'rapport_jobs_total',
      help: 'Queue jobs processed by queue and outcome (completed/failed/retried)',
      labelNames: ['queue', 'outcome'],
      registers: [registry],
    }),
    sends: new Counter({
      name: 'rapport_customer_sends_total',
      help: 'Messages to customers by channel, provider and outcome (sent, or the failure reason)',
      labelNames: ['channel', 'provider', 'outcome'],
      registers: [registry],
    }),
    slaBreaches: new Counter({
      name: 'rapport_sla_breaches_total',
      help: 'SLA timers that fired without a reply: remind (first response) and escalate',
      labelNames: ['kind'],
      registers: [registry],
    }),
    claimCodes: new Counter({
      name: 'rapport_claim_codes_total',
      help: 'Claim code decisions: sent, offered (button for an agent), opted_out, limited_<sender|target|hour|day|attempts>',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    slackRateLimited: new Counter({
      name: 'rapport_slack_rate_limited_total',
      help: 'Slack calls answered 429 (the channel is paused for Retry-After)',
      registers: [registry],
    }),
    jobDuration: new Histogram({
      name: 'rapport_job_duration_seconds',
      help: 'Queue job run time (processedOn to finishedOn) by queue, completed and failed alike',
      labelNames: ['queue'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    providerErrors: new Counter({
      name: 'rapport_provider_errors_total',
      help: 'Failed calls to Slack and the channel providers (twilio, whatsapp-cloud, messenger, whatsapp-web) by reason',
      labelNames: ['provider', 'reason'],
      registers: [registry],
    }),
    slackRefusals: new Counter({
      name: 'rapport_slack_refusals_total',
      help: 'Slack actions refused by the permission model, by action (whois, handoff, reply, …) and reason (not_agent, inactive, not_permitted, unknown_customer, not_owner_of_both)',
      labelNames: ['action', 'reason'],
      registers: [registry],
    }),
  };
}

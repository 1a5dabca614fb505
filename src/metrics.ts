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
  mergeResumeFailures: Counter<'outcome'>;
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
  return { registry, ...intakeMetrics(registry), ...workMetrics(registry) };
}

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[] = []) {
  return new Counter<L>({ name, help, labelNames, registers: [registry] });
}

/** HTTP and inbound webhook traffic. */
function intakeMetrics(registry: Registry) {
  return {
    httpDuration: new Histogram({
      name: 'rapport_http_request_duration_seconds',
      help: 'HTTP request duration by route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    inboundEvents: counter(
      registry,
      'rapport_inbound_events_total',
      'Inbound webhook events by channel, kind (message/status/ignored) and outcome (queued/duplicate/ignored)',
      ['channel', 'kind', 'outcome'],
    ),
    unsupportedInbound: counter(
      registry,
      'rapport_inbound_unsupported_total',
      'Inbound message parts Rapport could not render (kept and shown to the agent as unsupported), by channel and provider type',
      ['channel', 'type'],
    ),
    webhookRejections: counter(
      registry,
      'rapport_webhook_rejections_total',
      'Webhook requests refused, by route and reason (signature, payload, too_large, content_type, unavailable)',
      ['route', 'reason'],
    ),
    lastInbound: new Gauge({
      name: 'rapport_last_inbound_timestamp_seconds',
      help: 'Unix time of the last inbound customer message accepted, per channel (alert on time() - this)',
      labelNames: ['channel'],
      registers: [registry],
    }),
  };
}

/** Queue jobs, sends, SLA timers, merges, claims and provider calls. */
function workMetrics(registry: Registry) {
  return {
    mergeResumeFailures: counter(
      registry,
      'rapport_merge_resume_failures_total',
      'Failed resumptions of half-done merges; outcome=alert once one event failed 5 times in a process',
      ['outcome'],
    ),
    jobs: counter(
      registry,
      'rapport_jobs_total',
      'Queue jobs processed by queue and outcome (completed/failed/retried)',
      ['queue', 'outcome'],
    ),
    sends: counter(
      registry,
      'rapport_customer_sends_total',
      'Messages to customers by channel, provider and outcome (sent, or the failure reason)',
      ['channel', 'provider', 'outcome'],
    ),
    slaBreaches: counter(
      registry,
      'rapport_sla_breaches_total',
      'SLA timers that fired without a reply: remind (first response) and escalate',
      ['kind'],
    ),
    claimCodes: counter(
      registry,
      'rapport_claim_codes_total',
      'Claim code decisions: sent, offered (button for an agent), opted_out, limited_<sender|target|hour|day|attempts>',
      ['outcome'],
    ),
    slackRateLimited: counter(
      registry,
      'rapport_slack_rate_limited_total',
      'Slack calls answered 429 (the channel is paused for Retry-After)',
    ),
    jobDuration: new Histogram({
      name: 'rapport_job_duration_seconds',
      help: 'Queue job run time (processedOn to finishedOn) by queue, completed and failed alike',
      labelNames: ['queue'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    providerErrors: counter(
      registry,
      'rapport_provider_errors_total',
      'Failed calls to Slack and the channel providers (twilio, whatsapp-cloud, messenger, whatsapp-web) by reason',
      ['provider', 'reason'],
    ),
    slackRefusals: counter(
      registry,
      'rapport_slack_refusals_total',
      'Slack actions refused by the permission model, by action (whois, handoff, reply, …) and reason (not_agent, inactive, not_permitted, unknown_customer, not_owner_of_both)',
      ['action', 'reason'],
    ),
  };
}

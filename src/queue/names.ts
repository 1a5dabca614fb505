/** Queue names, each named for what it carries. */
export const QueueName = {
  /** Canonical inbound events (messages and delivery statuses) from every channel; partitioned by sender. */
  inbound: 'inbound',
  /** Per-customer "flush the Slack outbox" jobs: customer messages and notes into the owner's thread. */
  toAgent: 'to-agent',
  /** Per-customer "flush the send outbox" jobs: agent replies and automatic messages to the customer. */
  toCustomer: 'to-customer',
  /** Slack events from the agents' side (thread replies, edits, deletions), deduplicated by event id. */
  agentEvents: 'agent-events',
  /** Delayed timers: SLA reminders and escalations. */
  timers: 'timers',
} as const;

export type QueueName = (typeof QueueName)[keyof typeof QueueName];

export const ALL_QUEUES: QueueName[] = Object.values(QueueName);

/**
 * BullMQ job ids may not contain `:` (its key separator) nor be purely numeric. Message keys are
 * `${provider}:${providerMessageId}`, so `:` becomes `~`, which no provider id we know uses.
 */
export function jobIdFor(key: string): string {
  return `k~${key.replaceAll(':', '~')}`;
}

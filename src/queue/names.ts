/** Queue names, each named for what it carries. */
export const QueueName = {
  /** Canonical inbound events (messages and delivery statuses) from every channel. */
  inbound: 'inbound',
  /** Customer messages and notes to post into the owner's Slack thread. */
  toAgent: 'to-agent',
  /** Agent replies to deliver to the customer on their app. */
  toCustomer: 'to-customer',
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

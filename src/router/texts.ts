/**
 * What customers and agents are told, in one place: the configurable acknowledgement texts and the
 * explanations of delivery failures (the agent must always know what happened to what they sent).
 */
import type { SendFailureReason } from '../channels/sender';
import { escapeSlackText } from '../channels/slack/escape';

/** Fills `{name}` placeholders; unknown placeholders are left out. */
export function fill(template: string, values: Record<string, string | undefined>): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => values[name] ?? '');
}

const CHANNEL_LABEL: Record<string, string> = { sms: 'SMS', whatsapp: 'WhatsApp', messenger: 'Messenger' };

export function channelLabel(channel: string | undefined): string {
  return channel ? (CHANNEL_LABEL[channel] ?? channel) : 'unknown channel';
}

/** How long ago, for people: "3 minutes", "26 hours", "4 days". */
export function ago(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  if (minutes < 90) return `${minutes} minute${minutes === 1 ? '' : 's'}`;
  const hours = Math.round(ms / 3_600_000);
  if (hours < 48) return `${hours} hours`;
  return `${Math.round(ms / 86_400_000)} days`;
}

/** The agent-facing explanation of a failed send, with what they can do about it. */
export function explainFailure(
  reason: SendFailureReason | 'uncertain' | 'no_route',
  code?: string,
  channel?: string,
): string {
  const withCode = (text: string) => (code ? `${text} (provider code ${code})` : text);
  switch (reason) {
    case 'window_closed':
      if (channel === 'messenger') {
        return withCode(
          'The Messenger window is closed: the customer has not written in the last 24 hours (7 days with the human-agent tag, MESSENGER_HUMAN_AGENT). ' +
            'Messenger has no templates: wait for them to write, or reply starting with `sms:` if they have a phone number on file.',
        );
      }
      return withCode(
        'The messaging window is closed: the customer has not written in the last 24 hours, so the app only accepts an approved template. ' +
          'Use `/rapport template` (or the *Send template* button) or reply starting with `sms:` to text them instead.',
      );
    case 'opted_out':
      return withCode(
        'The customer has opted out (STOP) on this channel; nothing is sent until they write START.',
      );
    case 'invalid_recipient':
      return withCode(
        'The provider says this address cannot receive messages (wrong number, blocked or not on this app): check the number with the customer, or reach them on another channel.',
      );
    case 'auth':
      return withCode(
        'Our credentials for this channel were refused: an admin must check the configuration (`rapport doctor`).',
      );
    case 'unsupported':
      return withCode('This channel cannot carry that content.');
    case 'rate_limited':
    case 'unavailable':
      return withCode('The provider kept failing or throttling us and we gave up after several tries.');
    case 'uncertain':
      return 'Delivery is uncertain: Rapport stopped while the provider was handling this message. Check with the customer before resending.';
    case 'no_route':
      return 'There is no enabled channel that can reach this customer (the app they used is not configured any more).';
    case 'rejected':
    default:
      return withCode(
        'The provider refused the message. Try again later, or reach the customer another way (start a reply with `sms:` to text them).',
      );
  }
}

/** Provider error codes of delivery reports that say which failure it is; the rest are `rejected`. */
const STATUS_FAILURE: Record<string, SendFailureReason> = {
  // Outside the 24-hour window (Twilio, WhatsApp Cloud).
  '63016': 'window_closed',
  '131047': 'window_closed',
  // Opted out (Twilio).
  '21610': 'opted_out',
  // Unreachable, unknown, landline or not on WhatsApp.
  '30003': 'invalid_recipient',
  '30005': 'invalid_recipient',
  '30006': 'invalid_recipient',
  '63003': 'invalid_recipient',
  '131026': 'invalid_recipient',
  // Throttled.
  '130429': 'rate_limited',
  '131056': 'rate_limited',
};

/** What a failed delivery report means, from its provider error code. */
export function failureOfStatusCode(code: string | undefined): SendFailureReason {
  return (code !== undefined ? STATUS_FAILURE[code] : undefined) ?? 'rejected';
}

/**
 * The note for a reply the provider later reported as not delivered: one sentence with the
 * provider's own reason (escaped: it is the provider's text), then what the agent can do.
 */
export function explainDeliveryFailure(
  channel: string,
  error: { code?: string; title?: string; detail?: string } | undefined,
): string {
  const said = [error?.title, error?.detail]
    .filter((t, i, all): t is string => Boolean(t) && all.indexOf(t) === i)
    .join(' — ')
    .replace(/[.\s]+$/, '');
  const reason = said ? `: “${escapeSlackText(said)}”` : '';
  const code = error?.code;
  return `:x: ${channelLabel(channel)} could not deliver your reply${reason}. ${explainFailure(failureOfStatusCode(code), code, channel)}`;
}

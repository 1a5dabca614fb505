/**
 * What customers and agents are told about claims, in one place: the code message (naming the
 * business and what the code is for), the answers to codes, and the agent's notes. Customer-
 * controlled values (an email a customer typed) are escaped (escapeSlackText) before they reach Slack.
 */
import type { ClaimLimitName } from '../identity/claim-limits';
import { escapeSlackText } from '../channels/slack/escape';
import { channelLabel } from './texts';

/** "your number ending 42" / "your email a…@example.com": enough for the customer to recognise it. */
export function describeTarget(kind: 'phone' | 'email', value: string): string {
  if (kind === 'phone') return `your number ending ${value.slice(-2)}`;
  const [local = '', domain = ''] = value.split('@');
  return `your email ${local.slice(0, 1)}…@${domain}`;
}

/** Why a code was not sent (after a limit or an opt-out). */
export type CodeRefusal = ClaimLimitName | 'opted_out';

const REFUSAL_REASON: Record<CodeRefusal, string> = {
  sender: 'this customer already asked for the most codes allowed in an hour (CLAIM_CODES_PER_SENDER_HOUR)',
  target: 'that number already received the most codes allowed in a day (CLAIM_CODES_PER_TARGET_DAY)',
  hour: 'Rapport already sent the most codes allowed in an hour, for all customers (CLAIM_CODES_PER_HOUR)',
  day: 'Rapport already sent the most codes allowed in a day, for all customers (CLAIM_CODES_PER_DAY)',
  attempts: 'too many wrong codes were tried for that number today (CLAIM_ATTEMPTS_PER_TARGET_DAY)',
  opted_out: 'that number opted out of our texts (STOP)',
};

export const claimTexts = {
  /** The SMS to the claimed number. */
  code(business: string | undefined, code: string, channel: string): string {
    const from = business ? `${business}: ` : '';
    return (
      `${from}${code} is your code to link this number to your ${channelLabel(channel)} chat with ${business ?? 'us'}. ` +
      'It expires in 15 minutes. If you did not ask for it, ignore this message.'
    );
  },

  /** To the customer, on the app they claimed from. */
  customer: {
    codeSent: (target: string) =>
      `We've sent a 6-digit code to ${target}. Please send it here to confirm it's yours (it expires in 15 minutes).`,
    confirmed: (target: string) => `Thanks — this chat is now linked to ${target}.`,
    wrong: (target: string, left: number) =>
      `That code doesn't match the one we sent to ${target}. Please check it and send it again (${left} ${left === 1 ? 'try' : 'tries'} left).`,
    expired: () =>
      'That code has expired (codes last 15 minutes). To get a new one, send your number again as a message on its own.',
    locked: () =>
      "That code didn't match too many times, so we've stopped linking this number for now. You can keep chatting here; to try again tomorrow, send your number on its own.",
    /** Limits of the sender or of Rapport as a whole. */
    later: () =>
      "We can't send another code right now. Please try again in an hour or so — you can keep chatting here meanwhile.",
    /** The target refused (its limits or opt-out): says nothing about the number itself. */
    cannot: () =>
      "We can't send a code to that number right now. Your message has reached our team, and they can help you here.",
  },

  /** Notes in the agent's thread; `value` is escaped here. */
  agent: {
    codeSent: (value: string, by?: string) =>
      `:lock: ${by ? `<@${by}> sent` : 'The customer says this number is theirs:'} a code to ${escapeSlackText(value)} by SMS. ` +
      'This conversation is linked to that number once they send the code back here.',
    offer: (value: string) =>
      `:information_source: This message mentions ${escapeSlackText(value)}. If the customer means it is their own number, ` +
      'send it a code: they must send it back here to link the two.',
    email: (value: string, explicit: boolean) =>
      `:information_source: ${explicit ? 'The customer says their email is' : 'This message mentions the email'} ${escapeSlackText(value)}. ` +
      `Rapport cannot email a code; if you trust it, run \`/rapport link ${escapeSlackText(value)}\` in this thread.`,
    refused: (value: string, why: CodeRefusal) =>
      `:no_entry: No code was sent to ${escapeSlackText(value)}: ${REFUSAL_REASON[why]}. The customer was told we cannot send one right now.`,
    wrong: (value: string, left: number) =>
      `:lock: That was not the code sent to ${escapeSlackText(value)} (${left} ${left === 1 ? 'try' : 'tries'} left); the customer was asked to check it.`,
    expired: (value: string) =>
      `:lock: The code sent to ${escapeSlackText(value)} had expired; the customer was asked to send their number again.`,
    locked: (value: string) =>
      `:no_entry: Too many wrong codes for ${escapeSlackText(value)}: linking it is stopped for today, and the customer was told.`,
    linked: (value: string) =>
      `:white_check_mark: The customer sent back the code sent to ${escapeSlackText(value)}: it is now linked to this customer.`,
    merged: (value: string, mergedId: string) =>
      `:white_check_mark: The customer sent back the code sent to ${escapeSlackText(value)}: customer \`${mergedId}\` was the same person and is merged into this one; their history is part of this customer now.`,
  },
};

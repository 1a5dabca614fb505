/**
 * What the agent reads in Slack for one customer message: every part rendered for a person —
 * the text, each file with its name, type and caption, locations, button presses, shared links,
 * contacts (name and number), orders (items and total), edits, deletions, reactions (with the
 * message they react to), where the customer came from (ads, links), call-permission answers — and,
 * for what Rapport cannot render, the provider's type and reason. Nothing the customer sent is left
 * out. The result is plain text with Rapport's own mrkdwn around the customer's strings:
 * slack-delivery escapes the whole post once (`escapeSlackText`), so nothing here escapes again and
 * no `<url|label>` link is formed.
 */
import type { InboundMessage, MessagePart, OrderItem, SharedContact } from '../canonical';

/**
 * A customer's link, shown as the URL itself (never behind a label the customer chose, so the agent
 * sees where it goes), after its title when there is one.
 */
function visibleLink(url: string, label?: string): string {
  return label ? `${label}: ${url}` : url;
}

/** "a" or "an" before a word, by its first letter. */
export function article(word: string): string {
  return /^[aeiou]/i.test(word) ? 'an' : 'a';
}

/** Quoted, shortened text of the message a reaction, edit or deletion is about. */
export interface TargetLookup {
  (providerMessageId: string): string | undefined;
}

const MEDIA_LABEL: Record<string, string> = {
  image: 'image',
  video: 'video',
  audio: 'audio',
  application: 'file',
  text: 'file',
};

function mediaLine(p: Extract<MessagePart, { kind: 'media' }>): string {
  const family = p.contentType?.split('/')[0] ?? '';
  const kind = MEDIA_LABEL[family] ?? 'file';
  const name = p.filename ? ` ${p.filename}` : '';
  const type = p.contentType && !p.contentType.endsWith('/*') ? ` (${p.contentType})` : '';
  const url = p.url ? `: ${p.url}` : '';
  const lines = [`:paperclip: ${kind}${name}${type}${url}`];
  if (p.caption) lines.push(p.caption);
  return lines.join('\n');
}

function contactLine(c: SharedContact): string {
  const name = c.name ? `*${c.name}*` : 'a contact';
  const numbers = [...c.phones, ...(c.emails ?? [])].join(', ');
  return `:bust_in_silhouette: shared ${name}${numbers ? `: ${numbers}` : ' (no number)'}`;
}

function money(amount: number, currency: string | undefined): string {
  const rounded = Math.round(amount * 100) / 100;
  return currency ? `${rounded} ${currency}` : String(rounded);
}

function orderLines(items: OrderItem[], text: string | undefined): string {
  const lines = items.map(
    (i) => `• ${i.quantity} × ${i.id}${i.price !== undefined ? ` at ${money(i.price, i.currency)}` : ''}`,
  );
  const currencies = new Set(items.map((i) => i.currency));
  const priced = items.every((i) => i.price !== undefined);
  const total =
    priced && currencies.size === 1 && items.length > 0
      ? `; total ${money(
          items.reduce((sum, i) => sum + i.quantity * (i.price ?? 0), 0),
          items[0]!.currency,
        )}`
      : '';
  const count = items.length === 1 ? '1 item' : `${items.length} items`;
  return [`:shopping_trolley: sent an order (${count}${total})`, ...lines, ...(text ? [text] : [])].join(
    '\n',
  );
}

function quoted(targetId: string | undefined, lookup: TargetLookup): string {
  const text = targetId ? lookup(targetId) : undefined;
  if (text === undefined) return 'a message';
  const short = text.length > 80 ? `${text.slice(0, 79)}…` : text;
  return `“${short.replace(/\s+/g, ' ')}”`;
}

function referralLine(p: Extract<MessagePart, { kind: 'referral' }>): string {
  const source = p.source?.toLowerCase();
  const from =
    source === 'ad' || source === 'ads'
      ? 'an ad'
      : source === 'post'
        ? 'a post'
        : source === 'shortlink'
          ? 'an m.me link'
          : source === 'customer_chat_plugin'
            ? 'the chat plugin on a website'
            : source
              ? `${article(source)} ${source}`
              : 'a referral';
  const headline = p.headline ? ` *${p.headline}*` : '';
  const body = p.body ? ` — ${p.body}` : '';
  const url = p.url ? ` ${visibleLink(p.url)}` : '';
  const ref = p.ref ? ` (ref ${p.ref})` : '';
  return `:mega: came from ${from}${headline}${body}${url}${ref}`;
}

function unsupportedLine(p: Extract<MessagePart, { kind: 'unsupported' }>): string {
  // WhatsApp system notices (number changed, identity changed) are news for the agent, not content.
  if (p.providerType.startsWith('system.') && p.detail) return `:information_source: ${p.detail}`;
  const type = p.providerType;
  const why = p.detail ? ` (${p.detail.replace(/[.\s]+$/, '')})` : '';
  return `:grey_question: sent ${article(type)} ${type} message that Rapport cannot show${why}. Ask the customer to resend it another way if it matters.`;
}

function partLine(p: MessagePart, lookup: TargetLookup): string {
  switch (p.kind) {
    case 'text':
      return p.text;
    case 'media':
      return mediaLine(p);
    case 'location': {
      const label = [p.name, p.address].filter(Boolean).join(', ') || 'a location';
      const url = p.url ?? `https://maps.google.com/?q=${p.latitude},${p.longitude}`;
      return `:round_pushpin: shared ${visibleLink(url, label)} (${p.latitude}, ${p.longitude})`;
    }
    case 'postback':
      return p.title
        ? `:radio_button: pressed “${p.title}”`
        : `:radio_button: pressed a button${p.payload ? ` (payload \`${p.payload.replace(/`/g, "'")}\`)` : ''}`;
    case 'link':
      return `:link: shared a link: ${p.url ? visibleLink(p.url, p.title) : (p.title ?? '')}`;
    case 'contacts':
      return p.contacts.length > 0
        ? p.contacts.map(contactLine).join('\n')
        : ':bust_in_silhouette: shared an empty contact card';
    case 'order':
      return orderLines(p.items, p.text);
    case 'edit':
      return `:pencil2: edited ${quoted(p.targetId, lookup)}:`;
    case 'revoke':
      return `:wastebasket: deleted a message${p.targetId && lookup(p.targetId) !== undefined ? ` (${quoted(p.targetId, lookup)})` : ''}`;
    case 'reaction':
      return p.emoji
        ? `reacted ${p.emoji} to ${quoted(p.targetId, lookup)}`
        : `removed their reaction to ${quoted(p.targetId, lookup)}`;
    case 'referral':
      return referralLine(p);
    case 'call_permission':
      return p.accepted
        ? ':telephone_receiver: accepted the call request'
        : ':telephone_receiver: declined the call request';
    case 'unsupported':
      return unsupportedLine(p);
  }
}

/** The ids of earlier messages this message's parts refer to (reactions, edits, deletions). */
export function referencedIds(message: InboundMessage): string[] {
  return message.parts.flatMap((p) =>
    (p.kind === 'reaction' || p.kind === 'edit' || p.kind === 'revoke') && p.targetId ? [p.targetId] : [],
  );
}

/**
 * The message for Slack, one line (or block of lines) per part, in order. `lookup` gives the text of
 * an earlier message by its provider id (for reactions, edits and deletions); without it they read
 * "a message".
 */
export function describeParts(message: InboundMessage, lookup: TargetLookup = () => undefined): string {
  if (message.parts.length === 0) return message.text ? message.text : '(empty message)';
  const lines = message.parts.map((p) => partLine(p, lookup));
  // "edited …:" reads with the new content on the same line when it is plain text.
  const edit = message.parts[0]?.kind === 'edit' && message.parts[1]?.kind === 'text';
  return edit ? `${lines[0]} ${lines.slice(1).join('\n')}` : lines.join('\n');
}

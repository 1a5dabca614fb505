/**
 * How an inbound file is described in the customer's Slack thread. The line is part of a customer
 * message post, which is plain text: slack-delivery escapes it (escapeSlackText) when posting, so
 * names like `<!channel>.jpg` show as typed.
 */
import type { InboundFile } from './inbound';
import { formatBytes } from './inbound';

/**
 * The line for one inbound file: its name (the file itself follows in the thread) or why not, with
 * the provider's URL when there is one (shown as a plain URL; it may still open for the agent).
 */
export function describeInboundFile(file: InboundFile, url?: string): string {
  if (file.kind === 'stored') return `:paperclip: ${file.filename}`;
  const what = [
    file.contentType ?? 'a file',
    ...(file.bytes !== undefined ? [formatBytes(file.bytes)] : []),
    ...(file.filename ? [`"${file.filename}"`] : []),
  ].join(', ');
  return `:warning: The customer sent ${what}; it cannot be shown here: ${file.why}.${url ? `\n${url}` : ''}`;
}

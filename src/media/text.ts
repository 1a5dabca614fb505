/**
 * How files are described in Slack. File names and captions are the customer's (or the agent's)
 * own words: they are escaped so `<!channel>` or `<https://evil|bank>` in a name shows as typed.
 */
import type { InboundFile } from './inbound';
import { formatBytes } from './inbound';

/** Slack's three control characters (`&`, `<`, `>`), escaped the way Slack documents. */
export function escapeSlackText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The line for one inbound file: its name (the file itself follows in the thread) or why not. */
export function describeInboundFile(file: InboundFile, caption?: string): string {
  const said = caption ? ` — ${escapeSlackText(caption)}` : '';
  if (file.kind === 'stored') return `:paperclip: ${escapeSlackText(file.filename)}${said}`;
  const what = [
    file.contentType ? escapeSlackText(file.contentType) : 'a file',
    ...(file.bytes !== undefined ? [formatBytes(file.bytes)] : []),
    ...(file.filename ? [`"${escapeSlackText(file.filename)}"`] : []),
  ].join(', ');
  return `:warning: The customer sent ${what}; it cannot be shown here: ${file.why}.${said}`;
}

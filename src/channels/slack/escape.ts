/**
 * The one way a string Rapport does not control (a customer's text, name, file name, caption, URL or
 * email; anything a provider reports) enters a Slack message.
 *
 * Slack parses `text`, `mrkdwn` blocks and `username` for control sequences in angle brackets:
 * `<!channel>`, `<!here>`, `<@U…>`, `<#C…>`, `<!subteam^…>` and `<https://evil|bank.com>` (a link
 * whose visible label hides its target). Slack's rule (api.slack.com, "Formatting text for app
 * surfaces › Escaping text") is to replace exactly three characters — `&`, `<` and `>` — with their
 * HTML entities, and nothing else: then none of those sequences can be formed, and a customer's URL
 * stays a plain, visible URL that Slack still links. Text is never decoded on the way in (an `&amp;`
 * a customer typed is shown as `&amp;`, not turned into `&`).
 *
 * Everything Rapport writes around such a string (`*bold*`, `<@U…>` mentions of agents, emoji) is
 * its own markup and is not passed through here.
 */

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;' };

/** `&`, `<` and `>` as Slack entities, so the string shows literally and cannot form markup. */
export function escapeSlackText(text: string): string {
  return text.replace(/[&<>]/g, (c) => ENTITIES[c]!);
}

/** Slack's escaping rule: exactly `&`, `<`, `>` become entities; nothing is ever decoded. */
import { escapeSlackText } from '../../src/channels/slack/escape';

describe('escapeSlackText', () => {
  it.each([
    ['<!channel>', '&lt;!channel&gt;'],
    ['<!here> <@U123> <#C123>', '&lt;!here&gt; &lt;@U123&gt; &lt;#C123&gt;'],
    ['<https://evil.example|bank.com>', '&lt;https://evil.example|bank.com&gt;'],
    ['<!subteam^S123|@team>', '&lt;!subteam^S123|@team&gt;'],
    ['Tom & Jerry', 'Tom &amp; Jerry'],
  ])('escapes %j', (input, out) => {
    expect(escapeSlackText(input)).toBe(out);
  });

  it('never decodes: an entity the customer typed is shown as typed', () => {
    expect(escapeSlackText('&amp; &lt;!channel&gt;')).toBe('&amp;amp; &amp;lt;!channel&amp;gt;');
  });

  it('leaves everything else alone (mrkdwn emphasis, emoji, quotes, non-Latin text)', () => {
    const text = '*bold* _it_ `code` :wave: "q" \'a\' Привет 👋 | ~';
    expect(escapeSlackText(text)).toBe(text);
  });
});

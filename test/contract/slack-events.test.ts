/**
 * The Slack adapter against Slack's wire format: Events API JSON, slash-command forms and
 * interactivity forms from test/fixtures/slack, signed here with a test signing secret exactly as
 * Slack signs them (v0 HMAC-SHA256 over `v0:{timestamp}:{raw body}`), then verified and parsed the
 * way the Slack routes do it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  isSlackSslCheck,
  mentionsSomeone,
  parseInteraction,
  parseSlackEvent,
  parseSlashCommand,
  signSlackRequest,
  verifySlackSignature,
} from '../../src/channels/slack';
import { PayloadError } from '../../src/errors';
import { signatureErrorOf } from '../helpers/signing';

const SIGNING_SECRET = '8f742231b10e8888abcd99yyyzzz85a5';
const FIXTURES = join(__dirname, '../fixtures/slack');
const NOW_MS = Date.UTC(2024, 5, 20, 11, 30, 0);
const NOW_SEC = Math.floor(NOW_MS / 1000);

function raw(file: string): Buffer {
  return readFileSync(join(FIXTURES, file));
}

/** Verifies then parses, as the route does; the fixture is signed as Slack would sign it. */
function receiveEvent(file: string) {
  const body = raw(file);
  verifySlackSignature(SIGNING_SECRET, signSlackRequest(SIGNING_SECRET, body, NOW_SEC), body, NOW_MS);
  return parseSlackEvent(body);
}

function receiveForm<T>(file: string, parse: (body: Buffer) => T): T {
  const body = raw(file);
  verifySlackSignature(SIGNING_SECRET, signSlackRequest(SIGNING_SECRET, body, NOW_SEC), body, NOW_MS);
  return parse(body);
}

describe('Slack events over the wire', () => {
  it('a signed url_verification is answered with its challenge', () => {
    expect(receiveEvent('url-verification.json')).toEqual({
      type: 'url_verification',
      challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P',
    });
  });

  it("an agent's reply in a customer thread becomes a thread_reply with Slack's escaping decoded", () => {
    expect(receiveEvent('thread-reply.json')).toEqual({
      type: 'thread_reply',
      eventId: 'Ev07AGENTREPLY1',
      teamId: 'T07RAPP0RT1',
      channel: 'C07SUPPORT1',
      threadTs: '1718882950.112849',
      ts: '1718883012.339209',
      user: 'U07AGENT001',
      text: "Hi Ana, your order ships Monday & I'll send the tracking link <here> :package:",
      rawText: "Hi Ana, your order ships Monday &amp; I'll send the tracking link &lt;here&gt; :package:",
      files: [],
    });
  });

  it('an escaped angle bracket typed by the agent is not taken for a mention', () => {
    const event = receiveEvent('thread-reply.json');
    if (event.type !== 'thread_reply') throw new Error(`expected thread_reply, got ${event.type}`);
    expect(mentionsSomeone(event.rawText)).toBe(false);
  });

  it('a file shared into the thread becomes a thread_reply carrying the file', () => {
    expect(receiveEvent('file-share-reply.json')).toEqual({
      type: 'thread_reply',
      eventId: 'Ev07FILESHARE1',
      teamId: 'T07RAPP0RT1',
      channel: 'C07SUPPORT1',
      threadTs: '1718882950.112849',
      ts: '1718883300.771289',
      user: 'U07AGENT001',
      text: 'Here is the return label',
      rawText: 'Here is the return label',
      files: [
        {
          id: 'F07LABEL0001',
          name: 'return-label.pdf',
          mimetype: 'application/pdf',
          urlPrivate: 'https://files.slack.com/files-pri/T07RAPP0RT1-F07LABEL0001/return-label.pdf',
          urlPrivateDownload:
            'https://files.slack.com/files-pri/T07RAPP0RT1-F07LABEL0001/download/return-label.pdf',
          size: 48213,
        },
      ],
    });
  });

  it('a reply also sent to the channel is still a thread_reply, marked broadcast', () => {
    expect(receiveEvent('thread-broadcast.json')).toMatchObject({
      type: 'thread_reply',
      eventId: 'Ev07BROADCAST1',
      user: 'U07AGENT001',
      threadTs: '1718882950.112849',
      text: 'Refund approved, closing this out',
      broadcast: true,
    });
  });

  it("our own bot's post echoed back is ignored, so it is never relayed again (no loop)", () => {
    expect(receiveEvent('bot-message.json')).toEqual({
      type: 'ignored',
      eventId: 'Ev07BOTECHO01',
      reason: 'bot message',
    });
  });

  it("another integration's bot_message in a thread is ignored", () => {
    expect(receiveEvent('bot-message-legacy.json')).toMatchObject({
      type: 'ignored',
      eventId: 'Ev07LEGACYBOT1',
    });
  });

  it('a top-level channel message (not in a thread) is ignored', () => {
    expect(receiveEvent('top-level-message.json')).toEqual({
      type: 'ignored',
      eventId: 'Ev07TOPLEVEL01',
      reason: 'top-level channel message (not in a thread)',
    });
  });

  it("an agent's edit becomes message_changed with the new, decoded text", () => {
    expect(receiveEvent('message-changed.json')).toEqual({
      type: 'message_changed',
      eventId: 'Ev07EDITED0001',
      channel: 'C07SUPPORT1',
      ts: '1718883012.339209',
      threadTs: '1718882950.112849',
      user: 'U07AGENT001',
      text: "Hi Ana, your order ships Tuesday & I'll send the tracking link",
      rawText: "Hi Ana, your order ships Tuesday &amp; I'll send the tracking link",
    });
  });

  it("an agent's deleted reply becomes message_deleted of that reply's ts", () => {
    expect(receiveEvent('message-deleted.json')).toEqual({
      type: 'message_deleted',
      eventId: 'Ev07DELETED001',
      channel: 'C07SUPPORT1',
      ts: '1718883012.339209',
      threadTs: '1718882950.112849',
    });
  });

  it('an app_mention event is ignored with its type as the reason', () => {
    expect(receiveEvent('app-mention.json')).toEqual({
      type: 'ignored',
      eventId: 'Ev07MENTION001',
      reason: 'event type app_mention',
    });
  });

  it('a channel_join message is ignored with its subtype as the reason', () => {
    expect(receiveEvent('channel-join.json')).toEqual({
      type: 'ignored',
      eventId: 'Ev07JOIN000001',
      reason: 'message subtype channel_join',
    });
  });
});

describe('Slack signatures on real payloads', () => {
  const body = raw('thread-reply.json');
  const headers = signSlackRequest(SIGNING_SECRET, body, NOW_SEC);

  it('a payload with one byte changed after signing is refused with 403', () => {
    const tampered = Buffer.from(body.toString('utf8').replace('Monday', 'Sunday'));
    expect(
      signatureErrorOf(() => verifySlackSignature(SIGNING_SECRET, headers, tampered, NOW_MS)).status,
    ).toBe(403);
  });

  it('re-serialised JSON (same data, different bytes) does not verify', () => {
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(body.toString('utf8')), null, 1));
    expect(
      signatureErrorOf(() => verifySlackSignature(SIGNING_SECRET, headers, reserialised, NOW_MS)).status,
    ).toBe(403);
  });

  it('a form body is signed over its raw bytes too', () => {
    const form = raw('slash-command.form');
    expect(() =>
      verifySlackSignature(SIGNING_SECRET, signSlackRequest(SIGNING_SECRET, form, NOW_SEC), form, NOW_MS),
    ).not.toThrow();
  });
});

describe('Slack slash commands over the wire', () => {
  it('/rapport handoff arrives with the escaped user mention and every id the router needs', () => {
    expect(receiveForm('slash-command.form', parseSlashCommand)).toEqual({
      command: '/rapport',
      text: 'handoff <@U07AGENT002|joao>',
      userId: 'U07AGENT001',
      userName: 'maria',
      channelId: 'C07SUPPORT1',
      teamId: 'T07RAPP0RT1',
      responseUrl: 'https://hooks.slack.com/commands/T07RAPP0RT1/7301234567890/Xy9AbCdEfGhIjKlMnOpQrStU',
      triggerId: '7301234567890.7265432109876.4f3e2d1c0b9a8f7e6d5c4b3a29180716',
    });
  });

  it('a command run inside a thread passes thread_ts through and trims the text', () => {
    expect(receiveForm('slash-command-in-thread.form', parseSlashCommand)).toMatchObject({
      command: '/rapport',
      text: 'whois',
      threadTs: '1718882950.112849',
    });
  });

  it('a command without user_id is a PayloadError', () => {
    const body = Buffer.from('command=%2Frapport&channel_id=C07SUPPORT1&text=back');
    expect(() => parseSlashCommand(body)).toThrow(PayloadError);
  });

  it("Slack's periodic ssl_check is recognised, and is not a command", () => {
    const body = Buffer.from('ssl_check=1&token=Jhj5dZrVaK7ZwHHjRyZWjbDl');
    expect(isSlackSslCheck(body)).toBe(true);
    expect(isSlackSslCheck(raw('slash-command.form'))).toBe(false);
    expect(() => parseSlashCommand(body)).toThrow(PayloadError);
  });
});

describe('Slack interactivity over the wire', () => {
  it('block_actions on the customer card yields the user, message, thread and each action', () => {
    expect(receiveForm('block-actions.form', parseInteraction)).toEqual({
      type: 'block_actions',
      userId: 'U07AGENT001',
      teamId: 'T07RAPP0RT1',
      channelId: 'C07SUPPORT1',
      messageTs: '1718882950.112849',
      threadTs: '1718882950.112849',
      actions: [
        { actionId: 'rapport_assign', selectedUser: 'U07AGENT002' },
        { actionId: 'rapport_claim', value: 'cust_8f2a' },
      ],
      responseUrl: 'https://hooks.slack.com/actions/T07RAPP0RT1/7301234567892/QrStUvWxYzAbCdEfGhIjKlMn',
      triggerId: '7301234567892.7265432109876.1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e',
    });
  });

  it('a view_submission is ignored with its type as the reason', () => {
    expect(receiveForm('view-submission.form', parseInteraction)).toEqual({
      type: 'ignored',
      reason: 'interaction type view_submission',
    });
  });

  it('an interaction without a payload field is a PayloadError', () => {
    expect(() => parseInteraction(Buffer.from('type=block_actions'))).toThrow(PayloadError);
  });
});

/**
 * Sends agent replies to customers over Messenger with messaging-api-messenger's MessengerClient
 * (`POST /{version}/me/messages?access_token=…`).
 *
 * The SDK puts the page token in the query string, so its errors (AxiosError with `config.url`)
 * and its debug request log would leak it: the client gets a no-op `onRequest`, and errors are
 * narrowed to plain data before they become an OutboundError — the SDK error is never the cause.
 * A lost answer is `uncertain` (the Send API cannot list what was sent): never resent blindly.
 */
import { MessengerClient, type MessengerTypes } from 'messaging-api-messenger';
import type { Channel } from '../../canonical';
import { isRecord } from '../../values';
import type { ChannelSender, OutboundMedia, OutboundMessage, SendProgress, SendResult } from '../sender';
import { OutboundError, sendInParts } from '../sender';
import {
  classifyMessengerFailure,
  contentError,
  graphFailureFromBody,
  headerValue,
  outboundErrorFrom,
  transportKind,
  type ProviderFailure,
} from '../send-errors';

export interface MessengerSenderOptions {
  /** `MESSENGER_PAGE_ACCESS_TOKEN`. */
  pageAccessToken: string;
  /** `META_GRAPH_BASE_URL`. @defaultValue `'https://graph.facebook.com'` */
  graphBaseUrl?: string;
  /** `META_GRAPH_VERSION`, e.g. `'v21.0'` (the SDK's own default, 6.0, is retired). */
  graphVersion: string;
  /** When set, every call carries `appsecret_proof` (needed if the app requires it). */
  appSecret?: string;
  /** Per-request timeout. @defaultValue `10_000` */
  timeoutMs?: number;
}

type AttachmentType = 'image' | 'video' | 'audio' | 'file';

/** Messenger attachment type for a media item, by content type (anything else is a `file`). */
export function messengerAttachmentType(media: OutboundMedia): AttachmentType {
  const ct = media.contentType?.toLowerCase() ?? '';
  if (ct.startsWith('image/')) return 'image';
  if (ct.startsWith('video/')) return 'video';
  if (ct.startsWith('audio/')) return 'audio';
  if (ct === '' && /\.(jpe?g|png|gif|webp)$/i.test(safePath(media.url))) return 'image';
  return 'file';
}

function safePath(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return '';
  }
}

/**
 * The SDK messages one outbound message becomes, in order (pure): the text first, then one
 * attachment per media item (Messenger carries no caption). A template alone cannot be sent.
 */
export function messengerMessages(message: OutboundMessage): MessengerTypes.Message[] {
  if (message.channel !== 'messenger') {
    throw contentError('messenger', 'unsupported', `channel ${message.channel} is not carried by Messenger`);
  }
  const out: MessengerTypes.Message[] = [];
  if (message.text !== undefined && message.text.length > 0) out.push({ text: message.text });
  for (const m of message.media ?? []) {
    out.push({ attachment: { type: messengerAttachmentType(m), payload: { url: m.url, isReusable: true } } });
  }
  if (out.length === 0) {
    throw contentError(
      'messenger',
      'unsupported',
      message.template
        ? 'Messenger has no templates; send text or media'
        : 'nothing to send: no text or media',
    );
  }
  return out;
}

/** Narrows the SDK's AxiosError into plain data: status, Graph codes, Retry-After; never its URL. */
function messengerFailureOf(err: unknown): ProviderFailure {
  const response = isRecord(err) && isRecord(err.response) ? err.response : undefined;
  if (response === undefined || typeof response.status !== 'number') {
    // The axios-error wrapper drops `code`; its message is axios's own ("timeout of 10000ms
    // exceeded", "connect ECONNREFUSED …"), which transportKind reads.
    return { transport: transportKind(err) };
  }
  return graphFailureFromBody(response.status, response.data, headerValue(response.headers, 'retry-after'));
}

function messengerClient(o: MessengerSenderOptions): MessengerClient {
  const client = new MessengerClient({
    accessToken: o.pageAccessToken,
    origin: (o.graphBaseUrl ?? 'https://graph.facebook.com').replace(/\/+$/, ''),
    version: o.graphVersion.replace(/^v/, ''),
    ...(o.appSecret !== undefined ? { appSecret: o.appSecret } : { skipAppSecretProof: true }),
    // The default logs `METHOD url` (with ?access_token=) under DEBUG=messaging-api:*.
    onRequest: () => undefined,
  });
  client.axios.defaults.timeout = o.timeoutMs ?? 10_000;
  return client;
}

/**
 * A Messenger user's name (User Profile API, `GET /{psid}?fields=first_name,last_name`): Messenger
 * webhooks carry no name, so the customer card asks once. Undefined when the profile has none;
 * throws (without the token) when the Graph API refuses.
 */
export function createMessengerProfiles(o: MessengerSenderOptions) {
  const client = messengerClient(o);
  return {
    async name(psid: string): Promise<string | undefined> {
      try {
        const user = await client.getUserProfile(psid, { fields: ['first_name', 'last_name'] });
        const name = [user.firstName, user.lastName].filter(Boolean).join(' ').trim();
        return name || undefined;
      } catch (err) {
        const failure = messengerFailureOf(err);
        throw new Error(`messenger profile lookup failed (${JSON.stringify(failure).slice(0, 200)})`);
      }
    },
  };
}

/** A `ChannelSender` for Messenger through the Send API. */
export function createMessengerSender(o: MessengerSenderOptions): ChannelSender {
  const client = messengerClient(o);
  const secrets = [o.pageAccessToken, ...(o.appSecret !== undefined ? [o.appSecret] : [])];
  const channels: readonly Channel[] = ['messenger'];

  async function sendOne(psid: string, body: MessengerTypes.Message, tagged: boolean): Promise<string> {
    try {
      const result = await client.sendMessage(
        psid,
        body,
        tagged ? { tag: 'HUMAN_AGENT' } : { messagingType: 'RESPONSE' },
      );
      const id: unknown = isRecord(result) ? result.messageId : undefined;
      if (typeof id !== 'string' || id.length === 0) {
        throw contentError('messenger', 'rejected', 'Messenger answered without a message id');
      }
      return id;
    } catch (err) {
      if (err instanceof OutboundError) throw err;
      const failure = messengerFailureOf(err);
      throw outboundErrorFrom('messenger', failure, classifyMessengerFailure(failure), secrets);
    }
  }

  return {
    provider: 'messenger',
    channels,
    async send(message: OutboundMessage, progress?: SendProgress): Promise<SendResult> {
      const tagged = message.messengerTag === 'HUMAN_AGENT';
      return sendInParts('messenger', messengerMessages(message), progress, (body) =>
        sendOne(message.to, body, tagged),
      );
    },
  };
}

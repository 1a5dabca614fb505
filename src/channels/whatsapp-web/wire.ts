/**
 * The subset of whatsapp-web.js that Rapport relies on, as our own types.
 *
 * Why our own: the library's `index.d.ts` is loose (`any` payloads, overloads that need
 * skipLibCheck) and its classes drive a real browser. Everything in this folder speaks
 * `WhatsAppWebClientLike`, so the session logic, routing and sending are tested with an
 * EventEmitter-based object that implements exactly this interface, and `client.ts` is the one place
 * that adapts the real `Client` to it. Field names and meanings follow whatsapp-web.js 1.34
 * (`src/structures/Message.js`, `src/Client.js`).
 */

/** `Message.id`: `_serialized` is `<fromMe>_<chat jid>_<id>` and unique per message. */
export interface WwebMessageId {
  fromMe: boolean;
  id: string;
  _serialized: string;
}

/** `MessageMedia`: the whole file as base64, as `downloadMedia()` returns it. */
export interface WwebMedia {
  mimetype: string;
  /** Base64 of the file. */
  data: string;
  filename?: string | null;
  filesize?: number | null;
}

/** `Location` of a `location` message (whatsapp-web.js keeps the numbers as the page gave them). */
export interface WwebLocation {
  latitude: number | string;
  longitude: number | string;
  name?: string;
  address?: string;
}

/**
 * The plain fields of a `Message`. `normalize.ts` reads only these (so it stays pure); the adapter
 * works with `WwebMessage`, which adds the methods.
 */
export interface WwebMessageFields {
  id: WwebMessageId;
  /** Chat the message came from: `<digits>@c.us`, `<id>@lid`, `<id>@g.us`, `status@broadcast`, … */
  from: string;
  /** Our own number's jid for received messages; the chat for messages we sent. */
  to: string;
  /** The sender inside a group chat. */
  author?: string;
  /** Text; for media the caption; for `location` a base64 thumbnail (never text!). */
  body: string;
  /** `chat`, `image`, `video`, `audio`, `ptt`, `document`, `sticker`, `location`, `vcard`, … */
  type: string;
  /** Unix seconds. */
  timestamp: number;
  fromMe: boolean;
  hasMedia: boolean;
  ack?: number;
  isStatus?: boolean;
  broadcast?: boolean;
  hasQuotedMsg?: boolean;
  location?: WwebLocation;
  /** vCard texts of a `vcard` / `multi_vcard` message. */
  vCards?: string[];
  /**
   * The raw WhatsApp Web model the library wraps. Only these loosely-typed fields are read:
   * `notifyName` (the sender's push name), `quotedStanzaID` (the id of the message replied to),
   * `filename`/`mimetype`/`size` (media metadata, known before downloading).
   */
  _data?: {
    notifyName?: unknown;
    quotedStanzaID?: unknown;
    filename?: unknown;
    mimetype?: unknown;
    size?: unknown;
  };
}

export interface WwebMessage extends WwebMessageFields {
  /** Resolves undefined when there is nothing to download (or WhatsApp no longer has it). */
  downloadMedia(): Promise<WwebMedia | undefined>;
}

/** `Chat`, for picking up messages that arrived while the session was down. */
export interface WwebChat {
  id: { _serialized: string };
  isGroup: boolean;
  unreadCount: number;
  fetchMessages(options: { limit: number }): Promise<WwebMessage[]>;
}

/** The events Rapport listens to, with their arguments. */
export interface WhatsAppWebEvents {
  qr: [qr: string];
  authenticated: [payload?: unknown];
  auth_failure: [message: string];
  ready: [];
  message: [message: WwebMessage];
  message_ack: [message: WwebMessage, ack: number];
  /** `reason` is a WAState (`CONFLICT`, `UNPAIRED`, `UNLAUNCHED`, …), `LOGOUT` or a library text. */
  disconnected: [reason: string];
  change_state: [state: string];
  remote_session_saved: [];
}

export type WhatsAppWebEventName = keyof WhatsAppWebEvents;

export type WhatsAppWebListener<E extends WhatsAppWebEventName> = (...args: WhatsAppWebEvents[E]) => void;

export interface WwebSendOptions {
  /** With media: the text under it. */
  caption?: string;
}

/** What `sendMessage` resolves with (a `Message`; only its id matters to us). */
export interface WwebSentMessage {
  id: { _serialized: string };
}

/**
 * The whatsapp-web.js `Client` as Rapport uses it. The optional members exist on the real client;
 * they are optional so a fake only needs what a test exercises.
 */
export interface WhatsAppWebClientLike {
  on<E extends WhatsAppWebEventName>(event: E, listener: WhatsAppWebListener<E>): unknown;
  once<E extends WhatsAppWebEventName>(event: E, listener: WhatsAppWebListener<E>): unknown;
  /** Launches Chromium, opens WhatsApp Web and resolves once login is under way (QR shown or session restored). */
  initialize(): Promise<void>;
  /** Closes Chromium. Safe to call twice (the library also calls it after `disconnected`). */
  destroy(): Promise<void>;
  /** `chatId` is `<digits>@c.us`; `content` is text or a `MessageMedia` (see `send.ts`). */
  sendMessage(
    chatId: string,
    content: string | WwebMedia,
    options?: WwebSendOptions,
  ): Promise<WwebSentMessage>;
  /** The socket state (`CONNECTED`, `OPENING`, `UNPAIRED`, …), or null before WhatsApp Web loaded. */
  getState(): Promise<string | null>;
  /** Our own account, set once `ready`. */
  readonly info?: { wid: { _serialized: string; user: string } } | undefined;
  /** The registered jid of a number, or null if it is not on WhatsApp. */
  getNumberId?(number: string): Promise<{ _serialized: string } | null>;
  getChats?(): Promise<WwebChat[]>;
  /** LID ↔ phone lookups (whatsapp-web.js ≥ 1.34). */
  getContactLidAndPhone?(userIds: string[]): Promise<{ lid?: string; pn?: string }[]>;
}

/** whatsapp-web.js `MessageAck`. */
export const WWEB_ACK = {
  error: -1,
  pending: 0,
  server: 1,
  device: 2,
  read: 3,
  played: 4,
} as const;

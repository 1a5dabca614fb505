/**
 * Defaults of the WhatsApp Web channel and the Chromium command line, in one place so the README,
 * the session and the tests agree on them.
 */
import os from 'node:os';
import path from 'node:path';

export const WHATSAPP_WEB_DEFAULTS = {
  clientId: 'default',
  /** The session lease (lock.ts); a dead holder's number is free again after this. */
  lockTtlMs: 30_000,
  reconnect: { initialMs: 2_000, maxMs: 5 * 60_000, alertAfter: 5 },
  /** Launch + load + restore must reach `qr` or `ready` within this, or the attempt counts as failed. */
  startTimeoutMs: 3 * 60_000,
  /** How long `send()` waits for the session holder to send before answering "unavailable". */
  sendTimeoutMs: 30_000,
  /** A queued send older than this is not sent any more (the caller has moved on or retried). */
  maxSendAgeMs: 10 * 60_000,
  /** RemoteAuth's periodic session backup (its minimum is 60 s). */
  backupSyncIntervalMs: 5 * 60_000,
  /** At most one QR image per this interval goes to `notify` (the QR itself changes every ~20 s). */
  qrNotifyIntervalMs: 10 * 60_000,
  catchUp: { maxChats: 100, maxMessagesPerChat: 50 },
  /** RemoteAuth's working directory (the Chromium profile is unpacked here from MongoDB). */
  dataPath: path.join(os.tmpdir(), 'rapport-whatsapp-web'),
} as const;

/** The BullMQ queue that carries sends to whichever process holds the session. */
export const OUTBOUND_QUEUE = 'whatsapp-web-out';

/**
 * One outbound queue per number: a BullMQ worker cannot pick jobs by number, and only the holder
 * of THAT number's session may send them. The default number keeps the plain name.
 */
export function outboundQueueName(clientId: string): string {
  return clientId === 'default' ? OUTBOUND_QUEUE : `${OUTBOUND_QUEUE}-${clientId}`;
}

/**
 * Flags for a headless system Chromium in a container: no sandbox (runs as root), no GPU, no
 * /dev/shm (often tiny in containers), and none of Chrome's own background traffic (component
 * updates, first-run, default-browser checks) — the only traffic is WhatsApp Web itself.
 */
export const BASE_CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-setuid-sandbox',
  '--disable-dev-shm-usage',
  '--disable-gpu',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-background-networking',
  '--disable-component-update',
];

export function chromiumArgs(extra: readonly string[] = []): string[] {
  return [...new Set([...BASE_CHROMIUM_ARGS, ...extra])];
}

/** `initialMs · 2^(failures−1)`, capped at `maxMs`. */
export function backoffDelay(
  failures: number,
  { initialMs, maxMs }: { initialMs: number; maxMs: number },
): number {
  const exponent = Math.max(0, failures - 1);
  return Math.min(maxMs, initialMs * 2 ** Math.min(exponent, 30));
}

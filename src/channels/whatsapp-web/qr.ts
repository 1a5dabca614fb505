/**
 * Operator notices of the session: the login QR (drawn on a terminal, posted to the escalation
 * channel at most once per interval) and alerts. A notice that cannot be posted is logged, never
 * thrown: it must not break the session. The QR string is a login secret and is never logged.
 */
import type QRCodeModule from 'qrcode';
import type { Logger } from '../../logger';

/** qrcode (with pngjs) is loaded when a QR is drawn: only a process holding a session ever needs it. */
function qrcode(): typeof QRCodeModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- deliberate lazy load (see above)
  return require('qrcode') as typeof QRCodeModule;
}

export type NotifyImage = { filename: string; data: Buffer };
export type NotifyFn = (text: string, image?: NotifyImage) => Promise<void>;

/** `notify` that logs its failures instead of throwing; `enabled` is false without a target. */
export interface Notifier {
  readonly enabled: boolean;
  send: NotifyFn;
}

export function safeNotifier(notify: NotifyFn | undefined, log: Logger): Notifier {
  return {
    enabled: notify !== undefined,
    async send(text, image) {
      if (!notify) return;
      try {
        await notify(text, image);
      } catch (err) {
        log.warn({ err }, 'whatsapp web notification failed');
      }
    },
  };
}

export interface QrPresenterOptions {
  clientId: string;
  /** Where the QR is drawn; null to not draw it. */
  terminal: NodeJS.WritableStream | null;
  notifier: Notifier;
  /** Minimum time between two QR posts to the escalation channel. */
  notifyIntervalMs: number;
  log: Logger;
  now?: () => number;
}

export class QrPresenter {
  private lastNotifiedAt = 0;

  constructor(private readonly o: QrPresenterOptions) {}

  /** Draws `qr` on the terminal and posts it as a PNG unless one was posted within the interval. */
  async show(qr: string): Promise<void> {
    await this.draw(qr);
    const now = (this.o.now ?? Date.now)();
    if (!this.o.notifier.enabled || now - this.lastNotifiedAt < this.o.notifyIntervalMs) return;
    this.lastNotifiedAt = now;
    const { clientId } = this.o;
    try {
      const png = await qrcode().toBuffer(qr, { type: 'png', margin: 2, width: 320 });
      await this.o.notifier.send(
        `:iphone: WhatsApp Web (${clientId}) needs a login. Scan this QR code in WhatsApp → Settings → ` +
          'Linked devices. It changes every ~20 s: if it has expired, use the admin page for the current one.',
        { filename: `whatsapp-web-${clientId}-qr.png`, data: png },
      );
    } catch (err) {
      this.o.log.warn({ err }, 'could not post the QR code');
    }
  }

  private async draw(qr: string): Promise<void> {
    if (!this.o.terminal) return;
    try {
      const art = await qrcode().toString(qr, { type: 'terminal', small: true });
      this.o.terminal.write(
        `\nWhatsApp Web (${this.o.clientId}): scan this QR code in WhatsApp → Settings → Linked devices\n${art}\n`,
      );
    } catch (err) {
      this.o.log.debug({ err }, 'could not draw the QR code');
    }
  }
}

/** The QR as a PNG data URL, for the admin page. */
export function qrPngDataUrl(qr: string): Promise<string> {
  return qrcode().toDataURL(qr, { margin: 2, width: 320 });
}

/**
 * Inbound: `message` and `message_ack` events are normalised (`normalize.ts`) and handed to the
 * same intake as the webhooks (same dedupe), one at a time in arrival order. A failed hand-over
 * (Redis down) is retried with backoff until Redis is back, however long that takes — a live
 * message is never dropped after a timeout — and `onIntakeRecovered` then lets the session catch
 * up the unread chats (messages may have arrived meanwhile).
 */
import type { InboundEvent } from '../../canonical';
import type { Logger } from '../../logger';
import type { Intake } from '../../queue/intake';
import { sleep, type Inflight } from './inflight';
import type { WhatsAppWebMediaStore } from './media';
import type { InboundKind, SessionMetrics } from './metrics';
import {
  MEDIA_TYPES,
  classifyInbound,
  digitsOfJid,
  normalizeWhatsAppWebAck,
  normalizeWhatsAppWebMessage,
  type InboundMediaRef,
} from './normalize';
import type { WhatsAppWebClientLike, WwebMessage } from './wire';

export interface InboundPipelineOptions {
  intake: Pick<Intake, 'accept'>;
  mediaStore: Pick<WhatsAppWebMediaStore, 'keep'>;
  metrics: Pick<SessionMetrics, 'inbound'>;
  log: Logger;
  inflight: Inflight;
  /** True once the channel is stopping: a failing hand-over stops retrying then. */
  isStopped: () => boolean;
  /** The intake answered again after failing `attempts - 1` times. */
  onIntakeRecovered?: () => void;
  /** Wait before hand-over attempt `attempt + 1`. @defaultValue 500 ms doubling, at most 8 s */
  retryDelayMs?: (attempt: number) => number;
}

const defaultRetryDelay = (attempt: number) => Math.min(500 * 2 ** (attempt - 1), 8_000);

/** The phone jid WhatsApp gives for a `@lid` sender, if any. Never throws. */
export async function resolveLid(
  c: WhatsAppWebClientLike,
  lid: string,
  log: Logger,
): Promise<string | undefined> {
  if (!c.getContactLidAndPhone) return undefined;
  try {
    const [found] = await c.getContactLidAndPhone([lid]);
    const pn = found?.pn;
    return pn && digitsOfJid(pn) ? pn : undefined;
  } catch (err) {
    log.debug({ err }, 'could not resolve a LID sender to a phone number');
    return undefined;
  }
}

export class InboundPipeline {
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly o: InboundPipelineOptions) {}

  /** Runs `task` after every task enqueued before it (a failure is logged, the chain goes on). */
  enqueue(task: () => Promise<void>): void {
    this.chain = this.chain.then(task).catch((err: unknown) => {
      this.o.log.error({ err }, 'whatsapp web inbound handling failed');
    });
    void this.o.inflight.track(this.chain);
  }

  /** Settles once everything enqueued so far is handled. */
  idle(): Promise<void> {
    return this.chain;
  }

  message(c: WhatsAppWebClientLike, message: WwebMessage, via: 'live' | 'catch_up'): void {
    this.enqueue(() => this.handleMessage(c, message, via));
  }

  ack(message: WwebMessage, ack: number): void {
    this.enqueue(() => this.handleAck(message, ack));
  }

  private async handleMessage(c: WhatsAppWebClientLike, message: WwebMessage, via: 'live' | 'catch_up') {
    const verdict = classifyInbound(message);
    if (!verdict.customer) {
      this.o.metrics.inbound('message', `ignored_${verdict.reason}`);
      return;
    }
    let senderPhoneJid: string | undefined;
    if (verdict.from === 'lid') {
      senderPhoneJid = await resolveLid(c, message.from, this.o.log);
      if (!senderPhoneJid) this.o.metrics.inbound('message', 'lid_unresolved');
    }
    const media = await this.keepMedia(message);
    const ownJid = c.info?.wid._serialized;
    const normalized = normalizeWhatsAppWebMessage(message, {
      receivedAt: new Date(),
      ...(ownJid ? { ownJid } : {}),
      ...(senderPhoneJid ? { senderPhoneJid } : {}),
      ...(media ? { media } : {}),
    });
    if (!normalized) return;
    await this.accept([{ type: 'message', message: normalized }], 'message');
    // Ids only: the key contains the customer's number.
    this.o.log.debug({ messageId: message.id.id, via }, 'whatsapp web message queued');
  }

  private async keepMedia(message: WwebMessage): Promise<InboundMediaRef | undefined> {
    if (!message.hasMedia && !MEDIA_TYPES.has(message.type)) return undefined;
    const media = await this.o.mediaStore.keep(message);
    if (!media.stored)
      this.o.log.warn({ messageId: message.id.id, reason: media.reason }, 'whatsapp web media not kept');
    return media;
  }

  private async handleAck(message: WwebMessage, ack: number) {
    const status = normalizeWhatsAppWebAck(message, ack, new Date());
    if (!status) {
      this.o.metrics.inbound('status', 'ignored');
      return;
    }
    await this.accept([{ type: 'status', status }], 'status');
  }

  /** Hands events to the intake, retrying until it answers (only stopping the channel gives up). */
  private async accept(events: InboundEvent[], kind: InboundKind): Promise<void> {
    const delay = this.o.retryDelayMs ?? defaultRetryDelay;
    for (let attempt = 1; ; attempt++) {
      try {
        const { queued, duplicates } = await this.o.intake.accept(events);
        if (queued.length) this.o.metrics.inbound(kind, 'queued', queued.length);
        if (duplicates.length) this.o.metrics.inbound(kind, 'duplicate', duplicates.length);
        if (attempt > 1) {
          this.o.log.info({ attempts: attempt }, 'intake reachable again; catching up unread chats');
          this.o.onIntakeRecovered?.();
        }
        return;
      } catch (err) {
        if (this.o.isStopped()) {
          this.o.metrics.inbound(kind, 'failed', events.length);
          throw err;
        }
        if (attempt === 6)
          this.o.log.warn({ err: { message: (err as Error).message } }, 'intake unreachable; still retrying');
        await sleep(delay(attempt));
      }
    }
  }
}

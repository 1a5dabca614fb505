/**
 * Reconnecting: why an attempt failed (in Rapport's states), how long to wait before the next
 * client, and when to raise the alarm — once after `alertAfter` consecutive failures, and a
 * recovery notice when the session is ready again after that alarm.
 */
import { backoffDelay } from './config';

export type FailureState = 'disconnected' | 'unreachable' | 'failed';

/** Why an attempt ended, in Rapport's states; the detail is what an operator reads in /readyz. */
export function classifyStartFailure(err: unknown): { state: 'unreachable' | 'failed'; detail: string } {
  const text = err instanceof Error ? err.message : typeof err === 'string' ? err : 'unknown error';
  const net = /net::ERR_[A-Z_]+/.exec(text);
  if (net) return { state: 'unreachable', detail: `cannot reach WhatsApp Web (${net[0]})` };
  if (/ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|Navigation timeout/i.test(text)) {
    return { state: 'unreachable', detail: `cannot reach WhatsApp Web (${text.slice(0, 120)})` };
  }
  if (/auth timeout|ready timeout/i.test(text)) {
    return { state: 'unreachable', detail: `WhatsApp Web did not load (${text})` };
  }
  if (/Failed to launch|ENOENT|spawn|Browser was not found|executable/i.test(text)) {
    return { state: 'failed', detail: `cannot start Chromium (${text.split('\n')[0]?.slice(0, 160) ?? ''})` };
  }
  return { state: 'failed', detail: text.split('\n')[0]?.slice(0, 200) ?? 'unknown error' };
}

export interface ReconnectPolicy {
  initialMs: number;
  maxMs: number;
  alertAfter: number;
}

/** Consecutive failures of one number's session. */
export class FailureStreak {
  private count = 0;
  private alerted = false;

  constructor(
    private readonly clientId: string,
    private readonly policy: ReconnectPolicy,
  ) {}

  get failures(): number {
    return this.count;
  }

  /**
   * Counts a failure: the wait before the next client, and the alert text when this failure is
   * the one that crosses `alertAfter` (only then).
   */
  fail(state: FailureState, detail: string): { delayMs: number; alert?: string } {
    this.count += 1;
    const delayMs = backoffDelay(this.count, this.policy);
    if (this.count !== this.policy.alertAfter) return { delayMs };
    this.alerted = true;
    return {
      delayMs,
      alert:
        `:warning: WhatsApp Web (${this.clientId}) has failed ${this.count} times in a row — ${state}: ${detail}. ` +
        'Rapport keeps retrying; check the whatsapp-web process and the phone.',
    };
  }

  /** The session is ready: resets the streak; the recovery notice if an alert had gone out. */
  succeed(): string | undefined {
    const recovered = this.alerted;
    this.count = 0;
    this.alerted = false;
    return recovered ? `:white_check_mark: WhatsApp Web (${this.clientId}) is connected again.` : undefined;
  }
}

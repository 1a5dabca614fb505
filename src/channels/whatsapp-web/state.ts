/**
 * The session's state as /readyz, the admin page and the metrics see it. Changing it updates the
 * state gauge, counts the transition and logs it (never the QR: it is a login secret).
 */
import type { Logger } from '../../logger';

export type WhatsAppWebState =
  | 'disabled'
  | 'standby'
  | 'starting'
  | 'qr'
  | 'authenticated'
  | 'ready'
  | 'disconnected'
  | 'unreachable'
  | 'failed';

export const WHATSAPP_WEB_STATES: readonly WhatsAppWebState[] = [
  'disabled',
  'standby',
  'starting',
  'qr',
  'authenticated',
  'ready',
  'disconnected',
  'unreachable',
  'failed',
];

/** What the state reports to (the session's metrics, metrics.ts). */
export interface StateMetrics {
  /** Sets the state gauge: 1 for `state`, 0 for every other state. */
  showState(state: WhatsAppWebState): void;
  transition(state: WhatsAppWebState): void;
}

export interface WhatsAppWebStateReport {
  state: WhatsAppWebState;
  /** ISO time the state was entered. */
  since: string;
  detail?: string;
  /** The current login QR (a login secret: show it only behind admin auth). */
  qr?: string;
}

const WARN_STATES: readonly WhatsAppWebState[] = ['failed', 'unreachable', 'disconnected'];

export class SessionState {
  private report: WhatsAppWebStateReport = {
    state: 'disabled',
    since: new Date().toISOString(),
    detail: 'not started',
  };

  constructor(
    private readonly metrics: StateMetrics,
    private readonly log: Logger,
  ) {
    metrics.showState('disabled');
  }

  get state(): WhatsAppWebState {
    return this.report.state;
  }

  /** A copy of the current report. */
  current(): WhatsAppWebStateReport {
    return { ...this.report };
  }

  /** Enters `state` (or refreshes its detail and QR when it is the current one; `since` stays). */
  set(state: WhatsAppWebState, detail?: string, qr?: string): void {
    const changed = state !== this.report.state;
    this.report = {
      state,
      since: changed ? new Date().toISOString() : this.report.since,
      ...(detail !== undefined ? { detail } : {}),
      ...(qr !== undefined ? { qr } : {}),
    };
    if (!changed) return;
    this.metrics.showState(state);
    this.metrics.transition(state);
    const level = WARN_STATES.includes(state) ? 'warn' : 'info';
    this.log[level]({ state, detail }, `whatsapp web ${state}`);
  }

  /**
   * For /readyz. standby: another process serves the number; disabled: this process does not run
   * a session (it may still send through the queue). Neither is a fault of this replica.
   */
  readiness(): { ok: boolean; state: WhatsAppWebState; detail?: string } {
    const { state, detail } = this.report;
    const ok = state === 'ready' || state === 'standby' || state === 'disabled';
    return { ok, state, ...(detail !== undefined ? { detail } : {}) };
  }
}

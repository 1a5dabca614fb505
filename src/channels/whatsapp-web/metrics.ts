/**
 * The `rapport_whatsapp_web_*` metrics, bound to one number's client id. One set per registry is
 * shared by every number's channel (each labelled by its client id).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { SendFailureReason } from '../sender';
import { WHATSAPP_WEB_STATES, type StateMetrics } from './state';

export type InboundKind = 'message' | 'status';

/** What the session parts count, already labelled with the client id. */
export interface SessionMetrics extends StateMetrics {
  failure(kind: 'disconnected' | 'unreachable' | 'failed'): void;
  inbound(kind: InboundKind, outcome: string, count?: number): void;
  send(outcome: 'sent' | SendFailureReason): void;
  backup(outcome: 'saved' | 'failed'): void;
}

function gaugeOn<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: L[],
): Gauge<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Gauge) return existing as Gauge<L>;
  return new Gauge({ name, help, labelNames, registers: [registry] });
}

function counterOn<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: L[],
): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing as Counter<L>;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

function metricsOn(registry: Registry) {
  const byState: ['client_id', 'state'] = ['client_id', 'state'];
  return {
    state: gaugeOn(
      registry,
      'rapport_whatsapp_web_state',
      'WhatsApp Web session state: 1 for the current state, 0 otherwise',
      byState,
    ),
    transitions: counterOn(
      registry,
      'rapport_whatsapp_web_state_changes_total',
      'WhatsApp Web state changes, by state entered',
      byState,
    ),
    failures: counterOn(
      registry,
      'rapport_whatsapp_web_failures_total',
      'WhatsApp Web clients lost (disconnected/unreachable/failed), each followed by a rebuild',
      ['client_id', 'kind'],
    ),
    inbound: counterOn(
      registry,
      'rapport_whatsapp_web_inbound_total',
      'WhatsApp Web events by kind (message/status) and outcome (queued/duplicate/ignored_*/lid_unresolved/failed)',
      ['client_id', 'kind', 'outcome'],
    ),
    sends: counterOn(
      registry,
      'rapport_whatsapp_web_sends_total',
      'WhatsApp Web sends by outcome (sent or failure reason)',
      ['client_id', 'outcome'],
    ),
    backups: counterOn(
      registry,
      'rapport_whatsapp_web_session_backups_total',
      'RemoteAuth session backups to MongoDB by outcome',
      ['client_id', 'outcome'],
    ),
  };
}

export function sessionMetrics(registry: Registry, clientId: string): SessionMetrics {
  const m = metricsOn(registry);
  const client_id = clientId;
  return {
    showState(state) {
      for (const s of WHATSAPP_WEB_STATES) m.state.set({ client_id, state: s }, s === state ? 1 : 0);
    },
    transition: (state) => m.transitions.inc({ client_id, state }),
    failure: (kind) => m.failures.inc({ client_id, kind }),
    inbound: (kind, outcome, count = 1) => m.inbound.inc({ client_id, kind, outcome }, count),
    send: (outcome) => m.sends.inc({ client_id, outcome }),
    backup: (outcome) => m.backups.inc({ client_id, outcome }),
  };
}

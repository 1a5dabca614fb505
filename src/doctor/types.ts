/**
 * The shapes `rapport doctor` reports in: one `DoctorCheck` per thing looked at, the channel states,
 * and the webhook URLs to paste into each provider's console. Plain data, so the human and the
 * `--json` output are two views of one report.
 */

export type CheckStatus = 'ok' | 'warn' | 'fail';

export type CheckSection = 'config' | 'services' | 'public-url' | 'providers';

export interface DoctorCheck {
  /** Stable id, e.g. `redis.reachable`, `slack.auth`, `config.problem.1`. */
  id: string;
  section: CheckSection;
  status: CheckStatus;
  /** Short name shown before the detail, e.g. `Redis`, `Slack auth.test`. */
  title: string;
  /** One line: what was found. Never carries a secret. */
  detail: string;
  /** One line: what to do about it (present on every `fail`, and on `warn` where there is a fix). */
  fix?: string;
}

export interface ChannelState {
  channel: string;
  enabled: boolean;
  /** Why it is disabled. */
  reason?: string;
}

export interface WebhookUrl {
  /** The console field, e.g. `A message comes in`, `Callback URL`. */
  label: string;
  value: string;
}

export interface ProviderInstructions {
  provider: 'twilio' | 'meta' | 'slack';
  title: string;
  /** Where in the provider's console the values go. */
  where: string;
  urls: WebhookUrl[];
  /** Further things to set there (verify token reminder, fields to subscribe). */
  notes: string[];
}

export interface DoctorReport {
  checks: DoctorCheck[];
  channels: ChannelState[];
  webhooks: ProviderInstructions[];
  summary: { ok: number; warn: number; fail: number };
  /** 1 when anything required failed, else 0. */
  exitCode: 0 | 1;
}

/** Removes the password of a `scheme://user:password@host` URL, for display. */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.password) url.password = '***';
    return url.toString().replace(/\/$/, raw.endsWith('/') ? '/' : '');
  } catch {
    return '(unparseable URL)';
  }
}

/** `err.message` for Errors, else a string; used for details, never for anything with secrets. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

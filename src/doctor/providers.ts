/**
 * Harmless calls that prove each configured provider accepts Rapport's credentials: Slack
 * `auth.test` (through Rapport's own Slack client), Graph `GET /{version}/me` with each Meta token,
 * and Twilio's account fetch (`GET /2010-04-01/Accounts/{Sid}.json`, Basic auth). Each answers a
 * `DoctorCheck`; credentials refused are failures, a provider that cannot be reached is a warning
 * (doctor may run where outbound traffic is restricted differently from the app).
 *
 * Base URLs come from the configuration (SLACK_API_URL, META_GRAPH_BASE_URL, TWILIO_API_BASE_URL),
 * which tests point at local emulators; in real use they are the providers themselves.
 */
import { createHmac } from 'node:crypto';
import { access, constants } from 'node:fs/promises';
import type { Config } from '../config';
import { createSlackClient, SlackApiError } from '../channels/slack/client';
import { messageOf, type CheckStatus, type DoctorCheck } from './types';

const GRAPH_DEFAULT = 'https://graph.facebook.com';
const TWILIO_DEFAULT = 'https://api.twilio.com';

/** Fix lines for Slack's `auth.test` errors. */
export const SLACK_AUTH_FIXES: Record<string, string> = {
  invalid_auth:
    'SLACK_BOT_TOKEN is not a valid token for this workspace: copy the Bot User OAuth Token (xoxb-…) from ' +
    'api.slack.com/apps → your app → Install App (reinstall the app if it was removed), then restart Rapport.',
  not_authed: 'SLACK_BOT_TOKEN was not sent: set it to the Bot User OAuth Token (xoxb-…).',
  token_revoked:
    'The token was revoked: reinstall the app (Install App → Reinstall to Workspace) and copy the new xoxb- token.',
  token_expired:
    'The token expired (token rotation is on): turn token rotation off for the app or use a fresh bot token.',
  account_inactive: 'The bot user or workspace is deactivated: reinstall the app in an active workspace.',
};

export async function checkSlack(config: Readonly<Config>, timeoutMs: number): Promise<DoctorCheck[]> {
  const slack = config.slack;
  if (!slack) return [];
  const checks: DoctorCheck[] = [];
  if (!slack.botToken.startsWith('xoxb-')) {
    checks.push({
      id: 'slack.token-kind',
      section: 'providers',
      status: 'warn',
      title: 'Slack token',
      detail: `SLACK_BOT_TOKEN starts with "${slack.botToken.slice(0, 5)}", not "xoxb-": it is not a bot token`,
      fix: 'Use the Bot User OAuth Token (xoxb-…) from Install App, not a user (xoxp-) or app-level (xapp-) token.',
    });
  }
  const client = createSlackClient({ token: slack.botToken, apiUrl: slack.apiUrl, timeoutMs });
  const via = slack.apiUrl ? ` via ${slack.apiUrl}` : '';
  try {
    const who = await client.authTest();
    checks.push({
      id: 'slack.auth',
      section: 'providers',
      status: 'ok',
      title: 'Slack auth.test',
      detail: `bot ${who.userId} in team ${who.team ?? who.teamId}${who.url ? ` (${who.url})` : ''}${via}`,
    });
  } catch (err) {
    if (err instanceof SlackApiError && !err.retryable) {
      checks.push({
        id: 'slack.auth',
        section: 'providers',
        status: 'fail',
        title: 'Slack auth.test',
        detail: `refused: ${err.slackError}${via}`,
        fix:
          SLACK_AUTH_FIXES[err.slackError] ??
          `Slack answered ${err.slackError}: check SLACK_BOT_TOKEN (Install App → Bot User OAuth Token).`,
      });
    } else {
      checks.push({
        id: 'slack.auth',
        section: 'providers',
        status: 'warn',
        title: 'Slack auth.test',
        detail: `could not reach Slack${via}: ${err instanceof SlackApiError ? err.slackError : messageOf(err)}`,
        fix: 'Check outbound HTTPS from this machine to slack.com (proxy, firewall) or SLACK_API_URL.',
      });
    }
  }
  return checks;
}

interface GraphAnswer {
  id?: string;
  name?: string;
  error?: { code?: number; error_subcode?: number; message?: string; type?: string };
}

/** Fix line for a Graph error on `/me` (190 = token invalid or expired). */
export function graphFix(tokenVar: string, code: number | undefined, subcode: number | undefined): string {
  if (code === 190 && subcode === 463)
    return `${tokenVar} has expired: generate a long-lived token (a System User token for WhatsApp) and restart Rapport.`;
  if (code === 190)
    return `${tokenVar} is not a valid access token: generate a new one (${tokenVar === 'MESSENGER_PAGE_ACCESS_TOKEN' ? 'App Dashboard → Messenger → Messenger API Settings → Generate token' : 'Business Settings → System users → Generate new token, with whatsapp_business_messaging'}).`;
  if (code === 100 && subcode === undefined)
    return 'Graph refused the appsecret_proof: META_APP_SECRET must be the secret of the app the token belongs to.';
  return `Graph refused ${tokenVar} (code ${code ?? '?'}${subcode !== undefined ? `/${subcode}` : ''}): check the token and the app's permissions.`;
}

/** The check of one provider call, fields in the order the report prints them. */
function providerCheck(
  id: string,
  title: string,
  status: CheckStatus,
  detail: string,
  fix?: string,
): DoctorCheck {
  return { id, section: 'providers', status, title, detail, ...(fix !== undefined ? { fix } : {}) };
}

/** GETs a provider's JSON answer (`{}` when the body is not JSON); `error` when it could not be reached. */
async function getJson<T>(
  url: string | URL,
  authorization: string,
  timeoutMs: number,
): Promise<{ res: Response; body: T } | { error: unknown }> {
  let res: Response;
  try {
    res = await fetch(url, { headers: { authorization }, signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    return { error };
  }
  return { res, body: (await res.json().catch(() => ({}))) as T };
}

async function graphMe(
  config: Readonly<Config>,
  tokenVar: string,
  token: string,
  label: string,
  timeoutMs: number,
): Promise<DoctorCheck> {
  const base = (config.graph.baseUrl ?? GRAPH_DEFAULT).replace(/\/+$/, '');
  const url = new URL(`${base}/${config.graph.version}/me`);
  url.searchParams.set('fields', 'id,name');
  // With "Require app secret" on, Graph insists on the proof; sending it when not required is harmless.
  if (config.meta?.appSecret) {
    url.searchParams.set(
      'appsecret_proof',
      createHmac('sha256', config.meta.appSecret).update(token).digest('hex'),
    );
  }
  const id = `graph.${tokenVar === 'MESSENGER_PAGE_ACCESS_TOKEN' ? 'messenger' : 'whatsapp-cloud'}`;
  const title = `Graph GET /me (${label})`;
  const answer = await getJson<GraphAnswer>(url, `Bearer ${token}`, timeoutMs);
  if ('error' in answer) {
    return providerCheck(
      id,
      title,
      'warn',
      `could not reach ${base}: ${messageOf(answer.error)}`,
      'Check outbound HTTPS from this machine to graph.facebook.com (proxy, firewall) or META_GRAPH_BASE_URL.',
    );
  }
  const { res, body } = answer;
  if (res.ok && body.id) {
    return providerCheck(
      id,
      title,
      'ok',
      `token of "${body.name ?? '?'}" (id ${body.id}), Graph ${config.graph.version}`,
    );
  }
  if (res.status >= 500) {
    return providerCheck(
      id,
      title,
      'warn',
      `Graph answered HTTP ${res.status}`,
      'Meta seems to be having trouble; run doctor again later.',
    );
  }
  const code = body.error?.code;
  const sub = body.error?.error_subcode;
  return providerCheck(
    id,
    title,
    'fail',
    `${tokenVar} refused: HTTP ${res.status}${code !== undefined ? `, code ${code}${sub !== undefined ? `/${sub}` : ''}` : ''}`,
    graphFix(tokenVar, code, sub),
  );
}

export async function checkGraph(config: Readonly<Config>, timeoutMs: number): Promise<DoctorCheck[]> {
  const calls: Promise<DoctorCheck>[] = [];
  if (config.messenger)
    calls.push(
      graphMe(
        config,
        'MESSENGER_PAGE_ACCESS_TOKEN',
        config.messenger.pageAccessToken,
        'Messenger Page token',
        timeoutMs,
      ),
    );
  if (config.whatsappCloud)
    calls.push(
      graphMe(
        config,
        'WHATSAPP_CLOUD_ACCESS_TOKEN',
        config.whatsappCloud.accessToken,
        'WhatsApp Cloud token',
        timeoutMs,
      ),
    );
  return Promise.all(calls);
}

const TWILIO_CHECK = { id: 'twilio.account', title: 'Twilio account fetch' };

interface TwilioAccount {
  status?: string;
  friendly_name?: string;
  code?: number;
  message?: string;
}

export async function checkTwilio(config: Readonly<Config>, timeoutMs: number): Promise<DoctorCheck[]> {
  const twilio = config.twilio;
  if (!twilio) return [];
  const base = (twilio.apiBaseUrl ?? TWILIO_DEFAULT).replace(/\/+$/, '');
  const answer = await getJson<TwilioAccount>(
    `${base}/2010-04-01/Accounts/${encodeURIComponent(twilio.accountSid)}.json`,
    `Basic ${Buffer.from(`${twilio.accountSid}:${twilio.authToken}`).toString('base64')}`,
    timeoutMs,
  );
  if ('error' in answer) {
    return [
      providerCheck(
        TWILIO_CHECK.id,
        TWILIO_CHECK.title,
        'warn',
        `could not reach ${base}: ${messageOf(answer.error)}`,
        'Check outbound HTTPS from this machine to api.twilio.com (proxy, firewall) or TWILIO_API_BASE_URL.',
      ),
    ];
  }
  return [twilioAccountCheck(twilio.accountSid, answer.res, answer.body)];
}

/** What Twilio's answer to the account fetch says about the credentials and the account. */
function twilioAccountCheck(accountSid: string, res: Response, body: TwilioAccount): DoctorCheck {
  if (res.ok && body.status !== undefined && body.status !== 'active') {
    return providerCheck(
      TWILIO_CHECK.id,
      TWILIO_CHECK.title,
      'fail',
      `account ${accountSid} is ${body.status}`,
      'Reactivate the account in the Twilio Console (Billing) or use an active one.',
    );
  }
  if (res.ok) {
    return providerCheck(
      TWILIO_CHECK.id,
      TWILIO_CHECK.title,
      'ok',
      `account "${body.friendly_name ?? accountSid}" is ${body.status ?? 'reachable'}`,
    );
  }
  if (res.status >= 500) {
    return providerCheck(
      TWILIO_CHECK.id,
      TWILIO_CHECK.title,
      'warn',
      `Twilio answered HTTP ${res.status}`,
      'Twilio seems to be having trouble; run doctor again later.',
    );
  }
  return providerCheck(
    TWILIO_CHECK.id,
    TWILIO_CHECK.title,
    'fail',
    `credentials refused: HTTP ${res.status}${body.code !== undefined ? `, code ${body.code}` : ''}`,
    res.status === 401
      ? 'TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN do not match: copy both from Twilio Console → Account Info (the primary Auth Token, not a secondary one or an API key secret).'
      : 'TWILIO_ACCOUNT_SID names no account these credentials can read: copy it from Twilio Console → Account Info.',
  );
}

/** GET `${PUBLIC_URL}/healthz`: a warning, never a failure, when it does not answer (NAT, split DNS). */
export async function checkPublicUrlReachable(
  config: Readonly<Config>,
  timeoutMs: number,
): Promise<DoctorCheck> {
  const url = `${config.publicUrl}/healthz`;
  const base = { id: 'public-url.reachable', section: 'public-url' as const, title: 'PUBLIC_URL reachable' };
  const fix =
    'Is Rapport running? If it is, check DNS, TLS and the proxy forwarding to PORT. From behind NAT this check may fail ' +
    'although providers reach Rapport: then confirm with the provider\'s own "test webhook" button.';
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    if (res.status === 200) return { ...base, status: 'ok', detail: `GET ${url} answered 200` };
    return { ...base, status: 'warn', detail: `GET ${url} answered HTTP ${res.status}`, fix };
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return { ...base, status: 'warn', detail: `GET ${url} failed: ${messageOf(err)}${cause}`, fix };
  }
}

/** WhatsApp Web needs a Chromium at CHROMIUM_PATH. */
export async function checkChromium(config: Readonly<Config>): Promise<DoctorCheck[]> {
  if (!config.whatsappWeb.enabled) return [];
  const path = config.whatsappWeb.chromiumPath;
  try {
    await access(path, constants.X_OK);
    return [
      {
        id: 'whatsapp-web.chromium',
        section: 'providers',
        status: 'ok',
        title: 'WhatsApp Web Chromium',
        detail: `${path} is executable`,
      },
    ];
  } catch {
    return [
      {
        id: 'whatsapp-web.chromium',
        section: 'providers',
        status: 'fail',
        title: 'WhatsApp Web Chromium',
        detail: `no executable Chromium at ${path}`,
        fix: 'Install Chromium (Debian: `apt-get install chromium`) or set CHROMIUM_PATH to its binary.',
      },
    ];
  }
}

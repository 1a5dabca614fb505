/**
 * The exact URLs to paste into each provider's console, and where, for the providers that are
 * configured. Pure: derived from PUBLIC_URL and the channel settings. The routes are the ones
 * src/channels/index.ts and src/http/slack.ts mount.
 */
import type { Config } from '../config';
import type { ProviderInstructions } from './types';

/** Messenger Page subscription fields Rapport handles (src/channels/messenger/README.md). */
export const MESSENGER_FIELDS = ['messages', 'messaging_postbacks', 'message_deliveries', 'message_reads'];
/** WhatsApp Business Account subscription fields Rapport handles. */
export const WHATSAPP_FIELDS = ['messages'];

export function webhookInstructions(config: Readonly<Config>): ProviderInstructions[] {
  return [twilioInstructions(config), metaInstructions(config), slackInstructions(config)].filter(
    (p): p is ProviderInstructions => p !== undefined,
  );
}

function twilioInstructions(config: Readonly<Config>): ProviderInstructions | undefined {
  if (!config.twilio) return undefined;
  const base = config.publicUrl;
  const senders = [
    config.twilio.smsFrom ? `SMS number ${config.twilio.smsFrom}` : undefined,
    config.twilio.whatsappFrom ? `WhatsApp sender ${config.twilio.whatsappFrom}` : undefined,
  ].filter(Boolean);
  return {
    provider: 'twilio',
    title: 'Twilio',
    where:
      'Console → Phone Numbers → Manage → Active numbers → (number) → Messaging Configuration ' +
      '(or Messaging → Services → (service) → Integration); WhatsApp: Messaging → Senders → WhatsApp senders → (sender)',
    urls: [
      { label: 'A message comes in (Webhook, HTTP POST)', value: `${base}/webhooks/twilio` },
      { label: 'Status callback URL', value: `${base}/webhooks/twilio/status` },
    ],
    notes: [
      ...(senders.length > 0 ? [`Set it on: ${senders.join(' and ')}.`] : []),
      'Rapport also sends the status callback URL with every message, so delivery ticks work even if that field is empty.',
      'The URL must be exactly what Twilio calls (signatures cover it): same scheme, host and path as PUBLIC_URL.',
    ],
  };
}

function metaInstructions(config: Readonly<Config>): ProviderInstructions | undefined {
  if (!config.meta) return undefined;
  const notes = [
    'Verify token: the value of META_VERIFY_TOKEN (Meta sends it back once when you save the callback URL; Rapport must be running).',
  ];
  if (config.messenger) {
    notes.push(
      `Messenger: App Dashboard → Messenger → Messenger API Settings → Webhooks; subscribe the Page to: ${MESSENGER_FIELDS.join(', ')}.`,
    );
  }
  if (config.whatsappCloud) {
    notes.push(
      `WhatsApp: App Dashboard → WhatsApp → Configuration → Webhook; subscribe to: ${WHATSAPP_FIELDS.join(', ')}.`,
    );
  }
  return {
    provider: 'meta',
    title: 'Meta (Messenger / WhatsApp Cloud API)',
    where: 'developers.facebook.com → My Apps → (app) → Webhooks (per product, see below)',
    urls: [{ label: 'Callback URL', value: `${config.publicUrl}/webhooks/meta` }],
    notes,
  };
}

function slackInstructions(config: Readonly<Config>): ProviderInstructions | undefined {
  if (!config.slack) return undefined;
  const base = config.publicUrl;
  return {
    provider: 'slack',
    title: 'Slack',
    where: 'api.slack.com/apps → (your app)',
    urls: [
      { label: 'Event Subscriptions → Request URL', value: `${base}/slack/events` },
      { label: 'Slash Commands → /rapport → Request URL', value: `${base}/slack/commands` },
      { label: 'Interactivity & Shortcuts → Request URL', value: `${base}/slack/interactions` },
    ],
    notes: [
      `Or create the app from src/channels/slack/manifest.yaml with YOUR-HOST replaced by ${new URL(base).host}.`,
      'Invite the bot to every agent inbox channel (/invite @Rapport), or posting fails with not_in_channel.',
    ],
  };
}

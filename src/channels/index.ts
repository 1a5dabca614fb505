/** Builds the webhook adapters of every enabled channel, each with the route it answers on. */
import type { Config } from '../config';
import type { WebhookAdapter } from './adapter';
import { createMetaWebhook } from './meta/adapter';
import { createTwilioWebhook } from './twilio/adapter';

export interface MountedWebhook {
  path: string;
  adapter: WebhookAdapter;
}

export function buildWebhookAdapters(config: Readonly<Config>): MountedWebhook[] {
  const mounted: MountedWebhook[] = [];
  if (config.twilio) {
    const { authToken } = config.twilio;
    mounted.push(
      {
        path: '/webhooks/twilio',
        adapter: createTwilioWebhook({ authToken, publicUrl: config.publicUrl, kind: 'inbound' }),
      },
      {
        path: '/webhooks/twilio/status',
        adapter: createTwilioWebhook({ authToken, publicUrl: config.publicUrl, kind: 'status' }),
      },
    );
  }
  if (config.meta) {
    mounted.push({
      path: '/webhooks/meta',
      adapter: createMetaWebhook({
        appSecret: config.meta.appSecret,
        verifyToken: config.meta.verifyToken,
        messengerEnabled: config.messenger !== undefined,
        whatsappCloudEnabled: config.whatsappCloud !== undefined,
      }),
    });
  }
  return mounted;
}

/** The sandbox's fixed, public credentials and the emulators they unlock. */
import type { GraphEmulator } from './emulators/graph';
import type { SlackEmulator } from './emulators/slack';
import type { TwilioEmulator } from './emulators/twilio';

/** The fixed, public sandbox credentials: they only ever meet the in-process emulators. */
export const SANDBOX_CREDENTIALS = {
  twilio: {
    accountSid: 'AC' + '5a4d'.repeat(8),
    authToken: 'sandbox-twilio-auth-token',
    smsFrom: '+15550001111',
    whatsappFrom: 'whatsapp:+15550002222',
  },
  meta: {
    appSecret: 'sandbox-meta-app-secret',
    verifyToken: 'sandbox-verify-token',
    pageAccessToken: 'sandbox-page-token',
    pageId: '100000000000001',
    whatsappToken: 'sandbox-cloud-token',
    phoneNumberId: '106540352242922',
    wabaId: '118273645509182',
    displayPhoneNumber: '15550003333',
  },
  slack: {
    botToken: 'xoxb-sandbox-token',
    signingSecret: 'sandbox-slack-signing-secret',
    escalationChannel: 'C0ESCALATIONS',
  },
} as const;

export interface SandboxEmulators {
  slack: SlackEmulator;
  twilio: TwilioEmulator;
  graph: GraphEmulator;
}

/** Test environments: every channel configured with test secrets, a unique prefix and database. */
import { randomBytes } from 'node:crypto';

export const TEST_TWILIO = { accountSid: 'AC' + 'a1'.repeat(16), authToken: 'test-twilio-auth-token' };
export const TEST_META = { appSecret: 'test-meta-app-secret', verifyToken: 'test-verify-token' };
export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789';
export const TEST_DATA_KEY = 'test-data-key-0123456789abcdef0123456789';

export function uniqueName(label: string): string {
  return `t${label}${randomBytes(4).toString('hex')}`;
}

/** Redis, a database and a queue prefix of its own for `name` (from `uniqueName`). */
export function privateStores(name: string): NodeJS.ProcessEnv {
  return {
    REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    MONGODB_URI: `${process.env.TEST_MONGODB_URL ?? 'mongodb://127.0.0.1:27017'}/rapport_${name}`,
    QUEUE_PREFIX: `rapport-${name}`,
  };
}

/** A full, valid environment with every channel configured; override or blank any variable. */
export function testEnv(overrides: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const name = uniqueName('');
  return {
    PORT: '0',
    PUBLIC_URL: 'https://rapport.example.test',
    ...privateStores(name),
    ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    DATA_KEY: TEST_DATA_KEY,
    LOG_LEVEL: 'info',
    DEFAULT_REGION: 'US',
    TWILIO_ACCOUNT_SID: TEST_TWILIO.accountSid,
    TWILIO_AUTH_TOKEN: TEST_TWILIO.authToken,
    TWILIO_SMS_FROM: '+15550001111',
    TWILIO_WHATSAPP_FROM: 'whatsapp:+15550002222',
    META_APP_SECRET: TEST_META.appSecret,
    META_VERIFY_TOKEN: TEST_META.verifyToken,
    MESSENGER_PAGE_ACCESS_TOKEN: 'test-page-token',
    WHATSAPP_CLOUD_ACCESS_TOKEN: 'test-cloud-token',
    WHATSAPP_CLOUD_PHONE_NUMBER_ID: '106540352242922',
    ...overrides,
  };
}

import { ConfigError, channelStates, loadConfig } from '../../src/config';
import { testEnv } from '../helpers/env';

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('configuration', () => {
  it('accepts a complete environment and freezes the result', () => {
    const config = loadConfig(testEnv());
    expect(config.twilio?.accountSid).toMatch(/^AC/);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.twilio)).toBe(true);
  });

  it('reads BUSINESS_NAME as plain text and the claim limits as positive whole numbers', () => {
    const config = loadConfig(testEnv({ BUSINESS_NAME: '  Acme Bikes  ', CLAIM_CODES_PER_HOUR: '12' }));
    expect(config.claims).toEqual({
      businessName: 'Acme Bikes',
      limits: { perSenderHour: 3, perTargetDay: 3, perHour: 12, perDay: 200, attemptsPerTargetDay: 5 },
    });
    expect(loadConfig(testEnv()).claims.businessName).toBeUndefined();
    for (const bad of ['<!channel> Acme', 'https://acme.example', 'Acme\nBikes', 'A'.repeat(41)])
      expect(problemsOf(testEnv({ BUSINESS_NAME: bad }))).toEqual([expect.stringMatching(/^BUSINESS_NAME /)]);
    expect(
      problemsOf(testEnv({ CLAIM_CODES_PER_SENDER_HOUR: '0', CLAIM_ATTEMPTS_PER_TARGET_DAY: 'x' })),
    ).toEqual([
      expect.stringMatching(/^CLAIM_CODES_PER_SENDER_HOUR /),
      expect.stringMatching(/^CLAIM_ATTEMPTS_PER_TARGET_DAY /),
    ]);
  });

  it('media: MEDIA_MAX_BYTES defaults to 100 MiB, file retention follows message retention unless set', () => {
    const plain = loadConfig(testEnv());
    expect(plain.media.maxBytes).toBe(100 * 1024 * 1024);
    expect(plain.media.retentionDays).toBeUndefined();
    expect(plain.media.urlTtlMs).toBe(900_000);
    expect(loadConfig(testEnv({ MEDIA_RETENTION_DAYS: '' })).media.retentionDays).toBeUndefined();
    expect(loadConfig(testEnv({ MESSAGE_RETENTION_DAYS: '30' })).media.retentionDays).toBe(30);
    const own = loadConfig(testEnv({ MESSAGE_RETENTION_DAYS: '30', MEDIA_RETENTION_DAYS: '7' }));
    expect(own.media.retentionDays).toBe(7);
    expect(
      loadConfig(testEnv({ MESSAGE_RETENTION_DAYS: '30', MEDIA_RETENTION_DAYS: '0' })).media.retentionDays,
    ).toBeUndefined();
    expect(problemsOf(testEnv({ MEDIA_MAX_BYTES: '10', MEDIA_URL_TTL_SECONDS: 'soon' }))).toEqual([
      expect.stringMatching(/^MEDIA_MAX_BYTES /),
      expect.stringMatching(/^MEDIA_URL_TTL_SECONDS /),
    ]);
  });

  it('reports every problem at once', () => {
    const problems = problemsOf(
      testEnv({ PORT: 'abc', MONGODB_URI: 'nope', ADMIN_TOKEN: undefined, DEFAULT_REGION: 'XX' }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^PORT /),
        expect.stringMatching(/^MONGODB_URI /),
        expect.stringMatching(/^ADMIN_TOKEN is required/),
        expect.stringMatching(/^DEFAULT_REGION /),
      ]),
    );
    expect(problems).toHaveLength(4);
  });

  it('accepts a MongoDB replica set and a Redis Cluster, and refuses malformed lists', () => {
    const config = loadConfig(
      testEnv({
        MONGODB_URI: 'mongodb://db-0.db:27017,db-1.db:27017,db-2.db:27017/rapport?replicaSet=rs0',
        REDIS_URL: 'redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379',
      }),
    );
    expect(config.mongodbUri).toContain('replicaSet=rs0');
    expect(config.redisUrl.split(',')).toHaveLength(3);
    expect(
      problemsOf(
        testEnv({ REDIS_URL: 'redis://10.0.0.1:6379,10.0.0.2:6379', MONGODB_URI: 'mongodb://a:1,/x' }),
      ),
    ).toEqual([
      expect.stringMatching(/^REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL, or a comma-separated list/),
      expect.stringMatching(/^MONGODB_URI must be a URL starting with mongodb:\/\//),
    ]);
  });

  it('disables a channel whose credentials are all absent', () => {
    const config = loadConfig(
      testEnv({
        TWILIO_ACCOUNT_SID: undefined,
        TWILIO_AUTH_TOKEN: '',
        TWILIO_SMS_FROM: undefined,
        TWILIO_WHATSAPP_FROM: undefined,
      }),
    );
    expect(config.twilio).toBeUndefined();
    expect(channelStates(config).sms).toEqual({ enabled: false, reason: 'Twilio credentials not set' });
    expect(channelStates(config)['whatsapp-cloud']).toEqual({ enabled: true });
  });

  it('treats a partial set of channel credentials as a mistake and names what is missing', () => {
    const problems = problemsOf(testEnv({ TWILIO_AUTH_TOKEN: undefined, SLACK_BOT_TOKEN: 'xoxb-1' }));
    expect(problems).toEqual([
      expect.stringContaining('TWILIO_AUTH_TOKEN is required for Twilio'),
      expect.stringContaining('SLACK_SIGNING_SECRET is required for Slack'),
    ]);
  });

  it('rejects a malformed Twilio account SID and a bad URL', () => {
    const problems = problemsOf(testEnv({ TWILIO_ACCOUNT_SID: 'XX123', SLACK_API_URL: 'ftp://x' }));
    expect(problems).toEqual([
      expect.stringMatching(/^TWILIO_ACCOUNT_SID must be AC/),
      expect.stringMatching(/^SLACK_API_URL must be a URL/),
    ]);
  });

  it('applies defaults for optional settings', () => {
    const config = loadConfig({ ADMIN_TOKEN: 'x'.repeat(20) });
    expect(config).toMatchObject({
      port: 3000,
      publicUrl: 'http://localhost:3000',
      redisUrl: 'redis://127.0.0.1:6379',
      defaultRegion: 'US',
      logLevel: 'info',
      webhookMaxBytes: 3 * 1024 * 1024,
    });
    expect(Object.values(channelStates(config)).every((c) => !c.enabled)).toBe(true);
    expect(config.router.chatOptOutWords).toEqual(['STOP', 'UNSUBSCRIBE']);
  });

  it('reads the chat opt-out words (CHAT_OPT_OUT_WORDS) and refuses phrases or an empty list', () => {
    expect(
      loadConfig(testEnv({ CHAT_OPT_OUT_WORDS: 'stop, baja ,Désabonner' })).router.chatOptOutWords,
    ).toEqual(['STOP', 'BAJA', 'DÉSABONNER']);
    expect(problemsOf(testEnv({ CHAT_OPT_OUT_WORDS: 'stop please' }))).toEqual([
      expect.stringMatching(/^CHAT_OPT_OUT_WORDS .*single words/),
    ]);
    expect(problemsOf(testEnv({ CHAT_OPT_OUT_WORDS: ' , ' }))).toEqual([
      expect.stringMatching(/^CHAT_OPT_OUT_WORDS .*at least one word/),
    ]);
  });
});

import { normalizeTwilioMessage, normalizeTwilioStatus } from '../../src/channels/twilio/normalize';
import { PayloadError } from '../../src/errors';
import { twilioFixture } from '../helpers/fixtures';

const AT = new Date('2026-11-23T10:00:00.000Z');

describe('Twilio normalisation', () => {
  it('turns an inbound SMS into a canonical sms message keyed by MessageSid', () => {
    expect(normalizeTwilioMessage(twilioFixture('sms').form, AT)).toEqual({
      key: 'twilio:SM1f0e3c2b1a09f8e7d6c5b4a3f2e1d0c9',
      channel: 'sms',
      provider: 'twilio',
      providerMessageId: 'SM1f0e3c2b1a09f8e7d6c5b4a3f2e1d0c9',
      from: { kind: 'phone', e164: '+14155550123' },
      to: '+15550001111',
      text: 'Hi, my order #42 has not arrived',
      parts: [{ kind: 'text', text: 'Hi, my order #42 has not arrived' }],
      profileName: undefined,
      replyTo: undefined,
      sentAt: AT.toISOString(),
      receivedAt: AT.toISOString(),
    });
  });

  it('tells WhatsApp from SMS by the whatsapp: prefix and keeps media and the profile name', () => {
    const message = normalizeTwilioMessage(twilioFixture('whatsapp-media').form, AT)!;
    expect(message).toMatchObject({
      channel: 'whatsapp',
      from: { kind: 'phone', e164: '+14155550123' },
      to: '+15550002222',
      profileName: 'Ana Souza',
      text: 'Here is the damaged box',
    });
    expect(message.parts).toEqual([
      { kind: 'text', text: 'Here is the damaged box' },
      {
        kind: 'media',
        url: expect.stringMatching(/^https:\/\/api\.twilio\.com\/2010-04-01\/Accounts\/AC.+\/Media\/ME/),
        contentType: 'image/jpeg',
      },
    ]);
  });

  it('keeps a WhatsApp location as a location part', () => {
    const message = normalizeTwilioMessage(twilioFixture('whatsapp-location').form, AT)!;
    expect(message.parts).toEqual([
      {
        kind: 'location',
        latitude: -23.5505,
        longitude: -46.6333,
        name: 'Office',
        address: 'Av. Paulista, 1000',
      },
    ]);
    expect(message.profileName).toBe('João');
    expect(message.text).toBeUndefined();
  });

  it('ignores addresses of channels Rapport does not take through Twilio', () => {
    const { form } = twilioFixture('sms');
    expect(normalizeTwilioMessage({ ...form, From: 'messenger:1234567890' }, AT)).toBeUndefined();
  });

  it('refuses a message without a sender; keeps a bogus media count as unsupported parts', () => {
    const { form } = twilioFixture('sms');
    const { From: _from, ...noFrom } = form;
    expect(() => normalizeTwilioMessage(noFrom, AT)).toThrow(PayloadError);
    expect(normalizeTwilioMessage({ ...form, NumMedia: '1' }, AT)?.parts).toContainEqual({
      kind: 'unsupported',
      providerType: 'media',
      detail: 'MediaUrl0 is missing',
    });
    expect(normalizeTwilioMessage({ ...form, NumMedia: 'lots' }, AT)?.parts).toContainEqual({
      kind: 'unsupported',
      providerType: 'media',
      detail: 'NumMedia lots is not a count',
    });
  });

  it('reads a template button reply and a call-permission reply', () => {
    const { form } = twilioFixture('sms');
    const button = { ...form, Body: 'Reschedule', ButtonText: 'Reschedule', ButtonPayload: 'reschedule_42' };
    expect(normalizeTwilioMessage(button, AT)?.parts).toEqual([
      { kind: 'postback', title: 'Reschedule', payload: 'reschedule_42' },
    ]);
    expect(normalizeTwilioMessage({ ...form, Body: '', ButtonPayload: 'ACCEPTED' }, AT)?.parts).toEqual([
      { kind: 'call_permission', accepted: true },
    ]);
    expect(normalizeTwilioMessage({ ...form, Body: '', ButtonPayload: 'REJECTED' }, AT)?.parts).toEqual([
      { kind: 'call_permission', accepted: false },
    ]);
  });

  it('turns status callbacks into status events, keeping the error code', () => {
    expect(normalizeTwilioStatus(twilioFixture('status-delivered').form, AT)).toMatchObject({
      key: 'twilio:SM9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a:delivered',
      channel: 'sms',
      state: 'delivered',
      errors: [],
    });
    expect(normalizeTwilioStatus(twilioFixture('status-failed').form, AT)).toMatchObject({
      key: 'twilio:SM0a1b2c3d4e5f60718293a4b5c6d7e8f9:failed',
      channel: 'whatsapp',
      state: 'failed',
      recipient: { kind: 'phone', e164: '+14155550123' },
      errors: [{ code: '63016', detail: expect.stringContaining('24 hours') }],
    });
  });

  it('leaves out (does not refuse) a status value it does not know', () => {
    const { form } = twilioFixture('status-delivered');
    expect(normalizeTwilioStatus({ ...form, MessageStatus: 'exploded' }, AT)).toBeUndefined();
  });
});

/**
 * readClaim: which customer messages are an explicit claim to a phone number or email (a code may
 * be sent at once), which merely mention one (only an agent may decide), and which are neither. The
 * grammar is the one documented in README "Claims".
 */
import { detectClaim, readClaim } from '../../src/identity/claims';

const phone = (value: string) => ({ kind: 'phone', value });
const email = (value: string) => ({ kind: 'email', value });

describe('readClaim', () => {
  it.each([
    // Just the number or email.
    ['+44 20 7946 0958', 'US', phone('+442079460958')],
    ['415.555.0123', 'US', phone('+14155550123')],
    ['020 7946 0958', 'GB', phone('+442079460958')],
    ['+55 11 98765-4321.', 'US', phone('+5511987654321')],
    ['Ada.Lovelace@Example.COM', 'US', email('ada.lovelace@example.com')],
    // English.
    ['my number is +44 20 7946 0958', 'US', phone('+442079460958')],
    ['My phone number: (415) 555-0123', 'US', phone('+14155550123')],
    ['this is my WhatsApp +1 415 555 0123!', 'US', phone('+14155550123')],
    ['my cell is 415 555 0123', 'US', phone('+14155550123')],
    ['my email is ada@example.co.uk.', 'US', email('ada@example.co.uk')],
    // Spanish.
    ['Mi número es +34 612 34 56 78', 'US', phone('+34612345678')],
    ['mi numero de whatsapp es +52 1 55 1234 5678', 'US', phone('+525512345678')],
    ['este es mi celular 415 555 0123', 'US', phone('+14155550123')],
    ['mi correo es ana@ejemplo.es', 'US', email('ana@ejemplo.es')],
    // Portuguese.
    ['meu número é +55 11 98765-4321', 'US', phone('+5511987654321')],
    ['Meu zap: +55 11 98765-4321', 'US', phone('+5511987654321')],
    ['esse é o meu whatsapp +55 11 98765-4321', 'US', phone('+5511987654321')],
    // French.
    ['mon numéro est +33 6 12 34 56 78', 'US', phone('+33612345678')],
    ['Voici mon portable : +33 6 12 34 56 78', 'US', phone('+33612345678')],
    ["c'est mon numéro de téléphone +33 6 12 34 56 78", 'US', phone('+33612345678')],
  ] as const)('reads %j as an explicit claim', (text, region, target) => {
    expect(readClaim(text, region)).toEqual({ target, explicit: true });
  });

  it.each([
    ['AIRTEXT +1 (908) 555-0199', phone('+19085550199')],
    ['call my wife at +1 415 555 0123', phone('+14155550123')],
    ["it's (415) 555-0123", phone('+14155550123')],
    ['text 415 555 0123 please', phone('+14155550123')],
    ['my number is not 415 555 0123', phone('+14155550123')],
    ['my number is +1 415 555 0123 thanks', phone('+14155550123')],
    ['send it to ada@example.com', email('ada@example.com')],
  ] as const)('reads %j as a mere mention (no code without an agent)', (text, target) => {
    expect(readClaim(text, 'US')).toEqual({ target, explicit: false });
  });

  it.each([
    ['hello'],
    ['123456'],
    ['my order 4155550123 has not arrived yet and I am waiting since Monday'],
    ['call 415 555 0123 or 415 555 0124'],
    ['I paid 1234567 dollars'],
    ['write to ada@example.com or bob@example.com'],
    ['+999999'],
    [''],
    ['a'.repeat(200)],
  ])('does not read %j as a claim', (text) => {
    expect(readClaim(text, 'US')).toBeUndefined();
  });

  it('reads any one number or email for an agent’s /rapport link, explicit or not', () => {
    expect(detectClaim('call me at 415 555 0123', 'US')).toEqual(phone('+14155550123'));
    expect(detectClaim('hello', 'US')).toBeUndefined();
  });
});

/** Loads wire-format fixtures exactly as the providers send them (bytes, not re-serialised). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseForm } from '../../src/channels/twilio/adapter';
import type { TwilioForm } from '../../src/channels/twilio/wire';

const ROOT = path.join(__dirname, '../fixtures');

export function fixtureBytes(relative: string): Buffer {
  return readFileSync(path.join(ROOT, relative));
}

export function twilioFixture(name: string): { raw: string; form: TwilioForm } {
  const raw = fixtureBytes(`twilio/${name}.form`).toString('utf8');
  return { raw, form: parseForm(Buffer.from(raw)) };
}

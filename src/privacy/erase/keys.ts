/**
 * The keys of erasure's keyed hashes (opt-out markers, tombstones). Keyed HMAC, not a bare hash:
 * the phone-number space is small enough to brute-force a plain SHA-256 in seconds.
 */
import { createHmac } from 'node:crypto';
import { AppError } from '../../errors';

/** DATA_KEY is not set: erasing would leave opt-out markers nobody could read after a key change. */
export class DataKeyMissingError extends AppError {
  constructor() {
    super(
      'erase needs DATA_KEY (a secret of 32+ characters, e.g. `openssl rand -hex 32`, the same in every process); see docs/privacy.md',
      'data_key_missing',
      503,
      false,
    );
  }
}

/** Keyed hash of an erased identity key (a tombstone: dead letters naming it are refused). */
export function identityHash(markerKey: string, identityKey: string): string {
  return createHmac('sha256', markerKey).update(`tombstone|${identityKey}`).digest('hex');
}

/** HMAC marker id of an opt-out: answers "did this number opt out?", useless to list numbers. */
export function optOutMarker(markerKey: string, identityKey: string, channel: string): string {
  return createHmac('sha256', markerKey).update(`${identityKey}|${channel}`).digest('hex');
}

/**
 * The marker key of versions before DATA_KEY, derived from ADMIN_TOKEN. Only read now (markers
 * written then are still honoured, and re-written under DATA_KEY when found).
 */
export function optOutMarkerKey(adminToken: string): string {
  return createHmac('sha256', adminToken).update('rapport/erased-opt-out-marker/v1').digest('hex');
}

/** The marker key derived from a DATA_KEY. */
export function dataMarkerKey(dataKey: string): string {
  return createHmac('sha256', dataKey).update('rapport/data-key/erasure-markers/v1').digest('hex');
}

/** A short public id of a marker key (stored with markers; doctor compares it with the configured keys). */
export function markerKeyId(markerKey: string): string {
  return createHmac('sha256', markerKey).update('rapport/key-id').digest('hex').slice(0, 12);
}

/** The erasure service's keys from config: DATA_KEY writes; DATA_KEY_PREVIOUS and legacy ADMIN_TOKEN keys are read. */
export function markerKeysOf(config: {
  dataKey?: string;
  previousDataKeys: readonly string[];
  adminTokens: readonly { token: string }[];
}): { markerKey?: string; previousMarkerKeys: string[] } {
  return {
    markerKey: config.dataKey ? dataMarkerKey(config.dataKey) : undefined,
    previousMarkerKeys: [
      ...config.previousDataKeys.map(dataMarkerKey),
      ...config.adminTokens.map((t) => optOutMarkerKey(t.token)),
    ],
  };
}

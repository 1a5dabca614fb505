/**
 * DATA_KEY, the secret of erasure (see docs/privacy.md): set, and able to read every opt-out marker
 * erasures left. Each marker records the id of the key that wrote it (`kid`); a marker whose key is
 * neither DATA_KEY nor one of DATA_KEY_PREVIOUS can no longer be matched, so a number that said STOP
 * before it was erased could be messaged again: that is a failure, with the way back (put the old
 * key in DATA_KEY_PREVIOUS). Markers of versions keyed by ADMIN_TOKEN have no `kid`; they are read
 * with the configured admin tokens and are only counted here.
 */
import mongoose from 'mongoose';
import type { Config } from '../config';
import { dataMarkerKey, markerKeyId } from '../privacy/erase';
import { withTimeout } from '../storage/mongo';
import { messageOf, type DoctorCheck } from './types';

const base = { id: 'config.data-key', section: 'config' as const, title: 'DATA_KEY' };

/** DATA_KEY set or not (pure). */
export function dataKeyPresence(config: Readonly<Config>): DoctorCheck {
  if (!config.dataKey)
    return {
      ...base,
      status: 'warn',
      detail:
        'not set: erasing a customer (DELETE /api/customers/:id, rapport customers erase) answers 503 data_key_missing',
      fix: 'Set DATA_KEY to a random secret of 32+ characters (`openssl rand -hex 32`), the same in every process, and keep it: see docs/privacy.md.',
    };
  return {
    ...base,
    status: 'ok',
    detail: `set${config.previousDataKeys.length ? `, with ${config.previousDataKeys.length} previous key(s)` : ''}`,
  };
}

/** Markers written by a key this configuration no longer knows (I/O: reads `erased_opt_outs`). */
export async function checkDataKeyMarkers(
  config: Readonly<Config>,
  timeoutMs: number,
): Promise<DoctorCheck[]> {
  const known = new Set(
    [config.dataKey, ...config.previousDataKeys]
      .filter((k): k is string => !!k)
      .map((k) => markerKeyId(dataMarkerKey(k))),
  );
  const connection = mongoose.createConnection();
  try {
    await withTimeout(
      connection.openUri(config.mongodbUri, {
        serverSelectionTimeoutMS: timeoutMs,
        autoIndex: false,
        autoCreate: false,
        bufferCommands: false,
      }),
      timeoutMs + 500,
      `no answer within ${timeoutMs} ms`,
    );
    const kids = (await connection.db!.collection('erased_opt_outs').distinct('kid')) as (string | null)[];
    const unknown = kids.filter((k): k is string => typeof k === 'string' && !known.has(k));
    if (unknown.length === 0)
      return [
        {
          ...base,
          id: 'config.data-key.markers',
          status: 'ok',
          detail: 'every erased opt-out marker is readable',
        },
      ];
    return [
      {
        ...base,
        id: 'config.data-key.markers',
        status: 'fail',
        detail: `erased opt-out markers written with ${unknown.length} key(s) not configured (ids ${unknown.join(', ')}): their numbers' STOP is no longer honoured`,
        fix: 'DATA_KEY changed without keeping the old one: add the old key to DATA_KEY_PREVIOUS (comma-separated) in every process.',
      },
    ];
  } catch (err) {
    return [
      {
        ...base,
        id: 'config.data-key.markers',
        status: 'warn',
        detail: `could not read the markers: ${messageOf(err).split('\n')[0]}`,
      },
    ];
  } finally {
    await connection.close(true).catch(() => undefined);
  }
}

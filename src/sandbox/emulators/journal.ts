/**
 * What an emulator keeps when it should outlive its process (sandbox mode): every record it
 * creates or changes is written through an `EmulatorJournal` before the emulator answers, so a
 * caller that got an answer (a Slack `ts`, a Twilio SID) can rely on it being there after a
 * restart. Tests run the emulators without one (in memory only).
 */

/** Where an emulator writes its records; `write` replaces the record with that kind and id. */
export interface EmulatorJournal {
  write(kind: string, id: string, doc: unknown): Promise<void>;
  remove(kind: string, id: string): Promise<void>;
}

/** One kept record, as read back at start-up (oldest first). */
export interface JournalRecord {
  kind: string;
  id: string;
  doc: unknown;
}

/** The records of one kind, in the order they were first written. */
export function recordsOf<T>(records: readonly JournalRecord[], kind: string): T[] {
  return records.filter((r) => r.kind === kind).map((r) => r.doc as T);
}

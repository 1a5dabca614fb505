/**
 * The "answer lost" fault shared by the emulators: the request is processed and recorded as usual
 * (a message stored, a post made), then the connection is destroyed instead of answered — what a
 * client sees when a provider accepted a call and the network dropped its answer.
 */
import type { ServerResponse } from 'node:http';

/** Makes whatever `res` would answer a dropped connection instead. */
export function loseAnswer(res: ServerResponse): void {
  const drop = (): ServerResponse => {
    res.socket?.destroy();
    return res;
  };
  res.writeHead = drop as unknown as ServerResponse['writeHead'];
  res.end = drop as unknown as ServerResponse['end'];
}

/** A queue of "lose the next n answers (matching …)" entries, as each emulator's `loseNext` keeps. */
export class LostAnswers<M> {
  private pending: { remaining: number; skip: number; match?: M }[] = [];

  /** Lose `times` answers to requests `match` accepts, after letting `skip` of them through. */
  add(times: number, match?: M, skip = 0): void {
    this.pending.push({ remaining: times, skip, ...(match !== undefined ? { match } : {}) });
  }

  /** True (and one use consumed) if an entry accepts this request. */
  take(accepts: (match: M | undefined) => boolean): boolean {
    const index = this.pending.findIndex((p) => accepts(p.match));
    const hit = this.pending[index];
    if (!hit) return false;
    if (hit.skip > 0) {
      hit.skip -= 1;
      return false;
    }
    hit.remaining -= 1;
    if (hit.remaining <= 0) this.pending.splice(index, 1);
    return true;
  }

  clear(): void {
    this.pending = [];
  }
}

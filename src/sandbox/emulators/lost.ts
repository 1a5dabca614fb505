/**
 * The "answer lost" fault shared by the emulators: the request is processed and recorded as usual
 * (a message stored, a post made), then the connection is destroyed instead of answered — what a
 * client sees when a provider accepted a call and the network dropped its answer.
 */
import type { ServerResponse } from 'node:http';
import { FaultQueue } from './http';

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
  private readonly queue = new FaultQueue<true, M>();

  /** Lose `times` answers to requests `match` accepts, after letting `skip` of them through. */
  add(times: number, match?: M, skip = 0): void {
    this.queue.add(true, times, match, skip);
  }

  /** True (and one use consumed) if an entry accepts this request. */
  take(accepts: (match: M | undefined) => boolean): boolean {
    return this.queue.take(accepts) === true;
  }

  clear(): void {
    this.queue.clear();
  }
}

/** What the sender contract tests share: a reply to send and the way a send fails. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { OutboundError, type OutboundMessage } from '../../src/channels/sender';

/** An agent's reply ("Hello from Ana", key `out-1`) on `channel` through `provider` to `to`. */
export function outbound(
  route: Pick<OutboundMessage, 'channel' | 'provider' | 'to'>,
  overrides: Partial<OutboundMessage> = {},
): OutboundMessage {
  return { key: 'out-1', ...route, text: 'Hello from Ana', ...overrides };
}

/** The error of type `type` that `promise` rejects with (the test fails if it resolves or rejects otherwise). */
export async function rejectionOf<E>(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => E,
): Promise<E> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(type);
    return err as E;
  }
  throw new Error(`expected a ${type.name}`);
}

/** The OutboundError a send rejects with. */
export const failureOf = (promise: Promise<unknown>) => rejectionOf(promise, OutboundError);

/** None of `secrets` shows in the error's message, its JSON or its inspected form. */
export function expectNoneOf(err: unknown, secrets: string[]): void {
  const e = err as Error;
  for (const text of [e.message, JSON.stringify(e), inspect(e, { depth: 10 })])
    for (const secret of secrets) expect(text).not.toContain(secret);
}

/** A server that accepts and never answers, for the enclosing describe block: returns its origin. */
export function hangingServer(): () => string {
  let server: Server;
  beforeAll(async () => {
    server = createServer(() => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

// Invariant assertions. An assertion that fails is a bug in this library (or a caller breaking its
// contract), never the result of bad input from the network: that is validated first and dropped.
// They stay on in production, as in TigerBeetle: a broken invariant must stop the node loudly
// rather than corrupt a replicated log.

import { RaftError } from './errors.ts';

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) {
    throw new RaftError('INVARIANT', `raft invariant violated: ${message}`);
  }
}

export function assertSafeIndex(n: number, what: string): void {
  assert(Number.isSafeInteger(n), `${what} is not a safe integer: ${n}`);
  assert(n >= 0, `${what} is negative: ${n}`);
}

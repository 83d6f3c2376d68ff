// One error vocabulary from the state machine to the user: every way a request can fail, named
// once, with what it means (definite: nothing happened; unknown: it may still take effect), the
// `pcr` exit code and the Maelstrom error code it becomes. The state machine's result codes and
// RaftNode's outcome codes map into it one to one, so a code keeps its meaning on the way out
// (a `duplicate` stays DUPLICATE, a `STOPPED` stays STOPPED). docs/errors.md is the table for
// readers; errors.test.ts holds it to this one.

import type { NodeErrorCode, Outcome } from './raft/node.ts';
import type { ErrorCode as ResultCode } from './state/machine.ts';

export type ErrorCode =
  | NodeErrorCode
  | 'NOT_FOUND'
  | 'CAS_MISMATCH'
  | 'DUPLICATE'
  | 'STALE'
  | 'REMOVED'
  | 'UNAVAILABLE'
  | 'NOT_LEADER'
  | 'CORRUPT'
  | 'UNPLACEABLE';

/** The `pcr` exit codes an error becomes (node/cli/client.ts EXIT names them). */
export const ERROR_EXIT = {
  failed: 1,
  usage: 2,
  noLeader: 3,
  unreachable: 4,
  timeout: 6,
  notFound: 7,
  corrupt: 9,
  removed: 10,
  unplaceable: 13,
  /** Not an error: `pcr deploy plan` found changes (0 is none), as `terraform plan -detailed-exitcode`. */
  changes: 14,
} as const;

/** Maelstrom's error codes this vocabulary uses (its doc/protocol.md#errors). */
export type MaelstromCode = 0 | 11 | 12 | 20 | 22;

export interface ErrorKind {
  /** definite: the request did not take effect; unknown: it may have, or still may. */
  readonly outcome: 'definite' | 'unknown';
  readonly exit: number;
  readonly maelstrom: MaelstromCode;
  /** What to do next, for people (the CLI appends it). */
  readonly hint?: string;
}

export const ERRORS: { readonly [C in ErrorCode]: ErrorKind } = {
  /** No leader known to the member asked: an election, or no quorum reachable. */
  NO_LEADER: {
    outcome: 'definite',
    exit: ERROR_EXIT.noLeader,
    maelstrom: 11,
    hint: 'no leader: retry shortly; if it lasts, a quorum of voters is unreachable',
  },
  /** The leader refused to propose (uncommitted limit, a transfer in progress). */
  PROPOSAL_DROPPED: { outcome: 'definite', exit: ERROR_EXIT.noLeader, maelstrom: 11 },
  /** Not seen applied in time. */
  TIMEOUT: {
    outcome: 'unknown',
    exit: ERROR_EXIT.timeout,
    maelstrom: 0,
    hint: 'timed out: the outcome is unknown; check with a read before retrying a write',
  },
  /** The member stopped before the request finished. */
  STOPPED: {
    outcome: 'unknown',
    exit: ERROR_EXIT.timeout,
    maelstrom: 0,
    hint: 'the member stopped: the outcome is unknown; check with a read before retrying a write',
  },
  /** Malformed or out of bounds; nothing changed. */
  INVALID: { outcome: 'definite', exit: ERROR_EXIT.usage, maelstrom: 12 },
  NOT_FOUND: {
    outcome: 'definite',
    exit: ERROR_EXIT.notFound,
    maelstrom: 20,
    hint: 'list what exists: pcr kv list, pcr vm list, pcr members',
  },
  /** A CAS whose expected value differs: the answer is no. */
  CAS_MISMATCH: { outcome: 'definite', exit: ERROR_EXIT.failed, maelstrom: 22 },
  /** The request ID was applied before: it took effect once, this answer cannot say how. */
  DUPLICATE: { outcome: 'unknown', exit: ERROR_EXIT.timeout, maelstrom: 0 },
  /** A VM report for an old generation or another node: ignored. */
  STALE: { outcome: 'definite', exit: ERROR_EXIT.failed, maelstrom: 12 },
  /** The cluster removed that node (a tombstone): it cannot come back under that identity. */
  REMOVED: {
    outcome: 'definite',
    exit: ERROR_EXIT.removed,
    maelstrom: 12,
    hint: 'removed from the cluster: start it with --rejoin to join as a new member',
  },
  /** The member cannot serve this now (still starting, a peer unreachable). */
  UNAVAILABLE: { outcome: 'definite', exit: ERROR_EXIT.unreachable, maelstrom: 11 },
  NOT_LEADER: { outcome: 'definite', exit: ERROR_EXIT.noLeader, maelstrom: 11 },
  /** Data refused: it failed verification (hash, size, NAR grammar) or no trusted key signed it. */
  CORRUPT: {
    outcome: 'definite',
    exit: ERROR_EXIT.corrupt,
    maelstrom: 12,
    hint: 'the data failed verification: pcr store verify --repair on the member that holds it restores it from the others',
  },
  /** No node could ever hold it as specified (resources, backend, constraints, count); nothing committed. */
  UNPLACEABLE: {
    outcome: 'definite',
    exit: ERROR_EXIT.unplaceable,
    maelstrom: 12,
    hint: 'pcr vm plan SPEC shows what each filter removed; pcr node list shows each node’s capacity and labels',
  },
};

/** The state machine's result codes in this vocabulary (total: a new result code must map). */
export const RESULT_ERROR: { readonly [C in ResultCode]: ErrorCode } = {
  notFound: 'NOT_FOUND',
  casMismatch: 'CAS_MISMATCH',
  invalid: 'INVALID',
  duplicate: 'DUPLICATE',
  stale: 'STALE',
  removed: 'REMOVED',
};

export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === 'string' && Object.hasOwn(ERRORS, x);
}

/** Why an outcome failed, in this vocabulary; undefined when it succeeded. */
export function outcomeError(o: Outcome): { code: ErrorCode; message: string } | undefined {
  if (!o.ok) return { code: o.code, message: o.message };
  if (!o.result.ok) return { code: RESULT_ERROR[o.result.code], message: o.result.message };
  return undefined;
}

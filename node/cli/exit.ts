// The exit codes of `pcr`, the user-facing error that carries one, and the transport interface the
// client's two ways to a member share. A module of its own so that client.ts and remote.ts (loaded
// only for --addr) both import it and neither imports the other.

import type { ApiRequest, ApiResponse } from '../api/wire.ts';
import { ERROR_EXIT } from '../errors.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './context.ts';

/** Exit codes of `pcr` (docs/operations.md); 0, 1 and 2 are the dispatcher's (context.ts). */
export const EXIT = {
  ok: EXIT_OK,
  /** The request was carried out and the answer is "no" (e.g. a CAS whose expected value differed). */
  failed: EXIT_FAILURE,
  usage: EXIT_USAGE,
  noLeader: ERROR_EXIT.noLeader,
  unreachable: ERROR_EXIT.unreachable,
  unauthorized: 5,
  timeout: ERROR_EXIT.timeout,
  notFound: ERROR_EXIT.notFound,
  /** `pcr vm run` / `vm stop`: the VM failed (to start, or while stopping); the reason is printed. */
  vmFailed: 8,
  /** Data refused as corrupt or untrusted (a NAR's hash, size or signature); damage remains. */
  corrupt: ERROR_EXIT.corrupt,
  /** `pcr node start`: the cluster removed this node (docs/membership.md); --rejoin starts afresh. */
  removed: ERROR_EXIT.removed,
  /** `pcr node start`: an argument names something that cannot be used (file, address, dir). */
  badArgument: 11,
  /** `pcr node start`: the address to listen on is taken by another process. */
  addressInUse: 12,
  /** `pcr vm run` / `vm plan`: no node can hold the VM as specified (the reasons are printed). */
  unplaceable: ERROR_EXIT.unplaceable,
  /** `pcr deploy plan`: the deployment would change (0: it would not). */
  changes: ERROR_EXIT.changes,
} as const;

/** The error code --json prints for each exit code (one vocabulary with the exit codes). */
const EXIT_CODE_NAME: Record<number, string> = {
  [EXIT.failed]: 'FAILED',
  [EXIT.usage]: 'USAGE',
  [EXIT.noLeader]: 'NO_LEADER',
  [EXIT.unreachable]: 'UNREACHABLE',
  [EXIT.unauthorized]: 'UNAUTHORIZED',
  [EXIT.timeout]: 'TIMEOUT',
  [EXIT.notFound]: 'NOT_FOUND',
  [EXIT.vmFailed]: 'VM_FAILED',
  [EXIT.corrupt]: 'CORRUPT',
  [EXIT.removed]: 'REMOVED',
  [EXIT.badArgument]: 'BAD_ARGUMENT',
  [EXIT.addressInUse]: 'ADDRESS_IN_USE',
  [EXIT.unplaceable]: 'UNPLACEABLE',
  [EXIT.changes]: 'CHANGES',
};

export function errorCodeName(exitCode: number): string {
  return EXIT_CODE_NAME[exitCode] ?? 'FAILED';
}

/** A user-facing error: one line, an exit code, and what to do next when there is something. */
export class CliError extends Error {
  readonly exitCode: number;
  /** The machine-readable code (--json); by default the name of the exit code. */
  readonly code: string;
  readonly hint: string | undefined;
  constructor(message: string, exitCode: number, extra: { code?: string; hint?: string } = {}) {
    super(message);
    this.exitCode = exitCode;
    this.code = extra.code ?? errorCodeName(exitCode);
    this.hint = extra.hint;
  }
}

/** The two ways to a member: both send one request and resolve to its answer. */
export interface ApiTransport {
  request(req: ApiRequest, timeoutMs: number): Promise<ApiResponse>;
  close(): Promise<void>;
  /** Turns a failure of request() (not an error answer) into a CliError. */
  explain(e: Error, timeoutMs: number): CliError;
}

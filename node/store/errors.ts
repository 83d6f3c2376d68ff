// The one error type of the store layer: a code a program can branch on and a message a user can
// act on (it names the path, field or peer and what went wrong).

export type StoreErrorCode =
  | 'HASH_MISMATCH'
  | 'SIZE_MISMATCH'
  | 'BAD_SIGNATURE'
  | 'UNTRUSTED'
  | 'BAD_NAR'
  | 'BAD_NARINFO'
  | 'BAD_STORE_PATH'
  | 'BAD_HASH'
  | 'BAD_KEY'
  | 'UNSUPPORTED'
  | 'NOT_FOUND'
  | 'NO_HOLDER'
  | 'STORE_FULL'
  | 'NIX_FAILED'
  | 'PROTOCOL'
  | 'TOO_LARGE'
  /** A bound on work in flight was reached (bulk tickets): try later or another way. */
  | 'BUSY'
  /** This node's own copy failed its check (and is now quarantined): ask another holder. */
  | 'DAMAGED'
  /**
   * A source could not be asked (an upstream cache's 5xx, a refused connection, a timeout):
   * nothing was decided, so the answer is "try again", never "not there".
   */
  | 'UNAVAILABLE';

export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export function isStoreError(e: unknown, code?: StoreErrorCode): e is StoreError {
  return e instanceof StoreError && (code === undefined || e.code === code);
}

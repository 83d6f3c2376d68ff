// Typed errors of the linearizability checker. Bad input (a malformed event, a completion with no
// invocation, an operation the model cannot read) is reported with a code and a message that says
// where the problem is and what to do about it. A failed assertion is a bug in the checker itself.

export type CheckerErrorCode =
  | 'BAD_EVENT' // an event is not of the documented shape (type, process, f, key, time)
  | 'BAD_ORDER' // a process's events go back in time, or it runs two operations at once
  | 'UNMATCHED_COMPLETION' // an ok/fail/info event with no outstanding invocation of its process
  | 'MISMATCHED_COMPLETION' // a completion whose f or key differs from its invocation's
  | 'BAD_OPERATION' // the model cannot interpret an operation (unknown f, malformed cas input)
  | 'BAD_OPTION' // a checker option is out of range
  | 'INVARIANT'; // an internal invariant failed: a bug in the checker, never bad input

export class CheckerError extends Error {
  readonly code: CheckerErrorCode;

  constructor(code: CheckerErrorCode, message: string) {
    super(message);
    this.name = 'CheckerError';
    this.code = code;
  }
}

export function isCheckerError(e: unknown, code?: CheckerErrorCode): e is CheckerError {
  return e instanceof CheckerError && (code === undefined || e.code === code);
}

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new CheckerError('INVARIANT', `checker invariant violated: ${message}`);
}

// What every noun module of the `pcr` command gets: where to print, the arguments, and how to
// report the exit code of the command it ran (or throw an error with an `exitCode`). pcr.ts loads
// a noun's module only when that noun runs; a module should still import heavy implementation
// inside its actions, so that listing the commands stays cheap.

import { type Command, InvalidArgumentError } from 'commander';

/** Exit codes of `pcr`: 0 success, 1 the command failed, 2 wrong usage (arguments, options). */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface CliIo {
  /** Prints to standard output (text as given: add the newline). */
  readonly out: (text: string) => void;
  /** Prints to standard error (text as given: add the newline). */
  readonly err: (text: string) => void;
}

export const processIo: CliIo = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

export interface CliContext {
  readonly io: CliIo;
  /** The arguments `pcr` was given (after the program name), as given. */
  readonly argv: readonly string[];
  /** Set by the action that ran; `pcr` exits with it. */
  exitCode: number;
  /**
   * The program with every command registered (for `pcr completion`), handed in by pcr.ts so that
   * no command module imports the dispatcher back.
   */
  readonly fullProgram?: () => Promise<Command>;
}

/** A commander option parser for an integer in [min, max]; a bad value is a usage error (2). */
export function integerOption(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\s*-?\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got '${value}'.`);
    }
    return n;
  };
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * A commander option parser for a duration (`500ms`, `10s`, `2m`, `1h`, `1d`; a bare number is
 * seconds) in [minMs, maxMs], as milliseconds; a bad value is a usage error (2).
 */
export function durationOption(minMs: number, maxMs: number): (value: string) => number {
  return (value) => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value);
    const ms = m === null ? Number.NaN : Number(m[1]) * DURATION_UNITS_MS[m[2] ?? 's']!;
    if (!Number.isFinite(ms) || ms < minMs || ms > maxMs) {
      throw new InvalidArgumentError(
        `expected a duration from ${minMs} ms to ${maxMs / 1000} s (e.g. 500ms, 10s, 2m, 1h), got '${value}'.`,
      );
    }
    return Math.round(ms);
  };
}

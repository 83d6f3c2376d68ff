// Sequential specifications for the linearizability checker, in the shape of Porcupine's models: a
// model is a small object (init, step, partition, a state key, descriptions) and the checker is
// generic over it. This module owns the Model interface and the two key-value models with
// Maelstrom lin-kv semantics; the search itself is in linearizability.ts.
//
// lin-kv semantics (https://github.com/jepsen-io/maelstrom, workload lin-kv):
// - read(k) returns the value, or error 20 (key-does-not-exist) when k is absent. Jepsen records
//   that error as an 'ok' read of null, so in histories **null stands for "absent"**: an 'ok' read
//   with value null (or an error body {type:'error', code:20}) observes an absent key, and writing
//   null is rejected as a malformed operation (it would be indistinguishable from absence).
// - write(k, v) sets k to v.
// - cas(k, [from, to]) (or {from, to}) sets k to `to` iff its value equals `from`; otherwise it
//   fails with error 22 (precondition-failed), or 20 if k is absent. A 'fail' completion means the
//   cas certainly had no effect: the checker drops it. An 'ok' completion whose value is an error
//   body {type:'error', code:20|22} is kept and checked as an observation of the register.
// Values are compared structurally (canonical JSON, object keys sorted).

import { canonicalJson } from '../../node/state/canonical_json.ts';
import type { Operation } from './history.ts';

/** The output of an indeterminate operation: the model must accept any result. */
export const INDETERMINATE: unique symbol = Symbol('indeterminate');
export type Indeterminate = typeof INDETERMINATE;

export const ERROR_KEY_DOES_NOT_EXIST = 20;
export const ERROR_PRECONDITION_FAILED = 22;

export interface StepResult<S> {
  readonly ok: boolean;
  readonly state: S;
}

export type Decoded<I, O> =
  | { readonly input: I; readonly output: O | Indeterminate }
  | { readonly error: string };

export interface Model<S, I, O> {
  readonly name: string;
  init(): S;
  /**
   * Turns an operation of the history into the model's input and output once, before the search
   * (so `step` stays cheap), or says why it cannot (unknown f, malformed input). For an 'info'
   * operation the output must be INDETERMINATE. Never called for 'fail' operations. Depends only
   * on the operation's f, key, input, output and outcome (not on its process or times).
   */
  decode(op: Operation): Decoded<I, O>;
  /** Applies the operation to a state; ok is false if the output is impossible from this state. */
  step(state: S, input: I, output: O | Indeterminate): StepResult<S>;
  /**
   * True if the operation never changes the state (a read). Indeterminate read-only operations
   * constrain nothing and are dropped before the search: each one would double its work.
   */
  readOnly(input: I): boolean;

  /** P-compositionality: independent sub-histories (one per key) that are checked separately. */
  partition(ops: readonly Operation[]): Operation[][];
  /** An injective encoding of a state: equal states, and only they, have equal keys. */
  stateKey(state: S): string;
  describeOperation(op: Operation): string;
  describeState(state: S): string;
}

/** A model whose state, input and output types are not known to the caller (the CLI's choice). */
// biome-ignore lint/suspicious/noExplicitAny: the checker is generic; any model may be passed.
export type AnyModel = Model<any, any, any>;

/** JSON with object keys sorted: the one definition, shared with the node (and its spec hash). */
export { canonicalJson };

// --- the register semantics shared by both models ---------------------------------------------

/** A register's value as canonical JSON, or null when the key is absent. */
export type RegisterState = string | null;

export type RegisterInput =
  | { readonly f: 'read'; readonly key: string | undefined }
  | { readonly f: 'write'; readonly key: string | undefined; readonly value: string }
  | {
      readonly f: 'cas';
      readonly key: string | undefined;
      readonly from: string;
      readonly to: string;
    };

export type RegisterOutput =
  /** A read's result: canonical JSON, or null for an absent key. */
  | { readonly kind: 'value'; readonly value: RegisterState }
  /** A write or cas that succeeded. */
  | { readonly kind: 'done' }
  /** A refusal observed by an 'ok' completion: 20 key-does-not-exist, 22 precondition-failed. */
  | { readonly kind: 'error'; readonly code: 20 | 22 };

const DONE: RegisterOutput = { kind: 'done' };

function errorCodeOf(value: unknown): number | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const body = value as { type?: unknown; code?: unknown };
  return body.type === 'error' && typeof body.code === 'number' ? body.code : undefined;
}

function casArguments(input: unknown): { from: unknown; to: unknown } | undefined {
  if (Array.isArray(input) && input.length === 2) return { from: input[0], to: input[1] };
  if (typeof input === 'object' && input !== null && 'from' in input && 'to' in input) {
    const x = input as { from: unknown; to: unknown };
    return { from: x.from, to: x.to };
  }
  return undefined;
}

function decodeRegister(op: Operation): Decoded<RegisterInput, RegisterOutput> {
  const indeterminate = op.outcome === 'info';
  const key = op.key;
  switch (op.f) {
    case 'read': {
      const input: RegisterInput = { f: 'read', key };
      if (indeterminate) return { input, output: INDETERMINATE };
      const code = errorCodeOf(op.output);
      if (code === ERROR_KEY_DOES_NOT_EXIST) return { input, output: { kind: 'error', code } };
      if (code !== undefined) {
        return { error: `read completed 'ok' with error ${code}; record it as 'fail' or 'info'` };
      }
      const value = op.output === null || op.output === undefined ? null : canonicalJson(op.output);
      return { input, output: { kind: 'value', value } };
    }
    case 'write': {
      if (op.input === null || op.input === undefined) {
        return { error: 'write of null: null stands for an absent key; write another value' };
      }
      const input: RegisterInput = { f: 'write', key, value: canonicalJson(op.input) };
      return { input, output: indeterminate ? INDETERMINATE : DONE };
    }
    case 'cas': {
      const args = casArguments(op.input);
      if (args === undefined) {
        return { error: `cas input ${canonicalJson(op.input)} is not [from, to] or {from, to}` };
      }
      if (args.from === null || args.from === undefined) {
        return { error: 'cas from null: null stands for an absent key, which cas never matches' };
      }
      if (args.to === null || args.to === undefined) {
        return { error: 'cas to null: null stands for an absent key; cas to another value' };
      }
      const input: RegisterInput = {
        f: 'cas',
        key,
        from: canonicalJson(args.from),
        to: canonicalJson(args.to),
      };
      if (indeterminate) return { input, output: INDETERMINATE };
      const code = errorCodeOf(op.output);
      if (code === ERROR_KEY_DOES_NOT_EXIST || code === ERROR_PRECONDITION_FAILED) {
        return { input, output: { kind: 'error', code } };
      }
      if (code !== undefined) {
        return { error: `cas completed 'ok' with error ${code}; record it as 'fail' or 'info'` };
      }
      return { input, output: DONE };
    }
    default:
      return { error: `unknown operation '${op.f}': the key-value models know read, write, cas` };
  }
}

/** One register's transition. A step that cannot happen keeps the state (ok: false). */
function stepRegister(
  current: RegisterState,
  input: RegisterInput,
  output: RegisterOutput | Indeterminate,
): StepResult<RegisterState> {
  switch (input.f) {
    case 'read': {
      if (output === INDETERMINATE) return { ok: true, state: current };
      if (output.kind === 'value') return { ok: output.value === current, state: current };
      return { ok: output.kind === 'error' && current === null, state: current };
    }
    case 'write':
      return { ok: true, state: input.value };
    case 'cas': {
      if (output !== INDETERMINATE && output.kind === 'error') {
        const ok =
          output.code === ERROR_KEY_DOES_NOT_EXIST
            ? current === null
            : current !== null && current !== input.from;
        return { ok, state: current };
      }
      // An indeterminate cas that would not match can simply be left out of the linearization
      // (the checker never requires indeterminate operations), so it is not a separate branch.
      if (current !== input.from) return { ok: false, state: current };
      return { ok: true, state: input.to };
    }
  }
}

function describeValue(value: unknown): string {
  return value === null || value === undefined ? 'null' : canonicalJson(value);
}

/** "write 3", "read → 3", "cas 1→2", "cas 1→2 ✗22", with "?" for an unknown result. */
function describeRegisterOp(op: Operation): string {
  const unknownResult = op.outcome === 'info';
  let text: string;
  switch (op.f) {
    case 'read': {
      const code = errorCodeOf(op.output);
      const result = code !== undefined ? `✗${code}` : describeValue(op.output);
      text = `read → ${unknownResult ? '?' : result}`;
      break;
    }
    case 'write':
      text = `write ${describeValue(op.input)}`;
      break;
    case 'cas': {
      const args = casArguments(op.input);
      text = args
        ? `cas ${describeValue(args.from)}→${describeValue(args.to)}`
        : `cas ${describeValue(op.input)}`;
      const code = errorCodeOf(op.output);
      if (!unknownResult && code !== undefined) text += ` ✗${code}`;
      break;
    }
    default:
      text = `${op.f} ${describeValue(op.input)} → ${describeValue(op.output)}`;
  }
  if (op.outcome === 'info' && op.f !== 'read') text += ' ?';
  if (op.outcome === 'fail') text += ' (fail)';
  return text;
}

function describeRegisterState(state: RegisterState): string {
  return state === null ? 'absent' : state;
}

/** Splits per key, keys in order of first appearance (operations without a key form one group). */
export function partitionByKey(ops: readonly Operation[]): Operation[][] {
  const groups = new Map<string | undefined, Operation[]>();
  for (const op of ops) {
    const group = groups.get(op.key);
    if (group === undefined) groups.set(op.key, [op]);
    else group.push(op);
  }
  return [...groups.values()];
}

/**
 * One lin-kv register per key. The state is a single value, so it is only correct on a
 * single-key history: `partition` makes sure of that by splitting per key (as Jepsen's
 * `independent` checker does with its cas-register model).
 */
export const casRegister: Model<RegisterState, RegisterInput, RegisterOutput> = {
  name: 'cas-register',
  init: () => null,
  decode: decodeRegister,
  step: stepRegister,
  readOnly: (input) => input.f === 'read',
  partition: partitionByKey,
  stateKey: (state) => (state === null ? '' : `=${state}`),
  describeOperation: describeRegisterOp,
  describeState: describeRegisterState,
};

/** A whole lin-kv store: a map from key to value (absent keys are not in the map). */
export type KvState = ReadonlyMap<string, string>;

function decodeKv(op: Operation): Decoded<RegisterInput, RegisterOutput> {
  if (op.key === undefined) return { error: `'${op.f}' has no key; the kv-map model needs one` };
  return decodeRegister(op);
}

function stepKv(
  state: KvState,
  input: RegisterInput,
  output: RegisterOutput | Indeterminate,
): StepResult<KvState> {
  const key = input.key!;
  const current = state.get(key) ?? null;
  const r = stepRegister(current, input, output);
  if (!r.ok || r.state === current) return { ok: r.ok, state };
  const next = new Map(state);
  if (r.state === null) next.delete(key);
  else next.set(key, r.state);
  return { ok: true, state: next };
}

function sortedEntries(state: KvState): [string, string][] {
  return [...state.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * A map of keys to values with read, write and cas per key. Correct on any history, partitioned
 * or not; `partition` splits per key because keys are independent (P-compositionality), which
 * turns one exponential search into several small ones.
 */
export const kvMap: Model<KvState, RegisterInput, RegisterOutput> = {
  name: 'kv-map',
  init: () => new Map(),
  decode: decodeKv,
  step: stepKv,
  readOnly: (input) => input.f === 'read',
  partition: partitionByKey,
  stateKey: (state) => JSON.stringify(sortedEntries(state)),
  describeOperation: (op) => `${op.key}: ${describeRegisterOp(op)}`,
  describeState: (state) =>
    state.size === 0
      ? '{}'
      : `{${sortedEntries(state)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')}}`,
};

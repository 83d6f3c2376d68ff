// Test and benchmark helpers: a shorthand for hand-written histories, and histories recorded from
// a real sequential execution of a key-value store with random overlapping intervals (always
// linearizable, by construction: each operation's interval contains its point in the execution).

import type { HistoryEvent } from '../../jepsen/checker/history.ts';

export interface OpSpec {
  readonly p: number;
  readonly f: string;
  readonly key?: string;
  readonly input?: unknown;
  readonly output?: unknown;
  readonly call: number;
  /** Completion time; for 'info' without it, the operation never completes. */
  readonly ret?: number;
  readonly outcome?: 'ok' | 'fail' | 'info';
}

type Extra = Partial<Pick<OpSpec, 'key' | 'outcome' | 'output'>>;

export const write = (p: number, value: unknown, call: number, ret?: number, x: Extra = {}) =>
  ({ p, f: 'write', input: value, output: value, call, ret, ...x }) satisfies OpSpec;

export const read = (p: number, value: unknown, call: number, ret?: number, x: Extra = {}) =>
  ({ p, f: 'read', input: null, output: value, call, ret, ...x }) satisfies OpSpec;

export const cas = (
  p: number,
  from: unknown,
  to: unknown,
  call: number,
  ret?: number,
  x: Extra = {},
) => ({ p, f: 'cas', input: [from, to], output: [from, to], call, ret, ...x }) satisfies OpSpec;

/**
 * Events of the given operations: an invoke at `call`, a completion at `ret`. List each process's
 * operations in the order it ran them; the result is sorted by time (stably).
 */
export function events(...ops: OpSpec[]): HistoryEvent[] {
  const out: HistoryEvent[] = [];
  for (const op of ops) {
    const key = op.key === undefined ? {} : { key: op.key };
    out.push({ type: 'invoke', process: op.p, f: op.f, ...key, value: op.input, time: op.call });
    if (op.ret !== undefined) {
      const type = op.outcome ?? 'ok';
      out.push({ type, process: op.p, f: op.f, ...key, value: op.output, time: op.ret });
    }
  }
  return out
    .map((e, i) => ({ e, i }))
    .sort((a, b) => a.e.time - b.e.time || a.i - b.i)
    .map((x) => x.e);
}

// --- histories from a sequential execution ---------------------------------------------------

export type Fate =
  | 'ok'
  /** Took effect, but the client only learned 'info' (or nothing, if `pending`). */
  | 'info'
  /** A write recorded as 'info' that never took effect. */
  | 'phantom'
  /** A write recorded as 'fail' that never took effect. */
  | 'failed';

export interface PlanStep {
  readonly key: number;
  readonly kind: 'read' | 'write' | 'cas';
  /** Value written, or cas's `to`. Values are small integers, so reads see repeats. */
  readonly value: number;
  readonly from: number;
  /** Preferred process; another free one is used if it is busy. */
  readonly process: number;
  /** How long before its point in the execution the operation is invoked... */
  readonly before: number;
  /** ...and how long after it it returns. */
  readonly after: number;
  readonly fate: Fate;
  /** A failed cas is recorded 'fail' (Maelstrom) or as 'ok' with the error body. */
  readonly casErrorAsOk: boolean;
  /** An 'info' operation gets no completion event at all. */
  readonly pending: boolean;
}

export interface GeneratedHistory {
  readonly events: HistoryEvent[];
  /** Indexes into `events` of the completions of 'ok' reads: candidates for corruption. */
  readonly okReadCompletions: number[];
}

/** Time between two consecutive points of the sequential execution. */
export const STEP_TIME = 10;

export function historyFromExecution(
  plan: readonly PlanStep[],
  processes: number,
  keys: readonly string[],
): GeneratedHistory {
  const state = new Map<string, number>();
  const busyUntil: number[] = Array.from({ length: processes }, () => -1);
  const retired = new Set<number>();
  const raw: { e: HistoryEvent; i: number; okRead: boolean }[] = [];
  const push = (e: HistoryEvent, okRead = false) => raw.push({ e, i: raw.length, okRead });

  plan.forEach((s, i) => {
    const t = STEP_TIME * (i + 1);
    const free = (p: number) => !retired.has(p) && busyUntil[p]! < t;
    let p = s.process % processes;
    if (!free(p)) p = busyUntil.findIndex((_, q) => free(q));
    if (p === -1) {
      p = busyUntil.length;
      busyUntil.push(-1);
    }
    const call = Math.max(busyUntil[p]! + 1, t - s.before);
    const ret = t + s.after;
    const key = keys[s.key % keys.length]!;
    const current = state.get(key) ?? null;
    let f: string = s.kind;
    let input: unknown;
    let output: unknown;
    let type: 'ok' | 'fail' | 'info' = s.fate === 'ok' ? 'ok' : 'info';
    if (s.kind === 'read') {
      input = null;
      output = current;
      if (s.fate !== 'ok') type = 'info';
    } else if (s.kind === 'write' || s.fate === 'phantom' || s.fate === 'failed') {
      // Phantom and failed writes never take effect (a phantom cas could be impossible to place).
      f = 'write';
      input = s.value;
      output = s.value;
      if (s.fate === 'failed') type = 'fail';
      if (s.fate !== 'phantom' && s.fate !== 'failed') state.set(key, s.value);
    } else {
      input = [s.from, s.value];
      output = input;
      if (current === s.from) {
        state.set(key, s.value);
      } else {
        const code = current === null ? 20 : 22;
        output = { type: 'error', code };
        type = s.casErrorAsOk ? 'ok' : 'fail';
      }
    }
    push({ type: 'invoke', process: p, f, key, value: input, time: call });
    if (type === 'info') {
      retired.add(p);
      if (!s.pending) push({ type, process: p, f, key, value: input, time: ret });
    } else {
      push({ type, process: p, f, key, value: output, time: ret }, f === 'read' && type === 'ok');
    }
    busyUntil[p] = ret;
  });

  raw.sort((a, b) => a.e.time - b.e.time || a.i - b.i);
  const okReadCompletions: number[] = [];
  raw.forEach((x, i) => {
    if (x.okRead) okReadCompletions.push(i);
  });
  return { events: raw.map((x) => x.e), okReadCompletions };
}

/** A deterministic random plan (mulberry32), for benchmarks and large fixed tests. */
export function randomPlan(
  seed: number,
  length: number,
  processes: number,
  keys: number,
  fates: { info: number; phantom: number; failed: number } = { info: 0, phantom: 0, failed: 0 },
): PlanStep[] {
  let a = seed >>> 0;
  const rand = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(rand() * n);
  const plan: PlanStep[] = [];
  for (let i = 0; i < length; i++) {
    const x = rand();
    const fate: Fate =
      x < fates.info
        ? 'info'
        : x < fates.info + fates.phantom
          ? 'phantom'
          : x < fates.info + fates.phantom + fates.failed
            ? 'failed'
            : 'ok';
    const k = int(3);
    plan.push({
      key: int(keys),
      kind: k === 0 ? 'read' : k === 1 ? 'write' : 'cas',
      value: int(5),
      from: int(5),
      process: int(processes),
      before: int(STEP_TIME * processes),
      after: int(STEP_TIME * processes),
      fate,
      casErrorAsOk: rand() < 0.5,
      pending: rand() < 0.3,
    });
  }
  return plan;
}

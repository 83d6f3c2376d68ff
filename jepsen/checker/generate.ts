// Realistic concurrent histories for benchmarks and tests, deterministic for a seed.
//
// A fixed number of client threads run operations (read, write, cas) on a few keys of a lin-kv
// store, one at a time each, with random think times and latencies (a few slow ones), so their
// intervals overlap. Each operation takes effect at a random instant inside its interval, against
// a real register per key: the history is linearizable by construction. Some responses are lost
// (the client records 'info' after a timeout; the operation took effect or not, at random, and the
// thread goes on under a new process number, as Jepsen does), and a cas whose precondition did not
// hold is recorded 'fail' (it certainly had no effect). On request, one read is made stale: it
// returns a value the key held before, overwritten by an operation that completed before the read
// was invoked, and that nothing could have written again in time: a certain violation.

import { type RandomSource, seededRandom } from '../../consensus/rand.ts';
import type { HistoryEvent } from './history.ts';

export interface GenerateOptions {
  readonly seed: number;
  /** Operations invoked in all (the history has about twice as many events). */
  readonly ops: number;
  /** Client threads running at once (default 10). */
  readonly processes?: number;
  /** Keys, named "k0", "k1", ... (default 10). */
  readonly keys?: number;
  /** Relative weights of the operations (default read 50, write 30, cas 20). */
  readonly mix?: { readonly read: number; readonly write: number; readonly cas: number };
  /** Values are the integers 0 .. values-1 (default 5), so reads see repeats. */
  readonly values?: number;
  /** Fraction of operations whose response is lost, recorded 'info' (default 0.02). */
  readonly infoRate?: number;
  /** Probability that an operation whose response was lost took effect anyway (default 0.5). */
  readonly infoTookEffect?: number;
  /** 'stale-read': make one read (near the middle) return an older value. */
  readonly anomaly?: 'stale-read';
}

export interface InjectedAnomaly {
  readonly kind: 'stale-read';
  /** The read's operation id (its position among invocations, as pairHistory numbers them). */
  readonly opId: number;
  readonly key: string;
  /** What the read returned in the real execution... */
  readonly actual: number | null;
  /** ...and the stale value it now returns. */
  readonly stale: number;
}

export interface GeneratedHistory {
  readonly seed: number;
  /** Events sorted by time, ready for pairHistory. */
  readonly events: HistoryEvent[];
  readonly processes: number;
  readonly keys: readonly string[];
  readonly counts: {
    readonly ops: number;
    readonly ok: number;
    readonly fail: number;
    readonly info: number;
    /** Distinct process numbers used (threads plus one per lost response). */
    readonly processIds: number;
  };
  readonly anomaly?: InjectedAnomaly;
}

/** Thinking time between two operations of a thread: 0 .. THINK_MAX - 1, plus one. */
const THINK_MAX = 5;
/** Latency of most operations: 1 .. LATENCY_MAX... */
const LATENCY_MAX = 10;
/** ...and of a slow one (1 in SLOW_ONE_IN): 1 .. SLOW_LATENCY_MAX. */
const SLOW_LATENCY_MAX = 100;
const SLOW_ONE_IN = 20;
/** A client whose response is lost gives up this long after the invocation. */
const TIMEOUT = 150;
/** Resolution of the effect instant inside an interval. */
const INSTANTS = 1024;
/** Resolution of probabilities. */
const PPM = 1_000_000;

type Kind = 'read' | 'write' | 'cas';

interface SimOp {
  readonly seq: number;
  readonly process: number;
  readonly kind: Kind;
  readonly key: number;
  /** write: the value; cas: `to`. */
  readonly value: number;
  readonly from: number;
  readonly call: number;
  /** When the response arrives, or (lost response) when the client gives up. */
  readonly end: number;
  /** The instant it takes effect, or NaN if it never does (some lost responses). */
  readonly effect: number;
  readonly lost: boolean;
  /** Set by the execution: what a read saw, whether a cas matched. */
  read: number | null;
  matched: boolean;
}

function chance(rng: RandomSource, p: number): boolean {
  return rng.intn(PPM) < p * PPM;
}

/** Runs the threads and the register; returns the operations in order of invocation. */
function simulate(rng: RandomSource, o: Required<Omit<GenerateOptions, 'anomaly'>>): SimOp[] {
  const { read: wr, write: ww, cas: wc } = o.mix;
  const weights = wr + ww + wc;
  if (!(wr >= 0 && ww >= 0 && wc >= 0 && weights > 0)) {
    throw new RangeError('mix: weights must be >= 0 and not all 0');
  }
  const freeAt: number[] = [];
  const processOf: number[] = [];
  for (let c = 0; c < o.processes; c++) {
    freeAt.push(rng.intn(THINK_MAX));
    processOf.push(c);
  }
  const ops: SimOp[] = [];
  for (let seq = 0; seq < o.ops; seq++) {
    // The thread that is free first invokes next (the lowest number on a tie).
    let c = 0;
    for (let d = 1; d < o.processes; d++) if (freeAt[d]! < freeAt[c]!) c = d;
    const call = freeAt[c]!;
    const x = rng.intn(weights);
    const kind: Kind = x < wr ? 'read' : x < wr + ww ? 'write' : 'cas';
    const slow = rng.intn(SLOW_ONE_IN) === 0;
    const latency = 1 + rng.intn(slow ? SLOW_LATENCY_MAX : LATENCY_MAX);
    const lost = chance(rng, o.infoRate);
    const takesEffect = !lost || chance(rng, o.infoTookEffect);
    // Strictly inside the interval, so that an operation that returned before another was
    // invoked takes effect strictly before it.
    const effect = takesEffect ? call + (latency * (1 + rng.intn(INSTANTS - 1))) / INSTANTS : NaN;
    const end = lost ? call + TIMEOUT : call + latency;
    ops.push({
      seq,
      process: processOf[c]!,
      kind,
      key: rng.intn(o.keys),
      value: rng.intn(o.values),
      from: rng.intn(o.values),
      call,
      end,
      effect,
      lost,
      read: null,
      matched: false,
    });
    freeAt[c] = end + 1 + rng.intn(THINK_MAX);
    // After a lost response the operation never ends: the thread goes on as a new process.
    if (lost) processOf[c]! += o.processes;
  }

  // The real execution: one register per key, operations in order of their effect instants.
  const byEffect = ops.filter((op) => !Number.isNaN(op.effect));
  byEffect.sort((a, b) => a.effect - b.effect || a.seq - b.seq);
  const register: (number | null)[] = Array.from({ length: o.keys }, () => null);
  for (const op of byEffect) {
    const current = register[op.key]!;
    if (op.kind === 'read') op.read = current;
    else if (op.kind === 'write') register[op.key] = op.value;
    else if (current === op.from) {
      op.matched = true;
      register[op.key] = op.value;
    }
  }
  return ops;
}

/** The value an operation leaves in its register if it takes effect, or undefined. */
function writes(op: SimOp): number | undefined {
  return op.kind === 'write' || op.kind === 'cas' ? op.value : undefined;
}

/** Whether the operation certainly took effect as far as the history says ('ok' mutation). */
function okMutation(op: SimOp): boolean {
  return !op.lost && (op.kind === 'write' || (op.kind === 'cas' && op.matched));
}

/**
 * Finds a read to make stale, trying reads from the middle of the history outwards: a value v
 * and an 'ok' mutation m1 of the same key such that m1 returned before the read was invoked, every
 * 'ok' write of v invoked before the read returned had returned before m1 was invoked, and no lost
 * operation that could write v was invoked before the read returned. Then every linearization puts
 * m1 before the read, and after m1 nothing can write v again before the read: it cannot see v.
 */
function findStaleRead(ops: readonly SimOp[]): { op: SimOp; stale: number } | undefined {
  const reads = ops.filter((op) => op.kind === 'read' && !op.lost);
  const middle = Math.floor(reads.length / 2);
  for (let k = 0; k < reads.length; k++) {
    const r = reads[middle + (k % 2 === 0 ? k / 2 : -(k + 1) / 2)];
    if (r === undefined) continue;
    const sameKey = ops.filter((op) => op.key === r.key && op.call <= r.end);
    // Candidates for v: values actually written to this key before the read (a stale value).
    const written = new Set<number>();
    for (const op of sameKey) if (okMutation(op) && op.end < r.call) written.add(writes(op)!);
    for (const v of [...written].sort((a, b) => a - b)) {
      if (v === r.read) continue;
      if (sameKey.some((op) => op.lost && op.kind !== 'read' && writes(op) === v)) continue;
      const lastWriterEnd = Math.max(
        ...sameKey.filter((op) => okMutation(op) && writes(op) === v).map((op) => op.end),
      );
      const barrier = sameKey.some(
        (op) => okMutation(op) && writes(op) !== v && op.call > lastWriterEnd && op.end < r.call,
      );
      if (barrier) return { op: r, stale: v };
    }
  }
  return undefined;
}

/**
 * A history of `ops` operations, deterministic for `seed`. Throws a RangeError on bad options, or
 * if no read can be made stale (only on tiny histories).
 */
export function generateHistory(options: GenerateOptions): GeneratedHistory {
  const o = {
    seed: options.seed,
    ops: options.ops,
    processes: options.processes ?? 10,
    keys: options.keys ?? 10,
    mix: options.mix ?? { read: 50, write: 30, cas: 20 },
    values: options.values ?? 5,
    infoRate: options.infoRate ?? 0.02,
    infoTookEffect: options.infoTookEffect ?? 0.5,
  };
  for (const [name, v] of [
    ['ops', o.ops],
    ['processes', o.processes],
    ['keys', o.keys],
    ['values', o.values],
  ] as const) {
    if (!(Number.isSafeInteger(v) && v >= (name === 'ops' ? 0 : 1))) {
      throw new RangeError(`${name} must be a positive integer, got ${v}`);
    }
  }
  for (const [name, p] of [
    ['infoRate', o.infoRate],
    ['infoTookEffect', o.infoTookEffect],
  ] as const) {
    if (!(p >= 0 && p <= 1)) throw new RangeError(`${name} must be in [0, 1], got ${p}`);
  }
  const rng = seededRandom(o.seed);
  const ops = simulate(rng, o);
  const keyNames = Array.from({ length: o.keys }, (_, k) => `k${k}`);

  let stale: { op: SimOp; stale: number } | undefined;
  if (options.anomaly === 'stale-read') {
    stale = findStaleRead(ops);
    if (stale === undefined) {
      throw new RangeError(`no read of this history (seed ${o.seed}) can be made stale`);
    }
  }

  // Events: invocations and completions, sorted by time; a completion before an invocation at
  // the same instant cannot happen within a thread (it thinks for at least one unit).
  const raw: { e: HistoryEvent; order: number }[] = [];
  let ok = 0;
  let fail = 0;
  let info = 0;
  const processIds = new Set<number>();
  for (const op of ops) {
    processIds.add(op.process);
    const key = keyNames[op.key]!;
    const f = op.kind;
    const input = f === 'read' ? null : f === 'write' ? op.value : [op.from, op.value];
    raw.push({
      e: { type: 'invoke', process: op.process, f, key, value: input, time: op.call },
      order: 2 * op.seq,
    });
    let type: 'ok' | 'fail' | 'info';
    let output: unknown = input;
    if (op.lost) type = 'info';
    else if (f === 'cas' && !op.matched) type = 'fail';
    else {
      type = 'ok';
      if (f === 'read') output = op === stale?.op ? stale.stale : op.read;
    }
    if (type === 'ok') ok++;
    else if (type === 'fail') fail++;
    else info++;
    raw.push({
      e: { type, process: op.process, f, key, value: output, time: op.end },
      order: 2 * op.seq + 1,
    });
  }
  raw.sort((a, b) => a.e.time - b.e.time || a.order - b.order);
  const events = raw.map((x) => x.e);

  let anomaly: InjectedAnomaly | undefined;
  if (stale !== undefined) {
    let opId = 0;
    for (const x of raw) {
      if (x.order === 2 * stale.op.seq) break;
      if (x.e.type === 'invoke') opId++;
    }
    anomaly = {
      kind: 'stale-read',
      opId,
      key: keyNames[stale.op.key]!,
      actual: stale.op.read,
      stale: stale.stale,
    };
  }
  return {
    seed: o.seed,
    events,
    processes: o.processes,
    keys: keyNames,
    counts: { ops: ops.length, ok, fail, info, processIds: processIds.size },
    ...(anomaly === undefined ? {} : { anomaly }),
  };
}

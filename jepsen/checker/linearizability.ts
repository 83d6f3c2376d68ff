// The linearizability check: the Wing-Gong search with Lowe's cache, as in Porcupine's checkSingle,
// run separately on each partition of the history (per key, P-compositionality).
//
// The search walks a doubly linked list of call and return entries sorted by time. At a call entry
// it tries to linearize that operation next (model step); if the step works and the configuration
// (linearized set, state) was not seen before, it lifts the operation's call and return out of the
// list, pushes it on a stack and starts again from the head. Reaching a return entry means that
// operation had to be linearized by now and was not: pop the last choice, put it back (unlift) and
// try the next candidate. Success is every completed operation linearized.
//
// Two things keep it linear in practice on long keys. A read that fits the current state is
// linearized at once, without trying the orders of the other candidates (commitment, a sound
// partial-order reduction: see PartitionSearch), which removes the orders of concurrent reads. And
// a cache entry keeps only the part of the linearized set beyond the first unlinearized completed
// operation, a few words, not a bitset of the whole key.
//
// Indeterminate ('info') operations may take effect anywhere after their call, or never. They have
// no return entry; they sit in a second list and are tried after the completed candidates. Three
// things keep them from multiplying the search: they are optional (never required for success, so
// one never read costs nothing), a cached configuration also covers those that add indeterminate
// operations to it (covers), and identical ones are linearized in call order only (twinsOf). Still,
// refuting a violation must rule out every placement of the indeterminate operations before it:
// that is exponential in how many there are, hence budgets.
//
// Budgets (time, steps, cache bytes) make the search stop with 'unknown' instead of hanging. This
// module owns the search, the budgets and the violation report (window and explanation); not the
// history format (history.ts), the models (model.ts) or the drawing (render.ts).

import { assert, CheckerError } from './errors.ts';
import { describeInterval, type HistoryEvent, type Operation, pairHistory } from './history.ts';
import { type AnyModel, canonicalJson } from './model.ts';

export type Verdict = 'ok' | 'violation' | 'unknown';

/** Default wall-clock budget for a whole check. */
export const CHECK_TIMEOUT_MS_DEFAULT = 10_000;
/** Default budget of search steps (one step = one list entry visited) for a whole check. */
export const CHECK_STEPS_MAX_DEFAULT = 100_000_000;
/** Default bound on the visited-configuration cache of one partition's search (approximate). */
export const CACHE_BYTES_MAX_DEFAULT = 256 * 1024 * 1024;
/** How many operations a violation's window shows at most. */
export const WINDOW_OPS_MAX = 16;
/** The clock is read once per this many steps (a power of two). */
const CLOCK_CHECK_STEPS = 1024;
/** Estimated bytes of one cache entry besides its bitset and key (Map slot, array, headers). */
const CACHE_ENTRY_OVERHEAD_BYTES = 96;

export interface CheckOptions {
  /** Stop with 'unknown' after this much wall-clock time. */
  readonly timeoutMs?: number;
  /** Stop with 'unknown' after this many search steps: the deterministic budget. */
  readonly stepsMax?: number;
  /** Stop caching visited configurations beyond this (the search goes on, slower, uncached). */
  readonly cacheBytesMax?: number;
  /** false: search the whole history at once instead of per partition (for testing models). */
  readonly partition?: boolean;
  /** The clock, in milliseconds (default performance.now). */
  readonly now?: () => number;
}

export type UnknownReason = 'timeout' | 'steps' | 'not-started';

export interface KeyResult {
  /** The partition's key ('*' if its operations do not share one). */
  readonly key: string;
  readonly verdict: Verdict;
  /** Operations searched (without 'fail' ones and indeterminate reads). */
  readonly operations: number;
  readonly steps: number;
  readonly elapsedMs: number;
  /** For 'unknown': which budget ran out ('not-started': it ran out on an earlier key). */
  readonly unknownReason?: UnknownReason;
  /**
   * For 'unknown': the operation the search was stuck on with the most operations linearized
   * before it, and how many. If there is a violation, it is likely there; a lead, not a proof.
   */
  readonly furthestStuck?: { readonly op: Operation; readonly linearizedBefore: number };
  /** For 'ok': operation ids in a valid linearization order (indeterminate ones it kept). */
  readonly linearization?: readonly number[];
}

export interface Candidate {
  readonly op: Operation;
  /** Whether the model accepts it right after the partial linearization... */
  readonly possible: boolean;
  /** ...and, if so, the state it leads to (which turned out to be a dead end). */
  readonly stateAfter?: string;
}

export interface Violation {
  readonly key: string;
  /** Every operation searched in this partition, by call time. */
  readonly operations: readonly Operation[];
  /** The longest linearizable prefix found, in linearization order. */
  readonly partialLinearization: readonly Operation[];
  /** The model state after the partial linearization. */
  readonly stateAfterPartial: string;
  /** The operation that had to take effect by its return, and could not. */
  readonly blocked: Operation;
  /** What could have gone next after the partial linearization; none leads anywhere. */
  readonly candidates: readonly Candidate[];
  /** The smallest picture of the failure: blocked, its rivals, and the prefix just before; by call. */
  readonly window: readonly Operation[];
  readonly explanation: string;
}

export interface CheckResult {
  readonly verdict: Verdict;
  readonly model: string;
  /** One per partition, in the order checked (fewest operations first). */
  readonly perKey: readonly KeyResult[];
  /** For 'violation': the failing partition with the fewest operations. */
  readonly violation?: Violation;
  readonly ignored: {
    /** 'fail' operations: they certainly had no effect. */
    readonly failed: number;
    /** Indeterminate read-only operations: they constrain nothing. */
    readonly indeterminateReads: number;
  };
  readonly steps: number;
  readonly elapsedMs: number;
}

/** The limits of one partition's search, and what it used. */
interface Budget {
  readonly deadlineMs: number;
  readonly stepsMax: number;
  readonly cacheBytesMax: number;
  readonly now: () => number;
  steps: number;
  cacheBytes: number;
}

interface Prepared {
  readonly op: Operation;
  readonly input: unknown;
  readonly output: unknown;
}

interface Deepest {
  readonly prefix: readonly number[];
  readonly okLinearized: number;
  readonly state: unknown;
  readonly blocked: number;
  readonly candidates: readonly number[];
}

type SearchOutcome =
  | { readonly verdict: 'ok'; readonly linearization: readonly number[] }
  | { readonly verdict: 'violation'; readonly deepest: Deepest }
  | {
      readonly verdict: 'unknown';
      readonly reason: UnknownReason;
      readonly deepest: Deepest | undefined;
    };

/** splitmix32: a fixed seed keeps Zobrist hashes, and so the search, deterministic. */
function zobristTable(n: number, seed: number): Int32Array {
  const t = new Int32Array(n);
  let s = seed | 0;
  for (let i = 0; i < n; i++) {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    t[i] = z ^ (z >>> 16);
  }
  return t;
}

/** Words of an entry of the visited cache before its bits: state id, lo, hi (see VisitedCache). */
const ENTRY_HEADER = 3;

/**
 * For each indeterminate operation, the previous one (by call) with the same f, key and input, or
 * -1. Such twins are interchangeable: both may take effect anywhere after their calls, or never,
 * with the same effect, so a linearization using the later one can use the earlier one instead.
 * The search therefore linearizes twins in call order only, which turns 2^k subsets of k twins
 * into k + 1 (indeterminate writes of a few distinct values are common under faults).
 */
function twinsOf(ops: readonly Prepared[]): Int32Array {
  const twin = new Int32Array(ops.length).fill(-1);
  const last = new Map<string, number>();
  const byCall = ops.map((_, i) => i).sort((a, b) => ops[a]!.op.call - ops[b]!.op.call || a - b);
  for (const i of byCall) {
    const op = ops[i]!.op;
    if (op.outcome === 'ok') continue;
    const key = `${op.f}\u0000${op.key ?? ''}\u0000${canonicalJson(op.input)}`;
    const before = last.get(key);
    if (before !== undefined) twin[i] = before;
    last.set(key, i);
  }
  return twin;
}

/**
 * The entries the search walks, as two doubly linked lists in typed arrays (-1 is "none"):
 * - the main list (head node 0): call and return entries of the completed operations, by time;
 *   at equal times calls come first, so touching intervals count as concurrent;
 * - the indeterminate list (head `infoHead`): one call entry per indeterminate operation, by call.
 * Linearizing an operation lifts its entries out; backtracking puts them back (unlift).
 */
class EntryLists {
  readonly next: Int32Array;
  readonly prev: Int32Array;
  /** A main-list call node -> its return node; -1 for every other node. */
  readonly match: Int32Array;
  readonly opOf: Int32Array;
  readonly timeOfNode: Float64Array;
  readonly infoHead: number;

  /** `indeterminate` is sorted by call. */
  constructor(ops: readonly Prepared[], definite: readonly number[], indeterminate: number[]) {
    const m = definite.length;
    this.infoHead = 2 * m + 1;
    const nodes = this.infoHead + 1 + indeterminate.length;
    this.next = new Int32Array(nodes).fill(-1);
    this.prev = new Int32Array(nodes).fill(-1);
    this.match = new Int32Array(nodes).fill(-1);
    this.opOf = new Int32Array(nodes).fill(-1);
    this.timeOfNode = new Float64Array(nodes);
    this.linkMain(ops, definite);
    this.linkIndeterminate(ops, indeterminate);
  }

  /** Entry e of the main list is the call (even) or return (odd) of definite[e >> 1]. */
  private linkMain(ops: readonly Prepared[], definite: readonly number[]): void {
    const m = definite.length;
    const entryTime = (e: number): number => {
      const op = ops[definite[e >> 1]!]!.op;
      return e & 1 ? op.return : op.call;
    };
    const order: number[] = [];
    for (let k = 0; k < m; k++) order.push(2 * k, 2 * k + 1);
    order.sort((a, b) => entryTime(a) - entryTime(b) || (a & 1) - (b & 1) || a - b);
    const nodeOfEntry = new Int32Array(2 * m);
    order.forEach((e, k) => {
      nodeOfEntry[e] = k + 1;
    });
    for (let node = 0; node <= 2 * m; node++) {
      this.next[node] = node < 2 * m ? node + 1 : -1;
      this.prev[node] = node - 1;
    }
    for (let k = 0; k < m; k++) {
      const c = nodeOfEntry[2 * k]!;
      const r = nodeOfEntry[2 * k + 1]!;
      this.opOf[c] = this.opOf[r] = definite[k]!;
      this.match[c] = r;
      this.timeOfNode[c] = entryTime(2 * k);
      this.timeOfNode[r] = entryTime(2 * k + 1);
    }
  }

  private linkIndeterminate(ops: readonly Prepared[], indeterminate: readonly number[]): void {
    let tail = this.infoHead;
    indeterminate.forEach((i, k) => {
      const node = this.infoHead + 1 + k;
      this.opOf[node] = i;
      this.timeOfNode[node] = ops[i]!.op.call;
      this.next[tail] = node;
      this.prev[node] = tail;
      tail = node;
    });
  }

  isInfo(node: number): boolean {
    return node > this.infoHead;
  }

  lift(c: number): void {
    const { next, prev } = this;
    next[prev[c]!] = next[c]!;
    if (next[c] !== -1) prev[next[c]!] = prev[c]!;
    const r = this.match[c]!;
    if (r === -1) return;
    next[prev[r]!] = next[r]!;
    if (next[r] !== -1) prev[next[r]!] = prev[r]!;
  }

  unlift(c: number): void {
    const { next, prev } = this;
    const r = this.match[c]!;
    if (r !== -1) {
      next[prev[r]!] = r;
      if (next[r] !== -1) prev[next[r]!] = r;
    }
    next[prev[c]!] = c;
    if (next[c] !== -1) prev[next[c]!] = c;
  }
}

/**
 * The linearized set as a bitset: the indeterminate operations first (by call), then, from the
 * next word boundary (`base`), the completed ones by return time. Every completed operation
 * returning before the first unlinearized one (the frontier) is linearized, and after it at most
 * one per process (each invoked before the frontier operation returned), so a cache entry keeps
 * only the words from the frontier's (lo) to the last with a bit set (hi): a few words however
 * long the history, where the whole bitset would make a long key quadratic. `hash` is a Zobrist
 * hash of the completed operations in the set.
 */
class LinearizedSet {
  readonly words: Uint32Array;
  readonly infoWords: number;
  private readonly base: number;
  private readonly end: number;
  private readonly bitOf: Int32Array;
  /** Bits set per word, to keep `hiWord` (one past the last word with a completed bit set). */
  private readonly wordCount: Int32Array;
  private readonly zobrist: Int32Array;
  private hiWord: number;
  private frontier: number;
  hash = 0;

  constructor(ops: readonly Prepared[], definite: readonly number[], indeterminate: number[]) {
    const m = definite.length;
    this.infoWords = Math.ceil(indeterminate.length / 32);
    this.base = this.infoWords * 32;
    this.end = this.base + m;
    this.bitOf = new Int32Array(ops.length);
    indeterminate.forEach((i, k) => {
      this.bitOf[i] = k;
    });
    [...definite]
      .sort((a, b) => ops[a]!.op.return - ops[b]!.op.return || ops[a]!.op.call - ops[b]!.op.call)
      .forEach((i, k) => {
        this.bitOf[i] = this.base + k;
      });
    this.words = new Uint32Array(this.infoWords + Math.ceil(m / 32));
    this.wordCount = new Int32Array(this.words.length);
    this.zobrist = zobristTable(m, 0x2545f491);
    this.hiWord = this.infoWords;
    this.frontier = this.base;
  }

  /** The first word a cache entry keeps: the frontier's. */
  get loWord(): number {
    return this.frontier >>> 5;
  }

  /** One past the last word a cache entry keeps. */
  get endWord(): number {
    return Math.max(this.hiWord, this.frontier >>> 5);
  }

  has(i: number): boolean {
    return this.bitIsSet(this.bitOf[i]!);
  }

  add(i: number): void {
    const b = this.bitOf[i]!;
    const w = b >>> 5;
    this.words[w]! |= 1 << (b & 31);
    if (b < this.base) return;
    this.hash ^= this.zobrist[b - this.base]!;
    this.wordCount[w]!++;
    if (w >= this.hiWord) this.hiWord = w + 1;
    if (b === this.frontier) {
      do this.frontier++;
      while (this.frontier < this.end && this.bitIsSet(this.frontier));
    }
  }

  remove(i: number): void {
    const b = this.bitOf[i]!;
    const w = b >>> 5;
    this.words[w]! &= ~(1 << (b & 31));
    if (b < this.base) return;
    this.hash ^= this.zobrist[b - this.base]!;
    this.wordCount[w]!--;
    while (this.hiWord > this.infoWords && this.wordCount[this.hiWord - 1] === 0) this.hiWord--;
    if (b < this.frontier) this.frontier = b;
  }

  private bitIsSet(b: number): boolean {
    return (this.words[b >>> 5]! & (1 << (b & 31))) !== 0;
  }
}

/**
 * Lowe's cache of visited configurations (linearized set, state). Keyed by a hash of the completed
 * operations linearized and the state id; the indeterminate ones are compared by inclusion (see
 * covers). An entry: [state id, lo, hi, indeterminate words..., completed words lo .. hi-1].
 */
class VisitedCache {
  private readonly buckets = new Map<number, Uint32Array[]>();
  private readonly set: LinearizedSet;
  private readonly budget: Budget;

  constructor(set: LinearizedSet, budget: Budget) {
    this.set = set;
    this.budget = budget;
  }

  /**
   * Linearizes operation i (its bit) unless the resulting configuration, with state `sid`, is
   * covered by a visited one; then remembers it, keeping each bucket an antichain, within the byte
   * budget. Returns whether the configuration is new.
   */
  visit(i: number, sid: number): boolean {
    this.set.add(i);
    const lo = this.set.loWord;
    const hi = this.set.endWord;
    const key = (this.set.hash ^ Math.imul(sid + 1, 0x9e3779b1)) | 0;
    const bucket = this.buckets.get(key);
    if (bucket !== undefined) {
      for (const e of bucket) {
        if (this.covers(e, sid, lo, hi)) {
          this.set.remove(i);
          return false;
        }
      }
      this.dropCovered(bucket, sid, lo, hi);
    }
    this.remember(key, bucket, sid, lo, hi);
    return true;
  }

  /** Entries the current configuration covers are of no more use. */
  private dropCovered(bucket: Uint32Array[], sid: number, lo: number, hi: number): void {
    let kept = 0;
    for (const e of bucket) {
      if (this.coveredBy(e, sid, lo, hi)) {
        this.budget.cacheBytes -= e.length * 4 + CACHE_ENTRY_OVERHEAD_BYTES;
      } else bucket[kept++] = e;
    }
    bucket.length = kept;
  }

  private remember(
    key: number,
    bucket: Uint32Array[] | undefined,
    sid: number,
    lo: number,
    hi: number,
  ): void {
    const { infoWords, words } = this.set;
    const size = ENTRY_HEADER + infoWords + hi - lo;
    const bytes = size * 4 + CACHE_ENTRY_OVERHEAD_BYTES;
    if (this.budget.cacheBytes + bytes > this.budget.cacheBytesMax) return;
    this.budget.cacheBytes += bytes;
    const e = new Uint32Array(size);
    e[0] = sid;
    e[1] = lo;
    e[2] = hi;
    for (let w = 0; w < infoWords; w++) e[ENTRY_HEADER + w] = words[w]!;
    const off = ENTRY_HEADER + infoWords - lo;
    for (let w = lo; w < hi; w++) e[off + w] = words[w]!;
    if (bucket === undefined) this.buckets.set(key, [e]);
    else bucket.push(e);
  }

  /** Same state and completed operations as the current configuration (then compare the rest). */
  private sameCompleted(e: Uint32Array, sid: number, lo: number, hi: number): boolean {
    if (e[0] !== sid || e[1] !== lo || e[2] !== hi) return false;
    const words = this.set.words;
    const off = ENTRY_HEADER + this.set.infoWords - lo;
    for (let w = lo; w < hi; w++) if (e[off + w] !== words[w]) return false;
    return true;
  }

  /**
   * Whether a visited configuration `e` covers the current one: the same state and completed
   * operations linearized, and a subset of the indeterminate ones. Everything that can follow the
   * current one can follow `e` too (indeterminate operations are optional and never constrain real
   * time), so if `e` led nowhere, neither does this. With no indeterminate operations this is
   * equality, Lowe's cache as in Porcupine.
   */
  private covers(e: Uint32Array, sid: number, lo: number, hi: number): boolean {
    if (!this.sameCompleted(e, sid, lo, hi)) return false;
    const words = this.set.words;
    for (let w = 0; w < this.set.infoWords; w++) {
      if ((e[ENTRY_HEADER + w]! & ~words[w]!) !== 0) return false;
    }
    return true;
  }

  private coveredBy(e: Uint32Array, sid: number, lo: number, hi: number): boolean {
    if (!this.sameCompleted(e, sid, lo, hi)) return false;
    const words = this.set.words;
    for (let w = 0; w < this.set.infoWords; w++) {
      if ((words[w]! & ~e[ENTRY_HEADER + w]!) !== 0) return false;
    }
    return true;
  }
}

/**
 * The deepest stuck point, for the violation report. Its prefix is copied from the stack
 * incrementally (positions below `lowWater` have not changed since the last copy), so recording it
 * is not O(depth).
 */
class DeepestStuckPoint {
  private readonly prefix: Int32Array;
  private lowWater = 0;
  private best:
    | {
        readonly length: number;
        readonly okLinearized: number;
        readonly state: unknown;
        readonly blocked: number;
        readonly candidates: readonly number[];
      }
    | undefined;

  constructor(n: number) {
    this.prefix = new Int32Array(n);
  }

  /** The stack was popped to `depth`: positions from there must be copied again. */
  unwoundTo(depth: number): void {
    if (depth < this.lowWater) this.lowWater = depth;
  }

  /** More completed operations linearized, or as many with a shorter prefix. */
  improves(okLinearized: number, depth: number): boolean {
    const b = this.best;
    return (
      b === undefined ||
      okLinearized > b.okLinearized ||
      (okLinearized === b.okLinearized && depth < b.length)
    );
  }

  record(
    opsOnStack: (d: number) => number,
    depth: number,
    at: { okLinearized: number; state: unknown; blocked: number; candidates: number[] },
  ): void {
    for (let d = this.lowWater; d < depth; d++) this.prefix[d] = opsOnStack(d);
    this.lowWater = depth;
    this.best = { length: depth, ...at };
  }

  outcome(): Deepest | undefined {
    const b = this.best;
    if (b === undefined) return undefined;
    return {
      prefix: Array.from(this.prefix.subarray(0, b.length)),
      okLinearized: b.okLinearized,
      state: b.state,
      blocked: b.blocked,
      candidates: b.candidates,
    };
  }
}

/**
 * The search of one partition. `ops` are prepared operations; ids in the outcome are indexes into
 * `ops`. From a configuration the search tries the completed operations whose calls come before
 * the first remaining return entry, then the indeterminate ones invoked by then, then backtracks.
 * Trying completed operations first means configurations with fewer indeterminate operations are
 * cached first, and those dominate the ones that add some (see VisitedCache.covers).
 *
 * Commitment (a partial-order reduction): if a candidate is read-only (model.readOnly: it never
 * changes the state) and the model accepts it in the current state, the configuration can be
 * completed iff the one with that read added can: in any completion, move the read to the front
 * (nothing remaining returned before its call, since it is a candidate; it sees the current state
 * there; and taking it out changes no state after it). So at each new configuration the reads are
 * looked at first (scanForRead); one that fits is linearized at once and, when that fails, the
 * configuration is abandoned without trying the other candidates. (A write of the current value
 * does not qualify: later in the completion it may change the state.) This removes the orders of
 * concurrent reads, which dominate refuting a violation.
 */
class PartitionSearch {
  private readonly model: AnyModel;
  private readonly ops: readonly Prepared[];
  private readonly budget: Budget;
  /** Completed operations: success is all of them linearized. */
  private readonly completed: number;
  private readonly lists: EntryLists;
  private readonly set: LinearizedSet;
  private readonly cache: VisitedCache;
  private readonly deepest: DeepestStuckPoint;
  private readonly twin: Int32Array;
  private readonly readOnly: Uint8Array;
  private readonly stateIds = new Map<string, number>();

  // The stack of linearized operations, and for each the configuration below it.
  private readonly stackNode: Int32Array;
  private readonly stackState: unknown[];
  private readonly stackSid: Int32Array;
  /** For each pushed configuration, the time of its first remaining return entry, if known. */
  private readonly stackStuckTime: Float64Array;
  /** 1 if the operation is a committed read: when it is undone, so is the configuration below. */
  private readonly stackCommitted: Uint8Array;
  private depth = 0;
  private okLinearized = 0;

  // The current configuration and where the walk is.
  private state: unknown;
  private sid: number;
  private node: number;
  /** In the indeterminate list: candidates are those invoked by this time. */
  private stuckTime = Number.NaN;
  /** At a new configuration: looking for a read that can go next, to commit it. */
  private scanning = true;
  /** Undoing configurations, down to one with candidates left to try. */
  private unwinding = false;

  constructor(model: AnyModel, ops: readonly Prepared[], budget: Budget) {
    this.model = model;
    this.ops = ops;
    this.budget = budget;
    const n = ops.length;
    const definite: number[] = [];
    const indeterminate: number[] = [];
    ops.forEach((p, i) => {
      (p.op.outcome === 'ok' ? definite : indeterminate).push(i);
    });
    indeterminate.sort((a, b) => ops[a]!.op.call - ops[b]!.op.call || a - b);
    this.completed = definite.length;
    this.lists = new EntryLists(ops, definite, indeterminate);
    this.set = new LinearizedSet(ops, definite, indeterminate);
    this.cache = new VisitedCache(this.set, budget);
    this.deepest = new DeepestStuckPoint(n);
    this.twin = twinsOf(ops);
    this.readOnly = new Uint8Array(n);
    for (const i of definite) if (model.readOnly(ops[i]!.input)) this.readOnly[i] = 1;
    this.stackNode = new Int32Array(n);
    this.stackState = new Array(n);
    this.stackSid = new Int32Array(n);
    this.stackStuckTime = new Float64Array(n);
    this.stackCommitted = new Uint8Array(n);
    this.state = model.init();
    this.sid = this.intern(this.state);
    this.node = this.lists.next[0]!;
  }

  run(): SearchOutcome {
    const lists = this.lists;
    for (;;) {
      if (this.okLinearized === this.completed) return this.success();
      const spent = this.spendStep();
      if (spent !== undefined) return spent;
      if (this.unwinding) {
        if (this.depth === 0) return this.violation();
        this.pop();
        continue;
      }
      const node = this.node;
      // Some completed operation is not linearized, so its return entry is still in the main
      // list: the walk of the main list always meets a return entry before its end.
      assert(node !== -1 || !Number.isNaN(this.stuckTime), 'walked off the end of the main list');
      const info = node !== -1 && lists.isInfo(node);
      if (this.scanning) this.scanForRead(node);
      else if (
        node !== -1 &&
        (lists.match[node] !== -1 || (info && lists.timeOfNode[node]! <= this.stuckTime))
      ) {
        this.tryCandidate(node);
      } else if (!info && node !== -1) this.stuckAtReturn(node);
      else this.unwinding = true; // every candidate tried: backtrack
    }
  }

  /** Counts one step; the outcome when the budget (time or steps) is spent. */
  private spendStep(): SearchOutcome | undefined {
    const b = this.budget;
    if ((b.steps & (CLOCK_CHECK_STEPS - 1)) === 0 && b.now() > b.deadlineMs) {
      return { verdict: 'unknown', reason: 'timeout', deepest: this.deepest.outcome() };
    }
    if (b.steps >= b.stepsMax) {
      return { verdict: 'unknown', reason: 'steps', deepest: this.deepest.outcome() };
    }
    b.steps++;
    return undefined;
  }

  /**
   * At a new configuration, walks the candidates for a read that fits the current state, and
   * commits it: if the configuration with it was visited, this one leads nowhere either. At the
   * first return entry, no read can go next: every candidate is tried, from the start.
   */
  private scanForRead(node: number): void {
    const lists = this.lists;
    if (lists.match[node] === -1) {
      this.scanning = false;
      this.node = lists.next[0]!;
      return;
    }
    const i = lists.opOf[node]!;
    if (this.readOnly[i] === 1) {
      const p = this.ops[i]!;
      if (this.model.step(this.state, p.input, p.output).ok) {
        if (this.cache.visit(i, this.sid)) this.push(node, this.state, this.sid, true);
        else this.unwinding = true;
        return;
      }
    }
    this.node = lists.next[node]!;
  }

  /**
   * A call entry: try to linearize this operation next. Reads were tried by the scan (from this
   * same configuration) and cannot; a twin goes only after the one before it.
   */
  private tryCandidate(node: number): void {
    const i = this.lists.opOf[node]!;
    const t = this.twin[i]!;
    if (this.readOnly[i] === 0 && (t === -1 || this.set.has(t))) {
      const p = this.ops[i]!;
      const r = this.model.step(this.state, p.input, p.output);
      if (r.ok) {
        const nextSid = r.state === this.state ? this.sid : this.intern(r.state);
        if (this.cache.visit(i, nextSid)) {
          this.push(node, r.state, nextSid, false);
          return;
        }
      }
    }
    this.node = this.lists.next[node]!;
  }

  /**
   * The first remaining return entry: its operation had to be linearized by now. Remember how far
   * we got (counting completed operations: indeterminate ones explain nothing), then try the
   * indeterminate operations invoked by now.
   */
  private stuckAtReturn(node: number): void {
    const lists = this.lists;
    this.stuckTime = lists.timeOfNode[node]!;
    if (this.deepest.improves(this.okLinearized, this.depth)) {
      const candidates: number[] = [];
      for (let c = lists.next[0]!; c !== node; c = lists.next[c]!) {
        if (lists.match[c] !== -1) candidates.push(lists.opOf[c]!); // the blocked call is one
      }
      for (
        let c = lists.next[lists.infoHead]!;
        c !== -1 && lists.timeOfNode[c]! <= this.stuckTime;
        c = lists.next[c]!
      ) {
        candidates.push(lists.opOf[c]!);
      }
      this.deepest.record((d) => lists.opOf[this.stackNode[d]!]!, this.depth, {
        okLinearized: this.okLinearized,
        state: this.state,
        blocked: lists.opOf[node]!,
        candidates,
      });
    }
    this.node = lists.next[lists.infoHead]!;
  }

  private push(c: number, nextState: unknown, nextSid: number, committed: boolean): void {
    const d = this.depth;
    this.stackNode[d] = c;
    this.stackState[d] = this.state;
    this.stackSid[d] = this.sid;
    this.stackStuckTime[d] = this.stuckTime;
    this.stackCommitted[d] = committed ? 1 : 0;
    this.depth++;
    if (!this.lists.isInfo(c)) this.okLinearized++;
    this.state = nextState;
    this.sid = nextSid;
    this.lists.lift(c);
    this.node = this.lists.next[0]!;
    this.stuckTime = Number.NaN;
    this.scanning = true;
  }

  /** Undoes the last linearized operation; stops unwinding at one that was a choice. */
  private pop(): void {
    const d = --this.depth;
    this.deepest.unwoundTo(d);
    const c = this.stackNode[d]!;
    this.state = this.stackState[d];
    this.stackState[d] = undefined;
    this.sid = this.stackSid[d]!;
    this.stuckTime = this.stackStuckTime[d]!;
    this.set.remove(this.lists.opOf[c]!);
    if (!this.lists.isInfo(c)) this.okLinearized--;
    assert(this.okLinearized >= 0, 'more completed operations unlinearized than linearized');
    this.lists.unlift(c);
    if (this.stackCommitted[d] === 0) {
      // Back at a choice of the candidate walk: it was made with the scan over (only the walk
      // tries candidates), so the walk goes on from the next entry, not a scan. (A push whose scan
      // hit a visited read unwinds at once, with `scanning` still set: a scan resumed here walked
      // off the end of a list and never stopped; property.test.ts found it.)
      this.unwinding = false;
      this.scanning = false;
      this.node = this.lists.next[c]!;
    }
  }

  private success(): SearchOutcome {
    const linearization: number[] = [];
    for (let d = 0; d < this.depth; d++) linearization.push(this.lists.opOf[this.stackNode[d]!]!);
    return { verdict: 'ok', linearization };
  }

  private violation(): SearchOutcome {
    const d = this.deepest.outcome();
    assert(d !== undefined, 'no stuck point recorded before failing');
    return { verdict: 'violation', deepest: d };
  }

  /** States are interned: equal states (equal stateKey) get equal small ids. */
  private intern(s: unknown): number {
    const k = this.model.stateKey(s);
    let id = this.stateIds.get(k);
    if (id === undefined) {
      id = this.stateIds.size;
      this.stateIds.set(k, id);
    }
    return id;
  }
}

function partitionKeyOf(ops: readonly Operation[]): string {
  const first = ops[0]?.key;
  if (first === undefined) return ops.length === 0 ? '*' : '(no key)';
  return ops.every((op) => op.key === first) ? first : '*';
}

function byCall(a: Operation, b: Operation): number {
  return a.call - b.call || a.return - b.return || a.id - b.id;
}

function describeLine(model: AnyModel, op: Operation): string {
  return `p${op.process}  ${model.describeOperation(op)}  ${describeInterval(op)}`;
}

/** Picks the window: blocked, its rivals nearest in time, then the tail of the prefix. */
function chooseWindow(
  blocked: Operation,
  candidates: readonly Operation[],
  prefix: readonly Operation[],
): Operation[] {
  const picked = new Map<number, Operation>([[blocked.id, blocked]]);
  const add = (op: Operation): void => {
    if (picked.size < WINDOW_OPS_MAX) picked.set(op.id, op);
  };
  const rivals = [...candidates].sort(
    (a, b) => Math.abs(a.call - blocked.call) - Math.abs(b.call - blocked.call) || a.id - b.id,
  );
  // Rivals that completed first: indeterminate ones, invoked long ago, go after them.
  for (const op of rivals) if (op.outcome === 'ok') add(op);
  for (const op of rivals) if (op.outcome !== 'ok') add(op);
  let start = blocked.call;
  for (const op of candidates) if (op.outcome === 'ok') start = Math.min(start, op.call);
  // From the prefix: the operations overlapping the rivals, and the last one linearized among
  // those that had returned before they began (it set the state they all start from).
  let before = false;
  for (let i = prefix.length - 1; i >= 0; i--) {
    const op = prefix[i]!;
    if (op.return >= start) add(op);
    else if (!before) {
      add(op);
      before = true;
    }
  }
  return [...picked.values()].sort(byCall);
}

function explain(
  model: AnyModel,
  key: string,
  ops: readonly Operation[],
  v: Omit<Violation, 'explanation' | 'key' | 'operations'>,
): string {
  const lines: string[] = [];
  const indeterminate = ops.filter((op) => op.outcome === 'info').length;
  lines.push(
    `Not linearizable: key ${JSON.stringify(key)} (${ops.length} operations searched, ` +
      `${indeterminate} indeterminate).`,
  );
  lines.push('');
  const prefix = v.partialLinearization;
  if (prefix.length === 0) {
    lines.push('No operation can be linearized first.');
  } else {
    lines.push(`Longest linearizable prefix found (${prefix.length} operations), in order:`);
    const shown = 12;
    if (prefix.length > shown) lines.push(`  ... ${prefix.length - shown} earlier operations`);
    prefix.forEach((op, i) => {
      if (i >= prefix.length - shown) lines.push(`  ${i + 1}. ${describeLine(model, op)}`);
    });
  }
  lines.push(`State after it: ${v.stateAfterPartial}`);
  lines.push('');
  const b = v.blocked;
  lines.push(
    `Stuck: p${b.process} ${model.describeOperation(b)} must take effect before it returns at ` +
      `t=${b.return}, but no operation can go next:`,
  );
  for (const c of v.candidates) {
    const why = c.possible
      ? `could take effect (state → ${c.stateAfter}), but every order from there fails`
      : `cannot take effect on state ${v.stateAfterPartial}`;
    lines.push(`  - ${describeLine(model, c.op)}: ${why}`);
  }
  return lines.join('\n');
}

function violationOf(
  model: AnyModel,
  key: string,
  prepared: readonly Prepared[],
  deepest: Deepest,
): Violation {
  const ops = prepared.map((p) => p.op);
  const partialLinearization = deepest.prefix.map((i) => ops[i]!);
  const blocked = ops[deepest.blocked]!;
  const candidates: Candidate[] = deepest.candidates.map((i) => {
    const p = prepared[i]!;
    const r = model.step(deepest.state, p.input, p.output);
    return r.ok
      ? { op: p.op, possible: true, stateAfter: model.describeState(r.state) }
      : { op: p.op, possible: false };
  });
  candidates.sort((a, b) => byCall(a.op, b.op));
  const window = chooseWindow(
    blocked,
    candidates.map((c) => c.op),
    partialLinearization,
  );
  const partial = {
    partialLinearization,
    stateAfterPartial: model.describeState(deepest.state),
    blocked,
    candidates,
    window,
  };
  const sorted = [...ops].sort(byCall);
  return { key, operations: sorted, ...partial, explanation: explain(model, key, sorted, partial) };
}

function positiveOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!(value >= 0)) {
    throw new CheckerError('BAD_OPTION', `${name} is ${value}; expected a number >= 0`);
  }
  return value;
}

/** The operations to search, prepared (decoded by the model), and what was left out. */
interface PreparedHistory {
  readonly kept: Operation[];
  readonly preparedById: Map<number, Prepared>;
  readonly failed: number;
  readonly indeterminateReads: number;
}

/** 'fail' operations and indeterminate reads constrain nothing: they are counted, not searched. */
function prepareOperations(model: AnyModel, operations: readonly Operation[]): PreparedHistory {
  let failed = 0;
  let indeterminateReads = 0;
  const kept: Operation[] = [];
  const preparedById = new Map<number, Prepared>();
  for (const op of operations) {
    if (op.outcome === 'fail') {
      failed++;
      continue;
    }
    const d = model.decode(op);
    if ('error' in d) {
      throw new CheckerError(
        'BAD_OPERATION',
        `operation ${op.id} (process ${op.process}, '${op.f}'${op.key === undefined ? '' : ` on key ${JSON.stringify(op.key)}`}, ${describeInterval(op)}): ${d.error}`,
      );
    }
    if (op.outcome === 'info' && model.readOnly(d.input)) {
      indeterminateReads++;
      continue;
    }
    kept.push(op);
    preparedById.set(op.id, { op, input: d.input, output: d.output });
  }
  return { kept, preparedById, failed, indeterminateReads };
}

interface NamedPartition {
  readonly key: string;
  readonly ops: readonly Operation[];
}

/** The partitions to search, smallest first (so the first violation found is the smallest). */
function namedPartitions(
  model: AnyModel,
  kept: Operation[],
  partition: boolean | undefined,
): NamedPartition[] {
  const partitions = partition === false ? [kept] : model.partition(kept);
  return partitions
    .filter((ops) => ops.length > 0)
    .map((ops) => ({ key: partitionKeyOf(ops), ops }))
    .sort((a, b) => a.ops.length - b.ops.length || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** A partition's result from its search's outcome; `base` has its key and what it used. */
function keyResultOf(
  outcome: SearchOutcome,
  base: Pick<KeyResult, 'key' | 'operations' | 'steps' | 'elapsedMs'>,
  ops: readonly Operation[],
): KeyResult {
  if (outcome.verdict === 'ok') {
    return { ...base, verdict: 'ok', linearization: outcome.linearization.map((i) => ops[i]!.id) };
  }
  if (outcome.verdict === 'violation') return { ...base, verdict: 'violation' };
  const d = outcome.deepest;
  return {
    ...base,
    verdict: 'unknown',
    unknownReason: outcome.reason,
    ...(d === undefined
      ? {}
      : { furthestStuck: { op: ops[d.blocked]!, linearizedBefore: d.prefix.length } }),
  };
}

/**
 * Checks operations (as paired by pairHistory) against a model. 'fail' operations are ignored;
 * 'info' ones may or may not have taken effect. Throws BAD_OPERATION if the model cannot read an
 * operation, BAD_OPTION for an impossible budget.
 */
export function checkOperations(
  model: AnyModel,
  operations: readonly Operation[],
  options: CheckOptions = {},
): CheckResult {
  const { now, startMs, deadlineMs, stepsMax, cacheBytesMax } = limitsOf(options);
  let steps = 0;
  const { kept, preparedById, failed, indeterminateReads } = prepareOperations(model, operations);
  const named = namedPartitions(model, kept, options.partition);

  const results: (KeyResult | undefined)[] = named.map(() => undefined);
  const violations: (Violation | undefined)[] = named.map(() => undefined);
  /** Searches partition k with `share` of the budget left; a second run adds to the first. */
  const run = (k: number, share: number): void => {
    const { key, ops } = named[k]!;
    const before = results[k];
    const startedMs = now();
    const budget: Budget = {
      deadlineMs: Math.min(deadlineMs, startedMs + (deadlineMs - startedMs) * share),
      stepsMax: Math.floor((stepsMax - steps) * share),
      cacheBytesMax,
      now,
      steps: 0,
      cacheBytes: 0,
    };
    const prepared = ops.map((op) => {
      const p = preparedById.get(op.id);
      assert(p !== undefined, `partition returned operation ${op.id}, which it was not given`);
      return p;
    });
    const outcome = new PartitionSearch(model, prepared, budget).run();
    steps += budget.steps;
    results[k] = keyResultOf(
      outcome,
      {
        key,
        operations: ops.length,
        steps: (before?.steps ?? 0) + budget.steps,
        elapsedMs: (before?.elapsedMs ?? 0) + (now() - startedMs),
      },
      ops,
    );
    if (outcome.verdict === 'violation') {
      violations[k] = violationOf(model, key, prepared, outcome.deepest);
    }
  };
  // Two passes, so that one hard key cannot starve the others: first each key gets a fair share
  // of what is left (what it does not use goes to the next), then the keys that ran out of their
  // share start over with everything left.
  const left = (): boolean => steps < stepsMax && now() < deadlineMs;
  named.forEach((_, k) => {
    if (left()) run(k, 1 / (named.length - k));
  });
  named.forEach((_, k) => {
    if (results[k]?.verdict === 'unknown' && left()) run(k, 1);
  });
  const perKey: KeyResult[] = named.map(({ key, ops }, k) => results[k] ?? notStarted(key, ops));
  // Partitions were checked smallest first: the first violation is the smallest.
  const violation = violations.find((v) => v !== undefined);
  const verdict: Verdict =
    violation !== undefined
      ? 'violation'
      : perKey.some((k) => k.verdict === 'unknown')
        ? 'unknown'
        : 'ok';
  return {
    verdict,
    model: model.name,
    perKey,
    ...(violation === undefined ? {} : { violation }),
    ignored: { failed, indeterminateReads },
    steps,
    elapsedMs: now() - startMs,
  };
}

/** The whole check's limits, from the options (BAD_OPTION for a negative one). */
function limitsOf(options: CheckOptions): {
  now: () => number;
  startMs: number;
  deadlineMs: number;
  stepsMax: number;
  cacheBytesMax: number;
} {
  const now = options.now ?? (() => performance.now());
  const startMs = now();
  const timeoutMs = positiveOption('timeoutMs', options.timeoutMs, CHECK_TIMEOUT_MS_DEFAULT);
  return {
    now,
    startMs,
    deadlineMs: startMs + timeoutMs,
    stepsMax: positiveOption('stepsMax', options.stepsMax, CHECK_STEPS_MAX_DEFAULT),
    cacheBytesMax: positiveOption('cacheBytesMax', options.cacheBytesMax, CACHE_BYTES_MAX_DEFAULT),
  };
}

/** A partition the budget ran out before. */
function notStarted(key: string, ops: readonly Operation[]): KeyResult {
  return {
    key,
    verdict: 'unknown',
    operations: ops.length,
    steps: 0,
    elapsedMs: 0,
    unknownReason: 'not-started',
  };
}

/** pairHistory then checkOperations: the whole check from events (throws CheckerError). */
export function checkEvents(
  model: AnyModel,
  events: readonly HistoryEvent[],
  options: CheckOptions = {},
): CheckResult {
  return checkOperations(model, pairHistory(events).operations, options);
}

// The set checker, as Jepsen's set-full checker counts: given the adds (ok, fail or indeterminate),
// the reads during the run and a final read on every node after healing, it counts
//   lost:       acknowledged adds missing from a final read (must be 0);
//   unexpected: elements read that no client ever tried to add (must be 0);
//   stale:      elements some read missed although their add was acknowledged before that read
//               began (must be 0: the product's kv.list is a linearizable read);
//   recovered:  indeterminate adds that turned out present (fine either way).
// Pure: a history in, counts and a verdict out.

import type { HistoryEvent } from '../checker/index.ts';

export interface FinalRead {
  readonly node: string;
  /** undefined: the node did not answer its final read. */
  readonly elements: readonly number[] | undefined;
}

export interface SetResult {
  readonly valid: boolean;
  readonly attempted: number;
  readonly acknowledged: number;
  readonly failed: number;
  readonly indeterminate: number;
  readonly lost: readonly number[];
  readonly unexpected: readonly number[];
  readonly stale: readonly number[];
  /** Reads (during the run and final) that missed at least one acknowledged element. */
  readonly staleReads: number;
  readonly recovered: number;
  readonly reads: number;
  /** Nodes whose final read did not answer: the verdict is then invalid (nothing to check). */
  readonly unansweredFinal: readonly string[];
}

interface Add {
  invokedAt: number;
  completedAt: number | undefined;
  outcome: 'ok' | 'fail' | 'info';
}

interface Read {
  invokedAt: number;
  elements: ReadonlySet<number>;
}

/** Pairs the add and read events by process (one operation at a time per process). */
function collect(events: readonly HistoryEvent[]): { adds: Map<number, Add>; reads: Read[] } {
  const adds = new Map<number, Add>();
  const reads: Read[] = [];
  const open = new Map<number, HistoryEvent>();
  for (const e of events) {
    if (e.type === 'invoke') {
      open.set(e.process, e);
      if (e.f === 'add') {
        adds.set(e.value as number, { invokedAt: e.time, completedAt: undefined, outcome: 'info' });
      }
      continue;
    }
    const inv = open.get(e.process);
    open.delete(e.process);
    if (inv === undefined) throw new Error(`completion without invocation: ${JSON.stringify(e)}`);
    if (e.f === 'add') {
      const a = adds.get(e.value as number)!;
      a.outcome = e.type;
      a.completedAt = e.time;
    } else if (e.f === 'read' && e.type === 'ok') {
      reads.push({ invokedAt: inv.time, elements: new Set(e.value as number[]) });
    }
  }
  return { adds, reads };
}

export function checkSet(events: readonly HistoryEvent[], finals: readonly FinalRead[]): SetResult {
  const { adds, reads } = collect(events);
  const answered = finals.filter((f) => f.elements !== undefined);
  const finalSets = answered.map((f) => new Set(f.elements));
  // Final reads come after every operation: they are stale-checked like the others.
  const allReads = [
    ...reads,
    ...finalSets.map((elements) => ({ invokedAt: Number.POSITIVE_INFINITY, elements })),
  ];
  const lost: number[] = [];
  const stale = new Set<number>();
  const staleReadIds = new Set<number>();
  let recovered = 0;
  for (const [element, a] of adds) {
    if (a.outcome === 'ok' && finalSets.some((s) => !s.has(element))) lost.push(element);
    if (a.outcome === 'info' && finalSets.some((s) => s.has(element))) recovered++;
    if (a.outcome !== 'ok') continue;
    allReads.forEach((r, i) => {
      if (r.invokedAt > a.completedAt! && !r.elements.has(element)) {
        stale.add(element);
        staleReadIds.add(i);
      }
    });
  }
  const unexpected = new Set<number>();
  for (const r of allReads) for (const x of r.elements) if (!adds.has(x)) unexpected.add(x);
  const counts = { ok: 0, fail: 0, info: 0 };
  for (const a of adds.values()) counts[a.outcome]++;
  const unansweredFinal = finals.filter((f) => f.elements === undefined).map((f) => f.node);
  const lostSorted = lost.sort((x, y) => x - y);
  const staleOnly = [...stale].filter((x) => !lost.includes(x)).sort((x, y) => x - y);
  return {
    valid:
      lost.length === 0 &&
      unexpected.size === 0 &&
      staleOnly.length === 0 &&
      unansweredFinal.length === 0 &&
      answered.length > 0,
    attempted: adds.size,
    acknowledged: counts.ok,
    failed: counts.fail,
    indeterminate: counts.info,
    lost: lostSorted,
    unexpected: [...unexpected].sort((x, y) => x - y),
    stale: staleOnly,
    staleReads: staleReadIds.size,
    recovered,
    reads: allReads.length,
    unansweredFinal,
  };
}

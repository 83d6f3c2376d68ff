// Checkers for Raft's safety properties (Figure 3 of the Raft paper) over a history of
// observations. They look only at plain data (views of a node's state, applied entries, messages),
// so a test can feed them a hand-made history to show that each one catches what it should, and
// any harness (the fuzz network, a simulator) can feed them a real one. A violation throws
// SafetyViolation naming the property.
//
// What "observed" means: a harness should show the monitor a node's state only when it is
// externalized, i.e. after the node's Ready was persisted and its messages sent (RawNode.hasReady()
// is false). State a node held only in memory and lost in a crash was never promised to anyone;
// a leader may, for example, count its own unpersisted entry towards a commit, which is safe only
// because nothing of it leaves the node before it is persisted.

import type { Entry, Message, NodeId, StateType } from '../../consensus/types.ts';

export type SafetyProperty =
  | 'electionSafety'
  | 'leaderAppendOnly'
  | 'logMatching'
  | 'leaderCompleteness'
  | 'stateMachineSafety'
  | 'commitMonotonic'
  | 'termMonotonic';

export class SafetyViolation extends Error {
  readonly property: SafetyProperty;

  constructor(property: SafetyProperty, message: string) {
    super(`${property}: ${message}`);
    this.name = 'SafetyViolation';
    this.property = property;
  }
}

/** A log as a node holds it: entries snapIndex+1.. after the compaction point (snapIndex, snapTerm). */
export interface LogView {
  readonly snapIndex: number;
  readonly snapTerm: number;
  /** Contiguous, entries[k].index === snapIndex + 1 + k. */
  readonly entries: readonly Entry[];
}

/** One node's externalized state at one moment. */
export interface NodeView extends LogView {
  readonly id: NodeId;
  /** Bumped on every restart: volatile state (commit index) is per incarnation. */
  readonly incarnation: number;
  readonly state: StateType;
  readonly term: number;
  readonly commit: number;
}

export function lastIndexOf(log: LogView): number {
  return log.snapIndex + log.entries.length;
}

/** The entry at index i if the log holds it (not compacted, not beyond its end). */
export function entryAt(log: LogView, i: number): Entry | undefined {
  if (i <= log.snapIndex) return undefined;
  return log.entries[i - log.snapIndex - 1];
}

/** Term at index i: the compaction point's term at snapIndex, undefined when unknown. */
export function termAt(log: LogView, i: number): number | undefined {
  if (i === log.snapIndex) return log.snapTerm;
  return entryAt(log, i)?.term;
}

export function entriesEqual(a: Entry, b: Entry): boolean {
  if (a === b) return true;
  if (a.index !== b.index || a.term !== b.term || a.type !== b.type) return false;
  if (a.data.byteLength !== b.data.byteLength) return false;
  for (let k = 0; k < a.data.byteLength; k++) if (a.data[k] !== b.data[k]) return false;
  return true;
}

/** "index/term", with the payload when there is one; `at` names an entry known only by its term. */
export function describeEntry(e: Entry | undefined, at?: { index: number; term: number }): string {
  if (e === undefined) return at === undefined ? '(none)' : `${at.index}/${at.term}`;
  const data = new TextDecoder().decode(e.data);
  return `${e.index}/${e.term}${e.type === 'confChange' ? ' cc' : ''}${data === '' ? '' : ` '${data}'`}`;
}

/**
 * Log Matching, by its definition, for two logs: if both hold an entry with the same index and term,
 * they are identical in every entry up to that index that both still hold (above both compaction
 * points). Returns a description of the first violation, or undefined.
 */
export function logMatchingViolation(a: LogView, b: LogView): string | undefined {
  const lo = Math.max(a.snapIndex, b.snapIndex) + 1;
  const hi = Math.min(lastIndexOf(a), lastIndexOf(b));
  let match = 0;
  for (let i = hi; i >= lo; i--) {
    if (entryAt(a, i)!.term === entryAt(b, i)!.term) {
      match = i;
      break;
    }
  }
  for (let i = lo; i <= match; i++) {
    const ea = entryAt(a, i)!;
    const eb = entryAt(b, i)!;
    if (!entriesEqual(ea, eb)) {
      return `both logs hold an entry of term ${entryAt(a, match)!.term} at ${match} but differ at ${i}: ${describeEntry(ea)} vs ${describeEntry(eb)}`;
    }
  }
  return undefined;
}

interface CommittedRecord {
  readonly term: number;
  /** Undefined while the index is known committed only as a compaction point. */
  entry: Entry | undefined;
  /** A term >= the one in which it was committed: every leader of a higher term must hold it. */
  readonly bound: number;
  readonly by: NodeId;
}

export interface SafetyCounters {
  /** Distinct indexes observed committed. */
  committedIndexes: number;
  /** Distinct indexes applied by some state machine. */
  appliedIndexes: number;
  /** Distinct (term, leader) pairs. */
  leaders: number;
  views: number;
}

/**
 * Accumulates a history and checks the five properties of Figure 3, plus: a node's commit index and
 * term never decrease within one incarnation, and a state machine applies entries in index order.
 */
export class SafetyMonitor {
  /** Election Safety: the leader of each term, from views and from messages only a leader sends. */
  readonly leaders = new Map<number, NodeId>();
  /** Leader Append-Only / Completeness: the last observed log of each term's leader. */
  private readonly leaderLogs = new Map<number, { id: NodeId; log: LogView }>();
  /** Log Matching across time: each (index, term) names one entry with one predecessor term. */
  private readonly entryIds = new Map<string, { entry: Entry; prevTerm: number; by: NodeId }>();
  private readonly committed = new Map<number, CommittedRecord>();
  /** State Machine Safety: the entry applied at each index, and who applied it first. */
  private readonly applied = new Map<number, { entry: Entry; by: NodeId }>();
  private readonly lastApplied = new Map<NodeId, number>();
  private readonly volatile = new Map<
    NodeId,
    { incarnation: number; term: number; commit: number }
  >();
  readonly counters: SafetyCounters = {
    committedIndexes: 0,
    appliedIndexes: 0,
    leaders: 0,
    views: 0,
  };

  /** Election Safety: at most one leader per term. `how` says where the leader was seen. */
  observeLeader(term: number, id: NodeId, how: string): void {
    const known = this.leaders.get(term);
    if (known === undefined) {
      this.leaders.set(term, id);
      this.counters.leaders++;
      return;
    }
    if (known !== id) {
      throw new SafetyViolation(
        'electionSafety',
        `two leaders in term ${term}: ${known} and ${id} (${how})`,
      );
    }
  }

  /** A message sent on the wire: MsgApp, MsgHeartbeat, MsgSnap and MsgTimeoutNow come only from a leader. */
  observeMessage(m: Message): void {
    if (
      m.type === 'MsgApp' ||
      m.type === 'MsgHeartbeat' ||
      m.type === 'MsgSnap' ||
      m.type === 'MsgTimeoutNow'
    ) {
      this.observeLeader(m.term, m.from, `sent ${m.type} to ${m.to}`);
    }
  }

  /** Volatile state of a live node, even if not yet externalized: it must never go back. */
  observeVolatile(id: NodeId, incarnation: number, term: number, commit: number): void {
    const prev = this.volatile.get(id);
    this.volatile.set(id, { incarnation, term, commit });
    if (prev === undefined || prev.incarnation !== incarnation) return;
    if (commit < prev.commit) {
      throw new SafetyViolation(
        'commitMonotonic',
        `${id} (incarnation ${incarnation}) commit index went back from ${prev.commit} to ${commit}`,
      );
    }
    if (term < prev.term) {
      throw new SafetyViolation(
        'termMonotonic',
        `${id} (incarnation ${incarnation}) term went back from ${prev.term} to ${term}`,
      );
    }
  }

  /** A node's externalized state. */
  observe(v: NodeView): void {
    this.counters.views++;
    this.observeVolatile(v.id, v.incarnation, v.term, v.commit);
    if (v.state === 'leader') this.observeLeaderLog(v);
    this.observeEntries(v);
    this.observeCommitted(v);
  }

  private observeLeaderLog(v: NodeView): void {
    this.observeLeader(v.term, v.id, `${v.id} is in state leader`);
    const prev = this.leaderLogs.get(v.term);
    const log: LogView = { snapIndex: v.snapIndex, snapTerm: v.snapTerm, entries: v.entries };
    if (prev === undefined) {
      this.checkLeaderHoldsCommitted(v.term, v.id, log);
    } else {
      // Leader Append-Only: everything it held then, it still holds (unless compacted since).
      const prevLast = lastIndexOf(prev.log);
      if (lastIndexOf(log) < prevLast) {
        throw new SafetyViolation(
          'leaderAppendOnly',
          `leader ${v.id} of term ${v.term} shrank its log from ${prevLast} to ${lastIndexOf(log)}`,
        );
      }
      for (let i = Math.max(prev.log.snapIndex, log.snapIndex) + 1; i <= prevLast; i++) {
        const before = entryAt(prev.log, i)!;
        const now = entryAt(log, i)!;
        if (!entriesEqual(before, now)) {
          throw new SafetyViolation(
            'leaderAppendOnly',
            `leader ${v.id} of term ${v.term} overwrote ${describeEntry(before)} with ${describeEntry(now)}`,
          );
        }
      }
    }
    this.leaderLogs.set(v.term, { id: v.id, log });
  }

  /** Log Matching, across all logs ever observed: (index, term) determines the entry and its predecessor. */
  private observeEntries(v: NodeView): void {
    let prevTerm = v.snapTerm;
    for (const e of v.entries) {
      const key = `${e.index}/${e.term}`;
      const known = this.entryIds.get(key);
      if (known === undefined) {
        this.entryIds.set(key, { entry: e, prevTerm, by: v.id });
      } else if (!entriesEqual(known.entry, e) || known.prevTerm !== prevTerm) {
        throw new SafetyViolation(
          'logMatching',
          `entry ${key} differs: ${known.by} held ${describeEntry(known.entry)} after term ${known.prevTerm}, ${v.id} holds ${describeEntry(e)} after term ${prevTerm}`,
        );
      }
      prevTerm = e.term;
    }
  }

  private observeCommitted(v: NodeView): void {
    if (v.snapIndex > 0 && v.snapIndex <= v.commit) {
      this.recordCommitted(v.snapIndex, v.snapTerm, undefined, v);
    }
    const hi = Math.min(v.commit, lastIndexOf(v));
    for (let i = v.snapIndex + 1; i <= hi; i++) {
      const e = entryAt(v, i)!;
      this.recordCommitted(i, e.term, e, v);
    }
  }

  private recordCommitted(
    index: number,
    term: number,
    entry: Entry | undefined,
    v: NodeView,
  ): void {
    const known = this.committed.get(index);
    if (known === undefined) {
      const rec: CommittedRecord = { term, entry, bound: v.term, by: v.id };
      this.committed.set(index, rec);
      this.counters.committedIndexes++;
      this.checkAgainstApplied(index, term, entry, `committed on ${v.id}`);
      // Leader Completeness for leaders already seen: those of terms above the bound hold it.
      for (const [lt, { id, log }] of this.leaderLogs) {
        if (lt > rec.bound) this.checkLeaderHolds(lt, id, log, index, rec);
      }
      return;
    }
    const conflict =
      known.term !== term ||
      (known.entry !== undefined && entry !== undefined && !entriesEqual(known.entry, entry));
    if (conflict) {
      throw new SafetyViolation(
        'stateMachineSafety',
        `two different entries committed at ${index}: ${describeEntry(known.entry, { index, term: known.term })} on ${known.by}, ${describeEntry(entry, { index, term })} on ${v.id}`,
      );
    }
    if (known.entry === undefined && entry !== undefined) known.entry = entry;
  }

  private checkLeaderHoldsCommitted(term: number, id: NodeId, log: LogView): void {
    for (const [index, rec] of this.committed) {
      if (term > rec.bound) this.checkLeaderHolds(term, id, log, index, rec);
    }
  }

  private checkLeaderHolds(
    term: number,
    id: NodeId,
    log: LogView,
    index: number,
    rec: CommittedRecord,
  ): void {
    // Below the leader's compaction point the entry is in its snapshot: its committed prefix, which
    // State Machine Safety covers.
    if (index < log.snapIndex) return;
    const t = termAt(log, index);
    const e = entryAt(log, index);
    const holds =
      t === rec.term && (e === undefined || rec.entry === undefined || entriesEqual(e, rec.entry));
    if (!holds) {
      throw new SafetyViolation(
        'leaderCompleteness',
        `leader ${id} of term ${term} lacks ${describeEntry(rec.entry, { index, term: rec.term })}, committed by term ${rec.bound} (seen on ${rec.by}); it holds ${t === undefined ? 'nothing' : describeEntry(e, { index, term: t })} there`,
      );
    }
  }

  /** A state machine applied a committed entry (the harness reports every one, across restarts). */
  observeApply(id: NodeId, e: Entry): void {
    const last = this.lastApplied.get(id) ?? 0;
    if (e.index !== last + 1) {
      throw new SafetyViolation(
        'stateMachineSafety',
        `${id} applied ${describeEntry(e)} right after index ${last}: out of order`,
      );
    }
    this.lastApplied.set(id, e.index);
    this.recordApplied(id, e);
  }

  /** A state machine was replaced by a snapshot holding `entries` (its image, entry by entry). */
  observeSnapshotApply(id: NodeId, index: number, entries: readonly Entry[]): void {
    const last = this.lastApplied.get(id) ?? 0;
    if (index <= last) {
      throw new SafetyViolation(
        'stateMachineSafety',
        `${id} installed a snapshot at ${index}, not after what it applied (${last})`,
      );
    }
    this.lastApplied.set(id, index);
    for (const e of entries) this.recordApplied(id, e);
  }

  private recordApplied(id: NodeId, e: Entry): void {
    const known = this.applied.get(e.index);
    if (known === undefined) {
      const c = this.committed.get(e.index);
      if (
        c !== undefined &&
        (c.term !== e.term || (c.entry !== undefined && !entriesEqual(c.entry, e)))
      ) {
        throw new SafetyViolation(
          'stateMachineSafety',
          `${id} applied ${describeEntry(e)} but ${describeEntry(c.entry, { index: e.index, term: c.term })} is committed on ${c.by}`,
        );
      }
      this.applied.set(e.index, { entry: e, by: id });
      this.counters.appliedIndexes++;
      return;
    }
    if (!entriesEqual(known.entry, e)) {
      throw new SafetyViolation(
        'stateMachineSafety',
        `${known.by} applied ${describeEntry(known.entry)} and ${id} applied ${describeEntry(e)} at index ${e.index}`,
      );
    }
  }

  private checkAgainstApplied(
    index: number,
    term: number,
    entry: Entry | undefined,
    how: string,
  ): void {
    const known = this.applied.get(index);
    if (known === undefined) return;
    if (known.entry.term !== term || (entry !== undefined && !entriesEqual(known.entry, entry))) {
      throw new SafetyViolation(
        'stateMachineSafety',
        `${known.by} applied ${describeEntry(known.entry)} but ${describeEntry(entry, { index, term })} is ${how}`,
      );
    }
  }

  /** Log Matching by definition, pairwise over logs observed at one moment. */
  checkLogsPairwise(views: readonly (LogView & { readonly id: NodeId })[]): void {
    for (let x = 0; x < views.length; x++) {
      for (let y = x + 1; y < views.length; y++) {
        const problem = logMatchingViolation(views[x]!, views[y]!);
        if (problem !== undefined) {
          throw new SafetyViolation(
            'logMatching',
            `${views[x]!.id} and ${views[y]!.id}: ${problem}`,
          );
        }
      }
    }
  }
}

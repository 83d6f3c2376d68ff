// The Raft log as the core sees it: the stable part in Storage, followed by the unstable part
// (entries and possibly a snapshot not yet persisted by the caller), plus the commit and applied
// indexes. The invariant kept here: applied <= committed <= lastIndex, committed never decreases,
// and no entry at or below committed is ever truncated.

import { assert } from './assert.ts';
import { isRaftError } from './errors.ts';
import { isPlanted } from './planted.ts';
import { limitSize, type Storage } from './storage.ts';
import type { Entry, Snapshot } from './types.ts';

/** Entries (and maybe a snapshot) handed to the caller in Ready but not yet reported persisted. */
class Unstable {
  snapshot: Snapshot | undefined = undefined;
  entries: Entry[] = [];
  /** Index of entries[0] (or where the next one would go). */
  offset: number;

  constructor(offset: number) {
    this.offset = offset;
  }

  maybeFirstIndex(): number | undefined {
    return this.snapshot !== undefined ? this.snapshot.metadata.index + 1 : undefined;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length !== 0) return this.offset + this.entries.length - 1;
    if (this.snapshot !== undefined) return this.snapshot.metadata.index;
    return undefined;
  }

  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.metadata.index === i) {
        return this.snapshot.metadata.term;
      }
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]!.term;
  }

  stableTo(i: number, t: number): void {
    const gt = this.maybeTerm(i);
    if (gt === undefined) return;
    // Only if the entry at i is still the one persisted (it may have been overwritten since).
    if (gt === t && i >= this.offset) {
      this.entries = this.entries.slice(i + 1 - this.offset);
      this.offset = i + 1;
    }
  }

  stableSnapTo(i: number): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === i)
      this.snapshot = undefined;
  }

  restore(s: Snapshot): void {
    this.offset = s.metadata.index + 1;
    this.entries = [];
    this.snapshot = s;
  }

  truncateAndAppend(ents: readonly Entry[]): void {
    const after = ents[0]!.index;
    if (after === this.offset + this.entries.length) {
      for (const e of ents) this.entries.push(e);
    } else if (after <= this.offset) {
      // Replaces the whole unstable tail (and, for the caller's storage, the stable suffix).
      this.offset = after;
      this.entries = ents.slice();
    } else {
      this.entries = this.entries.slice(0, after - this.offset);
      for (const e of ents) this.entries.push(e);
    }
  }

  slice(lo: number, hi: number): Entry[] {
    assert(
      lo >= this.offset && hi <= this.offset + this.entries.length,
      `unstable.slice[${lo},${hi})`,
    );
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

export class RaftLog {
  readonly storage: Storage;
  readonly unstable: Unstable;
  /** Highest index known to be committed. */
  committed: number;
  /** Highest index handed to the application in Ready.committedEntries (and acknowledged). */
  applied: number;
  /** Bound on the bytes of committed entries handed out in one Ready. */
  readonly maxCommittedSizePerReadyBytes: number;

  constructor(storage: Storage, maxCommittedSizePerReadyBytes: number) {
    this.storage = storage;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
    this.maxCommittedSizePerReadyBytes = maxCommittedSizePerReadyBytes;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, 'term of the last index is unknown');
    return t;
  }

  /** Term of entry i, or undefined when i is compacted (below the snapshot) or beyond the log. */
  term(i: number): number | undefined {
    const dummy = this.firstIndex() - 1;
    if (i < dummy || i > this.lastIndex()) return undefined;
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    try {
      return this.storage.term(i);
    } catch (e) {
      if (isRaftError(e, 'COMPACTED') || isRaftError(e, 'UNAVAILABLE')) return undefined;
      throw e;
    }
  }

  matchTerm(i: number, t: number): boolean {
    const term = this.term(i);
    return term !== undefined && term === t;
  }

  /** §5.4.1: is a log ending at (lasti, term) at least as up to date as ours? */
  isUpToDate(lasti: number, term: number): boolean {
    const ourTerm = this.lastTerm();
    return term > ourTerm || (term === ourTerm && lasti >= this.lastIndex());
  }

  /**
   * The follower side of AppendEntries: if our log matches (index, logTerm), appends ents (dropping
   * any conflicting suffix) and advances commit to min(committed, last new index).
   * Returns the last new index, or undefined when the log does not match.
   */
  maybeAppend(
    index: number,
    logTerm: number,
    committed: number,
    ents: readonly Entry[],
  ): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNewIndex = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      assert(ci > this.committed, `entry ${ci} conflicts with committed entry ${this.committed}`);
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNewIndex));
    return lastNewIndex;
  }

  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0]!.index - 1;
    assert(
      after >= this.committed,
      `append after ${after} would truncate committed ${this.committed}`,
    );
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * The index of the first entry of ents that is not in our log with the same term, or 0 if all
   * are present. An entry beyond our log counts as a conflict (it is new).
   */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Fast back-tracking (§5.3 optimisation, etcd's findConflictByTerm): the largest index <= index
   * whose term is <= term, with that term. Everything after it certainly does not match a log
   * whose entry at `index` has term `term`.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (;;) {
      const t = this.term(i);
      if (t === undefined) return { index: i, term: 0 };
      if (t <= term) return { index: i, term: t };
      i--;
    }
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries;
  }

  hasNextCommittedEnts(): boolean {
    if (this.unstable.snapshot !== undefined) return false; // apply the snapshot first
    return this.committed > this.applied;
  }

  nextCommittedEnts(): Entry[] {
    if (!this.hasNextCommittedEnts()) return [];
    const lo = Math.max(this.applied + 1, this.firstIndex());
    const hi = this.committed + 1;
    return this.slice(lo, hi, this.maxCommittedSizePerReadyBytes);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  commitTo(tocommit: number): void {
    if (tocommit <= this.committed) return; // never decrease
    assert(
      tocommit <= this.lastIndex(),
      `commit ${tocommit} beyond last index ${this.lastIndex()}`,
    );
    this.committed = tocommit;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    assert(i <= this.committed, `applied ${i} beyond committed ${this.committed}`);
    assert(i >= this.applied, `applied ${i} goes back from ${this.applied}`);
    this.applied = i;
  }

  stableTo(i: number, t: number): void {
    this.unstable.stableTo(i, t);
  }

  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  /** Leader rule of §5.4.2: commit maxIndex only if it is from the current term. */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex <= this.committed) return false;
    if (this.term(maxIndex) === term || isPlanted('commitEarlierTerm')) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  restore(s: Snapshot): void {
    assert(
      s.metadata.index >= this.committed,
      `snapshot ${s.metadata.index} below committed ${this.committed}`,
    );
    this.committed = s.metadata.index;
    this.unstable.restore(s);
  }

  /** Entries from i on, at most maxSizeBytes (at least one). */
  entries(i: number, maxSizeBytes: number): Entry[] | undefined {
    if (i > this.lastIndex()) return [];
    return this.sliceOrUndefined(i, this.lastIndex() + 1, maxSizeBytes);
  }

  /** All entries from the first available one; for tests and transcripts. */
  allEntries(): Entry[] {
    return this.slice(this.firstIndex(), this.lastIndex() + 1, Number.POSITIVE_INFINITY);
  }

  slice(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    const ents = this.sliceOrUndefined(lo, hi, maxSizeBytes);
    assert(ents !== undefined, `slice [${lo},${hi}) is compacted`);
    return ents;
  }

  /** Entries in [lo, hi), or undefined if lo is compacted (the caller then sends a snapshot). */
  sliceOrUndefined(lo: number, hi: number, maxSizeBytes: number): Entry[] | undefined {
    if (lo < this.firstIndex()) return undefined;
    assert(lo <= hi, `slice lo ${lo} > hi ${hi}`);
    assert(hi <= this.lastIndex() + 1, `slice hi ${hi} beyond last ${this.lastIndex()}`);
    if (lo === hi) return [];
    let ents: Entry[] = [];
    const uoff = this.unstable.offset;
    if (lo < uoff) {
      let stable: Entry[];
      try {
        stable = this.storage.entries(lo, Math.min(hi, uoff), maxSizeBytes);
      } catch (e) {
        if (isRaftError(e, 'COMPACTED')) return undefined;
        throw e;
      }
      // Storage returned fewer than asked: the size limit was reached.
      if (stable.length < Math.min(hi, uoff) - lo) return stable;
      ents = stable;
    }
    if (hi > uoff) {
      const unstable = this.unstable.slice(Math.max(lo, uoff), hi);
      ents = ents.length > 0 ? ents.concat(unstable) : unstable;
    }
    return limitSize(ents, maxSizeBytes);
  }
}

// The Storage interface: how the core reads the stable (persisted) part of the log. The caller owns
// writes: it appends Ready.entries, sets Ready.hardState and applies Ready.snapshot to its storage
// before advance(). MemoryStorage is the in-memory implementation used by tests and the simulator;
// the node keeps a MemoryStorage as its cache of the LevelDB log.

import { assert } from './assert.ts';
import { RaftError } from './errors.ts';
import {
  type ConfState,
  EMPTY_HARD_STATE,
  type Entry,
  entrySizeBytes,
  type HardState,
  type Snapshot,
  type SnapshotMetadata,
} from './types.ts';

export interface InitialState {
  readonly hardState: HardState;
  readonly confState: ConfState;
}

export interface Storage {
  /** The persisted hard state and the membership as of the last snapshot plus applied changes. */
  initialState(): InitialState;
  /**
   * Entries in [lo, hi), at least one if any, then as many as fit in maxSizeBytes.
   * Throws RaftError COMPACTED if lo <= the snapshot index, UNAVAILABLE if hi > lastIndex()+1.
   */
  entries(lo: number, hi: number, maxSizeBytes: number): Entry[];
  /** Term of entry i; i may be the snapshot index. Throws COMPACTED / UNAVAILABLE. */
  term(i: number): number;
  /** Index of the first entry still available (snapshot index + 1). */
  firstIndex(): number;
  lastIndex(): number;
  /** The most recent snapshot. May throw SNAPSHOT_TEMPORARILY_UNAVAILABLE. */
  snapshot(): Snapshot;
}

/**
 * Entries are kept in one array whose element 0 is a dummy entry standing for the snapshot
 * (index and term of the snapshot), as in etcd's MemoryStorage.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot;
  /** The membership to restart with: the snapshot's, plus conf changes applied since. */
  private confState: ConfState;
  private ents: Entry[];

  constructor(confState?: ConfState) {
    this.confState = confState ?? { voters: [], learners: [] };
    this.snap = {
      metadata: { index: 0, term: 0, confState: this.confState },
      data: new Uint8Array(0),
    };
    this.ents = [{ term: 0, index: 0, type: 'normal', data: new Uint8Array(0) }];
  }

  initialState(): InitialState {
    return { hardState: this.hardState, confState: this.confState };
  }

  setHardState(hs: HardState): void {
    this.hardState = hs;
  }

  /**
   * The membership after the application applied conf changes past the snapshot. The snapshot's
   * own membership is left alone: it must stay the one in force at the snapshot's index.
   */
  setConfState(cs: ConfState): void {
    this.confState = cs;
  }

  entries(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    const offset = this.ents[0]!.index;
    if (lo <= offset) throw new RaftError('COMPACTED', `entries: index ${lo} is compacted`);
    if (hi > this.lastIndex() + 1) {
      throw new RaftError('UNAVAILABLE', `entries: hi ${hi} beyond last index ${this.lastIndex()}`);
    }
    if (this.ents.length === 1) return [];
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxSizeBytes);
  }

  term(i: number): number {
    const offset = this.ents[0]!.index;
    if (i < offset) throw new RaftError('COMPACTED', `term: index ${i} is compacted`);
    if (i - offset >= this.ents.length) {
      throw new RaftError('UNAVAILABLE', `term: index ${i} beyond last index ${this.lastIndex()}`);
    }
    return this.ents[i - offset]!.term;
  }

  firstIndex(): number {
    return this.ents[0]!.index + 1;
  }

  lastIndex(): number {
    return this.ents[0]!.index + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replaces the log by a snapshot received from the leader (Ready.snapshot). */
  applySnapshot(snap: Snapshot): void {
    const cur = this.snap.metadata.index;
    if (snap.metadata.index < cur) {
      throw new RaftError('SNAPSHOT_OUT_OF_DATE', `snapshot ${snap.metadata.index} < ${cur}`);
    }
    this.snap = snap;
    this.confState = snap.metadata.confState;
    this.ents = [
      {
        term: snap.metadata.term,
        index: snap.metadata.index,
        type: 'normal',
        data: new Uint8Array(0),
      },
    ];
  }

  /**
   * Makes a snapshot of the application's state at `index` (<= applied), to be served to lagging
   * followers; call compact() afterwards to drop the log before it.
   */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) {
      throw new RaftError(
        'SNAPSHOT_OUT_OF_DATE',
        `snapshot at ${index} <= ${this.snap.metadata.index}`,
      );
    }
    const offset = this.ents[0]!.index;
    if (index > this.lastIndex()) {
      throw new RaftError(
        'UNAVAILABLE',
        `snapshot index ${index} > last index ${this.lastIndex()}`,
      );
    }
    const metadata: SnapshotMetadata = { index, term: this.ents[index - offset]!.term, confState };
    this.snap = { metadata, data };
    return this.snap;
  }

  /** Discards entries up to and including compactIndex. */
  compact(compactIndex: number): void {
    const offset = this.ents[0]!.index;
    if (compactIndex <= offset)
      throw new RaftError('COMPACTED', `compact: ${compactIndex} <= ${offset}`);
    if (compactIndex > this.lastIndex()) {
      throw new RaftError('UNAVAILABLE', `compact: ${compactIndex} > last ${this.lastIndex()}`);
    }
    const i = compactIndex - offset;
    const first = this.ents[i]!;
    const dummy: Entry = {
      term: first.term,
      index: first.index,
      type: 'normal',
      data: new Uint8Array(0),
    };
    this.ents = [dummy].concat(this.ents.slice(i + 1));
  }

  /** Appends entries, truncating any conflicting suffix (entries must be contiguous). */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return; // all already compacted
    let ents = entries;
    if (first > ents[0]!.index) ents = ents.slice(first - ents[0]!.index);
    const offset = ents[0]!.index - this.ents[0]!.index;
    assert(
      offset <= this.ents.length,
      `storage append leaves a gap: ${ents[0]!.index} after ${this.lastIndex()}`,
    );
    if (offset < this.ents.length) this.ents.length = offset;
    for (const e of ents) this.ents.push(e);
  }
}

/** Keeps the first entry, then as many as fit in maxSizeBytes. */
export function limitSize(ents: Entry[], maxSizeBytes: number): Entry[] {
  if (ents.length === 0) return ents;
  let size = entrySizeBytes(ents[0]!);
  let n = 1;
  for (; n < ents.length; n++) {
    size += entrySizeBytes(ents[n]!);
    if (size > maxSizeBytes) break;
  }
  return n === ents.length ? ents : ents.slice(0, n);
}

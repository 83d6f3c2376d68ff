// DurableStorage: the Raft log, hard state and snapshot of one node, kept in memory for the core
// (a consensus MemoryStorage) and written through to a Disk. One Ready becomes one atomic batch
// (stage), and the in-memory copy changes only once that batch is durable (commit), so the core
// never reads as stable an entry that a crash could still lose.
//
// Disk layout (keys sort in index order; values are msgpack):
//   hs            [term, vote, commit]
//   snap          [index, term, voters, learners, data]
//   e/<16 hex>    [term, type (0 normal, 1 confChange), data]
// A restart reads every record back (recover) and checks that the log is contiguous after the
// snapshot. The state machine is not stored: it is the snapshot's image plus a replay of the
// committed entries after it, which the core hands out again because it restarts with
// applied = snapshot index.

import { Packr } from 'msgpackr';
import { assert } from '../../consensus/assert.ts';
import {
  type ConfState,
  type Entry,
  type HardState,
  type InitialState,
  MemoryStorage,
  type Ready,
  type Snapshot,
  type Storage,
} from '../../consensus/index.ts';
import type { DiskOp } from './disk.ts';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

export const HARD_STATE_KEY = 'hs';
export const SNAPSHOT_KEY = 'snap';
const ENTRY_PREFIX = 'e/';

export function entryKey(index: number): string {
  return ENTRY_PREFIX + index.toString(16).padStart(16, '0');
}

/** The index of a snapshot record (decodes the whole record). */
export function snapshotRecordIndex(record: Uint8Array): number {
  return (packr.unpack(record) as [number])[0];
}

/**
 * Whether these records (what a disk holds durably) keep entry `index` of `term`, or a snapshot
 * that covers it. For the simulator's durability check; `snapshotIndex` decodes the snapshot
 * record's index (callers may memoize it).
 */
export function recordsHoldEntry(
  records: { get(key: string): Uint8Array | undefined },
  index: number,
  term: number,
  snapshotIndex: (record: Uint8Array) => number = snapshotRecordIndex,
): boolean {
  const v = records.get(entryKey(index));
  if (v !== undefined) return (packr.unpack(v) as [number])[0] === term;
  const snap = records.get(SNAPSHOT_KEY);
  return snap !== undefined && snapshotIndex(snap) >= index;
}

function bytes(x: unknown): Uint8Array {
  if (x instanceof Uint8Array) return x;
  throw new Error('expected bytes');
}

function encodeEntry(e: Entry): Uint8Array {
  return packr.pack([e.term, e.type === 'confChange' ? 1 : 0, e.data]);
}

function decodeEntry(index: number, v: Uint8Array): Entry {
  const [term, type, data] = packr.unpack(v) as [number, number, Uint8Array];
  if (!Number.isSafeInteger(term) || (type !== 0 && type !== 1))
    throw new Error(`entry ${index} is corrupt`);
  return {
    index,
    term,
    type: type === 1 ? 'confChange' : 'normal',
    data: new Uint8Array(bytes(data)),
  };
}

export class CorruptStorageError extends Error {
  override readonly name = 'CorruptStorageError';
}

export class DurableStorage implements Storage {
  readonly mem = new MemoryStorage();

  /** Rebuilds a node's storage from the records its disk kept (empty for a new node). */
  static recover(records: ReadonlyMap<string, Uint8Array>): DurableStorage {
    const s = new DurableStorage();
    try {
      const snap = records.get(SNAPSHOT_KEY);
      if (snap !== undefined) {
        const [index, term, voters, learners, data] = packr.unpack(snap) as [
          number,
          number,
          string[],
          string[],
          Uint8Array,
        ];
        s.mem.applySnapshot({
          metadata: { index, term, confState: { voters: [...voters], learners: [...learners] } },
          data: new Uint8Array(bytes(data)),
        });
      }
      const entries: Entry[] = [];
      for (const [k, v] of [...records.entries()]
        .filter(([k]) => k.startsWith(ENTRY_PREFIX))
        .sort(([a], [b]) => (a < b ? -1 : 1))) {
        const index = Number.parseInt(k.slice(ENTRY_PREFIX.length), 16);
        if (index <= s.mem.lastIndex()) continue; // covered by the snapshot (compaction not yet on disk)
        const expected = (entries.at(-1)?.index ?? s.mem.lastIndex()) + 1;
        if (index !== expected)
          throw new CorruptStorageError(`log gap: entry ${index} where ${expected} was expected`);
        entries.push(decodeEntry(index, v));
      }
      s.mem.append(entries);
      const hs = records.get(HARD_STATE_KEY);
      if (hs !== undefined) {
        const [term, vote, commit] = packr.unpack(hs) as [number, string, number];
        s.mem.setHardState({ term, vote, commit });
      }
    } catch (e) {
      if (e instanceof CorruptStorageError) throw e;
      throw new CorruptStorageError(`unreadable Raft storage: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const { hardState } = s.mem.initialState();
    if (hardState.commit > s.mem.lastIndex()) {
      throw new CorruptStorageError(
        `commit index ${hardState.commit} beyond the last entry ${s.mem.lastIndex()}`,
      );
    }
    return s;
  }

  /** Disk operations that make a Ready's entries, hard state and snapshot durable. */
  stage(rd: Ready): DiskOp[] {
    for (let i = 1; i < rd.entries.length; i++) {
      assert(
        rd.entries[i]!.index === rd.entries[i - 1]!.index + 1,
        `a Ready's entries have a gap: ${rd.entries[i - 1]!.index} then ${rd.entries[i]!.index}`,
      );
    }
    const ops: DiskOp[] = [];
    let first = this.mem.firstIndex();
    let last = this.mem.lastIndex();
    if (rd.snapshot !== undefined) {
      ops.push(...this.snapshotOps(rd.snapshot));
      for (let i = first; i <= last; i++) ops.push({ type: 'del', key: entryKey(i) });
      first = rd.snapshot.metadata.index + 1;
      last = rd.snapshot.metadata.index;
    }
    if (rd.entries.length > 0) {
      const newLast = rd.entries.at(-1)!.index;
      for (let i = Math.max(newLast + 1, first); i <= last; i++)
        ops.push({ type: 'del', key: entryKey(i) });
      for (const e of rd.entries)
        if (e.index >= first)
          ops.push({ type: 'put', key: entryKey(e.index), value: encodeEntry(e) });
    }
    if (rd.hardState !== undefined) ops.push(hardStateOp(rd.hardState));
    return ops;
  }

  /** Makes a Ready's state visible to the core, once stage()'s batch is durable. */
  commit(rd: Ready): void {
    if (rd.snapshot !== undefined) this.assertSnapshotForward(rd.snapshot.metadata.index);
    if (rd.hardState !== undefined) {
      const was = this.hardState.commit;
      assert(
        rd.hardState.commit >= was,
        `the commit index moves back from ${was} to ${rd.hardState.commit}`,
      );
    }
    if (rd.snapshot !== undefined) this.mem.applySnapshot(rd.snapshot);
    this.mem.append(rd.entries);
    if (rd.hardState !== undefined) this.mem.setHardState(rd.hardState);
  }

  /**
   * Takes a snapshot of the state machine at `index` (applied) and compacts the log up to
   * `compactTo` (<= index). Returns the disk operations; memory changes at once, which is safe:
   * until they are durable the disk still holds the older, longer log and snapshot.
   */
  snapshotAndCompact(
    index: number,
    confState: ConfState,
    data: Uint8Array,
    compactTo: number,
  ): DiskOp[] {
    this.assertSnapshotForward(index);
    assert(compactTo <= index, `compaction to ${compactTo} passes the snapshot at ${index}`);
    const committed = this.hardState.commit;
    assert(index <= committed, `snapshot at ${index} is beyond committed ${committed}`);
    const snap = this.mem.createSnapshot(index, confState, data);
    const ops = this.snapshotOps(snap);
    const first = this.mem.firstIndex();
    if (compactTo >= first) {
      this.mem.compact(compactTo);
      for (let i = first; i <= compactTo; i++) ops.push({ type: 'del', key: entryKey(i) });
    }
    return ops;
  }

  /** The snapshot index only moves forward (a snapshot replaces an older one, never a newer). */
  private assertSnapshotForward(index: number): void {
    const current = this.mem.snapshot().metadata.index;
    assert(index > current, `snapshot at ${index} does not move forward from ${current}`);
  }

  private snapshotOps(snap: Snapshot): DiskOp[] {
    const { index, term, confState } = snap.metadata;
    return [
      {
        type: 'put',
        key: SNAPSHOT_KEY,
        value: packr.pack([index, term, [...confState.voters], [...confState.learners], snap.data]),
      },
    ];
  }

  /** Ops that write a whole MemoryStorage prepared in memory (a bootstrapped group's first log). */
  static initialOps(mem: MemoryStorage): DiskOp[] {
    const ops: DiskOp[] = [];
    const ents =
      mem.lastIndex() >= mem.firstIndex()
        ? mem.entries(mem.firstIndex(), mem.lastIndex() + 1, Number.POSITIVE_INFINITY)
        : [];
    for (const e of ents) ops.push({ type: 'put', key: entryKey(e.index), value: encodeEntry(e) });
    ops.push(hardStateOp(mem.initialState().hardState));
    return ops;
  }

  setConfState(cs: ConfState): void {
    this.mem.setConfState(cs);
  }

  initialState(): InitialState {
    return this.mem.initialState();
  }
  entries(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    return this.mem.entries(lo, hi, maxSizeBytes);
  }
  term(i: number): number {
    return this.mem.term(i);
  }
  firstIndex(): number {
    return this.mem.firstIndex();
  }
  lastIndex(): number {
    return this.mem.lastIndex();
  }
  snapshot(): Snapshot {
    return this.mem.snapshot();
  }
  get hardState(): HardState {
    return this.mem.initialState().hardState;
  }
}

function hardStateOp(hs: HardState): DiskOp {
  return { type: 'put', key: HARD_STATE_KEY, value: packr.pack([hs.term, hs.vote, hs.commit]) };
}

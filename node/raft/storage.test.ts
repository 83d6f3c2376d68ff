import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { bootstrap, type Entry, type Ready } from '../../consensus/index.ts';
import type { DiskOp } from './disk.ts';
import { CorruptStorageError, DurableStorage, entryKey, HARD_STATE_KEY } from './storage.ts';

const ent = (index: number, term: number, data = `${index}`): Entry => ({
  index,
  term,
  type: 'normal',
  data: new TextEncoder().encode(data),
});

function ready(p: Partial<Ready>): Ready {
  return { readStates: [], entries: [], committedEntries: [], messages: [], mustSync: true, ...p };
}

/** Plays ops on a record map, as a disk would. */
function play(records: Map<string, Uint8Array>, ops: readonly DiskOp[]): void {
  for (const op of ops) {
    if (op.type === 'put') records.set(op.key, op.value);
    else records.delete(op.key);
  }
}

describe('DurableStorage', () => {
  it('a Ready round-trips through the disk records', () => {
    const disk = new Map<string, Uint8Array>();
    const s = new DurableStorage();
    const rd = ready({
      entries: [ent(1, 1), ent(2, 1)],
      hardState: { term: 1, vote: 'a', commit: 1 },
    });
    play(disk, s.stage(rd));
    // Not visible to the core before commit (it is not known durable yet).
    expect(s.lastIndex()).toBe(0);
    s.commit(rd);
    expect(s.lastIndex()).toBe(2);
    const r = DurableStorage.recover(disk);
    expect(r.entries(1, 3, Number.POSITIVE_INFINITY)).toEqual([ent(1, 1), ent(2, 1)]);
    expect(r.initialState().hardState).toEqual({ term: 1, vote: 'a', commit: 1 });
  });

  it('a conflicting append truncates the old suffix on disk too', () => {
    const disk = new Map<string, Uint8Array>();
    const s = new DurableStorage();
    const first = ready({ entries: [ent(1, 1), ent(2, 1), ent(3, 1), ent(4, 1)] });
    play(disk, s.stage(first));
    s.commit(first);
    const second = ready({ entries: [ent(2, 2, 'x')] });
    play(disk, s.stage(second));
    s.commit(second);
    expect(disk.has(entryKey(3))).toBe(false);
    expect(disk.has(entryKey(4))).toBe(false);
    const r = DurableStorage.recover(disk);
    expect(r.lastIndex()).toBe(2);
    expect(r.term(2)).toBe(2);
  });

  it('snapshot and compaction: the disk keeps the snapshot and the entries after the compaction point', () => {
    const disk = new Map<string, Uint8Array>();
    const s = new DurableStorage();
    const rd = ready({
      entries: [1, 2, 3, 4, 5].map((i) => ent(i, 1)),
      hardState: { term: 1, vote: '', commit: 5 },
    });
    play(disk, s.stage(rd));
    s.commit(rd);
    const cs = { voters: ['a', 'b'], learners: ['c'] };
    play(disk, s.snapshotAndCompact(4, cs, new Uint8Array([9]), 3));
    expect([...disk.keys()].filter((k) => k.startsWith('e/')).length).toBe(2);
    const r = DurableStorage.recover(disk);
    expect(r.snapshot().metadata).toEqual({ index: 4, term: 1, confState: cs });
    expect(r.snapshot().data).toEqual(new Uint8Array([9]));
    expect(r.firstIndex()).toBe(5);
    expect(r.lastIndex()).toBe(5);
    expect(r.initialState().confState).toEqual(cs);
  });

  it('a snapshot from the leader replaces the whole log', () => {
    const disk = new Map<string, Uint8Array>();
    const s = new DurableStorage();
    const rd = ready({ entries: [ent(1, 1), ent(2, 1)] });
    play(disk, s.stage(rd));
    s.commit(rd);
    const snap = {
      metadata: { index: 10, term: 3, confState: { voters: ['a'], learners: [] } },
      data: new Uint8Array(0),
    };
    const install = ready({
      snapshot: snap,
      entries: [ent(11, 3)],
      hardState: { term: 3, vote: '', commit: 10 },
    });
    play(disk, s.stage(install));
    s.commit(install);
    expect([...disk.keys()].filter((k) => k.startsWith('e/'))).toEqual([entryKey(11)]);
    const r = DurableStorage.recover(disk);
    expect(r.firstIndex()).toBe(11);
    expect(r.lastIndex()).toBe(11);
  });

  it('writes a bootstrapped log', () => {
    const s = new DurableStorage();
    bootstrap(s.mem, ['a', 'b', 'c']);
    const disk = new Map<string, Uint8Array>();
    play(disk, DurableStorage.initialOps(s.mem));
    const r = DurableStorage.recover(disk);
    expect(r.lastIndex()).toBe(3);
    expect(r.initialState().hardState).toEqual({ term: 1, vote: '', commit: 3 });
  });

  it('refuses a log with a gap, a commit beyond the log, or unreadable records', () => {
    const disk = new Map<string, Uint8Array>();
    const s = new DurableStorage();
    const rd = ready({
      entries: [ent(1, 1), ent(2, 1), ent(3, 1)],
      hardState: { term: 1, vote: '', commit: 3 },
    });
    play(disk, s.stage(rd));
    const gap = new Map(disk);
    gap.delete(entryKey(2));
    expect(() => DurableStorage.recover(gap)).toThrow(CorruptStorageError);
    expect(() => DurableStorage.recover(gap)).toThrow(/gap/);
    const short = new Map(disk);
    short.delete(entryKey(3));
    expect(() => DurableStorage.recover(short)).toThrow(/commit index 3 beyond/);
    const garbage = new Map(disk);
    garbage.set(HARD_STATE_KEY, new Uint8Array([0xc1]));
    expect(() => DurableStorage.recover(garbage)).toThrow(CorruptStorageError);
    const badEntry = new Map(disk);
    badEntry.set(entryKey(1), new Packr({ useRecords: false }).pack(['x', 7, 1]));
    expect(() => DurableStorage.recover(badEntry)).toThrow(/entry 1 is corrupt/);
  });
});

describe('DurableStorage invariants (asserted: a broken one is a bug, RaftError INVARIANT)', () => {
  const cs = { voters: ['a'], learners: [] };

  function committedTo(commit: number): DurableStorage {
    const s = new DurableStorage();
    const rd = ready({
      entries: [1, 2, 3, 4, 5].map((i) => ent(i, 1)),
      hardState: { term: 1, vote: '', commit },
    });
    s.stage(rd);
    s.commit(rd);
    return s;
  }

  it('the commit index never moves back', () => {
    const s = committedTo(4);
    const back = ready({ hardState: { term: 1, vote: '', commit: 3 } });
    expect(() => s.commit(back)).toThrow(
      /invariant violated: the commit index moves back from 4 to 3/,
    );
    expect(s.hardState.commit).toBe(4);
  });

  it('the snapshot index only moves forward, locally and from the leader', () => {
    const s = committedTo(5);
    s.snapshotAndCompact(4, cs, new Uint8Array(0), 3);
    expect(() => s.snapshotAndCompact(4, cs, new Uint8Array(0), 3)).toThrow(
      /invariant violated: snapshot at 4 does not move forward from 4/,
    );
    const older = ready({
      snapshot: { metadata: { index: 2, term: 1, confState: cs }, data: new Uint8Array(0) },
    });
    expect(() => s.commit(older)).toThrow(/snapshot at 2 does not move forward from 4/);
    expect(s.snapshot().metadata.index).toBe(4);
  });

  it('a local snapshot covers only committed entries, and compaction stops at it', () => {
    const s = committedTo(3);
    expect(() => s.snapshotAndCompact(4, cs, new Uint8Array(0), 2)).toThrow(
      /invariant violated: snapshot at 4 is beyond committed 3/,
    );
    expect(() => s.snapshotAndCompact(3, cs, new Uint8Array(0), 4)).toThrow(
      /invariant violated: compaction to 4 passes the snapshot at 3/,
    );
    expect(s.snapshot().metadata.index).toBe(0);
  });

  it("a Ready's entries are contiguous", () => {
    const s = new DurableStorage();
    expect(() => s.stage(ready({ entries: [ent(1, 1), ent(3, 1)] }))).toThrow(
      /invariant violated: a Ready's entries have a gap: 1 then 3/,
    );
  });
});

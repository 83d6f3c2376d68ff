import { describe, expect, it } from 'vitest';
import { isRaftError } from './errors.ts';
import { RaftLog } from './log.ts';
import { Inflights, Progress } from './progress.ts';
import { committedIndex, voteResult } from './quorum.ts';
import { seededRandom } from './rand.ts';
import { MemoryStorage } from './storage.ts';
import type { Entry } from './types.ts';

const e = (index: number, term: number, size = 0): Entry => ({
  index,
  term,
  type: 'normal',
  data: new Uint8Array(size),
});

function storageWith(ents: Entry[]): MemoryStorage {
  const s = new MemoryStorage({ voters: ['a'], learners: [] });
  s.append(ents);
  return s;
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    return isRaftError(err) ? err.code : String(err);
  }
}

describe('MemoryStorage', () => {
  it('serves entries and terms, and reports compacted and unavailable indexes by code', () => {
    const s = storageWith([e(1, 1), e(2, 1), e(3, 2)]);
    expect(s.firstIndex()).toBe(1);
    expect(s.lastIndex()).toBe(3);
    expect(s.term(3)).toBe(2);
    expect(s.term(0)).toBe(0);
    expect(s.entries(1, 4, Infinity).map((x) => x.index)).toEqual([1, 2, 3]);
    expect(codeOf(() => s.term(4))).toBe('UNAVAILABLE');
    expect(codeOf(() => s.entries(2, 5, Infinity))).toBe('UNAVAILABLE');
    s.createSnapshot(2, { voters: ['a'], learners: [] }, new Uint8Array([9]));
    s.compact(2);
    expect(s.firstIndex()).toBe(3);
    expect(s.term(2)).toBe(1); // the snapshot's index keeps its term
    expect(codeOf(() => s.term(1))).toBe('COMPACTED');
    expect(codeOf(() => s.entries(2, 3, Infinity))).toBe('COMPACTED');
    expect(codeOf(() => s.compact(2))).toBe('COMPACTED');
  });

  it('limits entries by size but always returns at least one', () => {
    const s = storageWith([e(1, 1, 100), e(2, 1, 100), e(3, 1, 100)]);
    expect(s.entries(1, 4, 0)).toHaveLength(1);
    expect(s.entries(1, 4, 2 * 124)).toHaveLength(2);
    expect(s.entries(1, 4, Infinity)).toHaveLength(3);
  });

  it('truncates a conflicting suffix on append and refuses a gap', () => {
    const s = storageWith([e(1, 1), e(2, 1), e(3, 1)]);
    s.append([e(2, 2)]);
    expect(s.lastIndex()).toBe(2);
    expect(s.term(2)).toBe(2);
    expect(codeOf(() => s.append([e(5, 2)]))).toBe('INVARIANT');
  });

  it('refuses an older snapshot and replaces the log with a newer one', () => {
    const s = storageWith([e(1, 1), e(2, 1)]);
    s.applySnapshot({
      metadata: { index: 10, term: 3, confState: { voters: ['a'], learners: [] } },
      data: new Uint8Array(),
    });
    expect(s.firstIndex()).toBe(11);
    expect(s.lastIndex()).toBe(10);
    expect(s.term(10)).toBe(3);
    const old = {
      metadata: { index: 5, term: 1, confState: { voters: ['a'], learners: [] } },
      data: new Uint8Array(),
    };
    expect(codeOf(() => s.applySnapshot(old))).toBe('SNAPSHOT_OUT_OF_DATE');
  });
});

describe('RaftLog', () => {
  it('appends over the unstable tail and never truncates committed entries', () => {
    const log = new RaftLog(storageWith([e(1, 1), e(2, 1)]), Infinity);
    log.commitTo(2);
    expect(log.append([e(3, 2), e(4, 2)])).toBe(4);
    expect(log.append([e(4, 3)])).toBe(4);
    expect(log.term(4)).toBe(3);
    expect(codeOf(() => log.append([e(2, 3)]))).toBe('INVARIANT');
    expect(log.committed).toBe(2);
  });

  it('commit never decreases and never passes the last index', () => {
    const log = new RaftLog(storageWith([e(1, 1), e(2, 1)]), Infinity);
    log.commitTo(2);
    log.commitTo(1);
    expect(log.committed).toBe(2);
    expect(codeOf(() => log.commitTo(3))).toBe('INVARIANT');
  });

  it('§5.3 maybeAppend: appends only when (index, term) match, and finds the first conflict', () => {
    const log = new RaftLog(storageWith([e(1, 1), e(2, 2), e(3, 3)]), Infinity);
    expect(log.maybeAppend(3, 2, 3, [e(4, 4)])).toBeUndefined(); // term at 3 is 3, not 2
    expect(log.maybeAppend(1, 1, 5, [e(2, 2), e(3, 4), e(4, 4)])).toBe(4);
    expect(log.allEntries().map((x) => x.term)).toEqual([1, 2, 4, 4]);
    expect(log.committed).toBe(4); // min(leader commit 5, last new index 4)
  });

  it('findConflictByTerm skips whole terms for fast back-tracking', () => {
    const log = new RaftLog(
      storageWith([e(1, 1), e(2, 1), e(3, 4), e(4, 4), e(5, 5), e(6, 5)]),
      Infinity,
    );
    expect(log.findConflictByTerm(6, 4)).toEqual({ index: 4, term: 4 });
    expect(log.findConflictByTerm(6, 2)).toEqual({ index: 2, term: 1 });
    expect(log.findConflictByTerm(6, 0)).toEqual({ index: 0, term: 0 });
    expect(log.findConflictByTerm(10, 9)).toEqual({ index: 6, term: 5 });
  });

  it('§5.4.1 isUpToDate compares last term, then last index', () => {
    const log = new RaftLog(storageWith([e(1, 1), e(2, 2)]), Infinity);
    expect(log.isUpToDate(1, 3)).toBe(true);
    expect(log.isUpToDate(5, 1)).toBe(false);
    expect(log.isUpToDate(2, 2)).toBe(true);
    expect(log.isUpToDate(1, 2)).toBe(false);
  });

  it('§5.4.2 maybeCommit commits only an entry of the given term', () => {
    const log = new RaftLog(storageWith([e(1, 1), e(2, 2)]), Infinity);
    expect(log.maybeCommit(1, 2)).toBe(false);
    expect(log.committed).toBe(0);
    expect(log.maybeCommit(2, 2)).toBe(true);
    expect(log.committed).toBe(2);
  });
});

describe('progress and quorums', () => {
  it('an inflight window is bounded by messages and bytes, and frees in order', () => {
    const inf = new Inflights(3, 0);
    inf.add(1, 10);
    inf.add(2, 10);
    inf.add(5, 10);
    expect(inf.full()).toBe(true);
    expect(codeOf(() => inf.add(6, 1))).toBe('INVARIANT');
    inf.freeLE(2);
    expect(inf.count).toBe(1);
    expect(inf.full()).toBe(false);
    const bytes = new Inflights(10, 25);
    bytes.add(1, 10);
    bytes.add(2, 10);
    expect(bytes.full()).toBe(false);
    bytes.add(3, 10);
    expect(bytes.full()).toBe(true);
  });

  it('probe sends one message at a time; replicate streams up to the window', () => {
    const pr = new Progress(5, 2, 0, false);
    expect(pr.isPaused()).toBe(false);
    pr.sentEntries(3, 30);
    expect(pr.isPaused()).toBe(true);
    expect(pr.maybeUpdate(7)).toBe(true);
    pr.becomeReplicate();
    expect(pr.next).toBe(8);
    pr.sentEntries(2, 1);
    pr.sentEntries(2, 1);
    expect(pr.next).toBe(12);
    expect(pr.isPaused()).toBe(true);
    // A rejection in replicate state falls back to match + 1.
    expect(pr.maybeDecrTo(9, 8)).toBe(true);
    expect(pr.next).toBe(8);
    // A stale rejection is ignored.
    expect(pr.maybeDecrTo(6, 0)).toBe(false);
  });

  it('majority commit index and vote results', () => {
    const voters = new Set(['a', 'b', 'c', 'd', 'e']);
    const match: Record<string, number> = { a: 9, b: 7, c: 7, d: 3, e: 1 };
    expect(committedIndex(voters, (id) => match[id]!)).toBe(7);
    expect(committedIndex(new Set(['a', 'b']), (id) => match[id]!)).toBe(7);
    const votes = new Map([
      ['a', true],
      ['b', false],
    ]);
    expect(voteResult(voters, votes)).toBe('pending');
    votes.set('c', false);
    votes.set('d', false);
    expect(voteResult(voters, votes)).toBe('lost');
    expect(
      voteResult(
        new Set(['a', 'b', 'c']),
        new Map([
          ['a', true],
          ['c', true],
        ]),
      ),
    ).toBe('won');
  });

  it('seeded randomness is reproducible and covers its range', () => {
    const a = seededRandom(1);
    const b = seededRandom(1);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const x = a.intn(10);
      expect(b.intn(10)).toBe(x);
      seen.add(x);
    }
    expect([...seen].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(() => a.intn(0)).toThrow(RangeError);
  });
});

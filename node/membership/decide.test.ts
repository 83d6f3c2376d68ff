import { describe, expect, it } from 'vitest';
import {
  decide,
  decideJoin,
  MEMBERSHIP_DEFAULTS,
  type MembershipView,
  transferee,
  verdictOf,
} from './decide.ts';

const A = ['/ip4/127.0.0.1/tcp/1'];
const B = ['/ip4/127.0.0.1/tcp/2'];
const p = MEMBERSHIP_DEFAULTS;

function view(over: Partial<MembershipView> = {}): MembershipView {
  return {
    self: 'n1',
    state: 'follower',
    lead: 'n2',
    voters: ['n1', 'n2', 'n3'],
    learners: [],
    lastIndex: 100,
    record: { id: 'n1', addrs: A, role: 'voter' },
    removedHere: false,
    peerVerdict: undefined,
    addrs: A,
    fresh: false,
    leaderlessMs: 0,
    ...over,
  };
}

describe('decide: this member and its place in the cluster', () => {
  it('a settled follower does nothing', () => {
    expect(decide(view(), p)).toBeUndefined();
  });

  it('not in any configuration and no leader: a fresh node joins, a former member probes', () => {
    const outside = { lead: '', voters: ['n2'], record: undefined };
    expect(decide(view({ ...outside, fresh: true }), p)).toEqual({ kind: 'join' });
    // It applied entries, so it was a member: removed, it must find out, never join again.
    expect(decide(view({ ...outside, fresh: false }), p)).toBeUndefined();
    expect(decide(view({ ...outside, leaderlessMs: p.probeAfterMs }), p)).toEqual({
      kind: 'probe',
    });
  });

  it('the record carries the name this member should hold', () => {
    expect(decide(view({ name: 'web-1' }), p)).toEqual({
      kind: 'record',
      member: { id: 'n1', addrs: A, role: 'voter', name: 'web-1' },
    });
    const named = { id: 'n1', addrs: A, role: 'voter' as const, name: 'web-1' };
    expect(decide(view({ name: 'web-1', record: named }), p)).toBeUndefined();
  });

  it('a missing or stale record is committed, with the role Raft gives', () => {
    expect(decide(view({ record: undefined }), p)).toEqual({
      kind: 'record',
      member: { id: 'n1', addrs: A, role: 'voter' },
    });
    expect(decide(view({ addrs: B }), p)).toMatchObject({ kind: 'record', member: { addrs: B } });
    const learner = view({ voters: ['n2', 'n3'], learners: ['n1'] });
    expect(decide(learner, p)).toMatchObject({ kind: 'record', member: { role: 'learner' } });
  });

  it('no leader and new addresses: announce them; no leader for long: probe', () => {
    expect(decide(view({ lead: '', addrs: B }), p)).toEqual({ kind: 'announce', addrs: B });
    expect(decide(view({ lead: '', leaderlessMs: p.probeAfterMs - 1 }), p)).toBeUndefined();
    expect(decide(view({ lead: '', leaderlessMs: p.probeAfterMs }), p)).toEqual({
      kind: 'probe',
    });
  });

  it('removed, by its own applied state or by a member, before anything else', () => {
    expect(decide(view({ removedHere: true, state: 'leader', lead: 'n1' }), p)).toMatchObject({
      kind: 'removed',
    });
    expect(decide(view({ lead: '', peerVerdict: 'removed' }), p)).toMatchObject({
      kind: 'removed',
    });
    expect(decide(view({ lead: '', peerVerdict: 'unknown' }), p)).toBeUndefined();
  });

  it('the leader promotes the first caught-up learner, below maxVoters only', () => {
    const leader = view({
      state: 'leader',
      lead: 'n1',
      voters: ['n1'],
      learners: ['n3', 'n2'],
      match: { n1: 100, n2: 100 - p.promoteLagEntries, n3: 100 - p.promoteLagEntries - 1 },
    });
    expect(decide(leader, p)).toEqual({ kind: 'promote', id: 'n2' });
    expect(decide({ ...leader, match: { n2: 10, n3: 10 } }, p)).toBeUndefined();
    expect(decide(leader, { ...p, maxVoters: 1 })).toBeUndefined();
  });

  it('a learner that acknowledged nothing is not caught up, even when the whole log is shorter than the lag', () => {
    const leader = view({
      state: 'leader',
      lead: 'n1',
      voters: ['n1'],
      learners: ['n2'],
      lastIndex: p.promoteLagEntries - 5,
      match: { n1: p.promoteLagEntries - 5, n2: 0 },
    });
    expect(decide(leader, p)).toBeUndefined();
    expect(decide({ ...leader, match: { n1: p.promoteLagEntries - 5, n2: 1 } }, p)).toEqual({
      kind: 'promote',
      id: 'n2',
    });
  });

  it('never promotes beyond maxVoters, whatever the view (property over small views)', () => {
    for (let voters = 1; voters <= 7; voters++) {
      for (let learners = 0; learners <= 3; learners++) {
        const vs = Array.from({ length: voters }, (_, i) => `v${i}`);
        const ls = Array.from({ length: learners }, (_, i) => `l${i}`);
        const match = Object.fromEntries([...vs, ...ls].map((id) => [id, 100]));
        const v = view({
          self: 'v0',
          state: 'leader',
          lead: 'v0',
          voters: vs,
          learners: ls,
          match,
          record: { id: 'v0', addrs: A, role: 'voter' },
        });
        const a = decide(v, p);
        if (a?.kind === 'promote') expect(voters + 1).toBeLessThanOrEqual(p.maxVoters);
        else expect(voters >= p.maxVoters || learners === 0).toBe(true);
      }
    }
  });
});

describe('decideJoin: how a member answers a node that asks to join', () => {
  const cfg = { voters: ['n1', 'n2'], learners: ['n3'] };
  it('a new node is recorded and added as a learner', () => {
    expect(decideJoin('n4', A, { ...cfg, record: undefined, removed: false })).toEqual({
      kind: 'add-learner',
      member: { id: 'n4', addrs: A, role: 'learner' },
    });
  });
  it('a member with the same addresses: nothing; with new ones: its record, same role', () => {
    const rec = { id: 'n2', addrs: A, role: 'voter' as const };
    expect(decideJoin('n2', A, { ...cfg, record: rec, removed: false })).toEqual({
      kind: 'already',
    });
    expect(decideJoin('n2', B, { ...cfg, record: rec, removed: false })).toEqual({
      kind: 'update-addrs',
      member: { id: 'n2', addrs: B, role: 'voter' },
    });
  });
  it('an announce from a node the configuration does not hold is refused, never added', () => {
    expect(decideJoin('n4', A, { ...cfg, record: undefined, removed: false }, true)).toEqual({
      kind: 'refuse-not-member',
    });
  });
  it('a removed node is refused, even if a stale configuration still lists it', () => {
    expect(decideJoin('n2', A, { ...cfg, record: undefined, removed: true })).toEqual({
      kind: 'refuse-removed',
    });
  });
});

describe('verdictOf and transferee', () => {
  it('answers member, removed or unknown', () => {
    expect(verdictOf('n1', { voters: ['n1'], learners: [], removed: false })).toBe('member');
    expect(verdictOf('n1', { voters: [], learners: ['n1'], removed: false })).toBe('member');
    expect(verdictOf('n1', { voters: [], learners: [], removed: false })).toBe('unknown');
    expect(verdictOf('n1', { voters: ['n1'], learners: [], removed: true })).toBe('removed');
  });
  it('hands over to the most caught-up other voter, the lowest ID on a tie', () => {
    expect(transferee('n1', ['n1', 'n3', 'n2'], { n1: 9, n2: 5, n3: 5 })).toBe('n2');
    expect(transferee('n1', ['n1', 'n3', 'n2'], { n2: 4, n3: 5 })).toBe('n3');
    expect(transferee('n1', ['n1'], {})).toBeUndefined();
  });
});

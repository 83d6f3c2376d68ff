// Bad input from the network: every kind is dropped, counted under its reason, never throws, and
// leaves the node's log, term and commit index exactly as they were.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Network } from '../test/consensus/network.ts';
import { type Entry, type Message, msg } from './types.ts';
import type { DropReason } from './validate.ts';

function liveCluster(): Network {
  const net = new Network(['a', 'b', 'c']);
  net.campaign('a');
  net.propose('a', 'one');
  net.propose('a', 'two');
  return net;
}

function fingerprint(net: Network, id: string): string {
  const r = net.node(id).rn.raft;
  const log = r.raftLog
    .allEntries()
    .map((e) => `${e.index}/${e.term}/${e.type}/${Buffer.from(e.data).toString('hex')}`);
  return JSON.stringify({
    term: r.term,
    vote: r.vote,
    commit: r.raftLog.committed,
    state: r.state,
    log,
  });
}

function expectDropped(net: Network, id: string, m: unknown, reason: DropReason): void {
  const node = net.node(id);
  const before = fingerprint(net, id);
  const count = node.rn.raft.stats.dropped[reason];
  expect(() => node.rn.step(m as Message)).not.toThrow();
  expect(node.rn.raft.stats.dropped[reason]).toBe(count + 1);
  expect(node.rn.raft.msgs).toEqual([]);
  expect(fingerprint(net, id)).toBe(before);
}

const ent = (index: number, term: number): Entry => ({
  index,
  term,
  type: 'normal',
  data: new Uint8Array([1]),
});

describe('bad input from the network is dropped and counted', () => {
  it('refuses values that are not messages', () => {
    const net = liveCluster();
    for (const m of [null, undefined, 42, 'MsgApp', [], {}])
      expectDropped(net, 'b', m, 'malformed');
  });

  it('refuses unknown types and local-only types', () => {
    const net = liveCluster();
    const term = net.node('b').rn.raft.term;
    expectDropped(
      net,
      'b',
      { ...msg({ type: 'MsgApp', from: 'a', to: 'b', term }), type: 'MsgBogus' },
      'malformed',
    );
    for (const type of [
      'MsgHup',
      'MsgBeat',
      'MsgCheckQuorum',
      'MsgUnreachable',
      'MsgSnapStatus',
    ] as const) {
      expectDropped(net, 'b', msg({ type, from: 'a', to: 'b', term }), 'localTypeFromWire');
    }
  });

  it('refuses fields of the wrong type or range', () => {
    const net = liveCluster();
    const r = net.node('b').rn.raft;
    const good = msg({
      type: 'MsgHeartbeat',
      from: 'a',
      to: 'b',
      term: r.term,
      commit: r.raftLog.committed,
    });
    const bad: Partial<Record<keyof Message, unknown>>[] = [
      { term: -1 },
      { term: 1.5 },
      { term: Number.MAX_SAFE_INTEGER + 2 },
      { index: '3' },
      { commit: Number.NaN },
      { logTerm: null },
      { rejectHint: -3 },
      { reject: 'yes' },
      { from: '' },
      { from: 'x'.repeat(129) },
      { to: 7 },
      { context: 'c'.repeat(257) },
      { entries: 'none' },
      { entries: [{ index: 1, term: 1, type: 'normal', data: 'not bytes' }] },
      { entries: [{ index: 1, term: 1, type: 'weird', data: new Uint8Array() }] },
    ];
    for (const patch of bad) expectDropped(net, 'b', { ...good, ...patch }, 'malformed');
  });

  it('refuses MsgApp whose entries are not contiguous, go back in term, or are beyond its term', () => {
    const net = liveCluster();
    const r = net.node('b').rn.raft;
    const li = r.raftLog.lastIndex();
    const t = r.term;
    const base = {
      type: 'MsgApp' as const,
      from: 'a',
      to: 'b',
      term: t,
      index: li,
      logTerm: t,
      commit: li,
    };
    expectDropped(
      net,
      'b',
      msg({ ...base, entries: [ent(li + 1, t), ent(li + 3, t)] }),
      'malformed',
    );
    expectDropped(net, 'b', msg({ ...base, entries: [ent(li + 2, t)] }), 'malformed');
    expectDropped(net, 'b', msg({ ...base, entries: [ent(li + 1, t + 1)] }), 'malformed');
    expectDropped(net, 'b', msg({ ...base, logTerm: t + 1 }), 'malformed');
    expectDropped(
      net,
      'b',
      msg({ ...base, entries: [ent(li + 1, t), { ...ent(li + 2, t), term: t - 1 }] }),
      'malformed',
    );
  });

  it('refuses MsgSnap without a usable snapshot', () => {
    const net = liveCluster();
    const t = net.node('b').rn.raft.term;
    const base = msg({ type: 'MsgSnap', from: 'a', to: 'b', term: t });
    const cs = { voters: ['a', 'b', 'c'], learners: [] };
    expectDropped(net, 'b', base, 'malformed');
    expectDropped(
      net,
      'b',
      {
        ...base,
        snapshot: { metadata: { index: 0, term: 0, confState: cs }, data: new Uint8Array() },
      },
      'malformed',
    );
    expectDropped(
      net,
      'b',
      {
        ...base,
        snapshot: { metadata: { index: 9, term: t + 1, confState: cs }, data: new Uint8Array() },
      },
      'malformed',
    );
    expectDropped(
      net,
      'b',
      {
        ...base,
        snapshot: {
          metadata: { index: 9, term: t, confState: { voters: [1] } },
          data: new Uint8Array(),
        },
      },
      'malformed',
    );
    expectDropped(
      net,
      'b',
      { ...base, snapshot: { metadata: { index: 9, term: t, confState: cs }, data: 'x' } },
      'malformed',
    );
  });

  it('refuses messages addressed to another node or claiming to come from itself', () => {
    const net = liveCluster();
    const t = net.node('b').rn.raft.term;
    expectDropped(
      net,
      'b',
      msg({ type: 'MsgHeartbeat', from: 'a', to: 'c', term: t }),
      'wrongRecipient',
    );
    expectDropped(
      net,
      'b',
      msg({ type: 'MsgHeartbeat', from: 'b', to: 'b', term: t }),
      'malformed',
    );
  });

  it('refuses messages from nodes outside the configuration, even with a higher term', () => {
    const net = liveCluster();
    const t = net.node('b').rn.raft.term;
    expectDropped(
      net,
      'b',
      msg({ type: 'MsgVote', from: 'z', to: 'b', term: t + 5, index: 99, logTerm: t + 5 }),
      'unknownSender',
    );
    expectDropped(
      net,
      'b',
      msg({ type: 'MsgApp', from: 'z', to: 'b', term: t + 5, index: 0, logTerm: 0 }),
      'unknownSender',
    );
  });

  it('drops stale-term messages (and tells a stale leader the new term)', () => {
    const net = liveCluster();
    net.node('a').rn.transferLeader('b'); // leadership moves on: term 2, and 'c' was leader of no term
    net.stabilize();
    expect(net.leader()).toBe('b');
    net.node('b').rn.transferLeader('a');
    net.stabilize();
    const b = net.node('b').rn.raft;
    const t = b.term;
    expect(t).toBe(3);
    const before = fingerprint(net, 'b');
    b.step(msg({ type: 'MsgVote', from: 'c', to: 'b', term: t - 1, index: 100, logTerm: t - 1 }));
    expect(b.stats.dropped.staleTerm).toBe(1);
    expect(b.msgs).toEqual([]);
    b.step(msg({ type: 'MsgApp', from: 'c', to: 'b', term: t - 1, index: 1, logTerm: 1 }));
    expect(b.stats.dropped.staleTerm).toBe(2);
    // The only answer is a bare MsgAppResp carrying the current term, so a stale leader steps down.
    expect(b.msgs).toHaveLength(1);
    expect(b.msgs[0]).toMatchObject({
      type: 'MsgAppResp',
      to: 'c',
      term: t,
      reject: false,
      index: 0,
    });
    expect(fingerprint(net, 'b')).toBe(before);
  });

  it('drops a heartbeat that commits beyond the log and an ack beyond what the leader has', () => {
    const net = liveCluster();
    const b = net.node('b').rn.raft;
    expectDropped(
      net,
      'b',
      msg({
        type: 'MsgHeartbeat',
        from: 'a',
        to: 'b',
        term: b.term,
        commit: b.raftLog.lastIndex() + 10,
      }),
      'outOfRange',
    );
    const a = net.node('a').rn.raft;
    expectDropped(
      net,
      'a',
      msg({
        type: 'MsgAppResp',
        from: 'b',
        to: 'a',
        term: a.term,
        index: a.raftLog.lastIndex() + 10,
      }),
      'outOfRange',
    );
  });

  it('drops a second leader claiming the same term', () => {
    const net = liveCluster();
    const b = net.node('b').rn.raft;
    const li = b.raftLog.lastIndex();
    expectDropped(
      net,
      'b',
      msg({
        type: 'MsgApp',
        from: 'c',
        to: 'b',
        term: b.term,
        index: li,
        logTerm: b.term,
        entries: [ent(li + 1, b.term)],
      }),
      'conflictingLeader',
    );
  });

  it('survives arbitrary garbage and mutated messages, and the cluster still commits', () => {
    const net = liveCluster();
    const ids = ['a', 'b', 'c'];
    const anyMessage = fc.record({
      type: fc.constantFrom(
        'MsgApp',
        'MsgAppResp',
        'MsgVote',
        'MsgVoteResp',
        'MsgPreVote',
        'MsgPreVoteResp',
        'MsgSnap',
        'MsgHeartbeat',
        'MsgHeartbeatResp',
        'MsgTransferLeader',
        'MsgTimeoutNow',
        'MsgReadIndex',
        'MsgReadIndexResp',
        'MsgProp',
        'MsgHup',
        'junk',
      ),
      to: fc.constantFrom('a', 'b', 'c', 'z'),
      from: fc.constantFrom('a', 'b', 'c', 'z', ''),
      term: fc.oneof(fc.nat(6), fc.integer(), fc.double()),
      logTerm: fc.oneof(fc.nat(6), fc.integer()),
      index: fc.oneof(fc.nat(20), fc.integer()),
      commit: fc.oneof(fc.nat(20), fc.integer()),
      entries: fc.oneof(
        fc.constant([]),
        fc.array(
          fc.record({
            index: fc.nat(20),
            term: fc.nat(6),
            type: fc.constantFrom('normal', 'confChange', 'x'),
            data: fc.uint8Array({ maxLength: 8 }),
          }),
          { maxLength: 4 },
        ),
        fc.anything(),
      ),
      reject: fc.oneof(fc.boolean(), fc.anything()),
      rejectHint: fc.nat(20),
      context: fc.oneof(fc.constant(''), fc.string({ maxLength: 8 })),
    });
    fc.assert(
      fc.property(fc.array(fc.oneof(anyMessage, fc.anything()), { maxLength: 30 }), (garbage) => {
        for (const g of garbage) {
          const to =
            typeof (g as Message)?.to === 'string' && ids.includes((g as Message).to)
              ? (g as Message).to
              : 'b';
          // Garbage may be a well-formed message that legitimately changes state (a higher term,
          // a vote): what must never happen is a throw or a broken invariant.
          net.node(to).rn.step(g as Message);
          net.node(to).rn.raft.checkInvariants();
        }
        net.stabilize();
      }),
      { numRuns: 300, seed: 7 },
    );
    // After the storm the cluster still elects and commits.
    net.tickAll(60);
    const leader = net.leader();
    expect(leader).toBeDefined();
    net.propose(leader!, 'after');
    for (const id of ids) expect(net.appliedData(id)).toContain('after');
  });
});

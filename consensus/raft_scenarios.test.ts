// Scenarios from the Raft dissertation ("Consensus: Bridging Theory and Practice", cited as thesis
// §x.y) and the paper's later sections: pre-vote, check-quorum, ReadIndex, leadership transfer,
// membership changes, snapshots, client requests and flow control. The paper's core rules (§5) are
// in raft_paper.test.ts.

import { describe, expect, it } from 'vitest';
import { Network } from '../test/consensus/network.ts';
import {
  deliveredWhere,
  encode,
  logIds,
  raftErrorOf,
  raftOf,
  tickAllUntil,
} from '../test/consensus/scenario.ts';
import { CAMPAIGN_TRANSFER, type Config } from './raft.ts';
import { type Message, msg, NONE } from './types.ts';

const T = 10; // the Network's default electionTicks

const withConfig =
  (extra: Partial<Config>) =>
  (c: Config): Config => ({ ...c, ...extra });

function leaderAmong(net: Network, ids: readonly string[]): string | undefined {
  return ids.find((id) => raftOf(net, id).state === 'leader');
}

describe('thesis §9.6 pre-vote: a rejoining node does not disrupt the cluster', () => {
  /**
   * Isolates c for many election timeouts while the others commit `proposals`, then heals and has
   * c time out once more before it hears from the leader. Returns the network and c's term while
   * it was away.
   */
  function rejoin(config: Partial<Config>, proposals: number) {
    const net = new Network(['a', 'b', 'c'], { configure: withConfig(config) });
    net.campaign('a');
    const term0 = raftOf(net, 'a').term;
    net.isolate('c');
    for (let i = 0; i < proposals; i++) net.propose('a', `p${i}`);
    net.tickAll(10 * T);
    const c = raftOf(net, 'c');
    const cTermWhileAway = c.term;
    expect(c.stats.preElections + c.stats.elections).toBeGreaterThanOrEqual(5);
    net.heal();
    net.campaign('c');
    return { net, term0, cTermWhileAway };
  }

  it('thesis §9.6 with pre-vote alone, a node whose log fell behind cannot raise the term', () => {
    const { net, term0, cTermWhileAway } = rejoin({ preVote: true, checkQuorum: false }, 2);
    // Its pre-votes never won, so c never started a real election while away.
    expect(cTermWhileAway).toBe(term0);
    expect(raftOf(net, 'c').stats.elections).toBe(0);
    net.tickAll(5 * T);
    expect(raftOf(net, 'a').state).toBe('leader');
    expect(raftOf(net, 'a').stats.becameLeader).toBe(1);
    for (const id of ['a', 'b', 'c']) {
      expect(raftOf(net, id).term).toBe(term0);
      expect(raftOf(net, id).lead).toBe('a');
    }
    expect(net.appliedData('c')).toEqual(['p0', 'p1']);
  });

  it('thesis §9.6 with pre-vote and check-quorum (defaults), even an up-to-date node cannot', () => {
    // No proposals while c is away: its log is as good as anyone's, so only the others' leader
    // lease (they heard from a live leader) keeps them from granting its pre-votes.
    const { net, term0, cTermWhileAway } = rejoin({}, 0);
    expect(cTermWhileAway).toBe(term0);
    net.tickAll(5 * T);
    expect(raftOf(net, 'a').state).toBe('leader');
    expect(raftOf(net, 'a').stats.becameLeader).toBe(1);
    for (const id of ['a', 'b', 'c']) expect(raftOf(net, id).term).toBe(term0);
    // c's pre-votes on rejoining were dropped by both, a live leader being known.
    expect(raftOf(net, 'a').stats.dropped.inLease).toBe(1);
    expect(raftOf(net, 'b').stats.dropped.inLease).toBe(1);
  });

  it('thesis §9.6 without pre-vote or check-quorum the rejoining node deposes the leader', () => {
    const { net, term0, cTermWhileAway } = rejoin({ preVote: false, checkQuorum: false }, 2);
    // Each timeout while away started a real election in a new term.
    expect(cTermWhileAway).toBeGreaterThanOrEqual(term0 + 5);
    // Its vote request carried a term above the leader's: a is deposed on the spot.
    expect(raftOf(net, 'a').state).toBe('follower');
    expect(raftOf(net, 'a').term).toBe(cTermWhileAway + 1);
    // The cluster recovers, in a term above everything c reached while away; c's stale log could
    // not win it.
    tickAllUntil(net, () => leaderAmong(net, ['a', 'b']) !== undefined, 10 * T);
    expect(raftOf(net, leaderAmong(net, ['a', 'b'])!).term).toBeGreaterThan(cTermWhileAway);
  });
});

describe('thesis §6.2 check-quorum', () => {
  it('thesis §6.2 a leader cut off from the majority steps down after one silent election timeout', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    net.tickAll(T - 1);
    // a's T-th tick: a check-quorum round that passes (everyone answered in the last T ticks),
    // then heartbeats, which are lost: a is cut off from here on.
    net.tick('a');
    const a = raftOf(net, 'a');
    expect(a.state).toBe('leader');
    expect(a.electionElapsed).toBe(0);
    const term = a.term;
    net.isolate('a');
    net.stabilize();

    net.tickAll(T - 1);
    expect(a.state).toBe('leader');
    net.tickAll(1);
    expect(a.state).toBe('follower');
    expect(a.term).toBe(term); // it stepped down on its own, not because of a higher term
    expect(a.lead).toBe(NONE);
    expect(raftErrorOf(() => net.node('a').rn.propose(encode('x'))).code).toBe('NO_LEADER');
    // The majority elects a leader of its own.
    tickAllUntil(net, () => leaderAmong(net, ['b', 'c']) !== undefined, 3 * T);
  });

  it('thesis §6.2 from any point of a round, the cut-off leader steps down within two election timeouts', () => {
    for (let offset = 0; offset < T; offset++) {
      const net = new Network(['a', 'b', 'c']);
      net.campaign('a');
      net.tickAll(offset);
      net.isolate('a');
      const ticks = tickAllUntil(net, () => raftOf(net, 'a').state !== 'leader', 2 * T);
      expect(ticks).toBeGreaterThanOrEqual(T);
      expect(ticks).toBeLessThanOrEqual(2 * T);
    }
  });

  it('thesis §4.2.3 a follower that heard from a live leader drops vote requests (in lease)', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    net.propose('a', 'x');
    const b = raftOf(net, 'b');
    const term = b.term;
    const ask = (type: 'MsgVote' | 'MsgPreVote', context = ''): Message[] => {
      net.node('b').rn.step(
        msg({
          type,
          from: 'c',
          to: 'b',
          term: term + 1,
          index: b.raftLog.lastIndex(),
          logTerm: b.raftLog.lastTerm(),
          context,
        }),
      );
      return net.handleReady('b').filter((m) => m.type === `${type}Resp`);
    };

    const inLease = b.stats.dropped.inLease;
    expect(ask('MsgPreVote')).toEqual([]);
    expect(ask('MsgVote')).toEqual([]);
    expect(b.stats.dropped.inLease).toBe(inLease + 2);
    expect(b.term).toBe(term);
    expect(b.vote).toBe('a');
    expect(b.lead).toBe('a');

    // Once a full election timeout passes without word from the leader, the lease is over.
    net.isolate('a');
    net.tick('b', T);
    expect(ask('MsgPreVote').map((m) => m.reject)).toEqual([false]);
    expect(b.term).toBe(term); // pre-votes never change the term
    expect(ask('MsgVote').map((m) => [m.term, m.reject])).toEqual([[term + 1, false]]);
    expect(b.vote).toBe('c');
    expect(b.stats.dropped.inLease).toBe(inLease + 2);
  });

  it('thesis §3.10 a vote request of a leadership transfer goes through the lease', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    const b = raftOf(net, 'b');
    const term = b.term;
    net.node('b').rn.step(
      msg({
        type: 'MsgVote',
        from: 'c',
        to: 'b',
        term: term + 1,
        index: b.raftLog.lastIndex(),
        logTerm: b.raftLog.lastTerm(),
        context: CAMPAIGN_TRANSFER,
      }),
    );
    const out = net.handleReady('b').filter((m) => m.type === 'MsgVoteResp');
    expect(out.map((m) => [m.to, m.term, m.reject])).toEqual([['c', term + 1, false]]);
    expect(b.stats.dropped.inLease).toBe(0);
  });
});

describe('a follower told that its leader is unreachable (leaderLostTicks)', () => {
  const L = 3;
  const lost = withConfig({ leaderLostTicks: L });

  /** Ticks b until it campaigns (pre-vote or vote); how many ticks that took. */
  function ticksToCampaign(net: Network, id: string, max: number): number {
    const s = raftOf(net, id).stats;
    const before = s.elections + s.preElections;
    for (let t = 1; t <= max; t++) {
      net.tick(id);
      if (s.elections + s.preElections > before) return t;
    }
    throw new Error(`${id} did not campaign within ${max} ticks`);
  }

  it('ends its lease; the voters campaign in turns by ID, leaderLostTicks apart, the first at the next tick', () => {
    const net = new Network(['a', 'b', 'c', 'd'], { configure: lost });
    net.campaign('a');
    net.tickAll(2); // heartbeats: the leases are fresh, the election timers near 0
    net.isolate('a'); // a's process died
    for (const id of ['b', 'c', 'd']) {
      expect(raftOf(net, id).electionElapsed).toBeLessThan(T);
      net.node(id).rn.reportUnreachable('a');
      expect(raftOf(net, id).electionElapsed).toBeGreaterThanOrEqual(T); // no lease: votes granted
    }
    expect(ticksToCampaign(net, 'b', 1)).toBe(1);
    expect(ticksToCampaign(net, 'c', 1 + L)).toBe(1 + L);
    expect(ticksToCampaign(net, 'd', 1 + 2 * L)).toBe(1 + 2 * L);
  });

  it('with every follower told, the first in turn is leader at the next tick, with no split vote', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const net = new Network(['a', 'b', 'c'], { seed, configure: lost });
      net.campaign('a');
      net.propose('a', 'x');
      net.isolate('a');
      net.node('b').rn.reportUnreachable('a');
      net.node('c').rn.reportUnreachable('a');
      expect(tickAllUntil(net, () => leaderAmong(net, ['b', 'c']) !== undefined, 6 * T)).toBe(1);
      expect(leaderAmong(net, ['b', 'c'])).toBe('b');
      expect(raftOf(net, 'c').stats.elections + raftOf(net, 'c').stats.preElections).toBe(0);
      net.propose('b', 'y');
      expect(net.appliedData('b')).toEqual(['x', 'y']);
      expect(net.appliedData('c')).toEqual(['x', 'y']);
    }
  });

  it('when the first in turn is gone too, the next one is elected at its turn', () => {
    const net = new Network(['a', 'b', 'c', 'd', 'e'], { configure: lost });
    net.campaign('a');
    net.isolate('a');
    net.isolate('b');
    for (const id of ['c', 'd', 'e']) net.node(id).rn.reportUnreachable('a');
    const ticks = tickAllUntil(net, () => leaderAmong(net, ['c', 'd', 'e']) !== undefined, 6 * T);
    expect(ticks).toBe(1 + L);
    expect(leaderAmong(net, ['c', 'd', 'e'])).toBe('c');
  });

  it('a report about a leader that is alive costs no term: pre-vote fails, b follows it again', () => {
    const net = new Network(['a', 'b', 'c'], { configure: lost });
    net.campaign('a');
    const term = raftOf(net, 'a').term;
    net.node('b').rn.reportUnreachable('a');
    net.tick('b', L); // b pre-votes; c (in a's lease) and a refuse
    net.stabilize();
    expect(raftOf(net, 'b').stats.preElections).toBe(1);
    expect(raftOf(net, 'b').stats.elections).toBe(0);
    expect(raftOf(net, 'c').stats.dropped.inLease).toBe(1);
    net.tickAll(1); // a's heartbeat
    for (const id of ['a', 'b', 'c']) expect(raftOf(net, id).term).toBe(term);
    expect(raftOf(net, 'a').state).toBe('leader');
    expect(raftOf(net, 'b').state).toBe('follower');
    expect(raftOf(net, 'b').lead).toBe('a');
    net.propose('a', 'x');
    expect(net.appliedData('b')).toEqual(['x']);
  });

  it('a report about a peer that is not its leader changes nothing', () => {
    const net = new Network(['a', 'b', 'c'], { configure: lost });
    net.campaign('a');
    net.tickAll(2);
    const b = raftOf(net, 'b');
    const [elapsed, timeout] = [b.electionElapsed, b.randomizedElectionTimeout];
    net.node('b').rn.reportUnreachable('c');
    expect([b.electionElapsed, b.randomizedElectionTimeout]).toEqual([elapsed, timeout]);
  });

  it('leaderLostTicks must be a positive integer', () => {
    for (const leaderLostTicks of [0, -1, 1.5]) {
      const err = raftErrorOf(
        () => new Network(['a'], { configure: withConfig({ leaderLostTicks }) }),
      );
      expect(err.code).toBe('INVALID_CONFIG');
    }
  });
});

describe('thesis §6.4 ReadIndex', () => {
  it('thesis §6.4 a new leader answers reads only once an entry of its term is committed', () => {
    const net = new Network(['a', 'b', 'c'], { configure: withConfig({ checkQuorum: false }) });
    net.campaign('a');
    // a commits 'x' at index 2, but the news of that commit never reaches b and c.
    net.filter = (m) => !(m.from === 'a' && m.commit >= 2);
    net.propose('a', 'x');
    expect(net.appliedData('a')).toEqual(['x']);
    expect(raftOf(net, 'b').raftLog.committed).toBe(1);

    // a crashes; b is elected in term 2, its no-op (index 3) not replicated yet.
    net.isolate('a');
    net.filter = (m) => !(m.type === 'MsgApp' && m.from === 'b');
    net.campaign('b');
    const b = raftOf(net, 'b');
    expect(b.state).toBe('leader');
    expect(b.term).toBe(2);
    net.tick('b'); // a heartbeat, so that c knows its leader
    net.stabilize();
    expect(raftOf(net, 'c').lead).toBe('b');

    net.node('b').rn.readIndex('on-leader');
    net.node('c').rn.readIndex('on-follower');
    net.stabilize();
    // Answering now would give index 1, before 'x', which a client already saw committed.
    expect(b.raftLog.committed).toBe(1);
    expect(net.node('b').readStates).toEqual([]);
    expect(net.node('c').readStates).toEqual([]);

    net.filter = undefined;
    net.tick('b');
    net.stabilize();
    expect(b.raftLog.committed).toBe(3);
    expect(net.node('b').readStates).toEqual([{ index: 3, context: 'on-leader' }]);
    // The follower's read was answered to the follower, not to the leader's caller.
    expect(net.node('c').readStates).toEqual([{ index: 3, context: 'on-follower' }]);
    expect(
      deliveredWhere(net, (m) => m.type === 'MsgReadIndexResp').map((m) => [
        m.from,
        m.to,
        m.index,
        m.context,
      ]),
    ).toEqual([['b', 'c', 3, 'on-follower']]);
  });

  it.each(['safe', 'leaseBased'] as const)(
    'thesis §6.4.1 readOnlyOption %s: lease-based reads skip the heartbeat round only when configured',
    (option) => {
      const net = new Network(['a', 'b', 'c'], {
        configure: withConfig({ readOnlyOption: option }),
      });
      net.campaign('a');
      net.propose('a', 'x');
      const commit = raftOf(net, 'a').raftLog.committed;

      net.node('a').rn.readIndex('r1');
      net.stabilize();
      expect(net.node('a').readStates).toEqual([{ index: commit, context: 'r1' }]);
      const rounds = deliveredWhere(net, (m) => m.type === 'MsgHeartbeat' && m.context === 'r1');
      expect(rounds.map((m) => m.to).sort()).toEqual(option === 'safe' ? ['b', 'c'] : []);

      // Cut off from the others (it does not know yet), the leader can confirm nothing by messages.
      net.partition(['a'], ['b', 'c']);
      net.node('a').rn.readIndex('r2');
      net.stabilize();
      const answered = option === 'leaseBased' ? [{ index: commit, context: 'r2' }] : [];
      expect(net.node('a').readStates.slice(1)).toEqual(answered);
      if (option === 'safe') {
        net.heal();
        net.tickAll(1);
        expect(net.node('a').readStates.slice(1)).toEqual([{ index: commit, context: 'r2' }]);
      }
    },
  );

  it('thesis §6.4.1 lease-based reads require check-quorum', () => {
    const err = raftErrorOf(
      () =>
        new Network(['a'], {
          configure: withConfig({ readOnlyOption: 'leaseBased', checkQuorum: false }),
        }),
    );
    expect(err.code).toBe('INVALID_CONFIG');
  });
});

describe('thesis §3.10 leadership transfer', () => {
  it('thesis §3.10 to an up-to-date node: MsgTimeoutNow at once, leader in the next term', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    net.propose('a', 'x');
    const term = raftOf(net, 'a').term;
    const mark = net.delivered.length;
    net.node('a').rn.transferLeader('b');
    net.stabilize();
    const after = net.delivered.slice(mark);
    expect(after[0]).toMatchObject({ type: 'MsgTimeoutNow', from: 'a', to: 'b' });
    // The transferee skips pre-vote, and its votes go through the others' lease.
    expect(after.filter((m) => m.type === 'MsgPreVote')).toEqual([]);
    expect(
      after
        .filter((m) => m.type === 'MsgVote')
        .map((m) => [m.to, m.context])
        .sort(),
    ).toEqual([
      ['a', CAMPAIGN_TRANSFER],
      ['c', CAMPAIGN_TRANSFER],
    ]);
    expect(raftOf(net, 'b').state).toBe('leader');
    expect(raftOf(net, 'b').term).toBe(term + 1);
    expect(raftOf(net, 'a').state).toBe('follower');
    expect(raftOf(net, 'a').lead).toBe('b');
    net.propose('b', 'y');
    for (const id of ['a', 'b', 'c']) expect(net.appliedData(id)).toEqual(['x', 'y']);
  });

  it('thesis §3.10 to a lagging node: the leader first sends it the missing entries', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    const term = raftOf(net, 'a').term;
    net.isolate('c');
    for (const p of ['x', 'y', 'z']) net.propose('a', p);
    net.heal();
    const last = raftOf(net, 'a').raftLog.lastIndex();
    expect(raftOf(net, 'c').raftLog.lastIndex()).toBeLessThan(last);

    const mark = net.delivered.length;
    net.node('a').rn.transferLeader('c');
    net.stabilize();
    const after = net.delivered.slice(mark);
    const timeoutNow = after.findIndex((m) => m.type === 'MsgTimeoutNow');
    const caughtUp = after.findIndex(
      (m) => m.type === 'MsgAppResp' && m.from === 'c' && !m.reject && m.index === last,
    );
    const sentZ = after.findIndex(
      (m) =>
        m.type === 'MsgApp' &&
        m.to === 'c' &&
        m.entries.some((e) => new TextDecoder().decode(e.data) === 'z'),
    );
    expect(sentZ).toBeGreaterThanOrEqual(0);
    expect(caughtUp).toBeGreaterThan(sentZ);
    expect(timeoutNow).toBeGreaterThan(caughtUp);
    expect(after.filter((m) => m.type === 'MsgTimeoutNow')).toHaveLength(1);
    expect(raftOf(net, 'c').state).toBe('leader');
    expect(raftOf(net, 'c').term).toBe(term + 1);
    expect(net.appliedData('c')).toEqual(['x', 'y', 'z']);
  });

  it('thesis §3.10 proposals are refused during a transfer, which is aborted after an election timeout', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    net.isolate('c');
    net.node('a').rn.transferLeader('c');
    net.stabilize();
    const a = raftOf(net, 'a');
    expect(a.leadTransferee).toBe('c');
    const err = raftErrorOf(() => net.node('a').rn.propose(encode('x')));
    expect(err.code).toBe('PROPOSAL_DROPPED');
    expect(err.leader).toBe('c');

    net.tickAll(T - 1);
    expect(a.leadTransferee).toBe('c');
    expect(raftErrorOf(() => net.node('a').rn.propose(encode('x'))).code).toBe('PROPOSAL_DROPPED');
    net.tickAll(1);
    expect(a.leadTransferee).toBe(NONE);
    expect(a.state).toBe('leader');
    net.propose('a', 'y');
    expect(net.appliedData('b')).toEqual(['y']);
  });
});

describe('§6 membership changes', () => {
  it('thesis §4.2.2 removing the leader: it steps down once the change is applied, the rest elect and commit', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    net.propose('a', 'x');
    const a = raftOf(net, 'a');
    const term = a.term;
    net.node('a').rn.proposeConfChange({ type: 'removeNode', nodeId: 'a' });
    const ccIndex = a.raftLog.lastIndex();
    expect(a.state).toBe('leader');
    net.stabilize();

    expect(net.node('a').applied.at(-1)).toMatchObject({ index: ccIndex, type: 'confChange' });
    expect(a.state).toBe('follower');
    expect(a.term).toBe(term);
    for (const id of ['a', 'b', 'c']) {
      expect(net.node(id).confState).toEqual({ voters: ['b', 'c'], learners: [] });
      expect(raftOf(net, id).raftLog.committed).toBeGreaterThanOrEqual(ccIndex);
    }

    tickAllUntil(net, () => leaderAmong(net, ['b', 'c']) !== undefined, 5 * T);
    const leader = leaderAmong(net, ['b', 'c'])!;
    expect(raftOf(net, leader).term).toBe(term + 1);
    net.propose(leader, 'y');
    expect(net.appliedData('b')).toEqual(['x', 'y']);
    expect(net.appliedData('c')).toEqual(['x', 'y']);
    expect(net.appliedData('a')).toEqual(['x']);
    // The removed node never campaigns again.
    const campaigns = a.stats.preElections + a.stats.elections;
    net.tickAll(3 * T);
    expect(a.stats.preElections + a.stats.elections).toBe(campaigns);
    expect(a.state).toBe('follower');
  });

  it('thesis §4.2.2 removing the leader when the news of the commit is lost: a refused vote carries it', () => {
    // Two voters; the leader removes itself and, before the removal commits, takes one more
    // proposal that never reaches b. It commits the removal, applies it and steps down, and every
    // message telling b so is lost. b still counts a as a voter, and a, with the longer log,
    // refuses b its vote: without the commit index carried by that refusal, b waits forever.
    const net = new Network(['a', 'b']);
    net.campaign('a');
    const a = raftOf(net, 'a');
    const b = raftOf(net, 'b');
    net.node('a').rn.proposeConfChange({ type: 'removeNode', nodeId: 'a' });
    const ccIndex = a.raftLog.lastIndex();
    const toB = net.handleReady('a');
    for (const m of toB) net.node('b').rn.step(m);
    const acks = net.handleReady('b');
    net.node('a').rn.propose(encode('lost'));
    net.handleReady('a'); // the MsgApp carrying 'lost' is dropped
    for (const m of acks) net.node('a').rn.step(m);
    net.handleReady('a'); // a commits and applies its removal; its news to b is dropped
    expect(net.node('a').confState).toEqual({ voters: ['b'], learners: [] });
    expect(a.state).toBe('follower');
    expect(a.raftLog.lastIndex()).toBe(ccIndex + 1);
    expect(b.raftLog.committed).toBeLessThan(ccIndex);
    expect(net.node('b').confState.voters).toEqual(['a', 'b']);

    tickAllUntil(net, () => b.state === 'leader', 10 * T);
    expect(b.state).toBe('leader');
    expect(net.node('b').confState).toEqual({ voters: ['b'], learners: [] });
    net.propose('b', 'after');
    expect(net.appliedData('b')).toEqual(['after']);
  });

  it('thesis §4.2.2 with stepDownOnRemoval off, the removed leader stays leader but takes no proposals', () => {
    const net = new Network(['a', 'b', 'c'], {
      configure: withConfig({ stepDownOnRemoval: false }),
    });
    net.campaign('a');
    net.node('a').rn.proposeConfChange({ type: 'removeNode', nodeId: 'a' });
    net.stabilize();
    expect(net.node('a').confState.voters).toEqual(['b', 'c']);
    expect(raftOf(net, 'a').state).toBe('leader');
    expect(raftErrorOf(() => net.node('a').rn.propose(encode('x'))).code).toBe('PROPOSAL_DROPPED');
  });

  it('§6 one membership change at a time: a second one while the first is unapplied is refused', () => {
    const net = new Network(['a', 'b', 'c']);
    net.add('d');
    net.add('e');
    net.campaign('a');
    net.node('a').rn.proposeConfChange({ type: 'addLearner', nodeId: 'd' });
    const err = raftErrorOf(() =>
      net.node('a').rn.proposeConfChange({ type: 'addLearner', nodeId: 'e' }),
    );
    expect(err.code).toBe('CONF_CHANGE_PENDING');
    net.stabilize();
    expect(net.node('a').confState.learners).toEqual(['d']);
    net.node('a').rn.proposeConfChange({ type: 'addLearner', nodeId: 'e' });
    net.stabilize();
    expect(net.node('a').confState.learners).toEqual(['d', 'e']);
  });

  // A group bootstrapped with its membership in the log (bootstrap.ts): a new node learns the
  // whole membership by replaying the log from index 1, no snapshot needed.
  it('§6 a node that joins a bootstrapped group by log replay learns the whole membership', () => {
    const net = new Network(['a', 'b', 'c'], { bootstrap: true });
    net.stabilize(); // every member applies the bootstrap entries 1..3
    expect(net.node('b').confState).toEqual({ voters: ['a', 'b', 'c'], learners: [] });
    net.add('d');
    net.campaign('a');
    net.propose('a', 'x');
    net.node('a').rn.proposeConfChange({ type: 'addLearner', nodeId: 'd' });
    net.stabilize();
    net.tickAll(1);
    net.propose('a', 'y');
    net.tickAll(1);
    expect(raftOf(net, 'd').stats.snapshotsRestored).toBe(0);
    expect(net.appliedData('d')).toEqual(['x', 'y']);
    expect(net.node('d').confState).toEqual({ voters: ['a', 'b', 'c'], learners: ['d'] });
    expect(logIds(net, 'd')).toEqual(logIds(net, 'a'));
    expect(raftOf(net, 'd').stats.dropped.unknownSender).toBe(0);
  });

  // A group started from a ConfState in storage has its membership in no entry. A node added
  // later must not replay from index 1 (it would build a membership without the leader, or with
  // itself as the only voter and elect itself): the leader sends it nothing until it has a
  // snapshot, then the snapshot.
  it('§6 a node joining a statically configured group waits for a snapshot, never replays a partial membership', () => {
    const net = new Network(['a', 'b', 'c']);
    net.add('d');
    net.campaign('a');
    net.propose('a', 'x');
    net.node('a').rn.proposeConfChange({ type: 'addLearner', nodeId: 'd' });
    net.stabilize();
    net.propose('a', 'y');
    net.tickAll(3);
    // Probes reach d and are refused (its log is empty); the leader never backs up to index 1.
    expect(
      deliveredWhere(net, (m) => m.to === 'd' && m.type === 'MsgApp' && m.index === 0),
    ).toEqual([]);
    expect(
      deliveredWhere(net, (m) => m.from === 'd' && m.type === 'MsgAppResp' && !m.reject),
    ).toEqual([]);
    expect(raftOf(net, 'd').raftLog.lastIndex()).toBe(0);
    expect(net.node('d').confState).toEqual({ voters: [], learners: [] });
    net.compact('a');
    net.tickAll(2);
    expect(raftOf(net, 'd').stats.snapshotsRestored).toBe(1);
    expect(net.node('d').confState).toEqual({ voters: ['a', 'b', 'c'], learners: ['d'] });
    expect(net.appliedData('d')).toEqual(['x', 'y']);
    // Promoted, it is a fourth voter that follows the real leader, not a group of its own.
    net.node('a').rn.proposeConfChange({ type: 'addVoter', nodeId: 'd' });
    net.stabilize();
    net.tickAll(1);
    expect(net.node('d').confState).toEqual({ voters: ['a', 'b', 'c', 'd'], learners: [] });
    expect(raftOf(net, 'd').lead).toBe('a');
  });

  it('§6 a new leader takes no membership change before it commits an entry of its term', () => {
    const net = new Network(['a', 'b', 'c']);
    net.add('d');
    net.filter = (m) => !(m.type === 'MsgApp' && m.from === 'a');
    net.campaign('a');
    expect(raftOf(net, 'a').state).toBe('leader');
    expect(raftOf(net, 'a').raftLog.committed).toBe(0);
    const err = raftErrorOf(() =>
      net.node('a').rn.proposeConfChange({ type: 'addLearner', nodeId: 'd' }),
    );
    expect(err.code).toBe('CONF_CHANGE_PENDING');
    net.filter = undefined;
    net.tickAll(1);
    expect(raftOf(net, 'a').raftLog.committed).toBe(1);
    net.node('a').rn.proposeConfChange({ type: 'addLearner', nodeId: 'd' });
    net.stabilize();
    expect(net.node('a').confState.learners).toEqual(['d']);
  });

  it('thesis §4.2.1 a learner replicates the log but neither votes nor counts for commit; addVoter promotes it', () => {
    const net = new Network(['a', 'b', 'c']);
    net.add('d');
    net.campaign('a');
    net.propose('a', 'x');
    // d joins with an empty configuration and learns the membership from a snapshot (as in
    // etcd's own harness): in a statically configured group the initial membership is in no entry.
    net.compact('a');
    net.node('a').rn.proposeConfChange({ type: 'addLearner', nodeId: 'd' });
    net.stabilize();
    net.tickAll(1); // the next heartbeat finds d and catches it up
    expect(raftOf(net, 'd').stats.snapshotsRestored).toBe(1);
    expect(net.node('d').confState).toEqual({ voters: ['a', 'b', 'c'], learners: ['d'] });
    expect(logIds(net, 'd')).toEqual(logIds(net, 'a'));
    expect(net.appliedData('d')).toEqual(['x']);

    // Only the learner acknowledges 'y': not a majority of the voters.
    net.partition(['a', 'd'], ['b', 'c']);
    const commit = raftOf(net, 'a').raftLog.committed;
    net.propose('a', 'y');
    expect(raftOf(net, 'd').raftLog.lastIndex()).toBe(commit + 1);
    expect(raftOf(net, 'a').raftLog.committed).toBe(commit);
    net.heal();
    net.tickAll(1);
    expect(raftOf(net, 'a').raftLog.committed).toBe(commit + 1);

    // A learner never campaigns and is never asked for its vote.
    net.isolate('a');
    net.tickAll(3 * T);
    expect(raftOf(net, 'd').stats.preElections + raftOf(net, 'd').stats.elections).toBe(0);
    const leader = leaderAmong(net, ['b', 'c'])!;
    expect(leader).toBeDefined();
    expect(
      deliveredWhere(net, (m) => m.to === 'd' && (m.type === 'MsgVote' || m.type === 'MsgPreVote')),
    ).toEqual([]);
    net.heal();
    tickAllUntil(net, () => raftOf(net, 'a').lead === leader, 3 * T);

    // Promoted, d counts: with c cut off, the leader needs d (3 of 4 voters) to commit.
    net.node(leader).rn.proposeConfChange({ type: 'addVoter', nodeId: 'd' });
    net.stabilize();
    expect(net.node(leader).confState).toEqual({ voters: ['a', 'b', 'c', 'd'], learners: [] });
    const other = leader === 'b' ? 'c' : 'b';
    net.isolate(other);
    const before = raftOf(net, leader).raftLog.committed;
    net.propose(leader, 'z');
    expect(raftOf(net, leader).raftLog.committed).toBe(before + 1);
    net.isolate('d'); // now only the leader and a: 2 of 4
    net.propose(leader, 'w');
    expect(raftOf(net, leader).raftLog.committed).toBe(before + 1);
  });
});

describe('§7 log compaction', () => {
  it('§7 a slow follower behind the compacted log is restored by a snapshot', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    net.propose('a', 'x');
    net.isolate('c');
    for (let i = 0; i < 10; i++) net.propose('a', `v${i}`);
    net.compact('a');
    const snapIndex = net.node('a').storage.snapshot().metadata.index;
    expect(raftOf(net, 'a').raftLog.firstIndex()).toBe(snapIndex + 1);
    expect(raftOf(net, 'c').raftLog.lastIndex()).toBeLessThan(snapIndex);

    net.heal();
    net.tickAll(3);
    const c = raftOf(net, 'c');
    expect(raftOf(net, 'a').stats.snapshotsSent).toBe(1);
    expect(c.stats.snapshotsRestored).toBe(1);
    expect(c.raftLog.firstIndex()).toBe(snapIndex + 1);
    expect(net.appliedData('c')).toEqual(net.appliedData('a'));
    expect(net.node('a').rn.status().progress?.c?.state).toBe('replicate');

    // Replication continues normally after the snapshot.
    net.propose('a', 'after');
    expect(net.appliedData('c')).toEqual([
      'x',
      ...Array.from({ length: 10 }, (_, i) => `v${i}`),
      'after',
    ]);
    expect(logIds(net, 'c')).toEqual(logIds(net, 'a'));
  });
});

describe('§8 client interaction', () => {
  it('§8 a follower forwards a proposal to the leader', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    net.propose('b', 'via-b');
    const forwarded = deliveredWhere(net, (m) => m.type === 'MsgProp');
    expect(forwarded.map((m) => [m.from, m.to])).toEqual([['b', 'a']]);
    for (const id of ['a', 'b', 'c']) expect(net.appliedData(id)).toEqual(['via-b']);
    const e = net.node('b').applied.at(-1)!;
    expect(e.term).toBe(raftOf(net, 'a').term);
  });

  it('§8 with no leader known, a proposal fails with NO_LEADER', () => {
    const net = new Network(['a', 'b', 'c']);
    expect(raftErrorOf(() => net.node('a').rn.propose(encode('x'))).code).toBe('NO_LEADER');
    // A candidate knows no leader either.
    net.isolate('a');
    net.campaign('a');
    expect(raftOf(net, 'a').state).toBe('preCandidate');
    expect(raftErrorOf(() => net.node('a').rn.propose(encode('x'))).code).toBe('NO_LEADER');
  });

  it('§8 with disableProposalForwarding, a follower refuses with NOT_LEADER and names the leader', () => {
    const net = new Network(['a', 'b', 'c'], {
      configure: withConfig({ disableProposalForwarding: true }),
    });
    net.campaign('a');
    const err = raftErrorOf(() => net.node('b').rn.propose(encode('x')));
    expect(err.code).toBe('NOT_LEADER');
    expect(err.leader).toBe('a');
    net.stabilize();
    expect(deliveredWhere(net, (m) => m.type === 'MsgProp')).toEqual([]);
    expect(net.appliedData('a')).toEqual([]);
  });

  it('§8 flow control: a leader cut off from its followers refuses proposals past maxUncommittedEntriesBytes', () => {
    const net = new Network(['a', 'b', 'c'], {
      configure: withConfig({ maxUncommittedEntriesBytes: 10 }),
    });
    net.campaign('a');
    net.partition(['a'], ['b', 'c']);
    net.propose('a', 'p1--'); // 4 bytes
    net.propose('a', 'p2--'); // 8 bytes: still within the bound
    const a = raftOf(net, 'a');
    expect(a.uncommittedSize).toBe(8);
    const last = a.raftLog.lastIndex();
    const err = raftErrorOf(() => net.node('a').rn.propose(encode('p3--')));
    expect(err.code).toBe('UNCOMMITTED_LIMIT');
    expect(a.raftLog.lastIndex()).toBe(last);

    net.heal();
    net.tickAll(1);
    expect(net.appliedData('a')).toEqual(['p1--', 'p2--']);
    expect(a.uncommittedSize).toBe(0);
    net.propose('a', 'p3--');
    for (const id of ['a', 'b', 'c']) expect(net.appliedData(id)).toEqual(['p1--', 'p2--', 'p3--']);
  });
});

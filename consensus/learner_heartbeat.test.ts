// Config.learnerHeartbeatEvery (D48): a leader's periodic heartbeat round reaches learners only
// every k-th round; voters, appends and ReadIndex rounds are not thinned.

import { describe, expect, it } from 'vitest';
import { Network } from '../test/consensus/network.ts';
import { deliveredWhere, raftErrorOf, raftOf } from '../test/consensus/scenario.ts';
import { type Config, LEARNER_HEARTBEAT_EVERY_MAX } from './raft.ts';
import { seededRandom } from './rand.ts';
import { RawNode } from './rawnode.ts';
import { MemoryStorage } from './storage.ts';

/** Voters a, b, c and learners d, e; a leads; the messages of its election forgotten. */
function group(learnerHeartbeatEvery?: number): Network {
  const net = new Network(['a', 'b', 'c', 'd', 'e'], {
    voters: ['a', 'b', 'c'],
    learners: ['d', 'e'],
    configure: (c: Config) =>
      learnerHeartbeatEvery === undefined ? c : { ...c, learnerHeartbeatEvery },
  });
  net.campaign('a');
  net.stabilize();
  net.delivered.length = 0;
  return net;
}

const heartbeatsTo = (net: Network, to: string) =>
  deliveredWhere(net, (m) => m.type === 'MsgHeartbeat' && m.to === to).length;

describe('learnerHeartbeatEvery', () => {
  it('by default every heartbeat round reaches learners too (etcd)', () => {
    const net = group();
    net.tickAll(12); // heartbeatTicks 1: 12 rounds
    expect(heartbeatsTo(net, 'b')).toBe(12);
    expect(heartbeatsTo(net, 'd')).toBe(12);
  });

  it('with 3, voters get every round and learners every third, the first round of a term included', () => {
    const net = group(3);
    net.tickAll(12);
    expect(heartbeatsTo(net, 'b')).toBe(12);
    expect(heartbeatsTo(net, 'c')).toBe(12);
    expect(heartbeatsTo(net, 'd')).toBe(4);
    expect(heartbeatsTo(net, 'e')).toBe(4);
    // A learner never goes longer than 3 ticks without a word from its leader.
    const ticks: number[] = [];
    let n = 0;
    for (let t = 0; t < 12; t++) {
      net.delivered.length = 0;
      net.tickAll(1);
      n++;
      if (heartbeatsTo(net, 'd') === 1) {
        ticks.push(n);
        n = 0;
      }
    }
    expect(ticks.every((gap) => gap <= 3)).toBe(true);
    // The learners' answers come back, so the leader still hears from them.
    expect(deliveredWhere(net, (m) => m.type === 'MsgHeartbeatResp').length).toBeGreaterThan(0);
  });

  it('a new term starts counting again: its first round reaches the learners', () => {
    const net = group(3);
    net.tickAll(1); // a's round 0 reaches d; its rounds 1 and 2 would not
    net.node('a').rn.transferLeader('b');
    net.stabilize();
    net.node('b').rn.transferLeader('a');
    net.stabilize();
    expect(raftOf(net, 'a').state).toBe('leader');
    net.delivered.length = 0;
    net.tickAll(1);
    expect(heartbeatsTo(net, 'd')).toBe(1);
  });

  it('learners still learn each commit at once (appends are not thinned)', () => {
    const net = group(3);
    net.tickAll(1);
    net.propose('a', 'x');
    // No tick: the append and the commit notice reach d without waiting for a heartbeat round.
    expect(net.appliedData('d')).toEqual(['x']);
    expect(net.appliedData('e')).toEqual(['x']);
  });

  it('a ReadIndex round is not thinned: it reaches every member', () => {
    const net = group(3);
    net.tickAll(1);
    net.delivered.length = 0;
    net.node('a').rn.readIndex('ctx-1');
    net.stabilize();
    expect(
      deliveredWhere(net, (m) => m.type === 'MsgHeartbeat' && m.context === 'ctx-1').map(
        (m) => m.to,
      ),
    ).toEqual(['b', 'c', 'd', 'e']);
  });

  it('a learner whose append was lost gets it again after a thinned round', () => {
    const net = group(3);
    net.filter = (m) => !(m.to === 'd' && m.type === 'MsgApp');
    net.propose('a', 'x');
    expect(net.appliedData('d')).toEqual([]);
    net.filter = undefined;
    net.tickAll(3); // the next round that reaches d is within 3 ticks; its answer asks for more
    net.stabilize();
    expect(net.appliedData('d')).toEqual(['x']);
  });

  it('refuses a value that is not an integer in 1..LEARNER_HEARTBEAT_EVERY_MAX', () => {
    for (const bad of [0, -1, 1.5, LEARNER_HEARTBEAT_EVERY_MAX + 1, Number.NaN]) {
      const err = raftErrorOf(
        () =>
          new RawNode({
            id: 'a',
            electionTicks: 10,
            heartbeatTicks: 1,
            storage: new MemoryStorage({ voters: ['a'], learners: [] }),
            random: seededRandom(1),
            learnerHeartbeatEvery: bad,
          }),
      );
      expect(err.code).toBe('INVALID_CONFIG');
      expect(err.message).toContain('learnerHeartbeatEvery');
    }
  });
});

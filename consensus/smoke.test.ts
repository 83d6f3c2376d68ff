import { describe, expect, it } from 'vitest';
import { Network } from '../test/consensus/network.ts';

describe('smoke', () => {
  it('elects a leader and replicates to all three nodes', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    expect(net.leader()).toBe('a');
    net.propose('a', 'x');
    net.propose('b', 'y'); // forwarded
    for (const id of ['a', 'b', 'c']) expect(net.appliedData(id)).toEqual(['x', 'y']);
  });

  it('elects by ticks alone', () => {
    const net = new Network(['a', 'b', 'c']);
    net.tickAll(40);
    expect(net.leader()).toBeDefined();
  });

  it('catches up a compacted follower by snapshot', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    net.isolate('c');
    for (let i = 0; i < 10; i++) net.propose('a', `v${i}`);
    net.compact('a');
    net.heal();
    net.tickAll(5);
    expect(net.appliedData('c')).toEqual(net.appliedData('a'));
    expect(net.node('a').rn.raft.stats.snapshotsSent).toBe(1);
  });
});

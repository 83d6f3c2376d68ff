// The core is deterministic: the same seed and the same inputs give byte-identical outputs. The
// run below mixes elections, proposals, partitions and crashes, all driven by one seed.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Network } from '../test/consensus/network.ts';
import { seededRandom } from './rand.ts';

function run(seed: number): { hash: string; committed: number; leaders: number } {
  const ids = ['a', 'b', 'c', 'd', 'e'];
  const net = new Network(ids, { seed });
  const rnd = seededRandom(seed ^ 0x5eed);
  const h = createHash('sha256');
  let proposals = 0;
  for (let step = 0; step < 400; step++) {
    const dice = rnd.intn(100);
    if (dice < 3) {
      const a = ids[rnd.intn(ids.length)]!;
      net.partition(
        [a],
        ids.filter((x) => x !== a),
      );
    } else if (dice < 6) {
      net.heal();
    } else if (dice < 7) {
      net.restart(ids[rnd.intn(ids.length)]!, seed + step);
    } else if (dice < 30) {
      const lead = net.leader();
      if (lead !== undefined) {
        try {
          net.node(lead).rn.propose(new TextEncoder().encode(`p${proposals++}`));
        } catch {
          // refused proposals are part of the history too
          h.update('refused');
        }
      }
    }
    net.tickAll(1);
  }
  net.heal();
  net.tickAll(50);
  for (const m of net.delivered) {
    h.update(
      `${m.type} ${m.from}>${m.to} t${m.term} i${m.index} l${m.logTerm} c${m.commit} r${m.reject} h${m.rejectHint} n${m.entries.length}|`,
    );
  }
  for (const id of ids) h.update(`${id}:${net.appliedData(id).join(',')}`);
  const leaders = ids.reduce((n, id) => n + net.node(id).rn.raft.stats.becameLeader, 0);
  return { hash: h.digest('hex'), committed: net.appliedData('a').length, leaders };
}

describe('determinism', () => {
  it('the same seed gives the same history, byte for byte', () => {
    const first = run(42);
    const second = run(42);
    expect(second.hash).toBe(first.hash);
    // Not vacuous: the run elected leaders and committed entries through the faults.
    expect(first.committed).toBeGreaterThan(10);
    expect(first.leaders).toBeGreaterThan(1);
  });

  it('another seed gives another history', () => {
    expect(run(43).hash).not.toBe(run(42).hash);
  });
});

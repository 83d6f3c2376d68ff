// The planted-bug switch (planted.ts): it refuses outside tests, it undoes, and each bug breaks
// exactly the rule it names. The simulator's teeth test (sim/teeth.test.ts) shows a whole-cluster
// run catching one.

import { afterEach, describe, expect, it } from 'vitest';
import { Network } from '../test/consensus/network.ts';
import { entriesOfTerms, raftOf } from '../test/consensus/scenario.ts';
import { RaftLog } from './log.ts';
import { isPlanted, PLANTED_BUGS_CONSENT, plantBug } from './planted.ts';
import { MemoryStorage } from './storage.ts';
import { msg, NONE } from './types.ts';

const undos: (() => void)[] = [];
afterEach(() => {
  for (const undo of undos.splice(0)) undo();
});

describe('plantBug', () => {
  it('refuses outside vitest without the consent, accepts with it', () => {
    const vitest = process.env.VITEST;
    const consent = process.env.PCR_PLANTED_BUGS;
    try {
      delete process.env.VITEST;
      delete process.env.PCR_PLANTED_BUGS;
      expect(() => plantBug('voteWithoutLogCheck')).toThrow(/refusing to plant/);
      expect(isPlanted('voteWithoutLogCheck')).toBe(false);
      process.env.PCR_PLANTED_BUGS = 'yes';
      expect(() => plantBug('voteWithoutLogCheck')).toThrow(/PCR_PLANTED_BUGS/);
      process.env.PCR_PLANTED_BUGS = PLANTED_BUGS_CONSENT;
      undos.push(plantBug('voteWithoutLogCheck'));
      expect(isPlanted('voteWithoutLogCheck')).toBe(true);
    } finally {
      process.env.VITEST = vitest;
      if (consent === undefined) delete process.env.PCR_PLANTED_BUGS;
      else process.env.PCR_PLANTED_BUGS = consent;
    }
  });

  it('is off by default, nests, and the undo functions turn it off (once each)', () => {
    expect(isPlanted('commitEarlierTerm')).toBe(false);
    const a = plantBug('commitEarlierTerm');
    const b = plantBug('commitEarlierTerm');
    expect(isPlanted('commitEarlierTerm')).toBe(true);
    expect(isPlanted('voteWithoutLogCheck')).toBe(false);
    a();
    a();
    expect(isPlanted('commitEarlierTerm')).toBe(true);
    b();
    expect(isPlanted('commitEarlierTerm')).toBe(false);
  });

  it('rejects an unknown name', () => {
    expect(() => plantBug('nope' as never)).toThrow(/unknown planted bug/);
  });
});

describe('each planted bug breaks its rule', () => {
  it('voteWithoutLogCheck: a voter grants a (pre)vote to a candidate with a shorter log (§5.4.1)', () => {
    const vote = (type: 'MsgVote' | 'MsgPreVote'): boolean => {
      const net = new Network(['a', 'v'], {
        prepareStorage: (id, storage) => {
          if (id !== 'v') return;
          storage.append(entriesOfTerms([1, 1, 2]));
          storage.setHardState({ term: 2, vote: NONE, commit: 0 });
        },
      });
      net.node('v').rn.step(msg({ type, from: 'a', to: 'v', term: 3, index: 2, logTerm: 2 }));
      const out = net.handleReady('v');
      expect(out.map((m) => m.type)).toEqual([`${type}Resp`]);
      return !out[0]!.reject;
    };
    expect(vote('MsgVote')).toBe(false);
    expect(vote('MsgPreVote')).toBe(false);
    undos.push(plantBug('voteWithoutLogCheck'));
    expect(vote('MsgVote')).toBe(true);
    expect(vote('MsgPreVote')).toBe(true);
  });

  it('commitEarlierTerm: a leader of term 4 commits an entry of term 2 by counting (§5.4.2)', () => {
    const storage = new MemoryStorage();
    storage.append(entriesOfTerms([1, 2]));
    const log = new RaftLog(storage, Number.POSITIVE_INFINITY);
    expect(log.maybeCommit(2, 4)).toBe(false);
    expect(log.committed).toBe(0);
    undos.push(plantBug('commitEarlierTerm'));
    expect(log.maybeCommit(2, 4)).toBe(true);
    expect(log.committed).toBe(2);
  });

  it('nothing planted: a 3-node group behaves as before', () => {
    const net = new Network(['a', 'b', 'c']);
    net.campaign('a');
    expect(raftOf(net, 'a').state).toBe('leader');
  });
});

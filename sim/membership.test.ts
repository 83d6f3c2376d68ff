// Membership in the simulator: nodes join through a seed, are promoted up to maxVoters, removed
// and restarted, with the product's decide/decideJoin/verdictOf; the checks hold on clean runs
// and each one fires on a bug planted in the executor (the membership teeth).

import { describe, expect, it } from 'vitest';
import { SimCluster } from './cluster.ts';
import { MEMBERSHIP_SIM_DEFAULTS, MembershipSim, type PlantedMembershipBug } from './membership.ts';
import { applyChange, diffMembers } from './membership-checks.ts';
import {
  GENERATE_DEFAULTS,
  generateMembershipSchedule,
  generateSchedule,
  healAll,
  parseSchedule,
} from './nemesis.ts';
import { SimRandom } from './random.ts';
import { type RunOptions, type RunResult, runSimulation } from './run.ts';

const ALL = ['partition', 'crash', 'pause', 'drift', 'membership'] as const;

const kinds = (r: RunResult): string[] => [...new Set(r.violations.map((v) => v.kind))].sort();

const clean = (r: RunResult) => ({
  seed: r.seed,
  verdict: r.check.verdict,
  violations: r.violations,
  live: r.liveness.ok,
});
const CLEAN = (seed: number) => ({ seed, verdict: 'valid', violations: [], live: true });

describe('membership runs', () => {
  it('the cluster grows from one node through a seed, promotes up to maxVoters, removes and stops members; one seed replays byte for byte', () => {
    const a = runSimulation({ seed: 2, timeMs: 10_000, nemesis: ['membership'] });
    const b = runSimulation({ seed: 2, timeMs: 10_000, nemesis: ['membership'] });
    expect(b.hash).toBe(a.hash);
    expect(JSON.stringify(b.membership)).toBe(JSON.stringify(a.membership));
    expect(clean(a)).toEqual(CLEAN(2));
    const m = a.membership!;
    expect(m.stats.launched).toBe(4); // n2..n5 joined through a seed
    expect(m.stats.learnersAdded).toBeGreaterThanOrEqual(4);
    expect(m.stats.promotions).toBeGreaterThanOrEqual(2);
    expect(m.voters.length).toBe(MEMBERSHIP_SIM_DEFAULTS.policy.maxVoters);
    expect(m.stats.removalsDone).toBeGreaterThan(0);
    expect(m.removed.length).toBeGreaterThan(0);
    // Every removed node stopped by itself, and is in no configuration.
    for (const id of m.removed) {
      expect(m.exited).toContain(id);
      expect([...m.voters, ...m.learners]).not.toContain(id);
    }
    const f = new Set(a.history.filter((e) => e.process === 'nemesis').map((e) => e.f));
    for (const x of [
      'join',
      'launch',
      'learner-added',
      'promoted',
      'remove',
      'removal-done',
      'exit',
    ]) {
      expect(f).toContain(x);
    }
  });

  it('a sweep with every nemesis and membership: valid, safe, live', () => {
    let promotionsChecked = 0;
    let stops = 0;
    for (let seed = 1; seed <= 5; seed++) {
      const r = runSimulation({ seed, timeMs: 10_000, nemesis: ALL });
      expect(clean(r)).toEqual(CLEAN(seed));
      promotionsChecked += r.membership!.promotionsChecked;
      stops += r.membership!.stats.exits;
    }
    expect(promotionsChecked).toBeGreaterThan(5);
    expect(stops).toBeGreaterThan(0);
  });

  it('a removed node restarted finds out that it was removed and stops again; it never rejoins', () => {
    const r = runSimulation({
      seed: 4,
      nodes: 4,
      timeMs: 6000,
      schedule: [
        { at: 0, kind: 'join', node: 'n2', seed: 'n1' },
        { at: 0, kind: 'join', node: 'n3', seed: 'n1' },
        { at: 0, kind: 'join', node: 'n4', seed: 'n1' },
        { at: 2000, kind: 'remove', target: 'n2' },
        { at: 4000, kind: 'restart-removed' },
      ],
      membership: {},
    });
    expect(clean(r)).toEqual(CLEAN(4));
    const exits = r.history.filter((e) => e.f === 'exit').map((e) => e.value);
    expect(exits).toHaveLength(2);
    expect(exits.every((v) => (v as { node: string }).node === 'n2')).toBe(true);
    expect(r.membership!.removed).toEqual(['n2']);
    expect(r.finalNodes.find((n) => n.id === 'n2')!.process).toBe('down');
  });

  it('the operator removes a member only while the configuration holds more than membersMin', () => {
    const r = runSimulation({
      seed: 6,
      nodes: 4,
      timeMs: 6000,
      schedule: [
        { at: 0, kind: 'join', node: 'n2', seed: 'n1' },
        { at: 0, kind: 'join', node: 'n3', seed: 'n1' },
        { at: 2000, kind: 'remove', target: 'any' }, // 3 members: refused
        { at: 2500, kind: 'join', node: 'n4', seed: 'n2' },
        { at: 4500, kind: 'remove', target: 'learner' }, // 4 members: n4, the learner, goes
      ],
      membership: {},
    });
    expect(MEMBERSHIP_SIM_DEFAULTS.membersMin).toBe(3);
    expect(clean(r)).toEqual(CLEAN(6));
    expect(r.membership!.stats.removalsRequested).toBe(1);
    expect(r.membership!.removed).toEqual(['n4']);
    expect(r.membership!.voters).toEqual(['n1', 'n2', 'n3']);
  });

  it('the membership timeline has its own random stream: the other kinds keep their schedule', () => {
    const o = { ...GENERATE_DEFAULTS, endMs: 20_000 };
    const classic = generateSchedule(SimRandom.fork(9, 'nemesis'), {
      ...o,
      kinds: ['partition', 'crash'],
    });
    const withMembership = generateSchedule(SimRandom.fork(9, 'nemesis'), {
      ...o,
      kinds: ['partition', 'crash', 'membership'],
    });
    expect(withMembership).toEqual(classic);
    const m = generateMembershipSchedule(
      SimRandom.fork(9, 'nemesis-membership'),
      { ...o, kinds: ['membership'] },
      2,
    );
    expect(m.filter((f) => f.kind === 'join').length).toBeGreaterThanOrEqual(2);
    expect(m.some((f) => f.kind === 'remove')).toBe(true);
    expect(m.every((f) => f.at <= o.endMs)).toBe(true);
  });

  it('a nemesis file names membership faults; bad ones are refused with the fault named', () => {
    const ids = ['n1', 'n2', 'n3'];
    expect(
      parseSchedule(
        '[{"at":"1s","kind":"join","node":"n2","seed":"n1"},{"at":"2s","kind":"remove","target":"leader"},{"at":3000,"kind":"restart-removed"}]',
        ids,
      ),
    ).toEqual([
      { at: 1000, kind: 'join', node: 'n2', seed: 'n1' },
      { at: 2000, kind: 'remove', target: 'leader' },
      { at: 3000, kind: 'restart-removed' },
    ]);
    expect(() => parseSchedule('[{"at":0,"kind":"join","node":"n9"}]', ids)).toThrow(
      /fault 1: node is "n9"/,
    );
    expect(() => parseSchedule('[{"at":0,"kind":"remove","target":"most"}]', ids)).toThrow(
      /fault 1: target is "most"/,
    );
  });

  it('a node that is not bootstrapped starts only when launched; heals leave it (and exited nodes) down', () => {
    const c = new SimCluster({ seed: 3, nodes: 3, bootstrap: ['n1'] });
    expect(c.nodes().map((n) => n.process)).toEqual(['up', 'down', 'down']);
    expect(c.isRetired('n2')).toBe(true);
    healAll(c);
    expect(c.processOf('n2')).toBe('down');
    c.launch('n2');
    expect(c.processOf('n2')).toBe('up');
    expect(c.incarnationOf('n2')).toBe(1);
    c.exit('n2', 'test');
    healAll(c);
    expect(c.processOf('n2')).toBe('down');
    c.restart('n2');
    expect(c.processOf('n2')).toBe('up');
    expect(() => new SimCluster({ seed: 3, nodes: 3, bootstrap: ['n7'] })).toThrow(/no node "n7"/);
  });

  it('configurations: one change by the core rules, and what differs between two', () => {
    const c = { voters: ['n1', 'n2'], learners: ['n3'] };
    expect(applyChange(c, { type: 'addVoter', nodeId: 'n3' })).toEqual({
      voters: ['n1', 'n2', 'n3'],
      learners: [],
    });
    expect(applyChange(c, { type: 'removeNode', nodeId: 'n2' })).toEqual({
      voters: ['n1'],
      learners: ['n3'],
    });
    expect(applyChange(c, { type: 'addVoter', nodeId: 'n1' })).toBe(c); // already a voter
    expect(applyChange(c, { type: 'removeNode', nodeId: 'n9' })).toBe(c); // not a member
    const one = { voters: ['n1'], learners: [] };
    expect(applyChange(one, { type: 'removeNode', nodeId: 'n1' })).toBe(one); // the last voter
    expect(applyChange(one, { type: 'addLearner', nodeId: 'n1' })).toBe(one);
    expect(diffMembers(c, { voters: ['n1', 'n3'], learners: ['n4'] })).toEqual(['n2', 'n3', 'n4']);
  });
});

// -------------------------------------------------------------------------------------------------
// Teeth: a bug planted in the executor (or the policy's input) is caught; without it, the same
// seeds are clean.

/** A sweep gives up after this many seeds. */
const TEETH_SEEDS_MAX = 15;

const teethOptions = (seed: number, planted?: PlantedMembershipBug): RunOptions => ({
  seed,
  timeMs: 10_000,
  nemesis: ALL,
  membership: planted === undefined ? {} : { planted },
});

/** Sweeps until a seed shows `kind`; then the same seeds without the bug find nothing. */
function sweepFinds(planted: PlantedMembershipBug, kind: string): number {
  let found: number | undefined;
  for (let seed = 1; seed <= TEETH_SEEDS_MAX && found === undefined; seed++) {
    const r = runSimulation(teethOptions(seed, planted));
    if (kinds(r).includes(kind)) found = seed;
  }
  console.log(`membership teeth: ${planted} found as ${kind} at seed ${found}`);
  expect(found).toBeDefined();
  for (let seed = 1; seed <= found!; seed++) {
    expect(clean(runSimulation(teethOptions(seed)))).toEqual(CLEAN(seed));
  }
  return found!;
}

describe('membership teeth', () => {
  it('ignoring maxVoters when promoting: max-voters', () => {
    sweepFinds('ignoreMaxVoters', 'max-voters');
  });

  it('a removal without a tombstone: the removed node never stops (removed-not-stopped)', () => {
    sweepFinds('removeWithoutTombstone', 'removed-not-stopped');
  });

  it('a removed node that joins again, as decide() says: removed-rejoined', () => {
    sweepFinds('rejoinRemoved', 'removed-rejoined');
  });

  it('promoting a learner that is not caught up: promotion-quorum (and the cluster loses its quorum)', () => {
    // The leader has a log of its own when n2 joins; n2 crashes as soon as it is a learner, before
    // it received anything, and comes back empty a second later.
    const run = (planted?: PlantedMembershipBug): RunResult =>
      runSimulation({
        seed: 1,
        nodes: 3,
        timeMs: 4000,
        schedule: [{ at: 2000, kind: 'join', node: 'n2' }],
        membership: planted === undefined ? {} : { planted },
        onCluster: (c) =>
          c.onFault((f) => {
            if (f.f !== 'learner-added' || (f.value as { node: string }).node !== 'n2') return;
            c.schedule(0, () => c.crash('n2'));
            c.schedule(1000, () => c.restart('n2'));
          }),
      });
    const bad = run('promoteLagging');
    expect(kinds(bad)).toEqual(['promotion-quorum']);
    expect(bad.violations[0]!.message).toMatch(/promoting n2 left 1 of 2 voters/);
    // n1 and an empty n2 are the voters: n2 cannot vote (it knows no configuration), so no leader.
    expect(bad.liveness.ok).toBe(false);
    const good = run();
    expect(clean(good)).toEqual(CLEAN(1));
    expect(good.membership!.stats.promotions).toBe(1); // n2, once it caught up after its restart
  });

  it('two configuration changes pending at once on a leader: config-change', () => {
    for (const broken of [false, true]) {
      const c = new SimCluster({
        seed: 5,
        nodes: 5,
        bootstrap: ['n1', 'n2', 'n3'],
        network: { dropProbability: 0, duplicateProbability: 0 },
      });
      new MembershipSim(c, MEMBERSHIP_SIM_DEFAULTS); // the checks, without the executor's timers
      expect(c.runUntil(() => c.leader() !== undefined, 2000)).toBe(true);
      c.runFor(100); // the leader commits an entry of its term
      const leader = c.leader()!;
      const outcomes: boolean[] = [];
      c.inProcess(leader, () => {
        const node = c.raftNode(leader)!;
        node.changeMembership({ type: 'addLearner', nodeId: 'n4' }, (o) => outcomes.push(o.ok));
        // The planted bug: the leader forgets that a change is pending (consensus/raft.ts).
        if (broken) node.rn.raft.pendingConfIndex = 0;
        node.changeMembership({ type: 'addLearner', nodeId: 'n5' }, (o) => outcomes.push(o.ok));
      });
      c.runFor(500);
      const found = c.violations.filter((v) => v.kind === 'config-change');
      if (broken) {
        expect(found.length).toBeGreaterThan(0);
        expect(found[0]!.message).toMatch(/while the change at \d+ was not committed/);
      } else {
        expect(c.violations).toEqual([]);
        expect(outcomes).toContain(false); // the second change was refused
      }
    }
  });
});

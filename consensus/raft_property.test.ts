// Property-based safety tests: random schedules of an asynchronous, faulty network (reordering,
// loss, duplication, partitions, crashes that lose unpersisted state, restarts, log compaction and
// snapshots, membership changes) over clusters of 3 and 5 voters, with pre-vote and check-quorum on
// and off. After every step the five safety properties of Figure 3 of the Raft paper are checked
// (test/consensus/safety.ts), plus the core's own invariants; after every schedule the network
// calms down and must elect a leader and commit a new entry everywhere, so that no run passes on a
// dead cluster.
//
// Reproducing a failure: fast-check prints the seed and the path of the shrunk counterexample;
// rerun with PCR_PROPERTY_SEED=<seed> (and PCR_PROPERTY_PATH=<path> to go straight to it).
// PCR_PROPERTY_RUNS scales the number of runs of each property (default below) for a longer soak.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  actionArb,
  DEFAULT_WEIGHTS,
  type FuzzAction,
  type FuzzConfig,
  FuzzNetwork,
  type FuzzNode,
} from '../test/consensus/fuzz_network.ts';
import {
  type LogView,
  logMatchingViolation,
  SafetyMonitor,
  SafetyViolation,
} from '../test/consensus/safety.ts';
import { RaftError } from './errors.ts';
import type { Entry, NodeId } from './types.ts';

const SEED =
  process.env.PCR_PROPERTY_SEED !== undefined ? Number(process.env.PCR_PROPERTY_SEED) : 0x5eed;
const PATH = process.env.PCR_PROPERTY_PATH;
const RUNS =
  process.env.PCR_PROPERTY_RUNS !== undefined ? Number(process.env.PCR_PROPERTY_RUNS) : 150;
const MAX_ACTIONS = 600;

const IDS_3 = ['n1', 'n2', 'n3'];
const IDS_5 = ['n1', 'n2', 'n3', 'n4', 'n5'];

interface Totals {
  runs: number;
  actions: number;
  payloadsCommitted: number;
  leaders: number;
  crashes: number;
  snapshotsInstalled: number;
  confChangesApplied: number;
  proposalsRefused: number;
  delivered: number;
  /** Node states shown to the safety monitor. */
  views: number;
}

function newTotals(): Totals {
  return {
    runs: 0,
    actions: 0,
    payloadsCommitted: 0,
    leaders: 0,
    crashes: 0,
    snapshotsInstalled: 0,
    confChangesApplied: 0,
    proposalsRefused: 0,
    delivered: 0,
    views: 0,
  };
}

/** Timing and flow-control knobs vary per run; the cluster shape and the two flags per test. */
function configArb(
  ids: readonly NodeId[],
  preVote: boolean,
  checkQuorum: boolean,
): fc.Arbitrary<FuzzConfig> {
  return fc
    .record({
      seed: fc.nat(),
      electionTicks: fc.integer({ min: 3, max: 8 }),
      heartbeatTicks: fc.integer({ min: 1, max: 2 }),
      // How soon a follower campaigns once told its leader is unreachable (1: at the next tick).
      leaderLostTicks: fc.integer({ min: 1, max: 8 }),
      // Small bounds make MsgApps carry few entries, windows fill and proposals get refused.
      tight: fc.boolean(),
    })
    .map(({ seed, electionTicks, heartbeatTicks, leaderLostTicks, tight }) => ({
      ids,
      seed,
      preVote,
      checkQuorum,
      electionTicks,
      heartbeatTicks,
      leaderLostTicks,
      ...(tight
        ? { maxSizePerMsgBytes: 64, maxInflightMessages: 2, maxUncommittedEntriesBytes: 32 }
        : {}),
    }));
}

/** Runs a schedule, checking safety at every step, then checks that a calm network makes progress. */
function runSchedule(cfg: FuzzConfig, actions: readonly FuzzAction[], totals: Totals): void {
  const net = new FuzzNetwork(cfg);
  try {
    for (let i = 0; i < actions.length; i++) {
      net.run(actions[i]!);
      if (i % 50 === 49) net.checkLogsPairwise();
    }
    net.checkLogsPairwise();
    // Counted before the calm phase, which commits one more entry in every run.
    totals.payloadsCommitted += net.payloadsCommitted;
    checkLiveness(net);
    net.checkLogsPairwise();
  } catch (e) {
    const tail = net.trace.slice(-40).join('; ');
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(`${msg}\n  last actions: ${tail}`, { cause: e });
  }
  totals.runs++;
  totals.actions += net.stats.actions;
  totals.leaders += net.monitor.counters.leaders;
  totals.crashes += net.stats.crashes;
  totals.snapshotsInstalled += net.stats.snapshotsInstalled;
  totals.confChangesApplied += net.stats.confChangesApplied;
  totals.proposalsRefused += net.stats.proposalsRefused;
  totals.delivered += net.stats.delivered;
  totals.views += net.monitor.counters.views;
}

/**
 * Liveness sanity: with every node up and the network healthy, a stable leader emerges and a new
 * proposal is applied by every member of its configuration.
 */
function checkLiveness(net: FuzzNetwork): void {
  net.calm();
  const out = net.commitEverywhere(60 * net.cfg.electionTicks);
  if (!out.ok) throw new Error(`liveness: ${out.why}\n${describeCluster(net)}`);
}

function describeCluster(net: FuzzNetwork): string {
  return net.nodes
    .map((n: FuzzNode) => {
      const r = n.rn?.raft;
      if (r === undefined) return `  ${n.id}: down`;
      const cs = r.trk.confState();
      return `  ${n.id}: ${r.state} term ${r.term} lead ${r.lead || '-'} commit ${r.raftLog.committed} applied ${n.appliedIndex} last ${r.raftLog.lastIndex()} voters [${cs.voters}] learners [${cs.learners}]`;
    })
    .join('\n');
}

function params(): fc.Parameters<unknown> {
  return {
    seed: SEED,
    numRuns: RUNS,
    ...(PATH !== undefined ? { path: PATH } : {}),
    // Shrinking a 300-step schedule is worth its time, but not forever.
    interruptAfterTimeLimit: 10 * 60_000,
    markInterruptAsFailure: true,
  };
}

const CLUSTERS = [
  { name: '3 voters, pre-vote and check-quorum on', ids: IDS_3, preVote: true, checkQuorum: true },
  {
    name: '3 voters, pre-vote and check-quorum off',
    ids: IDS_3,
    preVote: false,
    checkQuorum: false,
  },
  { name: '5 voters, pre-vote and check-quorum on', ids: IDS_5, preVote: true, checkQuorum: true },
  {
    name: '5 voters, pre-vote and check-quorum off',
    ids: IDS_5,
    preVote: false,
    checkQuorum: false,
  },
  {
    name: '5 voters, pre-vote on, check-quorum off',
    ids: IDS_5,
    preVote: true,
    checkQuorum: false,
  },
  {
    name: '3 voters, pre-vote off, check-quorum on',
    ids: IDS_3,
    preVote: false,
    checkQuorum: true,
  },
] as const;

describe('Raft safety under an asynchronous, faulty network (property-based)', () => {
  for (const c of CLUSTERS) {
    it(`${c.name}: Figure 3 holds at every step and a calm network commits`, () => {
      const totals = newTotals();
      fc.assert(
        fc.property(
          configArb(c.ids, c.preVote, c.checkQuorum),
          fc.array(actionArb(c.ids.length), { minLength: 1, maxLength: MAX_ACTIONS, size: 'max' }),
          (cfg, actions) => runSchedule(cfg, actions, totals),
        ),
        params(),
      );
      // Not vacuous: runs committed entries through the faults, elected leaders, crashed nodes,
      // installed snapshots and changed membership.
      console.log(`${c.name}: ${JSON.stringify(totals)}`);
      expect(totals.runs).toBe(RUNS);
      expect(totals.payloadsCommitted).toBeGreaterThan(5 * RUNS);
      expect(totals.leaders).toBeGreaterThan(RUNS);
      expect(totals.crashes).toBeGreaterThan(0);
      expect(totals.snapshotsInstalled).toBeGreaterThan(0);
      expect(totals.confChangesApplied).toBeGreaterThan(0);
    });
  }
});

// -----------------------------------------------------------------------------------------------
// The checkers have teeth: each one reports a hand-made violation.

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function ent(index: number, term: number, data = `${index}/${term}`): Entry {
  return { index, term, type: 'normal', data: enc(data) };
}

function log(entries: Entry[], snapIndex = 0, snapTerm = 0): LogView {
  return { snapIndex, snapTerm, entries };
}

function violationOf(fn: () => void): SafetyViolation {
  try {
    fn();
  } catch (e) {
    if (e instanceof SafetyViolation) return e;
    throw e;
  }
  throw new Error('expected a SafetyViolation, nothing was thrown');
}

describe('the safety checkers report violations', () => {
  const view = (
    id: NodeId,
    state: 'leader' | 'follower',
    term: number,
    commit: number,
    entries: Entry[],
    incarnation = 0,
  ) => ({ id, incarnation, state, term, commit, snapIndex: 0, snapTerm: 0, entries });

  it('election safety: two leaders in one term, from views or from messages', () => {
    const m = new SafetyMonitor();
    m.observe(view('a', 'leader', 2, 0, [ent(1, 2)]));
    expect(violationOf(() => m.observe(view('b', 'leader', 2, 0, [ent(1, 2)]))).property).toBe(
      'electionSafety',
    );
    const m2 = new SafetyMonitor();
    m2.observeLeader(3, 'a', 'test');
    const v = violationOf(() =>
      m2.observeMessage({
        type: 'MsgHeartbeat',
        to: 'c',
        from: 'b',
        term: 3,
        logTerm: 0,
        index: 0,
        entries: [],
        commit: 0,
        reject: false,
        rejectHint: 0,
        context: '',
      }),
    );
    expect(v.property).toBe('electionSafety');
    // The same leader seen again, and leaders of different terms, are fine.
    m2.observeLeader(3, 'a', 'again');
    m2.observeLeader(4, 'b', 'next term');
  });

  it('leader append-only: a leader that overwrites or drops an entry of its log', () => {
    const m = new SafetyMonitor();
    m.observe(view('a', 'leader', 2, 0, [ent(1, 1), ent(2, 2)]));
    m.observe(view('a', 'leader', 2, 0, [ent(1, 1), ent(2, 2), ent(3, 2)]));
    expect(
      violationOf(() =>
        m.observe(view('a', 'leader', 2, 0, [ent(1, 1), ent(2, 2, 'other'), ent(3, 2)])),
      ).property,
    ).toBe('leaderAppendOnly');
    const m2 = new SafetyMonitor();
    m2.observe(view('a', 'leader', 2, 0, [ent(1, 1), ent(2, 2)]));
    expect(violationOf(() => m2.observe(view('a', 'leader', 2, 0, [ent(1, 1)]))).property).toBe(
      'leaderAppendOnly',
    );
  });

  it('log matching: same index and term, different history', () => {
    // By definition, pairwise.
    expect(
      logMatchingViolation(
        log([ent(1, 1), ent(2, 1), ent(3, 3)]),
        log([ent(1, 1), ent(2, 2), ent(3, 3)]),
      ),
    ).toMatch(/differ at 2/);
    expect(
      logMatchingViolation(log([ent(1, 1, 'x'), ent(2, 2)]), log([ent(1, 1, 'y'), ent(2, 2)])),
    ).toMatch(/differ at 1/);
    // Compared only where both still hold entries; diverging tails of different terms are fine.
    expect(
      logMatchingViolation(
        log([ent(3, 2), ent(4, 2)], 2, 1),
        log([ent(1, 1), ent(2, 1), ent(3, 2), ent(4, 3)]),
      ),
    ).toBe(undefined);
    const m = new SafetyMonitor();
    expect(
      violationOf(() =>
        m.checkLogsPairwise([
          { id: 'a', ...log([ent(1, 1, 'x')]) },
          { id: 'b', ...log([ent(1, 1, 'y')]) },
        ]),
      ).property,
    ).toBe('logMatching');
    // Across time: (3, 3) once followed term 1, now follows term 2.
    const m2 = new SafetyMonitor();
    m2.observe(view('a', 'follower', 3, 0, [ent(1, 1), ent(2, 1), ent(3, 3)]));
    expect(
      violationOf(() => m2.observe(view('b', 'follower', 3, 0, [ent(1, 1), ent(2, 2), ent(3, 3)])))
        .property,
    ).toBe('logMatching');
  });

  it('leader completeness: a leader of a later term without a committed entry', () => {
    const m = new SafetyMonitor();
    m.observe(view('c', 'follower', 2, 2, [ent(1, 1), ent(2, 2)]));
    expect(
      violationOf(() => m.observe(view('d', 'leader', 3, 1, [ent(1, 1), ent(2, 3, 'x')]))).property,
    ).toBe('leaderCompleteness');
    const m2 = new SafetyMonitor();
    m2.observe(view('c', 'follower', 2, 2, [ent(1, 1), ent(2, 2)]));
    expect(violationOf(() => m2.observe(view('d', 'leader', 3, 1, [ent(1, 1)]))).property).toBe(
      'leaderCompleteness',
    );
    // Also when the leader was seen first and the commit only later.
    const m3 = new SafetyMonitor();
    m3.observe(view('d', 'leader', 3, 1, [ent(1, 1)]));
    expect(
      violationOf(() => m3.observe(view('c', 'follower', 2, 2, [ent(1, 1), ent(2, 2)]))).property,
    ).toBe('leaderCompleteness');
    // A leader of the same term as the commit bound need not hold it (it may be that term's leader
    // that has not yet been seen with it): no violation.
    const m4 = new SafetyMonitor();
    m4.observe(view('c', 'follower', 3, 2, [ent(1, 1), ent(2, 2)]));
    m4.observe(view('d', 'leader', 3, 1, [ent(1, 1)]));
  });

  it('state machine safety: two different entries applied (or committed) at one index', () => {
    const m = new SafetyMonitor();
    m.observeApply('a', ent(1, 1, 'x'));
    expect(violationOf(() => m.observeApply('b', ent(1, 1, 'y'))).property).toBe(
      'stateMachineSafety',
    );
    // Out of order.
    expect(violationOf(() => m.observeApply('a', ent(3, 1))).property).toBe('stateMachineSafety');
    // A snapshot whose image disagrees with what was applied.
    const m2 = new SafetyMonitor();
    m2.observeApply('a', ent(1, 1, 'x'));
    expect(violationOf(() => m2.observeSnapshotApply('b', 1, [ent(1, 1, 'y')])).property).toBe(
      'stateMachineSafety',
    );
    // Committed on two nodes with different terms.
    const m3 = new SafetyMonitor();
    m3.observe(view('a', 'follower', 2, 1, [ent(1, 1)]));
    expect(violationOf(() => m3.observe(view('b', 'follower', 2, 1, [ent(1, 2)]))).property).toBe(
      'stateMachineSafety',
    );
  });

  it('commit index and term never go back within one incarnation', () => {
    const m = new SafetyMonitor();
    m.observeVolatile('a', 0, 2, 3);
    expect(violationOf(() => m.observeVolatile('a', 0, 2, 2)).property).toBe('commitMonotonic');
    const m2 = new SafetyMonitor();
    m2.observeVolatile('a', 0, 2, 3);
    expect(violationOf(() => m2.observeVolatile('a', 0, 1, 3)).property).toBe('termMonotonic');
    // A restart starts a new incarnation from the persisted commit index.
    const m3 = new SafetyMonitor();
    m3.observeVolatile('a', 0, 2, 3);
    m3.observeVolatile('a', 1, 2, 1);
  });
});

// -----------------------------------------------------------------------------------------------
// The whole pipeline has teeth: a harness that breaks the caller's contract is caught.

/** A caller that does not persist its vote: after a restart the node may vote twice in a term. */
class ForgetfulNetwork extends FuzzNetwork {
  override restart(n: FuzzNode): void {
    if (n.rn === undefined) {
      const hs = n.storage.initialState().hardState;
      n.storage.setHardState({ ...hs, vote: '' });
    }
    super.restart(n);
  }
}

describe('the property catches a broken caller', () => {
  it('forgetting the vote across restarts lets two leaders win one term', () => {
    // Frequent crashes, pre-vote off so that candidates of one term compete for the same votes.
    const weights = { ...DEFAULT_WEIGHTS, crash: 4, restart: 6 };
    const out = fc.check(
      fc.property(
        fc.nat(),
        fc.array(actionArb(3, weights), { minLength: 1, maxLength: MAX_ACTIONS, size: 'max' }),
        (seed, actions) => {
          const net = new ForgetfulNetwork({
            ids: IDS_3,
            seed,
            preVote: false,
            checkQuorum: false,
            electionTicks: 3,
            heartbeatTicks: 1,
          });
          for (const a of actions) net.run(a);
        },
      ),
      { seed: SEED, numRuns: 2000, endOnFailure: true },
    );
    expect(out.failed, 'the broken caller went unnoticed').toBe(true);
    expect(out.errorInstance).toBeInstanceOf(SafetyViolation);
    expect((out.errorInstance as SafetyViolation).property).toBe('electionSafety');
  });

  it('a refused proposal is a RaftError, never another exception', () => {
    const net = new FuzzNetwork({
      ids: IDS_3,
      seed: 1,
      preVote: true,
      checkQuorum: true,
      electionTicks: 3,
      heartbeatTicks: 1,
    });
    expect(net.propose(net.node('n1'))).toBe('NO_LEADER');
    expect(() => net.node('n1').rn!.propose(enc('x'))).toThrow(RaftError);
  });
});

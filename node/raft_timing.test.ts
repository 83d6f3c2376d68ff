// Raft's clock as `pcr node start` takes it: each bound of the heartbeat interval and the election
// timeout, their ticks, and what a daemon's options give RaftNode.

import { describe, expect, it } from 'vitest';
import { FENCE_AFTER_MS_DEFAULT } from './placement/duty.ts';
import {
  daemonRaftTiming,
  ELECTION_TIMEOUT_HEARTBEATS_MIN,
  ELECTION_TIMEOUT_MS_DEFAULT,
  ELECTION_TIMEOUT_MS_MAX,
  electionTimeoutProblem,
  FENCE_AFTER_HEARTBEATS_MIN,
  HEARTBEAT_INTERVAL_MS_DEFAULT,
  HEARTBEAT_INTERVAL_TICKS_MIN,
  heartbeatIntervalProblem,
  LEADER_LOST_TICKS,
  LEARNER_HEARTBEAT_EVERY,
  learnerHeartbeatEvery,
  RAFT_TICK_MS,
  REQUEST_TIMEOUT_ELECTIONS,
  REQUEST_TIMEOUT_MS,
  raftNodeTiming,
  raftTicks,
  raftTimingProblem,
} from './raft_timing.ts';

const timing = (heartbeatIntervalMs: number, electionTimeoutMs: number) => ({
  heartbeatIntervalMs,
  electionTimeoutMs,
});

describe('the heartbeat interval and the election timeout', () => {
  it('the defaults are valid: 8 and 20 ticks of 50 ms (D42, D31)', () => {
    const d = timing(HEARTBEAT_INTERVAL_MS_DEFAULT, ELECTION_TIMEOUT_MS_DEFAULT);
    expect(raftTimingProblem(d)).toBeUndefined();
    expect(raftTicks(d)).toEqual({ heartbeatTicks: 8, electionTicks: 20 });
  });

  it('accepts the bounds themselves', () => {
    expect(
      raftTimingProblem(timing(HEARTBEAT_INTERVAL_TICKS_MIN * RAFT_TICK_MS, 150)),
    ).toBeUndefined();
    expect(raftTimingProblem(timing(100, 250))).toBeUndefined();
    expect(raftTimingProblem(timing(1000, ELECTION_TIMEOUT_MS_MAX))).toBeUndefined();
    expect(raftTimingProblem(timing(20_000, ELECTION_TIMEOUT_MS_MAX))).toBeUndefined();
  });

  it(`refuses a heartbeat shorter than HEARTBEAT_INTERVAL_TICKS_MIN (${HEARTBEAT_INTERVAL_TICKS_MIN}) tick`, () => {
    expect(heartbeatIntervalProblem(0)).toBe(
      '0 ms is shorter than HEARTBEAT_INTERVAL_TICKS_MIN (1 tick of 50 ms)',
    );
    expect(raftTimingProblem(timing(0, 1000))).toMatch(/^--heartbeat-interval 0 ms is shorter/);
  });

  it(`refuses values that are not whole ticks of RAFT_TICK_MS (${RAFT_TICK_MS} ms), naming the nearest`, () => {
    expect(heartbeatIntervalProblem(120)).toBe(
      '120 ms is not a multiple of the Raft tick (RAFT_TICK_MS 50 ms): use 100 or 150',
    );
    expect(heartbeatIntervalProblem(30)).toMatch(/not a multiple .*: use 50$/);
    expect(electionTimeoutProblem(1020)).toMatch(/1020 ms is not a multiple .*: use 1000 or 1050$/);
    expect(heartbeatIntervalProblem(1.5)).toBe('1.5 is not a whole number of milliseconds');
    expect(electionTimeoutProblem(-50)).toBe('-50 is not a whole number of milliseconds');
    expect(raftTimingProblem(timing(400, 1020))).toMatch(/^--election-timeout 1020 ms/);
  });

  it(`refuses an election timeout above ELECTION_TIMEOUT_MS_MAX (${ELECTION_TIMEOUT_MS_MAX} ms)`, () => {
    expect(electionTimeoutProblem(ELECTION_TIMEOUT_MS_MAX + RAFT_TICK_MS)).toBe(
      `50050 ms exceeds ELECTION_TIMEOUT_MS_MAX (${ELECTION_TIMEOUT_MS_MAX} ms)`,
    );
  });

  it(`refuses an election timeout under ELECTION_TIMEOUT_HEARTBEATS_MIN (${ELECTION_TIMEOUT_HEARTBEATS_MIN}) heartbeats`, () => {
    expect(raftTimingProblem(timing(400, 950))).toBe(
      '--election-timeout 950 ms must be at least ELECTION_TIMEOUT_HEARTBEATS_MIN 2.5 x ' +
        '--heartbeat-interval 400 ms = 1000 ms, or one late heartbeat starts an election: raise ' +
        'the election timeout or shorten the heartbeat interval',
    );
    // 2.5 x 100 = 250 is whole ticks; 2.5 x 50 = 125 rounds up to the next tick.
    expect(raftTimingProblem(timing(100, 200))).toMatch(/= 250 ms/);
    expect(raftTimingProblem(timing(50, 100))).toMatch(/= 150 ms/);
    // The core's own rule (election > heartbeat) is implied.
    expect(raftTimingProblem(timing(400, 400))).toMatch(/must be at least/);
  });

  it('checks against another tick when the daemon is given one', () => {
    expect(raftTimingProblem(timing(20, 50), 10)).toBeUndefined();
    expect(raftTimingProblem(timing(25, 100), 10)).toMatch(/RAFT_TICK_MS 10 ms\): use 20 or 30/);
  });
});

describe("a daemon's Raft clock", () => {
  it('is the defaults when its options leave it out', () => {
    expect(daemonRaftTiming({})).toEqual({
      tickMs: RAFT_TICK_MS,
      heartbeatTicks: 8,
      electionTicks: 20,
      heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS_DEFAULT,
      electionTimeoutMs: ELECTION_TIMEOUT_MS_DEFAULT,
    });
  });

  it('lets a request outlive an election: 5 s, or REQUEST_TIMEOUT_ELECTIONS election timeouts', () => {
    const of = (electionTicks: number) =>
      raftNodeTiming(daemonRaftTiming({ electionTicks }), FENCE_AFTER_MS_DEFAULT);
    // The defaults (1 s) and anything up to 5 s / 3: the 5 s floor.
    expect(of(20).requestTimeoutTicks).toBe(REQUEST_TIMEOUT_MS / RAFT_TICK_MS);
    expect(of(33).requestTimeoutTicks).toBe(REQUEST_TIMEOUT_MS / RAFT_TICK_MS);
    // Past it, three election timeouts: a 10 s timeout gives requests 30 s, the 50 s bound 150 s.
    expect(of(200).requestTimeoutTicks * RAFT_TICK_MS).toBe(REQUEST_TIMEOUT_ELECTIONS * 10_000);
    expect(of(ELECTION_TIMEOUT_MS_MAX / RAFT_TICK_MS).requestTimeoutTicks * RAFT_TICK_MS).toBe(
      150_000,
    );
  });

  it('gives RaftNode the configured ticks, the leader-lost ranking and the request timeout', () => {
    const t = daemonRaftTiming({ heartbeatTicks: 4, electionTicks: 60 });
    expect(t.electionTimeoutMs).toBe(3000);
    expect(raftNodeTiming(t, 4000)).toEqual({
      heartbeatTicks: 4,
      electionTicks: 60,
      requestTimeoutTicks: (REQUEST_TIMEOUT_ELECTIONS * 3000) / RAFT_TICK_MS,
      raft: { leaderLostTicks: LEADER_LOST_TICKS, learnerHeartbeatEvery: 3 },
    });
  });
});

describe('heartbeats to learners (D48)', () => {
  const every = (heartbeatIntervalMs: number, fenceAfterMs: number) =>
    learnerHeartbeatEvery({ heartbeatIntervalMs, fenceAfterMs });

  it('every third round with the defaults: 1.2 s apart against fence-after 4 s', () => {
    expect(every(HEARTBEAT_INTERVAL_MS_DEFAULT, FENCE_AFTER_MS_DEFAULT)).toBe(
      LEARNER_HEARTBEAT_EVERY,
    );
    expect(LEARNER_HEARTBEAT_EVERY).toBe(3);
  });

  it('fewer skipped rounds when FENCE_AFTER_HEARTBEATS_MIN of them would not fit in fence-after', () => {
    expect(every(600, 4000)).toBe(2); // 3 x 2 x 600 = 3.6 s
    expect(every(1000, 4000)).toBe(1);
    expect(every(400, 1000)).toBe(1); // not even one round fits three times: every round
    expect(every(50, 60_000)).toBe(LEARNER_HEARTBEAT_EVERY); // never more than the maximum
  });

  it('a learner hears FENCE_AFTER_HEARTBEATS_MIN heartbeats within fence-after whenever it can', () => {
    for (let hb = RAFT_TICK_MS; hb <= 2000; hb += RAFT_TICK_MS) {
      for (let fence = 500; fence <= 20_000; fence += 250) {
        const k = every(hb, fence);
        expect(k).toBeGreaterThanOrEqual(1);
        expect(k).toBeLessThanOrEqual(LEARNER_HEARTBEAT_EVERY);
        // Thinned only where the bound holds; at 1 the learner is heartbeaten like a voter.
        if (k > 1) expect(FENCE_AFTER_HEARTBEATS_MIN * k * hb).toBeLessThanOrEqual(fence);
      }
    }
  });
});

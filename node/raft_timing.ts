// Raft's clock in the daemon, as `pcr node start` takes it: the tick, the heartbeat interval and
// the election timeout in milliseconds (etcd's --heartbeat-interval and --election-timeout), their
// bounds, and their conversion to the ticks the consensus core counts. Pure. It does not own the
// ticker (node/daemon.ts) nor Raft's use of the ticks (consensus/raft.ts).
//
// Each member reads its own values and a restart may change them (as etcd), but all members
// should use the same: the leader's heartbeat interval must stay well inside every follower's
// election timeout, or a follower campaigns while the leader is alive (docs/operations.md,
// "Tuning").

/** One tick of the daemon's Raft clock. Both flags are whole ticks of it. */
export const RAFT_TICK_MS = 50;
/** 8 ticks (D42). */
export const HEARTBEAT_INTERVAL_MS_DEFAULT = 400;
/** 20 ticks, randomized to 1-2 s (D31). */
export const ELECTION_TIMEOUT_MS_DEFAULT = 1000;
/** A leader cannot send heartbeats more often than it ticks. */
export const HEARTBEAT_INTERVAL_TICKS_MIN = 1;
/** etcd's bound too: past it a lost leader leaves the cluster without one for minutes. */
export const ELECTION_TIMEOUT_MS_MAX = 50_000;
/**
 * The election timeout is at least this many heartbeat intervals. etcd asks for 5; the defaults
 * here are 2.5 (D42 halved the heartbeat rate for idle cost and measured no spurious election
 * under load, pre-vote and check-quorum keeping a late heartbeat from costing a term). Less would
 * be a ratio nothing has measured: one late heartbeat and a follower campaigns.
 */
export const ELECTION_TIMEOUT_HEARTBEATS_MIN = 2.5;

export interface RaftTimingMs {
  readonly heartbeatIntervalMs: number;
  readonly electionTimeoutMs: number;
}

export interface RaftTicks {
  readonly heartbeatTicks: number;
  readonly electionTicks: number;
}

/** Why `ms` is not a whole number of ticks (with the nearest values that are), or undefined. */
function wholeTicksProblem(ms: number, tickMs: number): string | undefined {
  if (!Number.isSafeInteger(ms) || ms < 0) return `${ms} is not a whole number of milliseconds`;
  if (ms % tickMs === 0) return undefined;
  const below = ms - (ms % tickMs);
  const nearest = below === 0 ? `${tickMs}` : `${below} or ${below + tickMs}`;
  return `${ms} ms is not a multiple of the Raft tick (RAFT_TICK_MS ${tickMs} ms): use ${nearest}`;
}

/** Why a heartbeat interval cannot be used on its own, or undefined. */
export function heartbeatIntervalProblem(ms: number, tickMs = RAFT_TICK_MS): string | undefined {
  const ticks = wholeTicksProblem(ms, tickMs);
  if (ticks !== undefined) return ticks;
  if (ms < HEARTBEAT_INTERVAL_TICKS_MIN * tickMs) {
    return `${ms} ms is shorter than HEARTBEAT_INTERVAL_TICKS_MIN (${HEARTBEAT_INTERVAL_TICKS_MIN} tick of ${tickMs} ms)`;
  }
  return undefined;
}

/** Why an election timeout cannot be used on its own, or undefined. */
export function electionTimeoutProblem(ms: number, tickMs = RAFT_TICK_MS): string | undefined {
  const ticks = wholeTicksProblem(ms, tickMs);
  if (ticks !== undefined) return ticks;
  if (ms > ELECTION_TIMEOUT_MS_MAX) {
    return `${ms} ms exceeds ELECTION_TIMEOUT_MS_MAX (${ELECTION_TIMEOUT_MS_MAX} ms)`;
  }
  return undefined;
}

/**
 * Why this heartbeat interval and election timeout cannot run together, or undefined: each on its
 * own, then the election timeout at least ELECTION_TIMEOUT_HEARTBEATS_MIN heartbeat intervals.
 */
export function raftTimingProblem(t: RaftTimingMs, tickMs = RAFT_TICK_MS): string | undefined {
  const heartbeat = heartbeatIntervalProblem(t.heartbeatIntervalMs, tickMs);
  if (heartbeat !== undefined) return `--heartbeat-interval ${heartbeat}`;
  const election = electionTimeoutProblem(t.electionTimeoutMs, tickMs);
  if (election !== undefined) return `--election-timeout ${election}`;
  const need = t.heartbeatIntervalMs * ELECTION_TIMEOUT_HEARTBEATS_MIN;
  if (t.electionTimeoutMs < need) {
    return (
      `--election-timeout ${t.electionTimeoutMs} ms must be at least ELECTION_TIMEOUT_HEARTBEATS_MIN ` +
      `${ELECTION_TIMEOUT_HEARTBEATS_MIN} x --heartbeat-interval ${t.heartbeatIntervalMs} ms = ` +
      `${Math.ceil(need / tickMs) * tickMs} ms, or one late heartbeat starts an election: raise the ` +
      'election timeout or shorten the heartbeat interval'
    );
  }
  return undefined;
}

/** The ticks of valid timings (raftTimingProblem undefined). */
export function raftTicks(t: RaftTimingMs, tickMs = RAFT_TICK_MS): RaftTicks {
  return {
    heartbeatTicks: t.heartbeatIntervalMs / tickMs,
    electionTicks: t.electionTimeoutMs / tickMs,
  };
}

/**
 * A follower whose leader's connection closed campaigns within this many ticks, ranked by ID so
 * that two do not split the vote (D31).
 */
export const LEADER_LOST_TICKS = 3;
/**
 * A client request proposed or read through Raft fails as TIMEOUT after this long, or after
 * REQUEST_TIMEOUT_ELECTIONS election timeouts if that is longer (requestTimeoutMs).
 */
export const REQUEST_TIMEOUT_MS = 5000;
/**
 * A request outlives an election: a follower waits up to twice the election timeout (randomized)
 * before it campaigns, and the vote takes its round. etcd's request timeout grows with its
 * election timeout the same way (5 s + 2 election timeouts).
 */
export const REQUEST_TIMEOUT_ELECTIONS = 3;

/** How long a client request may wait for Raft with this clock. */
export function requestTimeoutMs(t: RaftTimingMs): number {
  return Math.max(REQUEST_TIMEOUT_MS, REQUEST_TIMEOUT_ELECTIONS * t.electionTimeoutMs);
}

/** The Raft clock a daemon runs. */
export interface DaemonRaftTiming extends RaftTicks, RaftTimingMs {
  readonly tickMs: number;
}

/**
 * The Raft clock of a daemon's options (node/daemon.ts DaemonOptions), the defaults for what they
 * leave out: what the ticker, RaftNode, the placement duty and the fencing check all read, so that
 * none of them uses a default behind a configured value.
 */
export function daemonRaftTiming(o: {
  readonly tickMs?: number | undefined;
  readonly heartbeatTicks?: number | undefined;
  readonly electionTicks?: number | undefined;
}): DaemonRaftTiming {
  const tickMs = o.tickMs ?? RAFT_TICK_MS;
  const heartbeatTicks = o.heartbeatTicks ?? HEARTBEAT_INTERVAL_MS_DEFAULT / RAFT_TICK_MS;
  const electionTicks = o.electionTicks ?? ELECTION_TIMEOUT_MS_DEFAULT / RAFT_TICK_MS;
  return {
    tickMs,
    heartbeatTicks,
    electionTicks,
    heartbeatIntervalMs: heartbeatTicks * tickMs,
    electionTimeoutMs: electionTicks * tickMs,
  };
}

/**
 * The most a daemon thins the leader's heartbeats to learners (D48): a learner gets every third
 * round (1.2 s apart with the default 400 ms interval).
 */
export const LEARNER_HEARTBEAT_EVERY = 3;
/**
 * A learner hears at least this many heartbeats within `--fence-after`: it fences its VMs after
 * that long without a word from the leader (node/placement/duty.ts), so a single late or lost
 * heartbeat must not come near it.
 */
export const FENCE_AFTER_HEARTBEATS_MIN = 3;

/**
 * Every how many heartbeat rounds a learner gets one (consensus Config.learnerHeartbeatEvery):
 * LEARNER_HEARTBEAT_EVERY, or fewer so that FENCE_AFTER_HEARTBEATS_MIN of its heartbeats fit in
 * fence-after; at least 1 (every round). Voters are not thinned: their answers are the leader's
 * quorum. A learner's answers are also what the leader's down detection counts, and
 * `--node-down-after` exceeds fence-after (fencingProblem), so this bound covers it too.
 */
export function learnerHeartbeatEvery(t: {
  readonly heartbeatIntervalMs: number;
  readonly fenceAfterMs: number;
}): number {
  const fit = Math.floor(t.fenceAfterMs / (FENCE_AFTER_HEARTBEATS_MIN * t.heartbeatIntervalMs));
  return Math.max(1, Math.min(LEARNER_HEARTBEAT_EVERY, fit));
}

/** RaftNode's timing options (node/raft/node.ts) for a daemon with this clock and fence-after. */
export function raftNodeTiming(
  t: DaemonRaftTiming,
  fenceAfterMs: number,
): {
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly requestTimeoutTicks: number;
  readonly raft: { readonly leaderLostTicks: number; readonly learnerHeartbeatEvery: number };
} {
  return {
    electionTicks: t.electionTicks,
    heartbeatTicks: t.heartbeatTicks,
    requestTimeoutTicks: Math.ceil(requestTimeoutMs(t) / t.tickMs),
    raft: {
      leaderLostTicks: LEADER_LOST_TICKS,
      learnerHeartbeatEvery: learnerHeartbeatEvery({
        heartbeatIntervalMs: t.heartbeatIntervalMs,
        fenceAfterMs,
      }),
    },
  };
}

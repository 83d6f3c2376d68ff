// One whole simulated run, the unit the CLI and the sweep repeat: a cluster, clients, a nemesis,
// then the verdicts. Phases, in virtual time:
//   [0, time)              clients run; the nemesis injects its schedule (all repaired by `time`)
//   time                   clients stop; everything still broken is healed (links, processes, clocks)
//   (time, time + quiet]   liveness: a leader must emerge and a final write must succeed
//   then                   outstanding client operations complete or time out
// Verdicts: the linearizability checker (jepsen/checker, kv model, per key) over the clients'
// history; the cross-node safety checks made during the run (cluster.ts); liveness. The history
// (client operations and nemesis actions) is hashed: the same seed and options give the same hash.
// With the membership nemesis the cluster starts as one node that the others join (membership.ts);
// after the liveness check, removals finish and removed nodes must have stopped.

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { checkEvents, isCheckerError, kvMap } from '../jepsen/checker/index.ts';
import { type ClusterOptions, type NodeInfo, type SafetyViolation, SimCluster } from './cluster.ts';
import {
  MEMBERSHIP_SIM_DEFAULTS,
  type MembershipOptions,
  MembershipSim,
  type MembershipSummary,
} from './membership.ts';
import {
  type Fault,
  GENERATE_DEFAULTS,
  type GenerateOptions,
  generateMembershipSchedule,
  generateSchedule,
  healAll,
  NEMESIS_KINDS_DEFAULT,
  type NemesisKind,
  scheduleFaults,
} from './nemesis.ts';
import type { NetworkStats } from './network.ts';
import { SimRandom } from './random.ts';
import {
  History,
  type OpCounts,
  type RunEvent,
  WORKLOAD_DEFAULTS,
  Workload,
  type WorkloadOptions,
} from './workload.ts';

export interface RunOptions {
  readonly seed: number;
  readonly nodes?: number;
  /** Virtual length of the faulty phase (clients and nemesis). */
  readonly timeMs?: number;
  /** Virtual time allowed, after healing, for a leader and a successful final write. */
  readonly quietMs?: number;
  /** Kinds of faults generated from the seed (ignored when `schedule` is given). */
  readonly nemesis?: readonly NemesisKind[];
  /** An explicit schedule (a nemesis file), instead of a generated one. */
  readonly schedule?: readonly Fault[];
  readonly generate?: Partial<Omit<GenerateOptions, 'kinds' | 'endMs'>>;
  readonly workload?: Partial<WorkloadOptions>;
  readonly cluster?: Partial<Omit<ClusterOptions, 'seed' | 'nodes'>>;
  /** Wall-clock budget of the linearizability check. */
  readonly checkTimeoutMs?: number;
  /** Called with the cluster before the run starts (tests, observers). */
  readonly onCluster?: (cluster: SimCluster) => void;
  /**
   * A membership run: the cluster starts as one bootstrapped node, the others join through a seed
   * (sim/membership.ts). On when the nemesis includes `membership` or when this is given.
   */
  readonly membership?: Partial<MembershipOptions>;
}

export const RUN_DEFAULTS = {
  nodes: 5,
  timeMs: 10_000,
  quietMs: 5_000,
  nemesis: NEMESIS_KINDS_DEFAULT,
  checkTimeoutMs: 5_000,
} as const;

export type Verdict = 'valid' | 'invalid' | 'unknown';

export interface CheckSummary {
  readonly verdict: Verdict;
  readonly operations: number;
  readonly keys: number;
  readonly elapsedMs: number;
  /** For 'invalid': the checker's explanation; for 'unknown': why; for a malformed history: the error. */
  readonly message?: string;
}

export interface Liveness {
  readonly ok: boolean;
  /** The leader that took the final write. */
  readonly leader?: string;
  /** Virtual time from the heal to the final write's success. */
  readonly recoveredInMs?: number;
  readonly message: string;
}

export interface RunResult {
  readonly seed: number;
  readonly nodes: number;
  readonly timeMs: number;
  readonly nemesis: readonly NemesisKind[] | 'file';
  readonly schedule: readonly Fault[];
  readonly history: readonly RunEvent[];
  /** sha256 of the canonical JSON of the history, hex. */
  readonly hash: string;
  readonly ops: OpCounts;
  /** ok / invoked (NaN when nothing was invoked). */
  readonly availability: number;
  /** Virtual latency percentiles of 'ok' operations. */
  readonly latencyMs:
    | { readonly p50: number; readonly p95: number; readonly p99: number }
    | undefined;
  readonly check: CheckSummary;
  readonly violations: readonly SafetyViolation[];
  readonly violationCount: number;
  /** Client commands committed twice (a known product issue; counted, not a failure). */
  readonly duplicateCommands: number;
  readonly liveness: Liveness;
  readonly faultsApplied: number;
  readonly snapshots: { readonly taken: number; readonly installed: number };
  readonly network: NetworkStats;
  readonly events: number;
  readonly virtualMs: number;
  readonly wallMs: number;
  /** Of wallMs: the event loop (the simulation itself)... */
  readonly loopWallMs: number;
  /** ...and the linearizability check and the hash. */
  readonly checkWallMs: number;
  /** Virtual seconds per wall-clock second. */
  readonly speed: number;
  readonly finalNodes: readonly NodeInfo[];
  /** Membership runs: the final configuration, removals and what the executor did. */
  readonly membership?: MembershipSummary;
  /** An invalid verdict or a safety violation: a bug. */
  readonly unsafe: boolean;
  /** Unsafe, or not live after healing. */
  readonly failed: boolean;
}

export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

/**
 * sha256 of the history as JSON lines, hex. The events are built with their keys in one fixed
 * order (type, process, f, key, value, time) and their values from the run alone, so this
 * JSON is canonical: the same history always gives the same bytes.
 */
export function historyHash(history: readonly RunEvent[]): string {
  const h = createHash('sha256');
  for (const e of history) h.update(`${JSON.stringify(e)}\n`);
  return h.digest('hex');
}

/** Runs one simulation to the end. Deterministic in everything but wallMs and speed. */
export function runSimulation(options: RunOptions): RunResult {
  const wallStart = performance.now();
  const seed = options.seed;
  const nodes = options.nodes ?? RUN_DEFAULTS.nodes;
  const timeMs = options.timeMs ?? RUN_DEFAULTS.timeMs;
  const quietMs = options.quietMs ?? RUN_DEFAULTS.quietMs;
  if (!(Number.isSafeInteger(seed) && seed >= 0)) {
    throw new RangeError(`seed must be a non-negative integer, got ${seed}`);
  }
  if (!(timeMs >= 0)) throw new RangeError(`timeMs must be >= 0, got ${timeMs}`);
  if (!(quietMs > 0)) throw new RangeError(`quietMs must be > 0, got ${quietMs}`);
  const workloadOptions: WorkloadOptions = { ...WORKLOAD_DEFAULTS, ...options.workload };

  const kinds = options.nemesis ?? RUN_DEFAULTS.nemesis;
  const withMembership =
    options.membership !== undefined ||
    (options.schedule === undefined && kinds.includes('membership'));
  const cluster = new SimCluster({
    ...options.cluster,
    seed,
    nodes,
    ...(withMembership ? { bootstrap: ['n1'] } : {}),
  });
  const history = new History();
  // Faults join the history as they happen, as Jepsen's :nemesis events.
  cluster.onFault((f) =>
    history.add({ type: 'info', process: 'nemesis', f: f.f, value: f.value, time: f.timeMs }),
  );
  const workload = new Workload(cluster, history, workloadOptions);
  options.onCluster?.(cluster);

  const generate = { ...GENERATE_DEFAULTS, ...options.generate, kinds, endMs: timeMs };
  let schedule = options.schedule ?? generateSchedule(SimRandom.fork(seed, 'nemesis'), generate);
  let membership: MembershipSim | undefined;
  if (withMembership) {
    membership = new MembershipSim(cluster, membershipOptions(options.membership));
    membership.start();
    if (options.schedule === undefined && kinds.includes('membership')) {
      const joins = generateMembershipSchedule(
        SimRandom.fork(seed, 'nemesis-membership'),
        generate,
        Math.min(2, nodes - 1),
      );
      // Stable: at equal times the other kinds' faults come first.
      schedule = [...schedule, ...joins].sort((a, b) => a.at - b.at);
    }
  }
  scheduleFaults(cluster, schedule, SimRandom.fork(seed, 'nemesis-targets'), membership);

  workload.start();
  cluster.runFor(timeMs);

  // Heal everything and check that the cluster comes back.
  workload.stop();
  const healedAtMs = cluster.nowMs;
  healAll(cluster);
  const liveness = checkLiveness(cluster, workload, healedAtMs + quietMs, healedAtMs);
  if (membership !== undefined) {
    // Removals finish and removed nodes find out and stop (they probe after probeAfterMs).
    cluster.runUntil(() => membership.settled(), membership.options.settleMs);
    membership.finish();
  }
  // Outstanding client operations complete or time out.
  cluster.runUntil(() => workload.outstanding === 0, workloadOptions.timeoutMs + 1);

  const loopEndMs = performance.now();
  const clientEvents = history.clientEvents();
  const check = checkHistory(clientEvents, options.checkTimeoutMs ?? RUN_DEFAULTS.checkTimeoutMs);
  const latencies = [...workload.okLatenciesMs].sort((a, b) => a - b);
  const totals = cluster.totals();
  const hash = historyHash(history.events);
  const wallEndMs = performance.now();
  const wallMs = wallEndMs - wallStart;
  const unsafe = check.verdict === 'invalid' || cluster.violationCount > 0;
  return {
    seed,
    nodes,
    timeMs,
    nemesis: options.schedule === undefined ? [...kinds] : 'file',
    schedule,
    history: history.events,
    hash,
    ops: { ...workload.counts, reasons: { ...workload.counts.reasons } },
    availability: workload.counts.ok / workload.counts.invoked,
    latencyMs:
      latencies.length === 0
        ? undefined
        : {
            p50: percentile(latencies, 0.5),
            p95: percentile(latencies, 0.95),
            p99: percentile(latencies, 0.99),
          },
    check,
    violations: [...cluster.violations],
    violationCount: cluster.violationCount,
    duplicateCommands: cluster.duplicateCommands,
    liveness,
    faultsApplied: cluster.faults.length,
    snapshots: { taken: totals.snapshotsTaken, installed: totals.snapshotsRestored },
    network: structuredClone(cluster.network.stats),
    events: cluster.queue.executed,
    virtualMs: cluster.nowMs,
    wallMs,
    loopWallMs: loopEndMs - wallStart,
    checkWallMs: wallEndMs - loopEndMs,
    speed: cluster.nowMs / wallMs,
    finalNodes: cluster.nodes(),
    ...(membership === undefined ? {} : { membership: membership.summary() }),
    unsafe,
    failed: unsafe || !liveness.ok,
  };
}

/**
 * After healing: within the deadline a leader must exist and a write through it must succeed
 * (retried when it fails, since leadership may still move once).
 */
function checkLiveness(
  cluster: SimCluster,
  workload: Workload,
  deadlineMs: number,
  healedAtMs: number,
): Liveness {
  let process = workload.newProcess();
  let attempts = 0;
  let lastOutcome = 'no attempt';
  while (cluster.nowMs < deadlineMs) {
    if (!cluster.runUntil(() => cluster.leader() !== undefined, deadlineMs - cluster.nowMs)) break;
    const leader = cluster.leader()!;
    attempts++;
    let result: 'ok' | 'fail' | 'info' | undefined;
    workload.operate(leader, 'write', 'k0', 'final', process, (next, type) => {
      process = next;
      result = type;
    });
    cluster.runUntil(() => result !== undefined, Math.max(0, deadlineMs - cluster.nowMs));
    if (result === 'ok') {
      return {
        ok: true,
        leader,
        recoveredInMs: round3(cluster.nowMs - healedAtMs),
        message: `leader ${leader}; final write ok ${round3(cluster.nowMs - healedAtMs)} ms after healing`,
      };
    }
    lastOutcome = result ?? 'no answer';
    if (result === 'fail') cluster.runFor(Math.min(50, Math.max(0, deadlineMs - cluster.nowMs)));
  }
  const leader = cluster.leader();
  return {
    ok: false,
    ...(leader === undefined ? {} : { leader }),
    message:
      leader === undefined
        ? `no leader ${round3(deadlineMs - healedAtMs)} ms after healing`
        : `no successful final write ${round3(deadlineMs - healedAtMs)} ms after healing ` +
          `(${attempts} attempts, last: ${lastOutcome})`,
  };
}

function checkHistory(
  events: ReturnType<History['clientEvents']>,
  timeoutMs: number,
): CheckSummary {
  try {
    const r = checkEvents(kvMap, events, { timeoutMs });
    const operations = r.perKey.reduce((s, k) => s + k.operations, 0);
    const base = { operations, keys: r.perKey.length, elapsedMs: round3(r.elapsedMs) };
    if (r.verdict === 'ok') return { verdict: 'valid', ...base };
    if (r.verdict === 'violation') {
      return { verdict: 'invalid', ...base, message: r.violation?.explanation ?? 'violation' };
    }
    const stuck = r.perKey
      .filter((k) => k.verdict === 'unknown')
      .map((k) => `${k.key} (${k.unknownReason})`);
    return {
      verdict: 'unknown',
      ...base,
      message: `checker budget ran out on ${stuck.join(', ')}`,
    };
  } catch (e) {
    // The simulator wrote a history the checker cannot read: a bug of the simulator, loudly.
    if (isCheckerError(e)) {
      return {
        verdict: 'invalid',
        operations: 0,
        keys: 0,
        elapsedMs: 0,
        message: `malformed history (${e.code}): ${e.message}`,
      };
    }
    throw e;
  }
}

function membershipOptions(o: Partial<MembershipOptions> | undefined): MembershipOptions {
  return {
    ...MEMBERSHIP_SIM_DEFAULTS,
    ...o,
    policy: { ...MEMBERSHIP_SIM_DEFAULTS.policy, ...o?.policy },
  };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

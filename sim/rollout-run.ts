// One rollout run (docs/sim.md, "Rollout runs"): the placement run's nodes (sim/placement.ts: the
// product's placement duty, rollout duty and agent over simulated VMMs) with one deployment that
// an operator keeps updating, some versions broken (their guests crash at boot, sim/vmm.ts
// SIM_BOOT_FAILS), under machine crashes and leader failovers.
// Phases, in virtual time:
//   [0, time)          the operator submits versions; the nemesis crashes machines and cuts
//                      leaders off, one fault at a time
//   time               everything is healed, VM crashes stop, the operator stops
//   (time, + settleMs] the newest rollout must have succeeded on a version that works, every
//                      instance running on its committed node
// Checks, as violations: after every committed deploy.step, the instances of the target in flight
// (node/sched/rollout.ts census at the step's time) are at most maxParallel (`rollout-parallel`);
// at the end, every member holds the same deployment table and no broken version is the one that
// succeeded (`rollout-state`); plus the Raft-level and placement checks of the placement run.

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { census, PLANTED_ROLLOUT_PARALLEL } from '../node/sched/rollout.ts';
import { decodeEnvelope } from '../node/state/machine.ts';
import { type SafetyViolation, SimCluster } from './cluster.ts';
import {
  type Fault,
  GENERATE_DEFAULTS,
  generateSchedule,
  healAll,
  type NemesisKind,
  scheduleFaults,
} from './nemesis.ts';
import {
  PLACEMENT_DRIFT_MAX,
  PLACEMENT_SIM_DEFAULTS,
  PlacementSim,
  type PlacementStats,
} from './placement.ts';
import { converged } from './placement-run.ts';
import { SimRandom } from './random.ts';
import { SIM_BOOT_FAILS, VMM_TIMING_DEFAULTS } from './vmm.ts';

export interface RolloutRunOptions {
  readonly seed: number;
  readonly nodes?: number;
  readonly timeMs?: number;
  /** Generic timelines run beside the rollout's own faults: `partition` and `crash` only. */
  readonly nemesis?: readonly NemesisKind[];
  /** Planted in node/sched/rollout.ts (PLANTED_ROLLOUT_PARALLEL): steps ignore maxParallel. */
  readonly planted?: 'ignoreMaxParallel';
}

export const ROLLOUT_RUN_DEFAULTS = { nodes: 5, timeMs: 90_000, settleMs: 240_000 } as const;

/** Generic kinds a rollout run accepts beside its own faults (as a placement run, and why). */
export const ROLLOUT_GENERIC_KINDS: readonly NemesisKind[] = ['partition', 'crash'];

export interface RolloutRunResult {
  readonly seed: number;
  readonly nodes: number;
  readonly timeMs: number;
  readonly violations: readonly SafetyViolation[];
  readonly violationCount: number;
  readonly liveness: { readonly ok: boolean; readonly message: string };
  readonly stats: PlacementStats;
  /** Versions submitted, broken ones among them, and deploy.step entries checked. */
  readonly versions: number;
  readonly broken: number;
  readonly stepsChecked: number;
  readonly hash: string;
  readonly events: number;
  readonly virtualMs: number;
  readonly wallMs: number;
  readonly speed: number;
  readonly unsafe: boolean;
  /** A violation, or not settled on a working version after the heal. */
  readonly failed: boolean;
}

const NAME = 'app';
// The healthy deadline outlasts a replaced guest that ignores its stop (killed after the agent's
// 30 s, AGENT_STOP_TIMEOUT_MS) plus a boot: a working version does not fail for it.
const UPDATE = {
  maxParallel: 2,
  minHealthyMs: 1000,
  healthyDeadlineMs: 40_000,
  progressDeadlineMs: 60_000,
  autoRevert: true,
};
const RESTART = { policy: 'always', maxAttempts: 0, backoffInitialMs: 100, backoffMaxMs: 1000 };

function appSpec(memoryMiB: number, broken: boolean, count = 4) {
  return {
    version: 1,
    kernel: '/boot/vmlinuz',
    cmdline: broken ? `console=ttyS0 ${SIM_BOOT_FAILS}` : 'console=ttyS0',
    vcpus: 1,
    memoryMiB,
    count,
    restart: RESTART,
  };
}

/** Runs one rollout simulation to the end. Deterministic: same seed, same run. */
export async function runRolloutSimulation(o: RolloutRunOptions): Promise<RolloutRunResult> {
  const wallStart = performance.now();
  const kinds = o.nemesis ?? [];
  for (const k of kinds) {
    if (!ROLLOUT_GENERIC_KINDS.includes(k))
      throw new RangeError(
        `nemesis ${k} does not combine with rollout: use ${ROLLOUT_GENERIC_KINDS.join(', ')}`,
      );
  }
  const nodes = o.nodes ?? ROLLOUT_RUN_DEFAULTS.nodes;
  const timeMs = o.timeMs ?? ROLLOUT_RUN_DEFAULTS.timeMs;
  const cluster = new SimCluster({ driftMax: PLACEMENT_DRIFT_MAX, seed: o.seed, nodes });
  const sim = new PlacementSim(cluster, PLACEMENT_SIM_DEFAULTS);
  const checks = new RolloutChecks(cluster);
  sim.start();
  setPlanted(o.planted === 'ignoreMaxParallel');
  try {
    const operator = new RolloutOperator(cluster);
    cluster.schedule(300, () => operator.submit(false));
    operator.loop(timeMs);
    faults(cluster, sim, timeMs);
    genericFaults(cluster, kinds, timeMs);
    await sim.advance(timeMs);
    // The last version: broken half of the time (then only autoRevert brings a working one back).
    // Without a known-good version (the first failed its deadline under the generic faults), a
    // working one again: an operator retries, and autoRevert has nothing to go back to.
    if (operator.hasKnownGood())
      operator.submit(SimRandom.fork(o.seed, 'rollout-last').chance(0.5));
    else operator.submit(false);
    sim.armFailover(undefined);
    sim.quiet();
    healAll(cluster);
    const settled = await sim.runUntil(
      () => settledWhy(cluster, sim) === undefined,
      ROLLOUT_RUN_DEFAULTS.settleMs,
    );
    if (settled) checks.final();
    const h = createHash('sha256');
    for (const f of cluster.faults) h.update(`${JSON.stringify(f)}\n`);
    const wallMs = performance.now() - wallStart;
    const unsafe = cluster.violationCount > 0;
    return {
      seed: o.seed,
      nodes,
      timeMs,
      violations: [...cluster.violations],
      violationCount: cluster.violationCount,
      liveness: settled
        ? { ok: true, message: 'the newest rollout succeeded on a working version' }
        : { ok: false, message: settledWhy(cluster, sim) ?? 'not settled' },
      stats: { ...sim.stats },
      versions: operator.versions,
      broken: operator.broken,
      stepsChecked: checks.steps,
      hash: h.digest('hex'),
      events: cluster.queue.executed,
      virtualMs: cluster.nowMs,
      wallMs,
      speed: cluster.nowMs / wallMs,
      unsafe,
      failed: unsafe || !settled,
    };
  } finally {
    setPlanted(false);
    sim.finish();
  }
}

function setPlanted(on: boolean): void {
  PLANTED_ROLLOUT_PARALLEL.ignore = on;
}

/**
 * The operator: a new version every 5-45 s (a broken one is replaced by the next before its
 * deadline, or fails and is reverted), a third of them broken, through the leader or a running
 * node; at the end of the faulty phase a last one, broken half of the time.
 */
class RolloutOperator {
  private readonly cluster: SimCluster;
  private readonly random: SimRandom;
  versions = 0;
  broken = 0;

  constructor(cluster: SimCluster) {
    this.cluster = cluster;
    this.random = SimRandom.fork(cluster.seed, 'rollout-operator');
  }

  submit(broken: boolean, attempts = 5): void {
    const memoryMiB = this.random.pick([256, 384, 512, 640]);
    this.versions++;
    if (broken) this.broken++;
    this.cluster.note('deploy.submit', { memoryMiB, broken });
    const c = {
      op: 'deploy.submit',
      name: NAME,
      spec: appSpec(memoryMiB, broken),
      update: UPDATE,
      source: { rev: `r${this.versions}` },
      atMs: Math.floor(this.cluster.nowMs),
    } as const;
    const send = (left: number): void => {
      const up = this.cluster.ids.filter((id) => this.cluster.processOf(id) === 'up');
      const via = this.cluster.leader() ?? (up.length > 0 ? this.random.pick(up) : undefined);
      const retry = () => {
        if (left > 1) this.cluster.schedule(300, () => send(left - 1));
      };
      if (via === undefined) return retry();
      this.cluster.submit(via, c, (out) => {
        if (!out.ok) retry();
      });
    };
    send(attempts);
  }

  loop(endMs: number): void {
    this.cluster.schedule(this.random.between(5000, 45_000), () => this.next(endMs));
  }

  /** The next version, once the deployment has a known-good one (else autoRevert has none). */
  private next(endMs: number): void {
    if (this.cluster.nowMs >= endMs) return;
    if (!this.hasKnownGood()) {
      // The first version failed (a deadline missed under the generic faults): submit a working
      // one again, as an operator would, and give it time to commit before looking again.
      const retry = this.rolloutState() === 'failed';
      if (retry) this.submit(false);
      this.cluster.schedule(retry ? 5000 : 1000, () => this.next(endMs));
      return;
    }
    this.submit(this.random.chance(1 / 3));
    this.loop(endMs);
  }

  private rolloutState(): string | undefined {
    const leader = this.cluster.leader();
    const sm = leader === undefined ? undefined : this.cluster.raftNode(leader)?.sm;
    return sm?.deployments.get(NAME)?.rollout?.state;
  }

  hasKnownGood(): boolean {
    const leader = this.cluster.leader();
    const sm = leader === undefined ? undefined : this.cluster.raftNode(leader)?.sm;
    return sm?.deployments.get(NAME)?.knownGood !== undefined;
  }
}

/**
 * One fault at a time from 2 s: a machine crash, the leader crashed or cut off, or a failover in
 * the middle of a step: the next deploy.step a leader proposes cuts that leader off (or crashes
 * its machine) 0-4 ms later, while the entry may or may not reach a majority.
 */
function faults(cluster: SimCluster, sim: PlacementSim, endMs: number): void {
  const r = SimRandom.fork(cluster.seed, 'rollout-nemesis');
  const next = (afterMs: number): void => {
    cluster.schedule(afterMs, () => {
      if (cluster.nowMs >= endMs) return;
      const up = cluster.ids.filter((id) => cluster.processOf(id) === 'up');
      // Every machine down (the generic crash timeline took them all): look again later.
      if (up.length === 0) return next(1000);
      const leader = cluster.leader();
      const what = r.pick(['crash-node', 'crash-leader', 'isolate-leader', 'failover'] as const);
      const target = what === 'crash-node' || leader === undefined ? r.pick(up) : leader;
      const heldMs = r.between(500, 7000);
      if (what === 'failover') {
        const crash = r.chance(0.4);
        const delayMs = r.between(0, 4);
        sim.armFailover((l) => {
          cluster.note('failover', { leader: l, crash });
          cluster.schedule(delayMs, () => {
            if (crash) cluster.crash(l);
            else cluster.partition([[l], cluster.ids.filter((x) => x !== l)]);
            cluster.schedule(heldMs, () => (crash ? cluster.restart(l) : cluster.heal()));
          });
        });
        // Unarmed if no step came: a later fault must not find it armed.
        cluster.schedule(heldMs, () => sim.armFailover(undefined));
        next(2 * heldMs + r.between(500, 3000));
        return;
      }
      if (what === 'isolate-leader') {
        cluster.partition([[target], cluster.ids.filter((x) => x !== target)]);
        cluster.schedule(heldMs, () => cluster.heal());
      } else {
        cluster.crash(target);
        cluster.schedule(heldMs, () => cluster.restart(target));
      }
      next(heldMs + r.between(500, 3000));
    });
  };
  next(2000);
}

/** The generic timelines (`--nemesis rollout,partition,crash`), from the seed's own streams. */
function genericFaults(cluster: SimCluster, kinds: readonly NemesisKind[], endMs: number): void {
  if (kinds.length === 0) return;
  const generic: Fault[] = generateSchedule(SimRandom.fork(cluster.seed, 'nemesis'), {
    ...GENERATE_DEFAULTS,
    kinds,
    endMs,
  });
  scheduleFaults(cluster, generic, SimRandom.fork(cluster.seed, 'nemesis-targets'));
}

/** Why the run has not settled, or undefined: the newest rollout succeeded and everything runs. */
function settledWhy(cluster: SimCluster, sim: PlacementSim): string | undefined {
  const leader = cluster.leader();
  if (leader === undefined) return 'no leader';
  const d = cluster.raftNode(leader)!.sm.deployments.get(NAME);
  if (d?.rollout?.state !== 'succeeded') {
    const sm = cluster.raftNode(leader)!.sm;
    const target = d?.versions.find((v) => v.n === d.rollout?.to);
    const rows = sm.vms.groupInstances(NAME).map((v) => {
      const vmm =
        v.node === ''
          ? undefined
          : sim
              .vmm(v.node)
              .observed()
              .find((x) => x.name === v.name);
      const where =
        v.node === ''
          ? 'unplaced'
          : `on ${v.node}${sim.fenced(v.node) ? ' (fenced)' : ''}, its VMM ${vmm === undefined ? 'absent' : `${vmm.phase} at generation ${vmm.generation}`}`;
      return `${v.name} v${v.version} (generation ${v.generation}) ${v.state} ${where}`;
    });
    return `the rollout of ${NAME} to version ${d?.rollout?.to} (${target?.spec.cmdline?.includes(SIM_BOOT_FAILS) ? 'broken' : 'working'}) is ${d?.rollout?.state ?? 'absent'}${d?.rollout?.reason ? `: ${d.rollout.reason}` : ''}; rows: ${rows.join(', ')}`;
  }
  const applied = cluster.raftNode(leader)!.sm.applied;
  const behind = cluster.ids.find(
    (x) => cluster.processOf(x) === 'up' && cluster.raftNode(x)!.sm.applied !== applied,
  );
  if (behind !== undefined) return `${behind} has not applied up to ${applied}`;
  return converged(cluster, sim);
}

/** The rollout checks: in flight after every committed step; one table and a working version at the end. */
class RolloutChecks {
  private readonly cluster: SimCluster;
  private lastIndex = 0;
  steps = 0;

  constructor(cluster: SimCluster) {
    this.cluster = cluster;
    cluster.onApply((id, e) => {
      if (e.index <= this.lastIndex) return;
      this.lastIndex = e.index;
      if (e.type !== 'normal' || e.data.byteLength === 0) return;
      const env = decodeEnvelope(e.data);
      if (typeof env === 'string' || env.command.op !== 'deploy.step') return;
      const node = cluster.raftNode(id);
      if (node !== undefined) this.afterStep(id, node.sm, env.command.atMs);
    });
  }

  private afterStep(
    id: string,
    sm: NonNullable<ReturnType<SimCluster['raftNode']>>['sm'],
    atMs: number,
  ): void {
    this.steps++;
    const d = sm.deployments.get(NAME);
    // The first version's rows are written whole: its rollout has no `from` and no steps.
    if (d?.rollout?.from === undefined) return;
    const c = census(d, sm.vms.groupInstances(NAME), atMs);
    if (c === undefined) return;
    const max = c.target.update.maxParallel;
    if (c.inFlight.length > max)
      this.cluster.reportViolation(
        'rollout-parallel',
        id,
        `after a deploy.step at index ${this.lastIndex}, ${c.inFlight.length} instances of version ${c.target.n} in flight (${c.inFlight.join(', ')}) > maxParallel ${max}`,
      );
  }

  /** Every member that is up holds the same table (once caught up); the version that won works. */
  final(): void {
    const up = this.cluster.ids.filter((x) => this.cluster.processOf(x) === 'up');
    const tables = new Map<string, string>();
    for (const x of up) {
      const sm = this.cluster.raftNode(x)?.sm;
      if (sm === undefined) continue;
      tables.set(x, `${sm.applied}:${JSON.stringify(sm.deployments.rows())}`);
    }
    const byIndex = new Map<string, string>();
    for (const [x, t] of tables) {
      const [index, rows] = [t.slice(0, t.indexOf(':')), t.slice(t.indexOf(':') + 1)];
      const other = byIndex.get(index);
      if (other !== undefined && other !== rows)
        this.cluster.reportViolation('rollout-state', x, `deployments differ at index ${index}`);
      byIndex.set(index, rows);
    }
    const leader = this.cluster.leader()!;
    const d = this.cluster.raftNode(leader)!.sm.deployments.get(NAME)!;
    const v = d.versions.find((x) => x.n === d.rollout!.to)!;
    if (v.spec.cmdline?.includes(SIM_BOOT_FAILS) === true)
      this.cluster.reportViolation(
        'rollout-state',
        leader,
        `version ${v.n}, a broken one, is the one whose rollout succeeded`,
      );
  }
}

export interface RolloutTimingOptions {
  readonly seed: number;
  readonly nodes?: number;
  /** Instances of the deployment and the rollout's maxParallel and minHealthyMs. */
  readonly count: number;
  readonly maxParallel: number;
  readonly minHealthyMs: number;
  /** Every simulated boot takes exactly this long, every graceful stop this long. */
  readonly bootMs: number;
  readonly stopMs: number;
}

export interface RolloutTiming {
  /** Virtual time from the submit of version 2 until its rollout succeeded (10 ms resolution). */
  readonly rolloutMs: number;
  /** The same for version 1 (every row written at once: no waves). */
  readonly firstMs: number;
  readonly steps: number;
}

/** Virtual time bound on each rollout of a timing run (none should come near it). */
const TIMING_ROLLOUT_MS_MAX = 600_000;

/**
 * A rollout's duration without faults (bench:deploy): version 1 of `count` instances, then version
 * 2 (a new memory size), through the product's placement and rollout duties and agents over
 * simulated VMMs whose boots and stops take fixed times and never crash. Deterministic.
 */
export async function runRolloutTiming(o: RolloutTimingOptions): Promise<RolloutTiming> {
  const cluster = new SimCluster({ driftMax: 0, seed: o.seed, nodes: o.nodes ?? 5 });
  const vmm = {
    ...VMM_TIMING_DEFAULTS,
    bootMsMin: o.bootMs,
    bootMsMax: o.bootMs,
    gracefulStopMsMin: o.stopMs,
    gracefulStopMsMax: o.stopMs,
    ignoresStopProbability: 0,
    crashMeanMs: 0,
  };
  const sim = new PlacementSim(cluster, { ...PLACEMENT_SIM_DEFAULTS, vmm });
  sim.start();
  try {
    const update = {
      maxParallel: o.maxParallel,
      minHealthyMs: o.minHealthyMs,
      healthyDeadlineMs: TIMING_ROLLOUT_MS_MAX,
      progressDeadlineMs: TIMING_ROLLOUT_MS_MAX,
    };
    const rollout = async (version: number, memoryMiB: number): Promise<number> => {
      if (!(await sim.runUntil(() => cluster.leader() !== undefined, 10_000)))
        throw new Error('no leader in the timing run');
      const t0 = cluster.nowMs;
      cluster.submit(cluster.leader()!, {
        op: 'deploy.submit',
        name: NAME,
        // Several instances per node: 10 instances fit on 5 nodes, as 10 VMs on 1-3 real nodes.
        spec: { ...appSpec(memoryMiB, false, o.count), allowSharing: true },
        update,
        source: { rev: `r${version}` },
        atMs: Math.floor(t0),
      });
      const done = () => {
        const l = cluster.leader();
        const r =
          l === undefined ? undefined : cluster.raftNode(l)?.sm.deployments.get(NAME)?.rollout;
        return r?.to === version && r.state === 'succeeded';
      };
      if (!(await sim.runUntil(done, TIMING_ROLLOUT_MS_MAX, 10)))
        throw new Error(
          `the timing run's rollout to version ${version} did not succeed: ${settledWhy(cluster, sim)}`,
        );
      return cluster.nowMs - t0;
    };
    const firstMs = await rollout(1, 256);
    const rolloutMs = await rollout(2, 384);
    if (cluster.violations.length > 0)
      throw new Error(`the timing run found violations: ${JSON.stringify(cluster.violations)}`);
    return { rolloutMs, firstMs, steps: sim.stats.rolloutSteps };
  } finally {
    sim.finish();
  }
}

// One placement run (docs/sim.md, "Placement runs"): five nodes running the product's placement
// duty and an agent over simulated VMMs (sim/placement.ts), an operator that submits VM groups,
// updates, removals, drains and eligibility changes, and a placement nemesis: machine crashes
// (transient, and at most one permanent), partitions that isolate a node running VMs, a drain
// during such a partition, and a leader cut off right as it proposes a vm.place (failover in the
// middle of an evaluation). Optionally the generic partition and crash timelines too.
// Phases, in virtual time:
//   [0, time)            the operator and the nemesis act; VMs crash now and then
//   time                 everything is healed (not the permanently crashed machine), VM crashes
//                        stop, the operator ends drains and makes every node eligible
//   (time, + settleMs]   every instance that wants to run must run: one live copy, on the node
//                        the committed state names, its VMM running
// Findings: the Raft-level checks of SimCluster and the placement checks (placement-checks.ts).
// Async: the product's duty awaits its ports (sim/placement.ts, advance()).

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Command } from '../node/state/machine.ts';
import { type ClusterOptions, type SafetyViolation, SimCluster } from './cluster.ts';
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
  type PlacementOptions,
  PlacementSim,
  type PlacementStats,
} from './placement.ts';
import type { PlacementCheckCounts } from './placement-checks.ts';
import { SimRandom } from './random.ts';

export interface PlacementRunOptions {
  readonly seed: number;
  readonly nodes?: number;
  readonly timeMs?: number;
  /** Generic timelines run beside the placement nemesis: `partition` and `crash` only. */
  readonly nemesis?: readonly NemesisKind[];
  readonly placement?: Partial<PlacementOptions>;
  readonly cluster?: Partial<Omit<ClusterOptions, 'seed' | 'nodes'>>;
}

export const PLACEMENT_RUN_DEFAULTS = { nodes: 5, timeMs: 30_000 } as const;

/** Generic kinds a placement run accepts beside its own (pause and drift break its assumptions). */
export const PLACEMENT_GENERIC_KINDS: readonly NemesisKind[] = ['partition', 'crash'];

export interface PlacementRunResult {
  readonly seed: number;
  readonly nodes: number;
  readonly timeMs: number;
  readonly violations: readonly SafetyViolation[];
  readonly violationCount: number;
  readonly liveness: {
    readonly ok: boolean;
    readonly settledInMs?: number;
    readonly message: string;
  };
  readonly stats: PlacementStats;
  readonly checks: PlacementCheckCounts;
  /** What the operator and the nemesis did (the cluster's records), hashed: same seed, same hash. */
  readonly actions: number;
  readonly hash: string;
  readonly events: number;
  readonly virtualMs: number;
  readonly wallMs: number;
  readonly speed: number;
  readonly unsafe: boolean;
  readonly failed: boolean;
}

const RESTART = { policy: 'always', maxAttempts: 0, backoffInitialMs: 100, backoffMaxMs: 1000 };

/** The VM groups the operator runs: spread, a constraint, sharing, an affinity. */
const GROUPS: readonly { name: string; counts: readonly number[]; extra: object }[] = [
  { name: 'web', counts: [2, 3], extra: { spread: { attribute: 'label.zone', weight: 50 } } },
  {
    name: 'db',
    counts: [1],
    extra: { constraints: [{ attribute: 'label.zone', operator: 'in', value: ['a', 'b'] }] },
  },
  { name: 'batch', counts: [2, 4], extra: { allowSharing: true } },
  {
    name: 'cache',
    counts: [1, 2],
    extra: {
      affinities: [{ attribute: 'label.disk', operator: '=', value: 'ssd', weight: 50 }],
    },
  },
];
const SIZES = [
  { vcpus: 1, memoryMiB: 512 },
  { vcpus: 1, memoryMiB: 1024 },
  { vcpus: 2, memoryMiB: 768 },
  { vcpus: 2, memoryMiB: 1536 },
];

function groupSpec(g: (typeof GROUPS)[number], count: number, size: (typeof SIZES)[number]) {
  return {
    version: 1,
    name: g.name,
    kernel: '/boot/vmlinuz',
    ...size,
    restart: RESTART,
    ...(count === 1 ? {} : { count }),
    ...g.extra,
  };
}

/** The operator: commands through a running node, retried a few times when not committed. */
class Operator {
  private readonly cluster: SimCluster;
  private readonly random: SimRandom;
  private readonly stats: PlacementStats;

  constructor(cluster: SimCluster, stats: PlacementStats) {
    this.cluster = cluster;
    this.random = SimRandom.fork(cluster.seed, 'placement-operator');
    this.stats = stats;
  }

  submit(c: Command, attempts = 5, done?: (ok: boolean) => void): void {
    const up = this.cluster.ids.filter((id) => this.cluster.processOf(id) === 'up');
    const leader = this.cluster.leader();
    const via =
      leader !== undefined && this.random.chance(0.5)
        ? leader
        : up.length > 0
          ? this.random.pick(up)
          : undefined;
    const retry = (): void => {
      if (attempts > 1) this.cluster.schedule(300, () => this.submit(c, attempts - 1, done));
      else done?.(false);
    };
    if (via === undefined) return retry();
    this.stats.operatorOps++;
    this.cluster.submit(via, c, (o) => {
      if (o.ok) done?.(true);
      else retry();
    });
  }

  putAll(): void {
    for (const g of GROUPS) this.put(g);
  }

  put(g: (typeof GROUPS)[number]): void {
    const spec = groupSpec(g, this.random.pick(g.counts), this.random.pick(SIZES));
    this.cluster.note('vm.put', {
      group: g.name,
      count: spec.count ?? 1,
      vcpus: spec.vcpus,
      memoryMiB: spec.memoryMiB,
    });
    this.submit({ op: 'vm.put', spec, atMs: Math.floor(this.cluster.nowMs) });
  }

  /** One random action of the operator. */
  act(ids: readonly string[]): void {
    const r = this.random;
    const what = r.pick(['update', 'update', 'rm', 'drain', 'ineligible'] as const);
    if (what === 'update') return this.put(r.pick(GROUPS));
    if (what === 'rm') {
      const g = r.pick(GROUPS);
      this.cluster.note('vm.rm', g.name);
      this.submit({ op: 'vm.rm', name: g.name });
      this.cluster.schedule(r.between(1000, 3000), () => this.put(g));
      return;
    }
    const id = r.pick(ids);
    if (what === 'drain') return this.drain(id, r.between(2000, 8000), r.between(3000, 10_000));
    this.cluster.note('ineligible', id);
    this.submit({ op: 'node.eligibility', id, eligible: false });
    this.cluster.schedule(r.between(2000, 6000), () =>
      this.submit({ op: 'node.eligibility', id, eligible: true }),
    );
  }

  /** Drains `id` with a deadline `deadlineMs` from now; ends the drain `endMs` from now. */
  drain(id: string, deadlineMs: number, endMs: number): void {
    this.cluster.note('drain', { node: id, deadlineMs: Math.round(deadlineMs) });
    this.submit({ op: 'node.drain', id, deadlineMs: Math.floor(this.cluster.nowMs + deadlineMs) });
    this.cluster.schedule(endMs, () => this.undrain(id));
  }

  undrain(id: string, attempts = 5, done?: (ok: boolean) => void): void {
    this.submit({ op: 'node.drain', id, cancel: true }, attempts, () =>
      this.submit({ op: 'node.eligibility', id, eligible: true }, attempts, done),
    );
  }
}

/** The placement nemesis: one fault at a time, each repaired before the next. */
class PlacementNemesis {
  private readonly cluster: SimCluster;
  private readonly sim: PlacementSim;
  private readonly operator: Operator;
  private readonly random: SimRandom;
  private permanent = false;

  constructor(cluster: SimCluster, sim: PlacementSim, operator: Operator) {
    this.cluster = cluster;
    this.sim = sim;
    this.operator = operator;
    this.random = SimRandom.fork(cluster.seed, 'placement-nemesis');
  }

  /** Schedules the faults of [startMs, endMs). */
  run(atMs: number, endMs: number): void {
    const r = this.random;
    this.cluster.schedule(atMs - this.cluster.nowMs, () => {
      if (this.cluster.nowMs >= endMs) return;
      const what = r.pick([
        'isolate-vm-node',
        'isolate-vm-node',
        'crash-machine',
        'drain-in-partition',
        'failover',
        'failover',
        'permanent-crash',
      ] as const);
      const heldMs = Math.min(endMs - this.cluster.nowMs, this.fault(what));
      this.run(this.cluster.nowMs + heldMs + r.between(500, 2500), endMs);
    });
  }

  /** A node that runs VMs (else any running node). */
  private vmNode(): string | undefined {
    const up = this.cluster.ids.filter((id) => this.cluster.processOf(id) === 'up');
    const busy = up.filter((id) => this.sim.vmm(id).alive().length > 0);
    const pool = busy.length > 0 ? busy : up;
    return pool.length > 0 ? this.random.pick(pool) : undefined;
  }

  private isolate(id: string): void {
    this.cluster.partition([[id], this.cluster.ids.filter((x) => x !== id)]);
  }

  /** Starts a fault; returns how long it lasts. */
  private fault(what: string): number {
    const r = this.random;
    const c = this.cluster;
    const id = this.vmNode();
    if (id === undefined) return 1000;
    switch (what) {
      case 'isolate-vm-node': {
        // Shorter and longer than node-down-after: the node comes back, or its VMs are replaced.
        const ms = r.between(1000, 12_000);
        this.isolate(id);
        c.schedule(ms, () => c.heal());
        return ms;
      }
      case 'crash-machine': {
        const ms = r.between(500, 9000);
        c.crash(id);
        c.schedule(ms, () => c.restart(id));
        return ms;
      }
      case 'permanent-crash': {
        if (this.permanent) return 0;
        this.permanent = true;
        c.exit(id, 'permanent machine failure');
        return 1000;
      }
      case 'drain-in-partition': {
        const ms = r.between(3000, 10_000);
        this.isolate(id);
        c.schedule(r.between(100, 1500), () =>
          this.operator.drain(id, r.between(500, 6000), ms + r.between(1000, 3000)),
        );
        c.schedule(ms, () => c.heal());
        return ms;
      }
      default: {
        // Failover mid-evaluation: the next vm.place a leader proposes cuts that leader off (or
        // crashes its machine) within a few ms, while the entry may or may not reach a majority.
        const ms = r.between(1000, 6000);
        const crash = r.chance(0.4);
        const delayMs = r.between(0, 4);
        this.sim.armFailover((leader) => {
          c.note('failover', { leader, crash });
          c.schedule(delayMs, () => {
            if (crash) c.crash(leader);
            else this.isolate(leader);
            c.schedule(ms, () => (crash ? c.restart(leader) : c.heal()));
          });
        });
        this.operator.put(r.pick(GROUPS));
        c.schedule(ms, () => this.sim.armFailover(undefined));
        return ms + 500;
      }
    }
  }
}

/** Runs one placement simulation to the end. Deterministic in everything but wall time. */
export async function runPlacementSimulation(o: PlacementRunOptions): Promise<PlacementRunResult> {
  const wallStart = performance.now();
  const nodes = o.nodes ?? PLACEMENT_RUN_DEFAULTS.nodes;
  const timeMs = o.timeMs ?? PLACEMENT_RUN_DEFAULTS.timeMs;
  const kinds = o.nemesis ?? [];
  for (const k of kinds) {
    if (!PLACEMENT_GENERIC_KINDS.includes(k))
      throw new RangeError(
        `nemesis ${k} does not combine with placement (pause leaves a daemon unable to fence; drift beyond 5% breaks the fencing bound): use ${PLACEMENT_GENERIC_KINDS.join(', ')}`,
      );
  }
  const cluster = new SimCluster({
    driftMax: PLACEMENT_DRIFT_MAX,
    ...o.cluster,
    seed: o.seed,
    nodes,
  });
  const options: PlacementOptions = { ...PLACEMENT_SIM_DEFAULTS, ...o.placement };
  const sim = new PlacementSim(cluster, options);
  sim.start();
  try {
    const operator = new Operator(cluster, sim.stats);
    schedule(cluster, sim, operator, kinds, timeMs);
    await sim.advance(timeMs);
    const healedAtMs = cluster.nowMs;
    const why = await healAndSettle(cluster, sim, operator, options.settleMs);
    const wallMs = performance.now() - wallStart;
    const h = createHash('sha256');
    for (const f of cluster.faults) h.update(`${JSON.stringify(f)}\n`);
    const settledInMs = Math.round(cluster.nowMs - healedAtMs);
    const unsafe = cluster.violationCount > 0;
    return {
      seed: o.seed,
      nodes,
      timeMs,
      violations: [...cluster.violations],
      violationCount: cluster.violationCount,
      liveness:
        why === undefined
          ? {
              ok: true,
              settledInMs,
              message: `every instance ran ${settledInMs} ms after the heal`,
            }
          : { ok: false, message: `${options.settleMs} ms after the heal: ${why}` },
      stats: { ...sim.stats },
      checks: { ...sim.checks.counts },
      actions: cluster.faults.length,
      hash: h.digest('hex'),
      events: cluster.queue.executed,
      virtualMs: cluster.nowMs,
      wallMs,
      speed: cluster.nowMs / wallMs,
      unsafe,
      failed: unsafe || why !== undefined,
    };
  } finally {
    sim.finish();
  }
}

/** The operator's groups and actions, the placement nemesis, and the generic timelines. */
function schedule(
  cluster: SimCluster,
  sim: PlacementSim,
  operator: Operator,
  kinds: readonly NemesisKind[],
  timeMs: number,
): void {
  cluster.schedule(300, () => operator.putAll());
  const opRandom = SimRandom.fork(cluster.seed, 'placement-operator-times');
  const operatorLoop = (): void => {
    cluster.schedule(opRandom.between(1000, 4000), () => {
      if (cluster.nowMs >= timeMs) return;
      operator.act(cluster.ids);
      operatorLoop();
    });
  };
  operatorLoop();
  new PlacementNemesis(cluster, sim, operator).run(3000, timeMs);
  if (kinds.length === 0) return;
  const generic: Fault[] = generateSchedule(SimRandom.fork(cluster.seed, 'nemesis'), {
    ...GENERATE_DEFAULTS,
    kinds,
    endMs: timeMs,
  });
  scheduleFaults(cluster, generic, SimRandom.fork(cluster.seed, 'nemesis-targets'));
}

/**
 * The end of the faulty phase: heal everything (not the permanently crashed machine), stop VM
 * crashes, end drains and make every node eligible; then every instance that wants to run must run
 * within `settleMs`. Why not, or undefined.
 */
async function healAndSettle(
  cluster: SimCluster,
  sim: PlacementSim,
  operator: Operator,
  settleMs: number,
): Promise<string | undefined> {
  sim.armFailover(undefined);
  sim.quiet();
  healAll(cluster);
  let restored = 0;
  for (const id of cluster.ids) operator.undrain(id, 50, () => restored++);
  const settled = await sim.runUntil(
    () => restored === cluster.ids.length && converged(cluster, sim) === undefined,
    settleMs,
  );
  if (settled) return undefined;
  return converged(cluster, sim) ?? 'drains and eligibility not restored';
}

/**
 * Why the cluster has not converged, or undefined: a leader, and for every instance of its state
 * that wants to run, one live copy, on its committed node, whose VMM runs and whose duty is free.
 */
export function converged(cluster: SimCluster, sim: PlacementSim): string | undefined {
  const leader = cluster.leader();
  if (leader === undefined) return 'no leader';
  const sm = cluster.raftNode(leader)!.sm;
  for (const vm of sm.vms.all()) {
    if (vm.desired !== 'running') continue;
    if (vm.node === '')
      return `${vm.name} is not placed (${vm.placement ?? vm.reason ?? 'pending'})`;
    const copies = sim.checks.copiesOf(vm.name);
    if (copies.length !== 1 || copies[0] !== vm.node)
      return `${vm.name} is placed on ${vm.node} and runs on ${copies.join(', ') || 'no node'}`;
    const phase = sim
      .vmm(vm.node)
      .observed()
      .find((x) => x.name === vm.name)?.phase;
    if (phase !== 'running') return `${vm.name} on ${vm.node} is ${phase ?? 'absent'}`;
    if (sim.fenced(vm.node)) return `${vm.node} is fenced`;
  }
  for (const n of sm.nodes.list()) {
    if (n.drain !== undefined || !n.eligible) return `${n.id} is still draining or ineligible`;
  }
  return undefined;
}

// The simulator's placement layer: every simulated node runs the product's PlacementDuty
// (node/placement/duty.ts: registration, fencing, the leader's evaluations, lifecycle, drains)
// with its ports on the node's RaftNode, and an agent (sim/agent.ts) that runs the product's
// reconcile() against the machine's simulated VMM (sim/vmm.ts), reporting through Raft. The
// daemon's wiring (node/daemon.ts) is mirrored: the duty ticks on the node's loop, is poked when
// the node applies a change of the VM or node table, and the agent starts once the node is
// counted and its duty lets it act (or it fenced); a fenced node's agent desires nothing and
// stops with FENCE_STOP_MS.
//
// The duty is async (its ports return promises): a continuation must run at the virtual instant
// its promise was resolved, before the next event, as an await in the daemon would. So the run
// advances with `advance()`, which drains the microtask queue (one setImmediate) after every
// event that called into a duty or resolved one of its promises. A promise of a process that died
// is never resolved: the dead incarnation's duty does nothing more.
//
// A machine crash (SimCluster.crash, exit) kills the machine's VMMs with the daemon; a partition
// leaves the node and its VMMs running (so fencing must stop them). A paused daemon (SIGSTOP)
// or a daemon killed alone would leave its VMMs running unfenced: the gap docs/scheduling.md
// states, so placement runs use neither (docs/sim.md).

import { AGENT_STOP_TIMEOUT_MS } from '../node/agent/agent.ts';
import {
  type DutyPorts,
  FENCE_GRACEFUL_MS,
  fencingProblem,
  PlacementDuty,
} from '../node/placement/duty.ts';
import { RolloutDuty, type RolloutPorts } from '../node/placement/rollout_duty.ts';
import type { Outcome, RaftNode } from '../node/raft/node.ts';
import type { Resources } from '../node/sched/types.ts';
import type { Result } from '../node/state/machine.ts';
import type { VmState } from '../node/state/vms.ts';
import { PLANTED_PLACE_RECHECK } from '../node/state/vms.ts';
import { SimAgent } from './agent.ts';
import type { SimCluster } from './cluster.ts';
import { PlacementChecks } from './placement-checks.ts';
import { msToUs } from './queue.ts';
import { SimRandom } from './random.ts';
import { SimVmm, VMM_TIMING_DEFAULTS, type VmmTiming } from './vmm.ts';

/** Bugs the tests plant to prove the placement checks fire (sim/placement.test.ts). */
export type PlantedPlacementBug =
  /** The duty never fences: its ports always report a leader heard just now. */
  | 'skipFencing'
  /** vm.place commits without the apply-time checkPlan (node/state/vms.ts PLANTED_PLACE_RECHECK). */
  | 'applyWithoutRecheck';

export interface PlacementOptions {
  readonly fenceAfterMs: number;
  readonly nodeDownAfterMs: number;
  /** The duty's periodic part runs this often (the daemon's reconcile loop: 300 ms at 50 ms ticks). */
  readonly dutyTickMs: number;
  readonly vmm: VmmTiming;
  /** After the last heal, every instance that wants to run must run within this long. */
  readonly settleMs: number;
  /** The checks look at everything alive this often (they also run at every VMM start). */
  readonly sweepMs: number;
  readonly planted?: PlantedPlacementBug;
}

/**
 * The simulator's settings, scaled to its 10 ms ticks and 100 ms election timeout, chosen with the
 * product's fencingProblem(): (1000 + 2 x 100 + the duty's period 100 + FENCE_STOP_MS 3000) x 1.05 = 4515 ms < 5000 ms.
 */
export const PLACEMENT_SIM_DEFAULTS: PlacementOptions = {
  fenceAfterMs: 1000,
  nodeDownAfterMs: 5000,
  dutyTickMs: 100,
  vmm: VMM_TIMING_DEFAULTS,
  // A guest that ignores its stop is killed after AGENT_STOP_TIMEOUT_MS (30 s) before the VM
  // starts again with a new spec; a permanently lost node's VMs move after node-down-after.
  settleMs: AGENT_STOP_TIMEOUT_MS + 5000 + 10_000,
  sweepMs: 100,
};

/**
 * Clock drift in placement runs: each node's rate within 2% of nominal, so two nodes' rates differ
 * by at most 1.02 / 0.98 < 1 + CLOCK_DRIFT_MAX (5%), the bound the fencing argument assumes.
 */
export const PLACEMENT_DRIFT_MAX = 0.02;

/** The machines: capacity, labels (zones a, b, c; ssd on every other node), all qemu. */
export function machineOf(index: number): {
  capacity: Resources;
  labels: Record<string, string>;
} {
  return {
    capacity: { cpus: [8, 12, 8][index % 3]!, memoryMiB: [8192, 12_288, 6144, 16_384][index % 4]! },
    labels: { zone: 'abc'[index % 3]!, ...(index % 2 === 0 ? { disk: 'ssd' } : {}) },
  };
}

export interface PlacementStats {
  placed: number;
  refusedAtApply: number;
  nodesDown: number;
  fences: number;
  drainMoves: number;
  vmCrashes: number;
  operatorOps: number;
  failovers: number;
  rolloutSteps: number;
  rolloutsSucceeded: number;
  rolloutsFailed: number;
  /** Failed rollouts whose deploy.finish also started the revert to the known-good version. */
  rolloutsReverted: number;
}

/** One incarnation of a node's daemon: its duty and its agent. */
interface Daemon {
  readonly id: string;
  readonly node: RaftNode;
  readonly duty: PlacementDuty;
  /** The leader's rolling updates of deployments (node/placement/rollout_duty.ts). */
  readonly rollouts: RolloutDuty;
  readonly agent: SimAgent;
  vmChanges: number;
  tables: string;
  rolloutTables: string;
  recording: boolean;
}

export class PlacementSim {
  readonly options: PlacementOptions;
  readonly checks: PlacementChecks;
  readonly stats: PlacementStats = {
    placed: 0,
    refusedAtApply: 0,
    nodesDown: 0,
    fences: 0,
    drainMoves: 0,
    vmCrashes: 0,
    operatorOps: 0,
    failovers: 0,
    rolloutSteps: 0,
    rolloutsSucceeded: 0,
    rolloutsFailed: 0,
    rolloutsReverted: 0,
  };
  private readonly cluster: SimCluster;
  private readonly daemons = new Map<string, Daemon>();
  private readonly vmms = new Map<string, SimVmm>();
  /** A duty was called or one of its promises resolved: drain microtasks before the next event. */
  private settle = false;
  /**
   * Armed by the failover nemesis: the next vm.place (or deploy.step, in rollout runs) a leader
   * proposes cuts that leader off.
   */
  private failoverArmed: ((leader: string) => void) | undefined;

  constructor(cluster: SimCluster, options: PlacementOptions) {
    const why = fencingProblem({
      fenceAfterMs: options.fenceAfterMs,
      nodeDownAfterMs: options.nodeDownAfterMs,
      electionTimeoutMs: this.electionTimeoutMsOf(cluster),
      loopMs: options.dutyTickMs,
    });
    if (why !== undefined) throw new RangeError(why);
    this.cluster = cluster;
    this.options = options;
    this.checks = new PlacementChecks({
      capacityOf: (id) => machineOf(cluster.ids.indexOf(id)).capacity,
      report: (kind, node, message) => cluster.reportViolation(kind, node, message),
      nowMs: () => cluster.nowMs,
    });
    for (const id of cluster.ids) {
      const r = SimRandom.fork(cluster.seed, `vmm/${id}`);
      this.vmms.set(
        id,
        new SimVmm(
          {
            node: id,
            random: r,
            nowMs: () => cluster.nowMs,
            after: (ms, f) => cluster.schedule(ms, f),
            drift: () => cluster.node(id).drift,
          },
          options.vmm,
          {
            started: (n, name, spec, g) => this.checks.started(n, name, spec, g),
            ended: (n, name, why) => {
              if (why === 'crashed') this.stats.vmCrashes++;
              this.checks.ended(n, name);
            },
            // The product's health monitor notices a guest's boot within 0.5 s (its console
            // poll) and commits it at once; here the boot is the running phase: the agent looks
            // at once rather than at its next 1 s round.
            booted: (n) => {
              if (this.cluster.processOf(n) === 'up') this.daemons.get(n)?.agent.poke();
            },
          },
        ),
      );
    }
  }

  private electionTimeoutMsOf(cluster: SimCluster): number {
    return cluster.electionTicks * cluster.tickMs;
  }

  private tickMs(): number {
    return this.cluster.tickMs;
  }

  /** Wires the listeners and starts every node's loop; the planted recheck bug is set here. */
  start(): void {
    PLANTED_PLACE_RECHECK.skip = this.options.planted === 'applyWithoutRecheck';
    const c = this.cluster;
    c.onStep((id, node) => {
      if (this.daemons.get(id)?.node !== node) this.daemonStarted(id, node);
    });
    for (const id of c.ids) {
      const node = c.raftNode(id);
      if (node !== undefined) this.daemonStarted(id, node);
    }
    c.onApply((id, e) => {
      const node = c.raftNode(id);
      if (node === undefined) return; // replaying its log while it starts
      this.checks.applied(e, node.sm);
      const d = this.daemons.get(id);
      if (d !== undefined && d.node === node) this.applied(d);
    });
    c.onFault((f) => {
      if (f.f === 'crash' || f.f === 'exit') {
        const v = f.value as string | { node: string };
        const id = typeof v === 'string' ? v : v.node;
        this.vmms.get(id)?.killAll(`machine ${id} crashed`);
      }
    });
    this.sweepLoop();
  }

  /** Undoes what start() set outside the simulation (the planted recheck bug). */
  finish(): void {
    PLANTED_PLACE_RECHECK.skip = false;
  }

  vmm(id: string): SimVmm {
    return this.vmms.get(id)!;
  }

  /** Stops VM crashes (the end of the faulty phase). */
  quiet(): void {
    for (const v of this.vmms.values()) v.crashesOn = false;
  }

  /** Whether the daemon of `id` has fenced itself. */
  fenced(id: string): boolean {
    const d = this.daemons.get(id);
    return d !== undefined && d.node === this.cluster.raftNode(id) && d.duty.isFenced();
  }

  /** Arms the failover nemesis: `cut(leader)` runs as the next vm.place is proposed. */
  armFailover(cut: ((leader: string) => void) | undefined): void {
    this.failoverArmed = cut;
  }

  // ---------------------------------------------------------------------------------------------
  // Running the simulation with the duties' continuations.

  /** Runs every event due by `untilMs`, draining the duties' microtasks after each that needs it. */
  async advance(untilMs: number): Promise<void> {
    const q = this.cluster.queue;
    const until = msToUs(untilMs);
    while (q.step(until)) {
      if (this.settle) {
        this.settle = false;
        await new Promise<void>((r) => setImmediate(r));
      }
    }
    q.now = Math.max(q.now, until);
  }

  /** Advances in steps of `stepMs` until pred() holds or maxMs passed; whether it holds. */
  async runUntil(pred: () => boolean, maxMs: number, stepMs = 100): Promise<boolean> {
    const end = this.cluster.nowMs + maxMs;
    while (!pred()) {
      if (this.cluster.nowMs >= end) return false;
      await this.advance(Math.min(end, this.cluster.nowMs + stepMs));
    }
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // One daemon incarnation.

  /** Runs `f` after `ms` in `id`'s process, if this incarnation still runs. */
  private after(id: string, node: RaftNode, ms: number, f: () => void): void {
    this.cluster.schedule(ms, () => {
      if (this.cluster.raftNode(id) === node) this.cluster.inProcess(id, f);
    });
  }

  private daemonStarted(id: string, node: RaftNode): void {
    const duty = new PlacementDuty(this.ports(id, node));
    const vmm = this.vmms.get(id)!;
    const agent = new SimAgent({
      vmm,
      desired: () =>
        (duty.isFenced() ? [] : node.sm.vms.list(id)).map((v) => ({
          name: v.name,
          spec: v.spec,
          generation: v.generation,
          state: v.desired,
        })),
      report: (name, state, reason, done) => this.report(id, node, name, state, reason, done),
      stopTimeoutMs: () => (duty.isFenced() ? FENCE_GRACEFUL_MS : AGENT_STOP_TIMEOUT_MS),
      after: (ms, f) => this.after(id, node, ms, f),
      nowMs: () => this.cluster.nowMs,
    });
    const rollouts = new RolloutDuty(this.rolloutPorts(id, node));
    const d: Daemon = {
      id,
      node,
      duty,
      rollouts,
      agent,
      vmChanges: -1,
      tables: '',
      rolloutTables: '',
      recording: false,
    };
    this.daemons.set(id, d);
    const phase = SimRandom.fork(this.cluster.seed, `duty/${id}/${this.cluster.incarnationOf(id)}`);
    this.after(id, node, 1 + phase.intn(this.options.dutyTickMs), () => this.tick(d));
  }

  /** The daemon's reconcile loop: the duty's tick, then the agent starts when it may. */
  private tick(d: Daemon): void {
    this.record(d);
    const wasFenced = d.duty.isFenced();
    this.settle = true;
    d.rollouts.tick();
    void d.duty.tick().then(() => {
      if (!wasFenced && d.duty.isFenced()) this.stats.fences++;
      const counted = this.counted(d);
      if (!d.agent.running && ((counted && d.duty.agentMayAct()) || d.duty.isFenced()))
        d.agent.start();
    });
    this.after(d.id, d.node, this.options.dutyTickMs, () => this.tick(d));
  }

  /**
   * The member record the membership executor writes (decide: record), without which the node
   * table refuses node.register: the nodes of a placement run are the bootstrapped voters.
   */
  private record(d: Daemon): void {
    if (d.recording || d.node.sm.member(d.id) !== undefined) return;
    d.recording = true;
    this.cluster.submit(
      d.id,
      {
        op: 'member.put',
        member: { id: d.id, addrs: [`/sim/${d.id}`], role: 'voter', name: d.id },
      },
      () => {
        d.recording = false;
      },
    );
  }

  private counted(d: Daemon): boolean {
    const c = d.node.status().config;
    return c.voters.includes(d.id) || c.learners.includes(d.id);
  }

  /** node/daemon.ts onApply: poke the agent on a VM table change, the duty on either table's. */
  private applied(d: Daemon): void {
    const sm = d.node.sm;
    if (sm.vms.changes !== d.vmChanges) {
      d.vmChanges = sm.vms.changes;
      d.agent.poke();
    }
    const tables = `${sm.vms.changes}/${sm.nodes.changes}`;
    if (tables !== d.tables) {
      d.tables = tables;
      this.after(d.id, d.node, 0, () => {
        this.settle = true;
        d.duty.poke();
      });
    }
    const rolloutTables = `${sm.vms.changes}/${sm.deployments.changes}`;
    if (rolloutTables !== d.rolloutTables) {
      d.rolloutTables = rolloutTables;
      this.after(d.id, d.node, 0, () => {
        this.settle = true;
        d.rollouts.poke();
      });
    }
  }

  /** A promise that this incarnation resolves with `f`'s answer, or never if it dies first. */
  private answer<T>(
    id: string,
    node: RaftNode,
    issue: (resolve: (x: T) => void) => void,
  ): Promise<T> {
    return new Promise<T>((resolve) => {
      issue((x) => {
        if (this.cluster.raftNode(id) !== node) return;
        this.settle = true;
        resolve(x);
      });
    });
  }

  private ports(id: string, node: RaftNode): DutyPorts {
    const c = this.cluster;
    const o = this.options;
    const tickMs = this.tickMs();
    const skipFencing = o.planted === 'skipFencing';
    return {
      self: id,
      tickMs,
      electionTimeoutMs: node.rn.raft.electionTimeout * tickMs,
      nodeDownAfterMs: o.nodeDownAfterMs,
      fenceAfterMs: o.fenceAfterMs,
      sm: () => node.sm,
      raft: () => {
        const contact = node.contact();
        return {
          leader: node.status().lead === id,
          ticks: contact.ticks,
          heard: contact.heard,
          leaderAgeTicks: skipFencing ? 0 : contact.leaderAgeTicks,
        };
      },
      counted: () => {
        const cf = node.status().config;
        return cf.voters.includes(id) || cf.learners.includes(id);
      },
      registration: () => ({
        arch: 'x86_64',
        ...machineOf(c.ids.indexOf(id)),
        backends: ['qemu'],
      }),
      submit: (cmd) =>
        this.answer<Result>(id, node, (resolve) => {
          c.submit(id, cmd, (out: Outcome) => {
            resolve(out.ok ? out.result : { ok: false, code: 'invalid', message: out.message });
          });
          if (cmd.op === 'vm.place') this.placeProposed(id, node);
        }),
      barrier: () =>
        this.answer<boolean>(id, node, (resolve) => {
          c.read(id, { op: 'members' }, (out) => resolve(out.ok));
        }),
      // The daemon passes Date.now: whole milliseconds (commands refuse a fractional atMs).
      now: () => Math.floor(c.nowMs),
      pokeAgent: () => this.daemons.get(id)?.agent.poke(),
      log: {
        info: (_o, msg) => {
          if (msg === 'placed') this.stats.placed++;
          else if (msg === 'placement refused at apply') this.stats.refusedAtApply++;
          else if (msg === 'moving off a draining node') this.stats.drainMoves++;
        },
        warn: (_o, msg) => {
          if (msg.startsWith('node down')) this.stats.nodesDown++;
        },
        debug: () => {},
      },
    };
  }

  /** node/daemon.ts's RolloutDuty ports: leadership, submit through the node, virtual time. */
  private rolloutPorts(id: string, node: RaftNode): RolloutPorts {
    const c = this.cluster;
    return {
      sm: () => node.sm,
      leader: () => node.status().lead === id,
      submit: (cmd) =>
        this.answer<Result>(id, node, (resolve) => {
          c.submit(id, cmd, (out: Outcome) => {
            resolve(out.ok ? out.result : { ok: false, code: 'invalid', message: out.message });
          });
          if (cmd.op === 'deploy.step') this.placeProposed(id, node);
        }),
      now: () => Math.floor(c.nowMs),
      // The daemon's setTimeout, in this incarnation's virtual time; cancelled by a flag.
      after: (ms, f) => {
        let live = true;
        this.after(id, node, ms, () => {
          if (!live) return;
          this.settle = true;
          f();
        });
        return () => {
          live = false;
        };
      },
      log: {
        info: (_o, msg) => {
          if (msg === 'rolling') this.stats.rolloutSteps++;
          else if (msg === 'rollout succeeded') this.stats.rolloutsSucceeded++;
        },
        warn: (_o, msg) => {
          if (msg.startsWith('rollout failed')) this.stats.rolloutsFailed++;
          if (msg === 'rollout failed: reverting to the known-good version')
            this.stats.rolloutsReverted++;
        },
        debug: () => {},
      },
    };
  }

  /** The failover nemesis, when armed: the leader that just proposed a vm.place or a deploy.step is cut off. */
  private placeProposed(id: string, node: RaftNode): void {
    const cut = this.failoverArmed;
    if (cut === undefined || node.status().lead !== id) return;
    this.failoverArmed = undefined;
    this.stats.failovers++;
    cut(id);
  }

  /** node/daemon.ts reportVm: the VM's current generation, only while it is placed here. */
  private report(
    id: string,
    node: RaftNode,
    name: string,
    state: VmState,
    reason: string | undefined,
    done: (ok: boolean) => void,
  ): void {
    const vm = node.sm.vms.get(name);
    if (vm === undefined || vm.node !== id) return done(true);
    this.cluster.submit(
      id,
      {
        op: 'vm.report',
        name,
        node: id,
        generation: vm.generation,
        state,
        ...(reason !== undefined ? { reason } : {}),
        atMs: Math.floor(this.cluster.nowMs),
      },
      (out) => {
        if (this.cluster.raftNode(id) === node) this.after(id, node, 0, () => done(out.ok));
      },
    );
  }

  private sweepLoop(): void {
    this.cluster.schedule(this.options.sweepMs, () => {
      this.checks.sweep(this.cluster.ids);
      this.sweepLoop();
    });
  }
}

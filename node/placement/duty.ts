// The node's placement duties (docs/scheduling.md, "The wiring"): the imperative shell around the
// pure decisions of node/sched/evaluate.ts.
// - every node registers its capacity, arch, labels and backends (node.register) and keeps the
//   row current;
// - every node fences itself when it has not heard from a leader for fence-after, and unfences
//   only after a linearizable read (its state is then as new as the leader's);
// - the leader evaluates (places unplaced instances through vm.place), marks silent nodes down and
//   answering ones ready (node.status), and moves instances off draining nodes (vm.release).
// One evaluation runs at a time; a change during one runs another after it.

import { drainMoves, evaluate, lifecycle, rescheduleMoves } from '../sched/evaluate.ts';
import { RESCHEDULE_DEFAULT } from '../sched/spec.ts';
import type { Resources } from '../sched/types.ts';
import type { Command, Result, StateMachine } from '../state/machine.ts';
import { pendingDemands } from '../state/view.ts';
import { placementOf } from '../state/vm_spec.ts';
import { type PlacedInstance, placedInstance, VM_PLACE_BATCH_MAX } from '../state/vms.ts';
import { CoalescedPass } from './coalesced.ts';

/** Bound of the clock-rate drift between two nodes, in the fencing argument. */
export const CLOCK_DRIFT_MAX = 0.05;
/** A fenced node's VMs are dead this long after it fenced, at the latest. */
export const FENCE_STOP_MS = 3000;
/**
 * The stop timeout a fenced node gives a VM: after it the VMM is forced, and killed
 * FORCE_GRACE_MS (node/vmm/proc.ts, 2 s) later if still alive, so the VM is dead within
 * FENCE_STOP_MS (checked in duty.test.ts; the simulator found the graceful 30 s stop of a VM
 * already stopping outlasting the bound).
 */
export const FENCE_GRACEFUL_MS = 1000;
export const NODE_DOWN_AFTER_MS_DEFAULT = 10_000;
export const FENCE_AFTER_MS_DEFAULT = 4000;
/** The leader evaluates at least this often while instances wait (besides every table change). */
export const EVALUATE_RETRY_MS = 2000;

/** How often the duty's periodic part runs in the daemon (its reconcile loop). */
export const DUTY_PERIOD_MS = 300;

/**
 * Why fence-after and node-down-after cannot guarantee one copy of an instance, or undefined:
 * `(fenceAfter + 2 x election timeout + loop period + FENCE_STOP_MS) x (1 + CLOCK_DRIFT_MAX) <
 * nodeDownAfter` (the loop period: a node notices its silence at its next loop, up to one period
 * late). `loopMs` defaults to DUTY_PERIOD_MS.
 */
export function fencingProblem(o: {
  fenceAfterMs: number;
  nodeDownAfterMs: number;
  electionTimeoutMs: number;
  loopMs?: number;
}): string | undefined {
  const loopMs = o.loopMs ?? DUTY_PERIOD_MS;
  const need =
    (o.fenceAfterMs + 2 * o.electionTimeoutMs + loopMs + FENCE_STOP_MS) * (1 + CLOCK_DRIFT_MAX);
  if (need < o.nodeDownAfterMs) return undefined;
  return (
    `--node-down-after ${o.nodeDownAfterMs} ms must exceed (fence-after ${o.fenceAfterMs} + 2 x election timeout ${o.electionTimeoutMs} + ` +
    `loop period ${loopMs} + FENCE_STOP_MS ${FENCE_STOP_MS}) x (1 + CLOCK_DRIFT_MAX ${CLOCK_DRIFT_MAX}) = ${Math.ceil(need)} ms, or a partitioned node's VMs ` +
    'could still run when their replacements start'
  );
}

export interface Registration {
  readonly arch: string;
  readonly capacity: Resources;
  readonly labels: Readonly<Record<string, string>>;
  /** Undefined until the backends were probed. */
  readonly backends: readonly string[] | undefined;
}

export interface DutyPorts {
  readonly self: string;
  readonly tickMs: number;
  readonly electionTimeoutMs: number;
  readonly nodeDownAfterMs: number;
  readonly fenceAfterMs: number;
  sm(): StateMachine;
  /** Whether this node is the leader now, and what it heard when (node/raft contact()). */
  raft(): {
    readonly leader: boolean;
    readonly ticks: number;
    readonly heard: ReadonlyMap<string, number>;
    readonly leaderAgeTicks: number;
  };
  /** Whether this member is counted by the cluster (it may register). */
  counted(): boolean;
  registration(): Registration;
  submit(c: Command): Promise<Result>;
  /** A linearizable read succeeded (the unfence barrier). */
  barrier(): Promise<boolean>;
  now(): number;
  /** The agent must look again (fenced or unfenced). */
  pokeAgent(): void;
  log: {
    info(o: object, msg: string): void;
    warn(o: object, msg: string): void;
    debug(o: object, msg: string): void;
  };
}

export class PlacementDuty {
  private readonly p: DutyPorts;
  private readonly evaluation: CoalescedPass;
  private leaderSinceMs: number | undefined;
  private registering = false;
  /**
   * `hold` at start: the table may list VMs the cluster moved away while this node was down, so
   * its agent neither starts nor stops anything (VMs it adopts keep running) until a linearizable
   * read proves its state current (`free`). `fenced`: no leader heard for fence-after (or never,
   * fence-after after start): the agent stops every VM here.
   */
  private phase: 'hold' | 'free' | 'fenced' = 'hold';
  private startedMs: number | undefined;
  private unfencing = false;
  private timerBusy = false;
  private lastRetryMs = 0;

  constructor(p: DutyPorts) {
    this.p = p;
    this.evaluation = new CoalescedPass(
      () => this.evaluateOnce(),
      () => this.p.raft().leader,
      (e) => this.p.log.debug({ err: e.message }, 'evaluation failed'),
    );
  }

  /** Whether this node has fenced itself: its agent runs nothing and stops what runs. */
  isFenced(): boolean {
    return this.phase === 'fenced';
  }

  /** Whether the agent may act: not while holding at start (see `phase`). */
  agentMayAct(): boolean {
    return this.phase !== 'hold';
  }

  /** After an applied change of the VM or node table. */
  poke(): void {
    this.evaluation.request();
  }

  /** The periodic part (the daemon's reconcile loop): fence, register, lifecycle, drains. */
  async tick(): Promise<void> {
    if (this.timerBusy) return;
    this.timerBusy = true;
    try {
      this.fence();
      await this.register();
      const r = this.p.raft();
      if (!r.leader) {
        this.leaderSinceMs = undefined;
        return;
      }
      const now = this.p.now();
      if (this.leaderSinceMs === undefined) {
        this.leaderSinceMs = now;
        this.poke();
      }
      // An evaluation whose vm.place did not commit (a leader change, a timeout) left instances
      // pending that no table change will bring back: look again now and then.
      if (now - this.lastRetryMs >= EVALUATE_RETRY_MS) {
        this.lastRetryMs = now;
        this.poke();
      }
      await this.lifecycle();
      await this.drains();
      await this.reschedules();
    } finally {
      this.timerBusy = false;
    }
  }

  private fence(): void {
    const now = this.p.now();
    this.startedMs ??= now;
    const ageMs = this.p.raft().leaderAgeTicks * this.p.tickMs;
    const silent = ageMs >= this.p.fenceAfterMs;
    const holdTooLong = this.phase === 'hold' && now - this.startedMs >= this.p.fenceAfterMs;
    if (silent && (this.phase === 'free' || holdTooLong)) {
      this.phase = 'fenced';
      this.p.log.warn(
        { fenceAfterMs: this.p.fenceAfterMs },
        'no leader heard for fence-after: stopping every VM on this node until the cluster answers',
      );
      this.p.pokeAgent();
      return;
    }
    if (this.phase !== 'free' && !silent && !this.unfencing) {
      this.unfencing = true;
      void this.p
        .barrier()
        .then((ok) => {
          if (!ok) return;
          if (this.phase === 'fenced')
            this.p.log.info({}, 'the cluster answers again: VMs may run on this node');
          this.phase = 'free';
          this.p.pokeAgent();
        })
        .finally(() => {
          this.unfencing = false;
        });
    }
  }

  /** Registers this node's attributes when the table lacks them or holds others. */
  private async register(): Promise<void> {
    if (this.registering || !this.p.counted()) return;
    const want = this.p.registration();
    if (want.backends === undefined) return;
    const have = this.p.sm().nodes.get(this.p.self);
    const same =
      have !== undefined &&
      have.arch === want.arch &&
      have.capacity.cpus === want.capacity.cpus &&
      have.capacity.memoryMiB === want.capacity.memoryMiB &&
      JSON.stringify(have.labels) === JSON.stringify(sortKeys(want.labels)) &&
      have.backends.join(',') === [...new Set(want.backends)].sort().join(',');
    if (same) return;
    this.registering = true;
    try {
      const r = await this.p.submit({
        op: 'node.register',
        id: this.p.self,
        arch: want.arch,
        capacity: want.capacity,
        labels: want.labels,
        backends: want.backends,
      });
      if (r.ok) this.p.log.info({ ...want }, 'node registered for placement');
      else this.p.log.warn({ err: r.message }, 'node registration refused');
    } catch (e) {
      this.p.log.debug({ err: (e as Error).message }, 'node registration not committed yet');
    } finally {
      this.registering = false;
    }
  }

  private async evaluateOnce(): Promise<void> {
    const sm = this.p.sm();
    const demands = pendingDemands(sm.vms);
    if (demands.length === 0) return; // most changes are reports: nothing to place
    const view = sm.view();
    const ev = evaluate(
      view,
      demands,
      (i) => sm.vms.get(i)?.desired === 'running',
      (g) => sm.vms.list(undefined, g).find((v) => v.node === '')?.placement,
    );
    for (let i = 0; i < ev.placements.length; i += VM_PLACE_BATCH_MAX) {
      const batch: PlacedInstance[] = ev.placements
        .slice(i, i + VM_PLACE_BATCH_MAX)
        .map(placedInstance);
      const r = await this.p.submit({
        op: 'vm.place',
        viewIndex: view.index,
        placements: batch,
        atMs: this.p.now(),
      });
      if (!r.ok) {
        // Refused as a whole (malformed, or not committed): say so; the retry places them again.
        this.p.log.warn({ err: r.message, batch: batch.length }, 'placements not committed');
        continue;
      }
      (r.verdicts ?? []).forEach((v, k) => {
        const p = batch[k]!;
        if (v === 'ok')
          this.p.log.info({ vm: p.instance, node: sm.nameOf(p.node), score: p.score }, 'placed');
        else this.p.log.info({ vm: p.instance, why: v }, 'placement refused at apply');
      });
    }
    for (const u of ev.unplaced) {
      this.p.log.warn({ vm: u.group, why: u.message }, 'cannot place');
      await this.p.submit({ op: 'vm.unplaced', ...u, atMs: this.p.now() });
    }
  }

  private async lifecycle(): Promise<void> {
    const r = this.p.raft();
    const now = this.p.now();
    const heardMs = new Map<string, number>();
    for (const [id, tick] of r.heard) heardMs.set(id, now - (r.ticks - tick) * this.p.tickMs);
    const changes = lifecycle({
      nowMs: now,
      leaderSinceMs: this.leaderSinceMs ?? now,
      downAfterMs: this.p.nodeDownAfterMs,
      self: this.p.self,
      nodes: this.p.sm().nodes.list(),
      lastHeardMs: heardMs,
    });
    for (const c of changes) {
      const out = await this.p.submit({ op: 'node.status', ...c, atMs: now });
      if (out.ok)
        this.p.log[c.down ? 'warn' : 'info'](
          { node: this.p.sm().nameOf(c.id), id: c.id },
          c.down ? 'node down: its VMs will be placed elsewhere' : 'node answers again: ready',
        );
    }
  }

  /** Instances failed beyond their restart policy, placed again per their reschedule policy. */
  private async reschedules(): Promise<void> {
    const sm = this.p.sm();
    const now = this.p.now();
    for (const m of rescheduleMoves(now, failedInstances(sm, now))) {
      const out = await this.p.submit({ op: 'vm.release', ...m, failed: true, atMs: now });
      if (out.ok) this.p.log.info({ vm: m.name, why: m.reason }, 'rescheduling');
    }
  }

  private async drains(): Promise<void> {
    const sm = this.p.sm();
    const draining = sm.nodes
      .list()
      .filter((n) => n.drain !== undefined)
      .map((n) => ({ id: n.id, deadlineMs: n.drain!.deadlineMs }));
    const moves = drainMoves({ nowMs: this.p.now(), draining, instances: sm.vms.list() });
    for (const m of moves) {
      const out = await this.p.submit({ op: 'vm.release', ...m, atMs: this.p.now() });
      if (out.ok) this.p.log.info({ vm: m.name, why: m.reason }, 'moving off a draining node');
    }
  }
}

export function failedInstances(sm: StateMachine, nowMs: number) {
  return sm.vms
    .list()
    .filter((v) => v.desired === 'running' && v.node !== '' && v.state === 'failed')
    .map((v) => {
      const failed = [...v.events]
        .reverse()
        .find((e) => e.state === 'failed' && e.generation === v.generation);
      return {
        name: v.name,
        node: v.node,
        generation: v.generation,
        failedAtMs: failed?.atMs ?? nowMs,
        rescheduledAtMs: (v.reschedules ?? []).map((r) => r.atMs),
        policy: placementOf(v.spec).reschedule ?? RESCHEDULE_DEFAULT,
      };
    });
}

function sortKeys(o: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k]!;
  return out;
}

// One evaluation of the leader's loop (docs/scheduling.md, "The leader's loop"), and the node
// lifecycle and drain decisions the leader takes on a timer. Pure: the cluster view, the demands,
// what the table already says, and the time come in; the commands to propose go out. The leader's
// duty (node/placement/duty.ts) runs them and proposes the result; the simulator can run the same.

import { place } from './place.ts';
import type { ReschedulePolicy } from './spec.ts';
import type { ClusterView, Demand, Placement } from './types.ts';

export interface Evaluation {
  /** Placements to propose as one vm.place (may be empty). */
  readonly placements: readonly Placement[];
  /** New failure explanations (a group's message changed) to propose as vm.unplaced. */
  readonly unplaced: readonly {
    readonly group: string;
    readonly generation: number;
    readonly message: string;
  }[];
}

/**
 * Places the demands on the view (seeded by the view's index: every member would choose the same).
 * `wantsToRun(instance)`: a stopped instance without a node is left alone. `explained(group)`:
 * the message the table holds for the group, so an unchanged failure is not proposed again.
 */
export function evaluate(
  view: ClusterView,
  demands: readonly Demand[],
  wantsToRun: (instance: string) => boolean,
  explained: (group: string) => string | undefined,
): Evaluation {
  if (demands.length === 0) return { placements: [], unplaced: [] };
  const r = place(view, demands, view.index);
  const placements = r.placements.filter((p) => wantsToRun(p.instance));
  const unplaced: { group: string; generation: number; message: string }[] = [];
  const seen = new Set<string>();
  for (const f of r.failures) {
    // The failure's own demand: a group mid-rollout has one per version (generation).
    const d = demands.find(
      (x) => x.group === f.group && (x.instances === undefined || x.instances.includes(f.instance)),
    )!;
    const key = `${f.group}\u0000${d.generation}`;
    if (seen.has(key) || !wantsToRun(f.instance)) continue;
    seen.add(key);
    if (explained(f.group) === f.message) continue;
    unplaced.push({ group: f.group, generation: d.generation, message: f.message });
  }
  return { placements, unplaced };
}

export interface LifecycleInput {
  readonly nowMs: number;
  /** When this node became leader: it marks nobody down before a full period has passed. */
  readonly leaderSinceMs: number;
  readonly downAfterMs: number;
  readonly self: string;
  /** Registered nodes and whether the table has them down. */
  readonly nodes: readonly { readonly id: string; readonly down: boolean }[];
  /** When the leader last received a Raft message from each node (absent: never since leading). */
  readonly lastHeardMs: ReadonlyMap<string, number>;
}

/** The node.status changes to propose: down after downAfterMs of silence, ready when heard. */
export function lifecycle(i: LifecycleInput): { id: string; down: boolean }[] {
  const out: { id: string; down: boolean }[] = [];
  for (const n of i.nodes) {
    if (n.id === i.self) {
      if (n.down) out.push({ id: n.id, down: false });
      continue;
    }
    const heard = Math.max(i.lastHeardMs.get(n.id) ?? i.leaderSinceMs, i.leaderSinceMs);
    const silent = i.nowMs - heard >= i.downAfterMs;
    if (silent && !n.down) out.push({ id: n.id, down: true });
    // Heard within the period and marked down: it answers again.
    if (!silent && n.down && i.lastHeardMs.has(n.id)) out.push({ id: n.id, down: false });
  }
  return out;
}

export interface DrainInput {
  readonly nowMs: number;
  readonly draining: readonly { readonly id: string; readonly deadlineMs: number }[];
  /** Every instance: its node ('' unplaced), whether it wants to run, and its reported state. */
  readonly instances: readonly {
    readonly name: string;
    readonly node: string;
    readonly generation: number;
    readonly desired: 'running' | 'stopped';
    readonly state: string;
  }[];
}

/**
 * Instances to release from draining nodes: all of a node's after its deadline; before it, one at
 * a time, and only when no instance of the cluster is on its way (unplaced, or placed and not
 * yet running): the last one moved runs again before the next moves.
 */
export function drainMoves(i: DrainInput): { name: string; generation: number; reason: string }[] {
  if (i.draining.length === 0) return [];
  const out: { name: string; generation: number; reason: string }[] = [];
  const inMotion = i.instances.some(
    (v) =>
      v.desired === 'running' && (v.node === '' || (v.state !== 'running' && v.state !== 'failed')),
  );
  for (const d of [...i.draining].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    const on = i.instances
      .filter((v) => v.node === d.id)
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    if (on.length === 0) continue;
    if (i.nowMs >= d.deadlineMs) {
      for (const v of on)
        out.push({ name: v.name, generation: v.generation, reason: `drain deadline of ${d.id}` });
    } else if (!inMotion && out.length === 0) {
      out.push({ name: on[0]!.name, generation: on[0]!.generation, reason: `draining ${d.id}` });
    }
  }
  return out;
}

export interface FailedInstance {
  readonly name: string;
  readonly node: string;
  readonly generation: number;
  /** When it was reported failed (for its current generation, on its current node). */
  readonly failedAtMs: number;
  /** When it was rescheduled before (after earlier failures), oldest first. */
  readonly rescheduledAtMs: readonly number[];
  readonly policy: ReschedulePolicy;
}

/** The delay before the next reschedule of an instance rescheduled `previous` times before. */
export function rescheduleDelayMs(p: ReschedulePolicy, previous: number): number {
  if (p.delayFunction === 'constant') return p.delayMs;
  return Math.min(p.maxDelayMs, p.delayMs * 2 ** Math.min(previous, 40));
}

/**
 * Failed instances to place again (docs/scheduling.md, "Rescheduling"): each once its delay has
 * passed since it failed, while its attempts in the interval last (or without count when
 * unlimited). Its node is remembered: placement ranks it last for that instance.
 */
export function rescheduleMoves(
  nowMs: number,
  failed: readonly FailedInstance[],
): { name: string; generation: number; reason: string }[] {
  const out: { name: string; generation: number; reason: string }[] = [];
  for (const f of failed) {
    const p = f.policy;
    const recent = f.rescheduledAtMs.filter((t) => t > nowMs - p.intervalMs).length;
    if (!p.unlimited && recent >= p.attempts) continue;
    if (nowMs < f.failedAtMs + rescheduleDelayMs(p, f.rescheduledAtMs.length)) continue;
    out.push({
      name: f.name,
      generation: f.generation,
      reason: `rescheduled after it failed on ${f.node} (reschedule ${f.rescheduledAtMs.length + 1})`,
    });
  }
  return out;
}

// The reconciler: a pure function from what should run on this node (committed through Raft),
// what runs (the supervisor's view), the closures at hand and what was last reported, to the
// actions that close the gap. No I/O, no clock (time comes in as nowMs), so the simulator and the
// tests drive it directly; agent.ts executes its actions. Shaped like Nomad's client: desired vs
// observed, one decision per VM per round.
//
// What it does not decide: restarts after a crash (the supervisor applies the spec's restart
// policy) and placement (the scheduler, a later issue).

import { specHash, type VmSpec } from '../state/vm_spec.ts';
import type { ObservedVm } from '../vmm/supervisor.ts';

/** A failed closure fetch is tried again after this long. */
export const FETCH_RETRY_MS = 10_000;

/** The states a node reports for a VM: the replicated VM table's (node/state/vms.ts). */
import type { VmHealth, VmState } from '../state/vms.ts';

export type { VmState };

export interface DesiredVm {
  readonly name: string;
  readonly spec: VmSpec;
  /** Increases on every (re)submission; a failed or exited VM starts again only for a newer one. */
  readonly generation: number;
  /** `stopped`: keep the VM (and its console log) but do not run it. */
  readonly state: 'running' | 'stopped';
  /** The row's health verdict (vm.health): the health monitor proposes only changes to it. */
  readonly health?: VmHealth;
}

export interface ClosureView {
  readonly present: boolean;
  readonly fetching: boolean;
  readonly failed?: { readonly reason: string; readonly atMs: number };
}

export interface Reported {
  readonly state: VmState;
  readonly reason?: string;
}

export interface ReconcileInput {
  readonly desired: readonly DesiredVm[];
  readonly observed: readonly ObservedVm[];
  /** By runner store path, for the desired runner VMs. Missing = not present, not fetching. */
  readonly closures: Readonly<Record<string, ClosureView>>;
  /** VMs with a start, stop or remove still executing: no new action for them this round. */
  readonly busy: ReadonlySet<string>;
  readonly reported: Readonly<Record<string, Reported>>;
}

export type Action =
  | { readonly kind: 'fetch'; readonly name: string; readonly storePath: string }
  | {
      readonly kind: 'start';
      readonly name: string;
      readonly spec: VmSpec;
      readonly generation: number;
    }
  | {
      readonly kind: 'stop';
      readonly name: string;
      readonly why: 'not-desired' | 'spec-changed' | 'desired-stopped';
    }
  | { readonly kind: 'remove'; readonly name: string }
  | {
      readonly kind: 'report';
      readonly name: string;
      readonly state: VmState;
      readonly reason?: string;
    };

const ACTIVE = new Set(['starting', 'running', 'stopping', 'backoff']);

export function reconcile(input: ReconcileInput, nowMs: number): Action[] {
  const actions: Action[] = [];
  const observed = new Map(input.observed.map((o) => [o.name, o]));
  const desiredNames = new Set<string>();

  for (const d of input.desired) {
    desiredNames.add(d.name);
    const o = observed.get(d.name);
    const status = decide(d, o, input, nowMs, actions);
    const last = input.reported[d.name];
    if (last === undefined || last.state !== status.state || last.reason !== status.reason) {
      actions.push({ kind: 'report', name: d.name, ...status });
    }
  }

  for (const o of input.observed) {
    if (desiredNames.has(o.name) || input.busy.has(o.name) || o.phase === 'stopping') continue;
    // No longer desired here (deleted, or placed elsewhere): stop it, then forget it. Nothing is
    // reported: the VM's record is gone or belongs to another node now.
    actions.push(
      ACTIVE.has(o.phase)
        ? { kind: 'stop', name: o.name, why: 'not-desired' }
        : { kind: 'remove', name: o.name },
    );
  }
  return actions;
}

/** Pushes this VM's action (if any) and returns the state to report. */
function decide(
  d: DesiredVm,
  o: ObservedVm | undefined,
  input: ReconcileInput,
  nowMs: number,
  actions: Action[],
): Reported {
  const busy = input.busy.has(d.name);
  const active = o !== undefined && ACTIVE.has(o.phase);

  if (d.state === 'stopped') {
    if (active) {
      if (o.phase !== 'stopping' && !busy)
        actions.push({ kind: 'stop', name: d.name, why: 'desired-stopped' });
      return { state: 'stopping' };
    }
    return { state: 'stopped', ...(o?.lastExit ? { reason: o.lastExit.detail } : {}) };
  }

  const hash = specHash(d.spec);
  if (active) {
    if (o.specHash !== hash) {
      if (o.phase !== 'stopping' && !busy)
        actions.push({ kind: 'stop', name: d.name, why: 'spec-changed' });
      return { state: 'stopping', reason: 'the spec changed; restarting with the new one' };
    }
    return observedState(o);
  }

  // Not active: exited, failed, or never started here. Final until resubmitted only when it ended
  // by itself (failed beyond its restart policy, or its guest powered off). One this node stopped
  // (it fenced itself, or the VM moved away and back at the same generation) starts again: else
  // a partition longer than fence-after and shorter than node-down-after would leave it stopped
  // for good while the cluster still places it here (found by the simulator, docs/sim.md).
  const endedByItself =
    o !== undefined && (o.phase === 'failed' || o.lastExit?.kind === 'guest-poweroff');
  const current = endedByItself && o.specHash === hash && o.generation >= d.generation;
  if (current) {
    // Ended, and the supervisor's restart policy did not bring it back: final until resubmitted.
    return o.phase === 'failed'
      ? { state: 'failed', reason: o.reason ?? o.lastExit?.detail ?? 'failed' }
      : { state: 'stopped', ...(o.lastExit ? { reason: o.lastExit.detail } : {}) };
  }
  if (busy) return { state: 'starting' };

  const runner = d.spec.runner;
  if (runner !== undefined) {
    const c = input.closures[runner];
    if (c === undefined || !c.present) {
      if (c?.fetching) return { state: 'fetching', reason: runner };
      if (c?.failed !== undefined && nowMs - c.failed.atMs < FETCH_RETRY_MS) {
        return {
          state: 'failed',
          reason: `fetching ${runner} failed: ${c.failed.reason} (retrying)`,
        };
      }
      actions.push({ kind: 'fetch', name: d.name, storePath: runner });
      return { state: 'fetching', reason: runner };
    }
  }
  actions.push({ kind: 'start', name: d.name, spec: d.spec, generation: d.generation });
  return { state: 'starting' };
}

function observedState(o: ObservedVm): Reported {
  switch (o.phase) {
    case 'running':
      return { state: 'running' };
    case 'stopping':
      return { state: 'stopping' };
    case 'backoff':
      return { state: 'starting', reason: o.reason ?? 'restarting' };
    default:
      return { state: 'starting' };
  }
}

/** Why the agent stops a VM (the stop action's reason). */
export type StopWhy = Extract<Action, { kind: 'stop' }>['why'];

/**
 * How long a stop or remove may wait for the guest before it kills the VMM. Full grace
 * (`gracefulMs`) only when no other copy can be starting: the user stopped, changed or removed the
 * VM. A fenced node's VMs, and a copy the cluster moved away (not desired here while its row still
 * wants it running: placed on another node, or released to be), get `fastMs`: the replacement may
 * be starting elsewhere already, so each second of grace is a second with two copies. (Seen by the
 * Jepsen vms workload: a frozen node that woke up and heard the leader before its fence timer
 * stopped a moved-away copy with 30 s of grace while the replacement ran.)
 */
export function stopTimeoutMs(
  why: StopWhy | 'remove',
  o: {
    readonly fenced: boolean;
    readonly wantedElsewhere: boolean;
    readonly fastMs: number;
    readonly gracefulMs: number;
  },
): number {
  if (o.fenced) return o.fastMs;
  if (why === 'not-desired' && o.wantedElsewhere) return o.fastMs;
  return o.gracefulMs;
}

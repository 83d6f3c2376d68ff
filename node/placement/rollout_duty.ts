// The leader's rollout duty (docs/deploy.md, "Rolling update"): the imperative shell around the
// pure rolloutStep (node/sched/rollout.ts). On the leader only, after applied entries that changed
// the VM or deployment table and on timers (minHealthyMs and the deadlines pass without any
// entry), it runs rolloutStep for each deployment whose rollout is running or paused and proposes
// the result as `deploy.step` or `deploy.finish`. After each pass it sets one timer at the earliest
// moment a decision changes by time alone (nextRolloutChangeMs), so a wave does not wait for the
// periodic tick, which stays as a backstop. The state machine re-checks each at apply, so a
// proposal made on an old view (around a failover) is refused as stale and changes nothing.
// Replaced instances that lost their node are placed by the placement duty's loop, as any other.
//
// A room of its own beside duty.ts (which holds fencing, registration and the placement loop): the
// same one-evaluation-at-a-time shape, its own ports, and nothing of fencing it needs.

import { nextRolloutChangeMs, rolloutStep } from '../sched/rollout.ts';
import type { Command, Result, StateMachine } from '../state/machine.ts';
import { CoalescedPass } from './coalesced.ts';

/** The leader evaluates rollouts at least this often (besides every table change). */
export const ROLLOUT_EVALUATE_MS = 1000;

export interface RolloutPorts {
  sm(): StateMachine;
  /** Whether this node leads now. */
  leader(): boolean;
  submit(c: Command): Promise<Result>;
  now(): number;
  /** Calls `f` after `ms` (the daemon: setTimeout); returns what cancels it. */
  after(ms: number, f: () => void): () => void;
  log: {
    info(o: object, msg: string): void;
    warn(o: object, msg: string): void;
    debug(o: object, msg: string): void;
  };
}

export class RolloutDuty {
  private readonly p: RolloutPorts;
  private readonly evaluation: CoalescedPass;
  private lastMs: number | undefined;
  /** The pending evaluation at the next change by time alone, if any. */
  private timer: { readonly atMs: number; readonly cancel: () => void } | undefined;

  constructor(p: RolloutPorts) {
    this.p = p;
    this.evaluation = new CoalescedPass(
      () => this.evaluateOnce(),
      () => this.p.leader(),
      (e) => this.p.log.debug({ err: e.message }, 'rollout evaluation failed'),
    );
  }

  /** After an applied change of the VM or deployment table. */
  poke(): void {
    this.evaluation.request();
  }

  /** The periodic part (the daemon's reconcile loop): deadlines pass without entries. */
  tick(): void {
    const now = this.p.now();
    if (this.lastMs !== undefined && now - this.lastMs < ROLLOUT_EVALUATE_MS) return;
    this.lastMs = now;
    this.poke();
  }

  /** The time of the pending timer (tests, status), if one is set. */
  nextEvaluationMs(): number | undefined {
    return this.timer?.atMs;
  }

  /** Stops the pending timer (the daemon's shutdown). */
  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** One timer, at the earliest change by time alone of any open rollout (none: no timer). */
  private schedule(): void {
    const sm = this.p.sm();
    const now = this.p.now();
    let atMs: number | undefined;
    for (const d of sm.deployments.list()) {
      const t = nextRolloutChangeMs(d, sm.vms.groupInstances(d.name), now);
      if (t !== undefined && (atMs === undefined || t < atMs)) atMs = t;
    }
    if (this.timer?.atMs === atMs) return;
    this.stop();
    if (atMs === undefined) return;
    const timer = {
      atMs,
      cancel: this.p.after(Math.max(0, atMs - now), () => {
        if (this.timer === timer) this.timer = undefined;
        this.poke();
      }),
    };
    this.timer = timer;
  }

  /** One pass over the open rollouts: at most one proposal per deployment; then the timer. */
  private async evaluateOnce(): Promise<void> {
    const sm = this.p.sm();
    for (const d of sm.deployments.list()) {
      const state = d.rollout?.state;
      if (state !== 'running' && state !== 'paused') continue;
      const to = d.rollout!.to;
      const now = this.p.now();
      const s = rolloutStep(d, sm.vms.groupInstances(d.name), now);
      if (s.kind === 'wait') continue;
      const c: Command =
        s.kind === 'step'
          ? {
              op: 'deploy.step',
              name: d.name,
              to,
              viewIndex: sm.applied,
              replace: s.replace,
              remove: s.remove,
              atMs: now,
            }
          : {
              op: 'deploy.finish',
              name: d.name,
              to,
              outcome: s.outcome,
              ...(s.reason !== undefined ? { reason: s.reason } : {}),
              atMs: now,
            };
      const r = await this.p.submit(c);
      this.logOutcome(d.name, to, s, r);
    }
    this.schedule();
  }

  private logOutcome(
    name: string,
    to: number,
    s: Exclude<ReturnType<typeof rolloutStep>, { kind: 'wait' }>,
    r: Result,
  ): void {
    if (!r.ok) {
      this.p.log.debug({ deployment: name, to, err: r.message }, 'rollout proposal refused');
      return;
    }
    if (s.kind === 'step')
      this.p.log.info({ deployment: name, to, replace: s.replace, remove: s.remove }, 'rolling');
    else if (s.outcome === 'succeeded')
      this.p.log.info({ deployment: name, to }, 'rollout succeeded');
    else {
      const reverted = r.version !== undefined && r.version !== to ? r.version : undefined;
      this.p.log.warn(
        { deployment: name, to, why: s.reason, ...(reverted ? { revertVersion: reverted } : {}) },
        reverted ? 'rollout failed: reverting to the known-good version' : 'rollout failed',
      );
    }
  }
}

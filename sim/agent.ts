// The simulator's node agent: node/agent/agent.ts in virtual time, around the product's pure
// reconcile() (node/agent/reconciler.ts). A round runs when poked (the placement sim pokes it when
// the node applies a change of the VM table, and when the duty fences or unfences) and every
// AGENT_INTERVAL_MS; it executes the actions on the simulated VMM (sim/vmm.ts) and reports through
// Raft (vm.report, as node/daemon.ts reportVm does), one report per VM at a time. Specs carry no
// runner here, so nothing is fetched. Everything runs in the node's process: a crash ends it.

import { AGENT_INTERVAL_MS } from '../node/agent/agent.ts';
import {
  type Action,
  type DesiredVm,
  type Reported,
  reconcile,
  type VmState,
} from '../node/agent/reconciler.ts';
import type { SimVmm } from './vmm.ts';

export interface SimAgentDeps {
  readonly vmm: SimVmm;
  /** What the node's applied state says should run here (nothing while fenced). */
  desired(): readonly DesiredVm[];
  /** vm.report through Raft; `done(committed)`. */
  report(
    name: string,
    state: VmState,
    reason: string | undefined,
    done: (ok: boolean) => void,
  ): void;
  /** FENCE_GRACEFUL_MS while fenced, AGENT_STOP_TIMEOUT_MS otherwise (node/daemon.ts). */
  stopTimeoutMs(): number;
  /** Runs `f` after `ms` in this process (dropped if the process died meanwhile). */
  after(ms: number, f: () => void): void;
  nowMs(): number;
}

export class SimAgent {
  private readonly d: SimAgentDeps;
  private readonly busy = new Set<string>();
  private readonly reported: Record<string, Reported> = {};
  private readonly reporting = new Set<string>();
  /** Stops in flight and their timeouts (hastened when the timeout shrinks, as the agent does). */
  private readonly stopping = new Map<string, number>();
  private started = false;
  private queued = false;
  /** Actions executed, for the run's summary. */
  readonly counts = { starts: 0, stops: 0, reports: 0 };

  constructor(d: SimAgentDeps) {
    this.d = d;
  }

  get running(): boolean {
    return this.started;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.interval();
    this.poke();
  }

  /** A round soon (pokes coalesce, as in the product's agent). */
  poke(): void {
    if (!this.started || this.queued) return;
    this.queued = true;
    this.d.after(0, () => {
      this.queued = false;
      this.round();
    });
  }

  private interval(): void {
    this.d.after(AGENT_INTERVAL_MS, () => {
      this.poke();
      this.interval();
    });
  }

  private round(): void {
    const desired = this.d.desired();
    const names = new Set(desired.map((x) => x.name));
    for (const n of Object.keys(this.reported)) if (!names.has(n)) delete this.reported[n];
    const actions = reconcile(
      {
        desired,
        observed: this.d.vmm.observed(),
        closures: {},
        busy: this.busy,
        reported: this.reported,
      },
      this.d.nowMs(),
    );
    for (const a of actions) this.execute(a);
    const ms = this.d.stopTimeoutMs();
    for (const [name, t] of this.stopping) {
      if (ms >= t) continue;
      this.stopping.set(name, ms);
      this.d.vmm.stop(name, ms, () => {});
    }
  }

  private execute(a: Action): void {
    const vmm = this.d.vmm;
    const done = (name: string) => () =>
      this.d.after(0, () => {
        this.busy.delete(name);
        this.stopping.delete(name);
        this.poke();
      });
    switch (a.kind) {
      case 'report':
        this.report(a.name, {
          state: a.state,
          ...(a.reason !== undefined ? { reason: a.reason } : {}),
        });
        return;
      case 'fetch':
        throw new Error(`the simulated agent fetches no closure (${a.storePath})`);
      case 'start':
        this.counts.starts++;
        this.busy.add(a.name);
        vmm.launch(a.spec, a.generation, done(a.name));
        return;
      case 'stop':
        this.counts.stops++;
        this.busy.add(a.name);
        this.stopping.set(a.name, this.d.stopTimeoutMs());
        vmm.stop(a.name, this.d.stopTimeoutMs(), done(a.name));
        return;
      case 'remove':
        this.busy.add(a.name);
        this.stopping.set(a.name, this.d.stopTimeoutMs());
        vmm.remove(a.name, this.d.stopTimeoutMs(), done(a.name));
        return;
    }
  }

  private report(name: string, status: Reported): void {
    if (this.reporting.has(name)) return;
    this.reporting.add(name);
    this.counts.reports++;
    this.d.report(name, status.state, status.reason, (ok) => {
      this.reporting.delete(name);
      if (!ok) return; // retried by a later round
      this.reported[name] = status;
      this.poke();
    });
  }
}

// The agent: the imperative shell around the reconciler on one node. It runs a reconcile round
// when poked (the daemon pokes it whenever the applied Raft state changes) and every
// AGENT_INTERVAL_MS, and executes the actions through injected interfaces: the supervisor (start,
// stop, remove), the store (ensureClosure) and Raft (report). It owns no VM state of its own beyond
// what is in flight and what was last reported. docs/vmm.md states the contract.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { VmSpec } from '../state/vm_spec.ts';
import type { ExitReason } from '../vmm/backend.ts';
import type { ObservedVm } from '../vmm/supervisor.ts';
import { type ConsoleReader, HealthMonitor } from './health.ts';
import type { HealthVerdict } from './health_verdict.ts';
import {
  type Action,
  type ClosureView,
  type DesiredVm,
  type Reported,
  reconcile,
  type StopWhy,
  type VmState,
} from './reconciler.ts';

/** A round runs at least this often, so a lost poke or a failed report is retried. */
export const AGENT_INTERVAL_MS = 1000;
/** How long the agent gives a VM to stop gracefully before its VMM is forced. */
export const AGENT_STOP_TIMEOUT_MS = 30_000;

export interface ClosureProgress {
  readonly bytes?: number;
  readonly paths?: number;
  readonly message?: string;
}

/** What the daemon provides. */
export interface AgentDeps {
  /** The VMs the applied Raft state says should be on this node (a snapshot; cheap to call). */
  desiredForThisNode(): readonly DesiredVm[];
  /** Commits a state transition through Raft. A rejection is retried on a later round. */
  report(name: string, state: VmState, reason?: string): Promise<void>;
  /** Makes a store path and its closure present locally (peer-to-peer fetch). */
  ensureClosure(storePath: string, onProgress: (p: ClosureProgress) => void): Promise<void>;
  /** Default: `<storePath>/bin/microvm-run` exists. */
  closurePresent?(storePath: string): boolean;
  /**
   * Commits a health verdict (vm.health) of a run of `generation`; resolves once committed or when
   * the row holds it already. Without it the VMs' health checks are not run.
   */
  proposeHealth?(
    name: string,
    generation: number,
    verdict: HealthVerdict,
    atMs: number,
  ): Promise<void>;
}

/** The part of the Supervisor the agent uses (a fake in tests, the simulator's own later). */
export interface AgentSupervisor {
  observed(): ObservedVm[];
  launch(spec: VmSpec, generation: number): Promise<void>;
  stop(name: string, timeoutMs?: number): Promise<ExitReason | undefined>;
  remove(name: string, timeoutMs?: number): Promise<void>;
  /** A VM's console log from `offset` (console health checks read it as `pcr vm logs` does). */
  consoleRead?: ConsoleReader;
}

export interface AgentOptions {
  readonly supervisor: AgentSupervisor;
  readonly deps: AgentDeps;
  readonly intervalMs?: number;
  /**
   * How long a stop waits before it kills; a function when it depends on the node (fenced) or on
   * the VM (moved away: reconciler.ts stopTimeoutMs).
   */
  readonly stopTimeoutMs?: number | ((name: string, why: StopWhy | 'remove') => number);
  readonly now?: () => number;
  /** Errors the agent handled (a failed report, a failed action); the daemon logs them. */
  readonly onError?: (what: string, err: Error) => void;
  /** Every action as it is executed (tests, the benchmark, debug logs). */
  readonly onAction?: (a: Action) => void;
  /** False: the health monitor sets no timers (tests drive `health.runDue()` with their clock). */
  readonly healthTimers?: boolean;
}

export class Agent {
  private readonly opts: AgentOptions;
  private readonly now: () => number;
  private readonly busy = new Set<string>();
  private readonly reported: Record<string, Reported> = {};
  private readonly reporting = new Set<string>();
  private readonly closures: Record<string, ClosureView> = {};
  /**
   * The timeout of each stop in flight. A round whose stop timeout is shorter (the node fenced
   * itself) stops those again with it: a stop begun with the graceful 30 s must not outlast the
   * fencing bound (docs/scheduling.md, "Fencing"; found by the simulator).
   */
  /** Stops and removes in flight: their timeout and why (hasten() shortens a timeout). */
  private readonly stopping = new Map<string, { ms: number; why: StopWhy | 'remove' }>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** Runs the health checks of this node's running VMs (docs/deploy.md); absent without proposeHealth. */
  readonly health: HealthMonitor | undefined;

  constructor(opts: AgentOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    const propose = opts.deps.proposeHealth;
    const sup = opts.supervisor;
    this.health =
      propose === undefined
        ? undefined
        : new HealthMonitor({
            now: this.now,
            readConsole: (name, offset, maxBytes) =>
              sup.consoleRead === undefined
                ? Promise.reject(new Error('this supervisor keeps no console logs'))
                : sup.consoleRead(name, offset, maxBytes),
            propose: (name, generation, verdict, atMs) =>
              propose.call(opts.deps, name, generation, verdict, atMs),
            ...(opts.onError !== undefined ? { onError: opts.onError } : {}),
            ...(opts.healthTimers === false ? { timers: false } : {}),
          });
  }

  start(): void {
    this.stopped = false;
    this.health?.resume();
    this.timer = setInterval(() => this.poke(), this.opts.intervalMs ?? AGENT_INTERVAL_MS);
    this.timer.unref();
    this.poke();
  }

  /** Runs a round as soon as possible; pokes during a round coalesce into one more round. */
  poke(): void {
    if (this.stopped) return;
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.round();
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
  }

  /** Stops the loop; the VMs keep running (the supervisor owns them). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.health?.close();
    await this.running;
  }

  /** What was last reported per VM (status commands, tests). */
  lastReported(): Readonly<Record<string, Reported>> {
    return { ...this.reported };
  }

  /** One reconcile round: observe, decide, start executing. Actions run in the background. */
  async round(): Promise<void> {
    const desired = this.opts.deps.desiredForThisNode();
    // Forget what is no longer desired here, so the maps stay bounded by the desired set and a VM
    // that comes back is reported afresh.
    const names = new Set(desired.map((d) => d.name));
    const runners = new Set(desired.map((d) => d.spec.runner));
    for (const n of Object.keys(this.reported)) if (!names.has(n)) delete this.reported[n];
    for (const p of Object.keys(this.closures))
      if (!runners.has(p) && !this.closures[p]!.fetching) delete this.closures[p];
    const present =
      this.opts.deps.closurePresent ?? ((p: string) => existsSync(join(p, 'bin', 'microvm-run')));
    for (const d of desired) {
      const r = d.spec.runner;
      if (r === undefined) continue;
      const c = this.closures[r];
      if (c?.fetching) continue;
      this.closures[r] = { ...c, present: present(r), fetching: false };
    }
    const observed = this.opts.supervisor.observed();
    const actions = reconcile(
      {
        desired,
        observed,
        closures: this.closures,
        busy: this.busy,
        reported: this.reported,
      },
      this.now(),
    );
    for (const a of actions) this.execute(a);
    this.hasten();
    this.health?.update(desired, observed);
  }

  private stopMs(name: string, why: StopWhy | 'remove'): number {
    const given = this.opts.stopTimeoutMs;
    return (typeof given === 'function' ? given(name, why) : given) ?? AGENT_STOP_TIMEOUT_MS;
  }

  /** Stops in flight with a longer timeout than their current one are stopped again with it. */
  private hasten(): void {
    for (const [name, t] of this.stopping) {
      const ms = this.stopMs(name, t.why);
      if (ms >= t.ms) continue;
      this.stopping.set(name, { ms, why: t.why });
      // The supervisor's handle forces the VMM at the earlier deadline (node/vmm/proc.ts).
      this.opts.supervisor
        .stop(name, ms)
        .catch((e: Error) => this.opts.onError?.(`stop ${name} sooner`, e));
    }
  }

  private execute(a: Action): void {
    this.opts.onAction?.(a);
    const sup = this.opts.supervisor;
    switch (a.kind) {
      case 'report':
        return this.report(a.name, {
          state: a.state,
          ...(a.reason !== undefined ? { reason: a.reason } : {}),
        });
      case 'fetch':
        return this.fetch(a.storePath);
      case 'start':
        // A failed launch leaves the VM `failed` in the supervisor with the reason; the next
        // round reports it. Nothing to do here but log.
        return this.background(a.name, `start ${a.name}`, () => sup.launch(a.spec, a.generation));
      case 'stop': {
        const stop = { ms: this.stopMs(a.name, a.why), why: a.why };
        return this.background(
          a.name,
          `stop ${a.name}`,
          async () => void (await sup.stop(a.name, stop.ms)),
          stop,
        );
      }
      case 'remove': {
        const stop = { ms: this.stopMs(a.name, 'remove'), why: 'remove' as const };
        return this.background(a.name, `remove ${a.name}`, () => sup.remove(a.name, stop.ms), stop);
      }
    }
  }

  /** `stop`: the timeout of a stop or remove, and why (hastened later if the timeout shrinks). */
  private background(
    name: string,
    what: string,
    f: () => Promise<void>,
    stop?: { ms: number; why: StopWhy | 'remove' },
  ): void {
    this.busy.add(name);
    if (stop !== undefined) this.stopping.set(name, stop);
    f()
      .catch((e: Error) => this.opts.onError?.(what, e))
      .finally(() => {
        this.busy.delete(name);
        this.stopping.delete(name);
        this.poke();
      });
  }

  private fetch(storePath: string): void {
    const prev = this.closures[storePath];
    if (prev?.fetching) return;
    this.closures[storePath] = { present: false, fetching: true };
    this.opts.deps
      .ensureClosure(storePath, () => undefined)
      .then(
        () => {
          this.closures[storePath] = { present: true, fetching: false };
        },
        (e: Error) => {
          this.closures[storePath] = {
            present: false,
            fetching: false,
            failed: { reason: e.message, atMs: this.now() },
          };
          this.opts.onError?.(`fetch ${storePath}`, e);
        },
      )
      .finally(() => this.poke());
  }

  private report(name: string, status: Reported): void {
    // One report per VM at a time, in order; a newer state waits for the next round.
    if (this.reporting.has(name)) return;
    this.reporting.add(name);
    this.opts.deps.report(name, status.state, status.reason).then(
      () => {
        this.reported[name] = status;
        this.reporting.delete(name);
        this.poke();
      },
      (e: Error) => {
        // Retried by the interval's round, not at once: Raft may be without a leader for a while.
        this.reporting.delete(name);
        this.opts.onError?.(`report ${name} ${status.state}`, e);
      },
    );
  }
}

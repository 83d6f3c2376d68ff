// A simulated VMM supervisor for one simulated machine: the part of node/vmm/supervisor.ts the
// agent uses (observed, launch, stop, remove), in virtual time. A VM boots for a while, runs, may
// crash (then the product's restart policy, node/vmm/restart.ts, decides: back off and relaunch,
// or give up), and stops gracefully in a while, or at once when its guest ignores the request
// and the stop's timeout (FENCE_STOP_MS when fenced) runs out: the VMM is then killed.
//
// A VMM process is what the placement checks observe (sim/placement-checks.ts): a copy of an
// instance exists from its launch until its process ends, whatever the replicated state says.
// A machine crash (SimCluster.crash, exit) kills every VMM of the machine: killAll(). A partition
// or a paused daemon does not: the VMMs are separate processes and keep running.

import type { VmSpec } from '../node/state/vm_spec.ts';
import { specHash } from '../node/state/vm_spec.ts';
import type { ExitReason } from '../node/vmm/backend.ts';
import { FORCE_GRACE_MS } from '../node/vmm/proc.ts';
import { restartDecision } from '../node/vmm/restart.ts';
import type { ObservedVm, VmPhase } from '../node/vmm/supervisor.ts';
import type { SimRandom } from './random.ts';

export interface VmmTiming {
  /** A VM is `running` this long after its launch (uniform). */
  readonly bootMsMin: number;
  readonly bootMsMax: number;
  /** A graceful stop takes this long (uniform)... */
  readonly gracefulStopMsMin: number;
  readonly gracefulStopMsMax: number;
  /** ...unless the guest ignores it (this often): it ends only when the stop's timeout kills it. */
  readonly ignoresStopProbability: number;
  /** A running VM crashes after an exponential time of this mean (0: never). */
  readonly crashMeanMs: number;
  /** Launch returns (the VMM is spawned) this long after it was called. */
  readonly spawnMs: number;
}

export const VMM_TIMING_DEFAULTS: VmmTiming = {
  bootMsMin: 200,
  bootMsMax: 2000,
  gracefulStopMsMin: 50,
  gracefulStopMsMax: 1500,
  ignoresStopProbability: 0.1,
  crashMeanMs: 30_000,
  spawnMs: 5,
};

/** What the simulated machines tell the checks: VMM processes starting and ending. */
export interface VmmObserver {
  started(node: string, name: string, spec: VmSpec, generation: number): void;
  ended(node: string, name: string, why: string): void;
  /** The guest finished booting (its phase is running). */
  booted?(node: string, name: string): void;
}

/** What the VMM needs of the simulation: time (scaled by the machine's clock) and randomness. */
export interface VmmHost {
  readonly node: string;
  readonly random: SimRandom;
  nowMs(): number;
  /** Runs `f` after `ms` of virtual time. */
  after(ms: number, f: () => void): void;
  /** The machine's clock rate (the stop timeout is measured on it). */
  drift(): number;
}

interface Entry {
  spec: VmSpec;
  hash: string;
  generation: number;
  phase: VmPhase;
  sinceMs: number;
  attempts: number;
  lastExit?: ExitReason;
  reason?: string;
  restartAtMs?: number;
  /** The VMM process is alive (starting, running or stopping). */
  alive: boolean;
  /** Started (alive) at, for the restart policy's ranFor. */
  aliveSinceMs: number;
  /** Bumped whenever the process starts or ends: invalidates its pending boot, crash, stop. */
  epoch: number;
  /** Callers waiting for the process to end (stop, remove). */
  waiting: (() => void)[];
  /** The node asked it to stop: its end is final, whatever the restart policy (as the supervisor). */
  stopRequested: boolean;
  /** While stopping: when the guest would have shut down by itself, and when it ends. */
  gracefulEndMs: number;
  stopEndMs: number;
}

/** In a spec's cmdline: its guest crashes at every boot (a broken version, sim/rollout-run.ts). */
export const SIM_BOOT_FAILS = 'sim.boot=fail';

/** A forced VMM (QMP quit, SIGTERM) that obeys ends within this long. */
const FORCE_MS_MAX = 100;

export class SimVmm {
  private readonly host: VmmHost;
  private readonly timing: VmmTiming;
  private readonly observer: VmmObserver;
  private readonly vms = new Map<string, Entry>();
  /** Bumped by killAll: nothing of the machine before it runs after it. */
  private machineEpoch = 0;
  /** After this, running VMs no longer crash (the end of the faulty phase). */
  crashesOn = true;

  constructor(host: VmmHost, timing: VmmTiming, observer: VmmObserver) {
    this.host = host;
    this.timing = timing;
    this.observer = observer;
  }

  observed(): ObservedVm[] {
    return [...this.vms.entries()].map(([name, e]) => ({
      name,
      backend: 'qemu',
      specHash: e.hash,
      generation: e.generation,
      phase: e.phase,
      sinceMs: e.sinceMs,
      attempts: e.attempts,
      adopted: false,
      ...(e.lastExit !== undefined ? { lastExit: e.lastExit } : {}),
      ...(e.reason !== undefined ? { reason: e.reason } : {}),
      ...(e.restartAtMs !== undefined ? { restartAtMs: e.restartAtMs } : {}),
    }));
  }

  /** VMs whose VMM process is alive, for the checks and the summary. */
  alive(): string[] {
    return [...this.vms.entries()].filter(([, e]) => e.alive).map(([n]) => n);
  }

  /** Supervisor.launch: refused while the VM is active; `done(error?)` once the VMM is spawned. */
  launch(spec: VmSpec, generation: number, done: (err?: Error) => void): void {
    const prev = this.vms.get(spec.name);
    if (prev !== undefined && prev.phase !== 'exited' && prev.phase !== 'failed') {
      done(new Error(`${spec.name} is already ${prev.phase} on this node (stop it first)`));
      return;
    }
    const e: Entry = {
      spec,
      hash: specHash(spec),
      generation,
      phase: 'starting',
      sinceMs: this.host.nowMs(),
      attempts: 0,
      alive: false,
      aliveSinceMs: 0,
      epoch: prev?.epoch ?? 0,
      waiting: [],
      stopRequested: false,
      gracefulEndMs: Number.POSITIVE_INFINITY,
      stopEndMs: Number.POSITIVE_INFINITY,
    };
    this.vms.set(spec.name, e);
    this.spawn(spec.name, e);
    this.later(this.timing.spawnMs, () => done());
  }

  /**
   * Supervisor.stop: graceful; after `timeoutMs` (this machine's clock) the VMM is forced, which
   * ends it at once half of the time, else it is killed FORCE_GRACE_MS later (node/vmm/proc.ts).
   * A second stop with a shorter timeout brings the end forward, as the handle does.
   */
  stop(name: string, timeoutMs: number, done: () => void): void {
    const e = this.vms.get(name);
    if (e === undefined) return done();
    e.stopRequested = true;
    if (e.phase === 'backoff') {
      e.epoch++;
      this.setPhase(e, 'exited', 'stopped by the node while waiting to restart');
      delete e.restartAtMs;
      return done();
    }
    if (!e.alive) return done();
    e.waiting.push(done);
    const r = this.host.random;
    const now = this.host.nowMs();
    if (e.phase !== 'stopping') {
      this.setPhase(e, 'stopping', `graceful stop, forced after ${timeoutMs} ms`);
      e.gracefulEndMs = r.chance(this.timing.ignoresStopProbability)
        ? Number.POSITIVE_INFINITY
        : now + r.between(this.timing.gracefulStopMsMin, this.timing.gracefulStopMsMax);
      e.stopEndMs = Number.POSITIVE_INFINITY;
    }
    const forced =
      now +
      timeoutMs * this.host.drift() +
      (r.chance(0.5) ? r.between(0, FORCE_MS_MAX) : FORCE_GRACE_MS);
    const end = Math.min(e.gracefulEndMs, forced);
    if (end >= e.stopEndMs) return;
    e.stopEndMs = end;
    const epoch = e.epoch;
    this.later(end - now, () => {
      if (e.epoch !== epoch || this.vms.get(name) !== e || e.stopEndMs !== end) return;
      const graceful = e.gracefulEndMs <= end;
      this.end(name, e, {
        kind: graceful ? 'stopped' : 'killed',
        detail: graceful ? 'stopped by the node' : 'killed by the node after the stop timeout',
      });
    });
  }

  /** Supervisor.remove: stop, then forget the VM. */
  remove(name: string, timeoutMs: number, done: () => void): void {
    this.stop(name, timeoutMs, () => {
      const e = this.vms.get(name);
      if (e !== undefined && !e.alive) this.vms.delete(name);
      done();
    });
  }

  /** The machine crashed: every VMM dies with it, and the next daemon finds none. */
  killAll(why: string): void {
    this.machineEpoch++;
    for (const [name, e] of this.vms) {
      if (e.alive) this.observer.ended(this.host.node, name, why);
      e.epoch++;
    }
    this.vms.clear();
  }

  private later(ms: number, f: () => void): void {
    const epoch = this.machineEpoch;
    this.host.after(ms, () => {
      if (this.machineEpoch === epoch) f();
    });
  }

  private setPhase(e: Entry, phase: VmPhase, reason?: string): void {
    e.phase = phase;
    e.sinceMs = this.host.nowMs();
    if (reason === undefined) delete e.reason;
    else e.reason = reason;
  }

  /** The VMM process starts: it boots, then runs (and may crash). */
  private spawn(name: string, e: Entry): void {
    e.epoch++;
    e.alive = true;
    e.aliveSinceMs = this.host.nowMs();
    delete e.restartAtMs;
    this.setPhase(e, 'starting');
    this.observer.started(this.host.node, name, e.spec, e.generation);
    const epoch = e.epoch;
    const r = this.host.random;
    this.later(r.between(this.timing.bootMsMin, this.timing.bootMsMax), () => {
      if (e.epoch !== epoch || e.phase !== 'starting') return;
      // A broken version (the rollout runs' failing specs): its guest crashes as it boots.
      if (e.spec.cmdline?.includes(SIM_BOOT_FAILS) === true) {
        this.end(name, e, {
          kind: 'crashed',
          code: 1,
          detail: 'the guest crashed at boot (simulated)',
        });
        return;
      }
      this.setPhase(e, 'running');
      this.observer.booted?.(this.host.node, name);
      if (this.timing.crashMeanMs > 0) {
        this.later(r.exponential(this.timing.crashMeanMs), () => {
          if (e.epoch !== epoch || e.phase !== 'running' || !this.crashesOn) return;
          this.end(name, e, { kind: 'crashed', code: 1, detail: 'the guest crashed (simulated)' });
        });
      }
    });
  }

  /** The VMM process ended: after a crash the restart policy decides; a stop is final. */
  private end(name: string, e: Entry, exit: ExitReason): void {
    e.epoch++;
    e.alive = false;
    e.lastExit = exit;
    this.observer.ended(this.host.node, name, exit.kind);
    const waiting = e.waiting;
    e.waiting = [];
    const ranForMs = this.host.nowMs() - e.aliveSinceMs;
    const d = e.stopRequested
      ? ({ restart: false, why: exit.detail } as const)
      : restartDecision(e.spec.restart, e.attempts, exit, ranForMs);
    if (!d.restart) {
      const clean = e.stopRequested || exit.kind === 'stopped' || exit.kind === 'guest-poweroff';
      this.setPhase(e, clean ? 'exited' : 'failed', d.why);
    } else {
      e.attempts = d.attempt;
      this.setPhase(e, 'backoff', `restarting in ${d.delayMs} ms`);
      e.restartAtMs = this.host.nowMs() + d.delayMs;
      const epoch = e.epoch;
      this.later(d.delayMs, () => {
        if (e.epoch === epoch && e.phase === 'backoff' && this.vms.get(name) === e)
          this.spawn(name, e);
      });
    }
    for (const w of waiting) w();
  }
}

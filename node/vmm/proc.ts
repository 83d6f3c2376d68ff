// VMM processes as every backend needs them: spawned detached (so the VMM outlives a kill -9 of
// the daemon) with the console log as stdout/stderr, identified by pid plus the start time from
// /proc/<pid>/stat (a reused pid has another start time), found again by a launch id in their
// environment, watched until they are gone, stopped gracefully then by force. Linux only.

import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { ExitReason, VmmHandle, VmmMetrics, VmmStatus } from './backend.ts';
import { VmmError } from './backend.ts';

/** How often an adopted VMM (not our child: no exit event) is checked for life. */
export const ADOPTED_POLL_MS = 200;
/** After the forced stop (QMP quit, API shutdown), how long before SIGKILL. */
export const FORCE_GRACE_MS = 2000;
export const LAUNCH_ENV = 'PCR_VM_LAUNCH';

const CLOCK_TICKS_PER_S = 100; // USER_HZ: 100 on every Linux architecture Node runs on
const PAGE_BYTES = 4096;

export interface ProcStat {
  readonly state: string;
  readonly startTicks: number;
  readonly cpuTicks: number;
  readonly rssPages: number;
}

/** Parses /proc/<pid>/stat; undefined when the process does not exist. */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: fields start after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field n is rest[n - 3].
  return {
    state: rest[0]!,
    cpuTicks: Number(rest[11]) + Number(rest[12]),
    startTicks: Number(rest[19]),
    rssPages: Number(rest[21]),
  };
}

/** True when `pid` runs and is the process that started at `startTicks` (not a zombie). */
export function isSameProcess(pid: number, startTicks: number): boolean {
  const s = procStat(pid);
  return s !== undefined && s.startTicks === startTicks && s.state !== 'Z' && s.state !== 'X';
}

/** Pids whose environment holds PCR_VM_LAUNCH=<launchId> (root sees every process). */
export function findByLaunchId(launchId: string): number[] {
  const needle = Buffer.from(`\0${LAUNCH_ENV}=${launchId}\0`);
  const found: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const env = Buffer.concat([
        Buffer.from([0]),
        readFileSync(`/proc/${d}/environ`),
        Buffer.from([0]),
      ]);
      if (env.includes(needle)) found.push(Number(d));
    } catch {}
  }
  return found;
}

export interface Spawned {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly startTicks: number;
}

/** Spawns a VMM in its own session with the console fd as stdout and stderr. */
export async function spawnVmm(
  command: string,
  args: readonly string[],
  opts: {
    readonly consoleFd: number;
    readonly launchId: string;
    readonly cwd: string;
    readonly env?: NodeJS.ProcessEnv;
  },
): Promise<Spawned> {
  const child = spawn(command, args, {
    cwd: opts.cwd,
    detached: true,
    stdio: ['ignore', opts.consoleFd, opts.consoleFd],
    env: { ...process.env, ...opts.env, [LAUNCH_ENV]: opts.launchId },
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (e) =>
      reject(new VmmError('VMM_LAUNCH_FAILED', `cannot start ${command}: ${e.message}`)),
    );
  });
  // The daemon must be able to exit (or be killed) while the VMM keeps running.
  child.unref();
  const pid = child.pid!;
  const stat = procStat(pid);
  if (stat === undefined) {
    throw new VmmError('VMM_LAUNCH_FAILED', `${command} exited at once (see the console log)`);
  }
  return { child, pid, startTicks: stat.startTicks };
}

type RawExit = { readonly code: number | null; readonly signal: string | null } | 'vanished';

/** A VMM process, our child or adopted; settles `gone` once it no longer exists. */
export class VmmProcess {
  readonly pid: number;
  readonly startTicks: number;
  readonly gone: Promise<RawExit>;
  private readonly startedAtMs: number;
  private done = false;

  constructor(pid: number, startTicks: number, child?: ChildProcess, startedAtMs = Date.now()) {
    this.pid = pid;
    this.startTicks = startTicks;
    this.startedAtMs = startedAtMs;
    this.gone = (
      child !== undefined
        ? new Promise<RawExit>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) {
              resolve({ code: child.exitCode, signal: child.signalCode });
            } else child.once('exit', (code, signal) => resolve({ code, signal }));
          })
        : new Promise<RawExit>((resolve) => {
            const check = () => {
              if (!isSameProcess(pid, startTicks)) resolve('vanished');
              else setTimeout(check, ADOPTED_POLL_MS).unref();
            };
            check();
          })
    ).then((r) => {
      this.done = true;
      return r;
    });
  }

  get alive(): boolean {
    return !this.done && isSameProcess(this.pid, this.startTicks);
  }

  signal(sig: NodeJS.Signals): void {
    // Checked against the start time so a reused pid is never signalled.
    if (!this.alive) return;
    try {
      process.kill(this.pid, sig);
    } catch {}
  }

  /** True if it was gone within `ms`. */
  async waitGone(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((r) => {
      timer = setTimeout(() => r(false), ms);
    });
    const r = await Promise.race([this.gone.then(() => true as const), timeout]);
    clearTimeout(timer);
    return r;
  }

  metrics(): VmmMetrics {
    const s = procStat(this.pid);
    return {
      cpuMs: s === undefined ? 0 : (s.cpuTicks * 1000) / CLOCK_TICKS_PER_S,
      rssBytes: s === undefined ? 0 : s.rssPages * PAGE_BYTES,
      uptimeMs: Date.now() - this.startedAtMs,
    };
  }
}

/** What a backend adds to a process to make a handle. */
export interface HandleOps {
  status(): Promise<VmmStatus>;
  /** Ask the guest to power off (ACPI button, Ctrl-Alt-Del, microvm-shutdown). */
  requestStop(): Promise<void>;
  /** Ask the VMM itself to end (QMP quit, API shutdown); SIGTERM when absent. */
  forceStop?(): Promise<void>;
  /** A more precise reason than the exit status, e.g. QMP's SHUTDOWN event. */
  shutdownReason?(): ExitReason['kind'] | undefined;
  /** Release sockets and timers once the process is gone. */
  close?(): void;
}

/** Builds the VmmHandle shared by all backends: stop = graceful, then force, then SIGKILL. */
export function makeHandle(proc: VmmProcess, ops: HandleOps): VmmHandle {
  let stopRequested = false;
  let killedByUs = false;
  const exited: Promise<ExitReason> = proc.gone.then((raw) => {
    ops.close?.();
    return classifyExit(raw, { stopRequested, killedByUs, precise: ops.shutdownReason?.() });
  });
  const kill = async (): Promise<ExitReason> => {
    killedByUs = true;
    proc.signal('SIGKILL');
    return exited;
  };
  return {
    pid: proc.pid,
    pidStartTicks: proc.startTicks,
    exited,
    status: () => (proc.alive ? ops.status() : Promise.resolve('shutdown')),
    metrics: async () => proc.metrics(),
    release: () => ops.close?.(),
    kill,
    async stop(timeoutMs: number): Promise<ExitReason> {
      stopRequested = true;
      if (!proc.alive) return exited;
      try {
        await ops.requestStop();
      } catch {
        // The VMM may not answer (hung, socket gone): the force path below still ends it.
      }
      if (await proc.waitGone(timeoutMs)) return exited;
      try {
        if (ops.forceStop !== undefined) await ops.forceStop();
        else proc.signal('SIGTERM');
      } catch {}
      if (await proc.waitGone(FORCE_GRACE_MS)) return exited;
      return kill();
    },
  };
}

export function classifyExit(
  raw: RawExit,
  how: { stopRequested: boolean; killedByUs: boolean; precise: ExitReason['kind'] | undefined },
): ExitReason {
  if (raw === 'vanished') {
    const kind = how.stopRequested ? 'stopped' : (how.precise ?? 'vanished');
    return {
      kind,
      detail: `the VMM process is gone (adopted: no exit status)${how.precise ? ` after ${how.precise}` : ''}`,
    };
  }
  const { code, signal } = raw;
  if (signal !== null) {
    return {
      kind: 'killed',
      code,
      signal,
      detail: how.killedByUs
        ? `killed by the node (${signal}) after the stop timeout`
        : `VMM killed by ${signal}`,
    };
  }
  if (code === 0) {
    // A stop we asked for ends in a guest power-off too: it counts as ours.
    const kind = how.stopRequested ? 'stopped' : (how.precise ?? 'guest-poweroff');
    return {
      kind,
      code,
      signal,
      detail: kind === 'stopped' ? 'stopped by the node' : 'the guest powered off',
    };
  }
  return { kind: 'crashed', code, signal, detail: `VMM exited with code ${code}` };
}

// The supervisor of one node's VMs: launches them through their backend, watches each VMM until it
// ends, applies the restart policy with backoff, caps the console logs, removes sockets and taps,
// and after a daemon restart adopts the VMMs still running (or cleans up after those that are not)
// from the per-VM records in the run dir. It decides nothing about *which* VMs should run: that is
// the reconciler's (node/agent/). docs/vmm.md has the contract.

import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic_file.ts';
import { formatSpecErrors, specHash, type VmSpec } from '../state/vm_spec.ts';
import {
  type Backend,
  type BackendName,
  type ExitReason,
  VmmError,
  type VmmHandle,
  type VmmMetrics,
  type VmPaths,
  type VmRecord,
} from './backend.ts';
import { createTap, deleteTap, tapName } from './net.ts';
import { findByLaunchId, isSameProcess, procStat } from './proc.ts';
import { restartDecision } from './restart.ts';
import { checkVmSpecOnNode } from './spec.ts';

/** A console log above this size is cut down to its tail. */
export const CONSOLE_LOG_BYTES_MAX = 1024 * 1024;
/** How much of the console log's tail is kept when it is cut. */
export const CONSOLE_LOG_KEEP_BYTES = 256 * 1024;
/** How often console logs are checked against their cap. */
export const CONSOLE_CHECK_INTERVAL_MS = 1000;
/** Events kept per VM (a ring). */
export const EVENTS_PER_VM_MAX = 64;
/** Default time a graceful stop gets before the VMM is forced. */
export const STOP_TIMEOUT_MS = 10_000;
/** sun_path is 108 bytes including the NUL. */
export const SOCKET_PATH_BYTES_MAX = 107;

export const RECORD_FILE = 'vm.json';
export const CONSOLE_FILE = 'console.log';
export const SOCKET_FILE = 'vmm.sock';

/**
 * starting: being launched; running: its VMM runs; stopping: a stop was asked; backoff: waiting
 * to restart; exited: ended and will not be restarted by the policy; failed: could not be
 * launched, or the policy gave up.
 */
export type VmPhase = 'starting' | 'running' | 'stopping' | 'backoff' | 'exited' | 'failed';

export interface ObservedVm {
  readonly name: string;
  readonly backend: BackendName;
  readonly specHash: string;
  readonly generation: number;
  readonly phase: VmPhase;
  readonly sinceMs: number;
  readonly pid?: number;
  /** Restarts in a row made by the policy. */
  readonly attempts: number;
  readonly lastExit?: ExitReason;
  /** Why it is in this phase, for people. */
  readonly reason?: string;
  readonly restartAtMs?: number;
  /** True when this VM was found running at recover() rather than launched by this process. */
  readonly adopted: boolean;
  /** When the current run was launched (kept across an adoption): health checks' grace. */
  readonly startedAtMs?: number;
  /** Where the current run's console output starts in the console log (VmRecord). */
  readonly consoleOffset?: number;
}

export interface SupervisorEvent {
  readonly atMs: number;
  readonly name: string;
  readonly kind:
    | 'launching'
    | 'running'
    | 'adopted'
    | 'exited'
    | 'restart-scheduled'
    | 'gave-up'
    | 'launch-failed'
    | 'stopping'
    | 'cleaned-up'
    | 'console-cut';
  readonly detail: string;
}

export interface SupervisorOptions {
  /** Per-VM directories live here; a path short enough for unix sockets (SOCKET_PATH_BYTES_MAX). */
  readonly runDir: string;
  readonly backends: Partial<Record<BackendName, Backend>>;
  readonly onEvent?: (e: SupervisorEvent) => void;
  readonly consoleLogBytesMax?: number;
  readonly consoleKeepBytes?: number;
  readonly now?: () => number;
}

interface Entry {
  record: VmRecord;
  phase: VmPhase;
  sinceMs: number;
  handle?: VmmHandle;
  lastExit?: ExitReason;
  reason?: string;
  restartTimer?: NodeJS.Timeout;
  restartAtMs?: number;
  /** Settles once the exit of the current handle was handled (phase set, clean-up done). */
  exitHandled?: Promise<void>;
  stopRequested: boolean;
  /** Set by remove(): no record is written for it again, so its directory is not recreated. */
  removing?: boolean;
  /** The record writes in flight, in order (remove() waits for them before it deletes). */
  recordWrites?: Promise<void>;
  adopted: boolean;
  events: SupervisorEvent[];
}

export class Supervisor {
  private readonly vms = new Map<string, Entry>();
  private readonly opts: SupervisorOptions;
  private readonly now: () => number;
  private readonly consoleMax: number;
  private readonly consoleKeep: number;
  private consoleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(opts: SupervisorOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.consoleMax = opts.consoleLogBytesMax ?? CONSOLE_LOG_BYTES_MAX;
    this.consoleKeep = Math.min(opts.consoleKeepBytes ?? CONSOLE_LOG_KEEP_BYTES, this.consoleMax);
    this.consoleTimer = setInterval(() => void this.capConsoles(), CONSOLE_CHECK_INTERVAL_MS);
    this.consoleTimer.unref();
  }

  /** The backend a spec runs on: a runner closure on `microvm`, a kernel on its hypervisor. */
  static backendFor(spec: VmSpec): BackendName {
    return spec.runner !== undefined ? 'microvm' : (spec.hypervisor ?? 'qemu');
  }

  paths(name: string): VmPaths {
    const dir = join(this.opts.runDir, name);
    return {
      dir,
      record: join(dir, RECORD_FILE),
      console: join(dir, CONSOLE_FILE),
      socket: join(dir, SOCKET_FILE),
    };
  }

  /**
   * Launches `spec`. Resolves once the VMM runs; throws a VmmError (and the VM is `failed`) when
   * it cannot. Refuses a name that is already starting, running, stopping or waiting to restart.
   */
  async launch(spec: VmSpec, generation = 0): Promise<void> {
    this.assertOpen();
    const prev = this.vms.get(spec.name);
    if (prev !== undefined && prev.phase !== 'exited' && prev.phase !== 'failed') {
      throw new VmmError(
        'VMM_ALREADY_RUNNING',
        `${spec.name} is already ${prev.phase} on this node (stop it first)`,
      );
    }
    const backendName = Supervisor.backendFor(spec);
    const paths = this.paths(spec.name);
    const record: VmRecord = {
      version: 1,
      name: spec.name,
      backend: backendName,
      spec,
      specHash: specHash(spec),
      generation,
      launchId: randomUUID(),
      startedAtMs: this.now(),
      paths,
      attempts: 0,
      ...(spec.network.mode === 'tap' ? { tap: tapName(spec.name) } : {}),
    };
    const entry: Entry = {
      record,
      phase: 'starting',
      sinceMs: this.now(),
      stopRequested: false,
      adopted: false,
      events: prev?.events ?? [],
    };
    this.vms.set(spec.name, entry);
    try {
      await this.start(entry);
    } catch (e) {
      this.setPhase(entry, 'failed', (e as Error).message);
      this.event(entry, 'launch-failed', (e as Error).message);
      throw e;
    }
  }

  /** Stops a VM gracefully (then by force after `timeoutMs`); no restart follows. */
  async stop(name: string, timeoutMs = STOP_TIMEOUT_MS): Promise<ExitReason | undefined> {
    const entry = this.vms.get(name);
    if (entry === undefined) return undefined;
    entry.stopRequested = true;
    if (entry.restartTimer !== undefined) {
      clearTimeout(entry.restartTimer);
      entry.restartTimer = undefined;
      this.setPhase(entry, 'exited', 'stopped by the node while waiting to restart');
      return entry.lastExit;
    }
    const handle = entry.handle;
    if (handle === undefined || entry.phase === 'exited' || entry.phase === 'failed')
      return entry.lastExit;
    this.setPhase(entry, 'stopping', `graceful stop, forced after ${timeoutMs} ms`);
    this.event(entry, 'stopping', `timeout ${timeoutMs} ms`);
    const exit = await handle.stop(timeoutMs);
    await entry.exitHandled;
    return exit;
  }

  /**
   * Stops the VM if it runs and removes its directory (console log included). The VM is gone for
   * callers (get, observed) only once its directory is gone, and nothing writes into that
   * directory after it was removed.
   */
  async remove(name: string, timeoutMs = STOP_TIMEOUT_MS): Promise<void> {
    const entry = this.vms.get(name);
    if (entry !== undefined) entry.removing = true;
    await this.stop(name, timeoutMs);
    if (entry !== undefined) {
      await this.cleanup(entry);
      await entry.recordWrites;
    }
    await rm(this.paths(name).dir, { recursive: true, force: true });
    if (this.vms.get(name) === entry) this.vms.delete(name);
  }

  observed(): ObservedVm[] {
    return [...this.vms.values()].map((e) => this.view(e));
  }

  get(name: string): ObservedVm | undefined {
    const e = this.vms.get(name);
    return e === undefined ? undefined : this.view(e);
  }

  events(name: string): readonly SupervisorEvent[] {
    return this.vms.get(name)?.events ?? [];
  }

  /** The console log's last `maxBytes` bytes (default: all of it, at most the cap). */
  async consoleLog(name: string, maxBytes = this.consoleMax): Promise<string> {
    return (await this.consoleRead(name, undefined, maxBytes)).data;
  }

  /**
   * Reads the console log from byte `offset` (default: its last `maxBytes`), at most `maxBytes`;
   * `next` is where the following read starts. The log is capped by keeping its tail, so an offset
   * past the end means it was cut: reading starts again from its last `maxBytes`.
   */
  async consoleRead(
    name: string,
    offset: number | undefined,
    maxBytes = this.consoleMax,
  ): Promise<{ data: string; next: number; size: number }> {
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(this.paths(name).console, 'r');
    } catch {
      throw new VmmError('VMM_NOT_FOUND', `no console log for ${name} on this node`);
    }
    try {
      const size = (await fh.stat()).size;
      const from = offset === undefined || offset > size ? Math.max(0, size - maxBytes) : offset;
      const buf = Buffer.alloc(Math.min(maxBytes, size - from));
      const { bytesRead } = await fh.read(buf, 0, buf.length, from);
      return { data: buf.subarray(0, bytesRead).toString('utf8'), next: from + bytesRead, size };
    } finally {
      await fh.close();
    }
  }

  async metrics(name: string): Promise<VmmMetrics | undefined> {
    return this.vms.get(name)?.handle?.metrics();
  }

  /** The handle of a running VM (tests, status commands). */
  handle(name: string): VmmHandle | undefined {
    const e = this.vms.get(name);
    return e?.phase === 'running' || e?.phase === 'stopping' ? e.handle : undefined;
  }

  /**
   * After a (re)start of the daemon: reads every record in the run dir; adopts the VMMs that still
   * run (same pid and start time, or found by launch id, and their control socket answers), cleans
   * up after the others and applies their restart policy. Call once, before the agent runs.
   */
  async recover(): Promise<ObservedVm[]> {
    this.assertOpen();
    await mkdir(this.opts.runDir, { recursive: true });
    for (const name of await readdir(this.opts.runDir)) {
      if (this.vms.has(name)) continue;
      let record: VmRecord;
      try {
        record = JSON.parse(
          await readFile(join(this.opts.runDir, name, RECORD_FILE), 'utf8'),
        ) as VmRecord;
      } catch {
        continue; // not a VM directory, or a record torn before its first rename: nothing was spawned
      }
      if (record.version !== 1 || record.name !== name) continue;
      const entry: Entry = {
        record,
        phase: 'starting',
        sinceMs: this.now(),
        stopRequested: false,
        adopted: true,
        events: [],
      };
      this.vms.set(name, entry);
      const found = this.findProcess(record);
      const backend = this.opts.backends[record.backend];
      if (found !== undefined && backend !== undefined) {
        const handle = await backend
          .adopt(record, found.pid, found.startTicks)
          .catch(() => undefined);
        if (handle !== undefined) {
          entry.record = { ...record, pid: found.pid, pidStartTicks: found.startTicks };
          await this.writeRecord(entry);
          this.running(entry, handle, 'adopted', `pid ${found.pid}`);
          continue;
        }
        // Ours (same start time or launch id) but deaf: an unmanaged VMM must not run beside a new one.
        process.kill(found.pid, 'SIGKILL');
      }
      await this.exitedWhileAway(
        entry,
        found === undefined
          ? 'the VMM ended while the node was down'
          : 'the VMM did not answer after the node restarted and was killed',
      );
    }
    return this.observed();
  }

  /** Stops watching (timers, sockets) and leaves every VMM running: a daemon shutdown. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.consoleTimer);
    for (const e of this.vms.values()) {
      if (e.restartTimer !== undefined) clearTimeout(e.restartTimer);
      e.handle?.release();
    }
  }

  /** Stops every VM (tests, `node drain`). */
  async stopAll(timeoutMs = STOP_TIMEOUT_MS): Promise<void> {
    await Promise.all([...this.vms.keys()].map((n) => this.stop(n, timeoutMs)));
  }

  private async start(entry: Entry): Promise<void> {
    const { record } = entry;
    const { spec, paths } = record;
    const backend = this.opts.backends[record.backend];
    if (backend === undefined) {
      throw new VmmError(
        'VMM_UNAVAILABLE',
        `${spec.name}: backend ${record.backend} is not available on this node`,
      );
    }
    if (Buffer.byteLength(paths.socket) > SOCKET_PATH_BYTES_MAX) {
      throw new VmmError(
        'VMM_SOCKET_PATH_TOO_LONG',
        `${paths.socket} is longer than ${SOCKET_PATH_BYTES_MAX} bytes: use a shorter run dir`,
      );
    }
    const issues = await checkVmSpecOnNode(spec);
    if (issues.length > 0) throw new VmmError('VMM_LAUNCH_FAILED', formatSpecErrors(issues));
    await mkdir(paths.dir, { recursive: true });
    await rm(paths.socket, { force: true });
    // The previous run's VMM is gone: everything in the log up to here is from before this run.
    const consoleOffset = await stat(paths.console).then(
      (s) => s.size,
      () => 0,
    );
    entry.record = {
      ...record,
      launchId: randomUUID(),
      startedAtMs: this.now(),
      consoleOffset,
      pid: undefined,
      pidStartTicks: undefined,
    };
    // Written before the spawn: a daemon killed between spawn and the second write finds the VMM
    // by its launch id (recover()), so it is adopted, never duplicated.
    await this.writeRecord(entry);
    if (record.tap !== undefined && spec.network.mode === 'tap')
      await createTap(record.tap, spec.network.bridge);
    this.event(entry, 'launching', `backend ${record.backend}, attempt ${record.attempts}`);
    const fh = await open(
      paths.console,
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT,
      0o640,
    );
    let handle: VmmHandle;
    try {
      handle = await backend.launch({
        spec,
        paths,
        consoleFd: fh.fd,
        launchId: entry.record.launchId,
        ...(record.tap !== undefined ? { tap: record.tap } : {}),
      });
    } catch (e) {
      await this.cleanup(entry);
      throw e;
    } finally {
      await fh.close();
    }
    entry.record = { ...entry.record, pid: handle.pid, pidStartTicks: handle.pidStartTicks };
    await this.writeRecord(entry);
    this.running(entry, handle, 'running', `pid ${handle.pid}`);
  }

  private running(
    entry: Entry,
    handle: VmmHandle,
    kind: 'running' | 'adopted',
    detail: string,
  ): void {
    entry.handle = handle;
    this.setPhase(entry, 'running', undefined);
    this.event(entry, kind, detail);
    entry.exitHandled = handle.exited.then((exit) => this.onExit(entry, handle, exit));
  }

  private async onExit(entry: Entry, handle: VmmHandle, exit: ExitReason): Promise<void> {
    if (entry.handle !== handle || this.vms.get(entry.record.name) !== entry) return;
    // A closed supervisor is a daemon going away: the next one's recover() cleans up.
    if (this.closed) return;
    entry.lastExit = exit;
    this.event(entry, 'exited', exit.detail);
    await this.cleanup(entry);
    if (entry.stopRequested) {
      this.setPhase(entry, 'exited', exit.detail);
      return;
    }
    this.applyPolicy(entry, exit, this.now() - entry.record.startedAtMs);
  }

  private applyPolicy(entry: Entry, exit: ExitReason, ranForMs: number): void {
    const d = restartDecision(entry.record.spec.restart, entry.record.attempts, exit, ranForMs);
    if (!d.restart) {
      const clean = exit.kind === 'guest-poweroff' || exit.kind === 'stopped';
      this.setPhase(entry, clean ? 'exited' : 'failed', d.why);
      if (!clean) this.event(entry, 'gave-up', d.why);
      return;
    }
    entry.record = { ...entry.record, attempts: d.attempt };
    entry.restartAtMs = this.now() + d.delayMs;
    this.setPhase(
      entry,
      'backoff',
      `restart ${d.attempt} in ${d.delayMs} ms after: ${exit.detail}`,
    );
    this.event(entry, 'restart-scheduled', `attempt ${d.attempt} in ${d.delayMs} ms`);
    void this.writeRecord(entry).catch(() => undefined);
    entry.restartTimer = setTimeout(() => {
      entry.restartTimer = undefined;
      entry.restartAtMs = undefined;
      if (this.closed || entry.stopRequested || this.vms.get(entry.record.name) !== entry) return;
      this.setPhase(entry, 'starting', `restart ${d.attempt}`);
      this.start(entry).catch((e: Error) => {
        this.event(entry, 'launch-failed', e.message);
        // A failed relaunch counts as a failed run: the policy decides again.
        this.applyPolicy(entry, { kind: 'crashed', detail: `relaunch failed: ${e.message}` }, 0);
      });
    }, d.delayMs);
    entry.restartTimer.unref();
  }

  private async exitedWhileAway(entry: Entry, detail: string): Promise<void> {
    const exit: ExitReason = { kind: 'vanished', detail };
    entry.lastExit = exit;
    this.event(entry, 'exited', detail);
    await this.cleanup(entry);
    this.applyPolicy(entry, exit, this.now() - entry.record.startedAtMs);
  }

  private findProcess(record: VmRecord): { pid: number; startTicks: number } | undefined {
    if (record.pid !== undefined && record.pidStartTicks !== undefined) {
      return isSameProcess(record.pid, record.pidStartTicks)
        ? { pid: record.pid, startTicks: record.pidStartTicks }
        : undefined;
    }
    // The daemon died between spawn and the record's second write: find the VMM by launch id.
    for (const pid of findByLaunchId(record.launchId)) {
      const s = procStat(pid);
      if (s !== undefined && s.state !== 'Z') return { pid, startTicks: s.startTicks };
    }
    return undefined;
  }

  private async cleanup(entry: Entry): Promise<void> {
    const { record } = entry;
    await rm(record.paths.socket, { force: true }).catch(() => undefined);
    if (record.tap !== undefined) {
      await deleteTap(record.tap).catch((e: Error) =>
        this.event(entry, 'cleaned-up', `tap ${record.tap} not removed: ${e.message}`),
      );
    }
  }

  /**
   * Writes the entry's record (atomically: a temporary file renamed over it), after the writes
   * already queued for it. The directory is made by start(), never here: a write that comes after
   * remove() began is skipped, so a removed VM's directory is never recreated.
   */
  private writeRecord(entry: Entry): Promise<void> {
    const write = async (): Promise<void> => {
      if (entry.removing === true) return;
      const { record } = entry;
      await writeFileAtomic(record.paths.record, `${JSON.stringify(record)}\n`);
    };
    const next = (entry.recordWrites ?? Promise.resolve()).then(write);
    entry.recordWrites = next.catch(() => undefined);
    return next;
  }

  private async capConsoles(): Promise<void> {
    for (const e of this.vms.values()) {
      if (e.phase !== 'running' && e.phase !== 'stopping') continue;
      await this.capConsole(e).catch(() => undefined);
    }
  }

  /** Cuts the console log to its tail when it is above the cap (also run by tests directly). */
  async capConsole(entry: Entry | string): Promise<boolean> {
    const e = typeof entry === 'string' ? this.vms.get(entry) : entry;
    if (e === undefined) return false;
    const path = e.record.paths.console;
    const size = (await stat(path)).size;
    if (size <= this.consoleMax) return false;
    // Read the tail, empty the file, append the tail. The VMM appends through its own O_APPEND fd,
    // so its bytes always go to the end; bytes written in between land before the tail.
    const fh = await open(path, constants.O_RDWR | constants.O_APPEND);
    try {
      const tail = Buffer.alloc(this.consoleKeep);
      const { bytesRead } = await fh.read(tail, 0, this.consoleKeep, size - this.consoleKeep);
      await fh.truncate(0);
      await fh.write(tail.subarray(0, bytesRead));
    } finally {
      await fh.close();
    }
    // The run's first byte moved with the cut (to 0 when it was cut away).
    const cut = size - this.consoleKeep;
    e.record = { ...e.record, consoleOffset: Math.max(0, (e.record.consoleOffset ?? 0) - cut) };
    void this.writeRecord(e).catch(() => undefined);
    this.event(
      e,
      'console-cut',
      `console log was ${size} bytes; kept the last ${this.consoleKeep}`,
    );
    return true;
  }

  private setPhase(entry: Entry, phase: VmPhase, reason: string | undefined): void {
    entry.phase = phase;
    entry.sinceMs = this.now();
    entry.reason = reason;
    if (phase !== 'backoff') entry.restartAtMs = undefined;
  }

  private event(entry: Entry, kind: SupervisorEvent['kind'], detail: string): void {
    const ev: SupervisorEvent = { atMs: this.now(), name: entry.record.name, kind, detail };
    entry.events.push(ev);
    if (entry.events.length > EVENTS_PER_VM_MAX) entry.events.shift();
    this.opts.onEvent?.(ev);
  }

  private view(e: Entry): ObservedVm {
    return {
      name: e.record.name,
      backend: e.record.backend,
      specHash: e.record.specHash,
      generation: e.record.generation,
      phase: e.phase,
      sinceMs: e.sinceMs,
      attempts: e.record.attempts,
      adopted: e.adopted,
      startedAtMs: e.record.startedAtMs,
      ...(e.record.consoleOffset !== undefined ? { consoleOffset: e.record.consoleOffset } : {}),
      ...(e.record.pid !== undefined && (e.phase === 'running' || e.phase === 'stopping')
        ? { pid: e.record.pid }
        : {}),
      ...(e.lastExit !== undefined ? { lastExit: e.lastExit } : {}),
      ...(e.reason !== undefined ? { reason: e.reason } : {}),
      ...(e.restartAtMs !== undefined ? { restartAtMs: e.restartAtMs } : {}),
    };
  }

  private assertOpen(): void {
    if (this.closed) throw new VmmError('VMM_CLOSED', 'the supervisor is closed');
  }
}

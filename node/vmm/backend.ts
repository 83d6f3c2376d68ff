// The one interface every VMM backend implements (microvm.nix runner, QEMU, cloud-hypervisor,
// firecracker), the record a supervisor keeps per VM, and the typed errors of this layer. What the
// backends share for processes is in proc.ts. docs/vmm.md describes the contract.

import type { VmSpec } from '../state/vm_spec.ts';

export type BackendName = 'microvm' | 'qemu' | 'cloud-hypervisor' | 'firecracker';
export const BACKEND_NAMES: readonly BackendName[] = [
  'microvm',
  'qemu',
  'cloud-hypervisor',
  'firecracker',
];

export type Accelerator = 'kvm' | 'tcg';

export interface BackendProbe {
  readonly available: boolean;
  readonly version?: string;
  /** qemu only: the accelerator a probe boot proved to work. */
  readonly accelerator?: Accelerator;
  /** Why it is unavailable (or why KVM is not used). */
  readonly reason?: string;
}

/** What a node advertises in its gossiped metrics. Small and serializable. */
export interface Capabilities {
  readonly version: 1;
  readonly backends: Readonly<Record<BackendName, BackendProbe>>;
}

/** Where one VM's files live: `<runDir>/<name>/`. */
export interface VmPaths {
  readonly dir: string;
  readonly record: string;
  readonly console: string;
  /** The VMM's control socket (QMP or API), when it has one. */
  readonly socket: string;
}

export interface LaunchContext {
  readonly spec: VmSpec;
  readonly paths: VmPaths;
  /** An O_APPEND fd on the console log: the VMM's stdout and stderr. */
  readonly consoleFd: number;
  /** The tap device created for `network.mode = 'tap'`. */
  readonly tap?: string;
  /** Put into the VMM's environment as PCR_VM_LAUNCH, to find it again (proc.ts). */
  readonly launchId: string;
}

/** The per-VM record the supervisor writes to `vm.json`; enough to adopt the VMM after a restart. */
export interface VmRecord {
  readonly version: 1;
  readonly name: string;
  readonly backend: BackendName;
  readonly spec: VmSpec;
  readonly specHash: string;
  readonly generation: number;
  readonly launchId: string;
  /** Unset between the record's first write and the spawn. */
  readonly pid?: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot): tells our VMM from a reused pid. */
  readonly pidStartTicks?: number;
  readonly startedAtMs: number;
  readonly tap?: string;
  readonly paths: VmPaths;
  /** Restarts in a row so far (restart policy). */
  readonly attempts: number;
  /**
   * The console log's size when this run was launched: its lines start there (health checks read
   * from it). Absent in records written before it existed.
   */
  readonly consoleOffset?: number;
}

export type VmmStatus = 'running' | 'paused' | 'shutdown' | 'unknown';

/**
 * How a VMM ended. `guest-poweroff`: the guest shut itself down (or obeyed our power-off);
 * `stopped`: the node stopped it gracefully; `killed`: by a signal (ours after a stop timeout, or
 * anyone's); `crashed`: a non-zero exit; `vanished`: gone while not watched (adopted VMMs, whose
 * exit status belongs to another parent).
 */
export interface ExitReason {
  readonly kind: 'guest-poweroff' | 'stopped' | 'killed' | 'crashed' | 'vanished';
  readonly code?: number | null;
  readonly signal?: string | null;
  readonly detail: string;
}

export interface VmmMetrics {
  /** User + system CPU time of the VMM process. */
  readonly cpuMs: number;
  readonly rssBytes: number;
  readonly uptimeMs: number;
}

export interface VmmHandle {
  readonly pid: number;
  readonly pidStartTicks: number;
  /** Settles once the VMM process is gone; never rejects. */
  readonly exited: Promise<ExitReason>;
  status(): Promise<VmmStatus>;
  /** Graceful stop (guest power-off), then SIGKILL after `timeoutMs`. Resolves once it is gone. */
  stop(timeoutMs: number): Promise<ExitReason>;
  kill(): Promise<ExitReason>;
  metrics(): Promise<VmmMetrics>;
  /** Closes control connections and stops watching; the VMM keeps running (daemon shutdown). */
  release(): void;
}

export interface Backend {
  readonly name: BackendName;
  probe(): Promise<BackendProbe>;
  /** Starts the VMM and the VM; resolves once the VM runs (not once the guest booted). */
  launch(ctx: LaunchContext): Promise<VmmHandle>;
  /** Reattaches to a VMM from a record whose pid is alive; undefined if it does not answer. */
  adopt(record: VmRecord, pid: number, pidStartTicks: number): Promise<VmmHandle | undefined>;
}

export type VmmErrorCode =
  | 'VMM_UNAVAILABLE'
  | 'VMM_LAUNCH_FAILED'
  | 'VMM_API_ERROR'
  | 'VMM_ALREADY_RUNNING'
  | 'VMM_NOT_FOUND'
  | 'VMM_SOCKET_PATH_TOO_LONG'
  | 'VMM_NETWORK_FAILED'
  | 'VMM_CLOSED';

export class VmmError extends Error {
  readonly code: VmmErrorCode;
  constructor(code: VmmErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = 'VmmError';
  }
}

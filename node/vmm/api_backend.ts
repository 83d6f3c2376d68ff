// The backends driven over an HTTP API on a unix socket (cloud-hypervisor, firecracker) share
// everything but their arguments, ping path, boot requests and handle: probe (binary and /dev/kvm),
// spawn, wait for the API, configure and boot, kill on a failed launch, adopt by pinging the socket.

import { existsSync } from 'node:fs';
import type { VmSpec } from '../state/vm_spec.ts';
import type { Backend, BackendProbe, LaunchContext, VmmHandle, VmRecord } from './backend.ts';
import { apiCall, waitForApi } from './http_unix.ts';
import { spawnVmm, VmmProcess } from './proc.ts';
import { versionOf } from './qemu.ts';

/**
 * What differs between the VMMs driven over an HTTP API on a unix socket (cloud-hypervisor,
 * firecracker); `apiBackend` does the rest: probe (binary and /dev/kvm), spawn, wait for the API,
 * configure and boot, kill on a failed launch, adopt by pinging the socket.
 */
export interface ApiVmm {
  readonly name: 'cloud-hypervisor' | 'firecracker';
  readonly binary: string;
  /** The VMM's arguments that put its API on `socket`. */
  readonly args: (socket: string) => string[];
  /** A GET that answers once the API is up. */
  readonly pingPath: string;
  readonly readyTimeoutMs: number;
  /** The requests that configure and boot a VM, in order. */
  readonly bootRequests: (
    spec: VmSpec,
    tap: string | undefined,
  ) => [method: 'PUT', path: string, body?: unknown][];
  readonly handle: (proc: VmmProcess, socket: string) => VmmHandle;
}

export function apiBackend(v: ApiVmm): Backend {
  return {
    name: v.name,
    async probe(): Promise<BackendProbe> {
      const version = await versionOf(v.binary);
      if (version === undefined)
        return { available: false, reason: `${v.binary} not found or does not run` };
      // Neither has an emulator: without KVM they cannot run a guest at all.
      if (!existsSync('/dev/kvm'))
        return { available: false, version, reason: `/dev/kvm is absent (${v.name} needs KVM)` };
      return { available: true, version };
    },
    async launch(ctx: LaunchContext): Promise<VmmHandle> {
      const s = await spawnVmm(v.binary, v.args(ctx.paths.socket), {
        consoleFd: ctx.consoleFd,
        launchId: ctx.launchId,
        cwd: ctx.paths.dir,
      });
      const proc = new VmmProcess(s.pid, s.startTicks, s.child);
      try {
        await waitForApi(ctx.paths.socket, v.pingPath, () => proc.alive, v.readyTimeoutMs);
        for (const [method, path, body] of v.bootRequests(ctx.spec, ctx.tap))
          await apiCall(ctx.paths.socket, method, path, body);
      } catch (e) {
        proc.signal('SIGKILL');
        throw e;
      }
      return v.handle(proc, ctx.paths.socket);
    },
    async adopt(
      record: VmRecord,
      pid: number,
      pidStartTicks: number,
    ): Promise<VmmHandle | undefined> {
      try {
        await apiCall(record.paths.socket, 'GET', v.pingPath);
      } catch {
        return undefined;
      }
      return v.handle(
        new VmmProcess(pid, pidStartTicks, undefined, record.startedAtMs),
        record.paths.socket,
      );
    },
  };
}

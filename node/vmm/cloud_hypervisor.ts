// The cloud-hypervisor backend: one `cloud-hypervisor --api-socket path=...` process per VM, driven
// through its REST API on that unix socket (vmm.ping, vm.create, vm.boot, vm.info,
// vm.power-button, vm.shutdown, vm.delete, vmm.shutdown), per its published OpenAPI document.
// Verified here only against a labelled test double of that API: the binary is not installable on
// these machines (docs/vmm.md).

import { existsSync } from 'node:fs';
import type {
  Backend,
  BackendProbe,
  LaunchContext,
  VmmHandle,
  VmmStatus,
  VmRecord,
} from './backend.ts';
import { VmmError } from './backend.ts';
import { apiCall, waitForApi } from './http_unix.ts';
import { makeHandle, spawnVmm, VmmProcess } from './proc.ts';
import { versionOf } from './qemu.ts';
import type { VmSpec } from './spec.ts';

export const CH_API_READY_TIMEOUT_MS = 10_000;
const API = '/api/v1';

export function cloudHypervisorBackend(opts: { readonly binary?: string } = {}): Backend {
  const binary = opts.binary ?? 'cloud-hypervisor';
  return {
    name: 'cloud-hypervisor',
    async probe(): Promise<BackendProbe> {
      const v = await versionOf(binary);
      if (v === undefined)
        return { available: false, reason: `${binary} not found or does not run` };
      // cloud-hypervisor has no emulator: without KVM it cannot run a guest at all.
      if (!existsSync('/dev/kvm'))
        return {
          available: false,
          version: v,
          reason: '/dev/kvm is absent (cloud-hypervisor needs KVM)',
        };
      return { available: true, version: v };
    },
    async launch(ctx: LaunchContext): Promise<VmmHandle> {
      const s = await spawnVmm(binary, ['--api-socket', `path=${ctx.paths.socket}`], {
        consoleFd: ctx.consoleFd,
        launchId: ctx.launchId,
        cwd: ctx.paths.dir,
      });
      const proc = new VmmProcess(s.pid, s.startTicks, s.child);
      try {
        await waitForApi(
          ctx.paths.socket,
          `${API}/vmm.ping`,
          () => proc.alive,
          CH_API_READY_TIMEOUT_MS,
        );
        await apiCall(ctx.paths.socket, 'PUT', `${API}/vm.create`, chVmConfig(ctx.spec, ctx.tap));
        await apiCall(ctx.paths.socket, 'PUT', `${API}/vm.boot`);
      } catch (e) {
        proc.signal('SIGKILL');
        throw e;
      }
      return chHandle(proc, ctx.paths.socket);
    },
    async adopt(
      record: VmRecord,
      pid: number,
      pidStartTicks: number,
    ): Promise<VmmHandle | undefined> {
      try {
        await apiCall(record.paths.socket, 'GET', `${API}/vmm.ping`);
      } catch {
        return undefined;
      }
      return chHandle(
        new VmmProcess(pid, pidStartTicks, undefined, record.startedAtMs),
        record.paths.socket,
      );
    },
  };
}

/** The vm.create body (VmConfig in cloud-hypervisor's OpenAPI document). */
export function chVmConfig(spec: VmSpec, tap: string | undefined): Record<string, unknown> {
  if (spec.kernel === undefined)
    throw new VmmError('VMM_LAUNCH_FAILED', `${spec.name}: cloud-hypervisor needs a kernel spec`);
  return {
    cpus: { boot_vcpus: spec.vcpus, max_vcpus: spec.vcpus },
    memory: { size: spec.memoryMiB * 1024 * 1024 },
    payload: {
      kernel: spec.kernel,
      cmdline: spec.cmdline ?? 'console=ttyS0',
      ...(spec.initrd !== undefined ? { initramfs: spec.initrd } : {}),
    },
    ...(spec.disks.length > 0
      ? { disks: spec.disks.map((d) => ({ path: d.path, readonly: d.readOnly })) }
      : {}),
    ...(spec.network.mode === 'tap'
      ? { net: [{ tap, ...(spec.network.mac !== undefined ? { mac: spec.network.mac } : {}) }] }
      : {}),
    // The serial port on the VMM's stdout, which is the console log.
    serial: { mode: 'Tty' },
    console: { mode: 'Off' },
  };
}

function chHandle(proc: VmmProcess, socket: string): VmmHandle {
  return makeHandle(proc, {
    async status(): Promise<VmmStatus> {
      const info = (await apiCall(socket, 'GET', `${API}/vm.info`)) as { state?: string };
      switch (info.state) {
        case 'Running':
          return 'running';
        case 'Paused':
          return 'paused';
        case 'Shutdown':
        case 'Created':
          return 'shutdown';
        default:
          return 'unknown';
      }
    },
    requestStop: async () => void (await apiCall(socket, 'PUT', `${API}/vm.power-button`)),
    async forceStop(): Promise<void> {
      for (const m of ['vm.shutdown', 'vm.delete', 'vmm.shutdown']) {
        await apiCall(socket, 'PUT', `${API}/${m}`).catch(() => undefined);
      }
    },
  });
}

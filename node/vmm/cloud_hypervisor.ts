// The cloud-hypervisor backend: one `cloud-hypervisor --api-socket path=...` process per VM, driven
// through its REST API on that unix socket (vmm.ping, vm.create, vm.boot, vm.info,
// vm.power-button, vm.shutdown, vm.delete, vmm.shutdown), per its published OpenAPI document.
// Verified here only against a labelled test double of that API: the binary is not installable on
// these machines (docs/vmm.md).

import type { VmSpec } from '../state/vm_spec.ts';
import { apiBackend } from './api_backend.ts';
import type { Backend, VmmHandle, VmmStatus } from './backend.ts';
import { VmmError } from './backend.ts';
import { apiCall } from './http_unix.ts';
import { makeHandle, type VmmProcess } from './proc.ts';

export const CH_API_READY_TIMEOUT_MS = 10_000;
const API = '/api/v1';

export function cloudHypervisorBackend(opts: { readonly binary?: string } = {}): Backend {
  return apiBackend({
    name: 'cloud-hypervisor',
    binary: opts.binary ?? 'cloud-hypervisor',
    args: (socket) => ['--api-socket', `path=${socket}`],
    pingPath: `${API}/vmm.ping`,
    readyTimeoutMs: CH_API_READY_TIMEOUT_MS,
    bootRequests: (spec, tap) => [
      ['PUT', `${API}/vm.create`, chVmConfig(spec, tap)],
      ['PUT', `${API}/vm.boot`],
    ],
    handle: chHandle,
  });
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

// The firecracker backend: one `firecracker --api-sock ...` process per VM, configured through its
// API on that unix socket (PUT /machine-config, /boot-source, /drives/{id},
// /network-interfaces/{id}, then /actions InstanceStart; SendCtrlAltDel to stop; GET / for the
// state), per its published swagger document. Verified here only against a labelled test double of
// that API: the binary is not installable on these machines (docs/vmm.md).

import type { VmSpec } from '../state/vm_spec.ts';
import { apiBackend } from './api_backend.ts';
import type { Backend, VmmHandle, VmmStatus } from './backend.ts';
import { VmmError } from './backend.ts';
import { apiCall } from './http_unix.ts';
import { makeHandle, type VmmProcess } from './proc.ts';

export const FC_API_READY_TIMEOUT_MS = 10_000;

export function firecrackerBackend(opts: { readonly binary?: string } = {}): Backend {
  return apiBackend({
    name: 'firecracker',
    binary: opts.binary ?? 'firecracker',
    args: (socket) => ['--api-sock', socket],
    pingPath: '/',
    readyTimeoutMs: FC_API_READY_TIMEOUT_MS,
    bootRequests: (spec, tap) => fcRequests(spec, tap).map(([path, body]) => ['PUT', path, body]),
    handle: fcHandle,
  });
}

/** The PUT requests that configure and start a VM, in order. */
export function fcRequests(spec: VmSpec, tap: string | undefined): [string, unknown][] {
  if (spec.kernel === undefined)
    throw new VmmError('VMM_LAUNCH_FAILED', `${spec.name}: firecracker needs a kernel spec`);
  const reqs: [string, unknown][] = [
    ['/machine-config', { vcpu_count: spec.vcpus, mem_size_mib: spec.memoryMiB }],
    [
      '/boot-source',
      {
        kernel_image_path: spec.kernel,
        boot_args: spec.cmdline ?? 'console=ttyS0',
        ...(spec.initrd !== undefined ? { initrd_path: spec.initrd } : {}),
      },
    ],
  ];
  spec.disks.forEach((d, i) => {
    reqs.push([
      `/drives/d${i}`,
      { drive_id: `d${i}`, path_on_host: d.path, is_root_device: false, is_read_only: d.readOnly },
    ]);
  });
  if (spec.network.mode === 'tap') {
    reqs.push([
      '/network-interfaces/eth0',
      {
        iface_id: 'eth0',
        host_dev_name: tap,
        ...(spec.network.mac !== undefined ? { guest_mac: spec.network.mac } : {}),
      },
    ]);
  }
  reqs.push(['/actions', { action_type: 'InstanceStart' }]);
  return reqs;
}

function fcHandle(proc: VmmProcess, socket: string): VmmHandle {
  return makeHandle(proc, {
    async status(): Promise<VmmStatus> {
      const info = (await apiCall(socket, 'GET', '/')) as { state?: string };
      return info.state === 'Running'
        ? 'running'
        : info.state === 'Paused'
          ? 'paused'
          : info.state === 'Not started'
            ? 'shutdown'
            : 'unknown';
    },
    // The guest resets on Ctrl-Alt-Del and firecracker exits on a reset. No API ends firecracker
    // itself: the force path is SIGTERM, then SIGKILL.
    requestStop: async () =>
      void (await apiCall(socket, 'PUT', '/actions', { action_type: 'SendCtrlAltDel' })),
  });
}

// What this node can run: every backend probed once, as a small serializable object for the
// gossiped metrics (Capabilities), and the backend table a Supervisor is built with. The qemu probe
// boots a kernel under KVM to decide between KVM and TCG (qemu.ts), so probing takes a few seconds:
// run it once at daemon start, in the background.

import type { Backend, BackendName, BackendProbe, Capabilities } from './backend.ts';
import { cloudHypervisorBackend } from './cloud_hypervisor.ts';
import { firecrackerBackend } from './firecracker.ts';
import { microvmBackend } from './microvm.ts';
import { type QemuOptions, qemuBackend } from './qemu.ts';

export interface BackendsOptions {
  readonly qemu?: QemuOptions;
  readonly cloudHypervisorBinary?: string;
  readonly firecrackerBinary?: string;
}

/** One instance of every backend (the Supervisor's `backends`); probing is lazy and cached. */
export function defaultBackends(opts: BackendsOptions = {}): Record<BackendName, Backend> {
  return {
    microvm: microvmBackend(),
    qemu: qemuBackend(opts.qemu),
    'cloud-hypervisor': cloudHypervisorBackend(
      opts.cloudHypervisorBinary !== undefined ? { binary: opts.cloudHypervisorBinary } : {},
    ),
    firecracker: firecrackerBackend(
      opts.firecrackerBinary !== undefined ? { binary: opts.firecrackerBinary } : {},
    ),
  };
}

/** Probes every backend concurrently. A probe that throws counts as unavailable, with its message. */
export async function probeBackends(
  backends: Record<BackendName, Backend> = defaultBackends(),
): Promise<Capabilities> {
  const names = Object.keys(backends) as BackendName[];
  const results = await Promise.all(
    names.map((n) =>
      backends[n]
        .probe()
        .catch(
          (e: Error): BackendProbe => ({ available: false, reason: `probe failed: ${e.message}` }),
        ),
    ),
  );
  return {
    version: 1,
    backends: Object.fromEntries(names.map((n, i) => [n, results[i]!])) as Record<
      BackendName,
      BackendProbe
    >,
  };
}

/** Only the backends whose probe says available: what the Supervisor should be given. */
export function availableBackends(
  all: Record<BackendName, Backend>,
  caps: Capabilities,
): Partial<Record<BackendName, Backend>> {
  return Object.fromEntries(
    (Object.keys(all) as BackendName[])
      .filter((n) => caps.backends[n]?.available)
      .map((n) => [n, all[n]]),
  ) as Partial<Record<BackendName, Backend>>;
}

// What this machine offers to placement: its arch and its capacity after the operator's reserves
// (`--reserve-cpus`, `--reserve-memory-mib`). Read once per call from the OS; the duty compares it
// with the node table and registers again when it differs.

import { availableParallelism, arch as osArch, totalmem } from 'node:os';
import type { Resources } from '../sched/types.ts';

/** Node's arch names, as Nix systems spell them. */
const ARCHES: Readonly<Record<string, string>> = { x64: 'x86_64', arm64: 'aarch64', ia32: 'i686' };

export function machineArch(): string {
  return ARCHES[osArch()] ?? osArch();
}

export function machineCapacity(): Resources {
  return { cpus: availableParallelism(), memoryMiB: Math.floor(totalmem() / (1024 * 1024)) };
}

/** Why the reserves cannot be kept on this machine, or undefined. */
export function reserveProblem(reserveCpus: number, reserveMemoryMiB: number): string | undefined {
  const m = machineCapacity();
  if (reserveCpus > m.cpus)
    return `--reserve-cpus ${reserveCpus} is more than this machine's ${m.cpus} cpus`;
  if (reserveMemoryMiB > m.memoryMiB)
    return `--reserve-memory-mib ${reserveMemoryMiB} is more than this machine's ${m.memoryMiB} MiB`;
  return undefined;
}

export function nodeRegistration(
  reserveCpus: number,
  reserveMemoryMiB: number,
): { arch: string; capacity: Resources } {
  const m = machineCapacity();
  return {
    arch: machineArch(),
    capacity: {
      cpus: Math.max(0, m.cpus - reserveCpus),
      memoryMiB: Math.max(0, m.memoryMiB - reserveMemoryMiB),
    },
  };
}

// Which VM instances have a live VMM process on which node, read from the machine, not from the
// cluster's state: a VMM is a process whose environment carries the supervisor's launch id
// (PCR_VM_LAUNCH), whose working directory is `<node data dir>/vms/<instance>` (the supervisor
// starts each VMM there) and whose executable is a hypervisor (the runner's microvm-shutdown
// helper has the same environment and directory while it runs, and is not a copy of the VM). The observer samples this every OBSERVE_EVERY_MS for the vms checker;
// the machine-level nemeses (kill, pause) use it to find a node's VMMs.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, sep } from 'node:path';
import { LAUNCH_ENV, procStat } from '../../node/vmm/proc.ts';
import type { VmmSeen, VmSample } from './vm_checker.ts';

/** How often the observer samples the VMM processes. */
export const OBSERVE_EVERY_MS = 200;

/** A node's name and the run dir its supervisor starts VMMs in. */
export interface VmRunDir {
  readonly node: string;
  readonly runDir: string;
}

const LAUNCH_NEEDLE = Buffer.from(`\0${LAUNCH_ENV}=`);
/** The executables that are a VM's copy: QEMU (direct or a microvm.nix runner's exec), CH, FC. */
const HYPERVISOR_EXE = /^(qemu-system-.+|cloud-hypervisor|firecracker)$/;

function isHypervisor(pid: number): boolean {
  try {
    return HYPERVISOR_EXE.test(basename(readlinkSync(`/proc/${pid}/exe`)));
  } catch {
    return false;
  }
}

/** Every live (not zombie) VMM under one of `dirs`, with its instance, node and frozen state. */
export function scanVmms(dirs: readonly VmRunDir[]): VmmSeen[] {
  const seen: VmmSeen[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    let cwd: string;
    try {
      cwd = readlinkSync(`/proc/${d}/cwd`);
    } catch {
      continue;
    }
    const owner = dirs.find((x) => cwd.startsWith(x.runDir + sep));
    if (owner === undefined || !isHypervisor(pid)) continue;
    try {
      const env = Buffer.concat([Buffer.from([0]), readFileSync(`/proc/${d}/environ`)]);
      if (!env.includes(LAUNCH_NEEDLE)) continue;
    } catch {
      continue;
    }
    const state = procStat(pid)?.state;
    if (state === undefined || state === 'Z' || state === 'X') continue;
    const instance = cwd.slice(owner.runDir.length + 1).split(sep)[0]!;
    seen.push({ instance, node: owner.node, pid, frozen: state === 'T' || state === 't' });
  }
  return seen;
}

/** Samples every OBSERVE_EVERY_MS until stopped; `stop()` resolves with the samples. */
export function startObserver(
  dirs: readonly VmRunDir[],
  now: () => number,
): { samples: VmSample[]; stop: () => Promise<VmSample[]> } {
  const samples: VmSample[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const time = now();
      samples.push({ time, seen: scanVmms(dirs) });
      await new Promise((r) => setTimeout(r, OBSERVE_EVERY_MS));
    }
  })();
  return {
    samples,
    stop: async () => {
      running = false;
      await loop;
      return samples;
    },
  };
}

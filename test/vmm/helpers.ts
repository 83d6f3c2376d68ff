// Shared by the VM tests: the tools a real boot needs, a short run dir (unix socket paths are
// limited to 107 bytes), a spec for the test VM, waiting for a console marker, and a sweep that
// kills any VMM a test left behind (found by the launch id in its environment).

import { mkdtempSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { VmSpec } from '../../node/state/vm_spec.ts';
import { validateVmSpec } from '../../node/state/vm_spec.ts';
import { LAUNCH_ENV } from '../../node/vmm/proc.ts';
import { until } from '../until.ts';
import { readConsole, type TestVm } from './fixture.ts';

/** What a real test boot needs on PATH (the kernel is checked by hostKernel()). */
export const VM_TOOLS = ['qemu-system-x86_64', 'busybox'] as const;
/** A TCG boot of the test VM takes 2-6 s here; under load from other test runs it can take longer. */
export const BOOT_TIMEOUT_MS = 45_000;

export function shortTmpDir(prefix: string): string {
  return mkdtempSync(`/tmp/${prefix}-`);
}

export function testVmSpec(vm: TestVm, name: string, extra: Record<string, unknown> = {}): VmSpec {
  const r = validateVmSpec({
    version: 1,
    name,
    kernel: vm.kernel,
    initrd: vm.initrd,
    cmdline: vm.cmdline,
    memoryMiB: 128,
    ...extra,
  });
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('; '));
  return r.spec;
}

/** Waits until `marker` appears in the console log `count` times. */
export async function waitForMarker(
  consolePath: string,
  marker: string,
  count = 1,
  ms = BOOT_TIMEOUT_MS,
): Promise<string> {
  return until(
    async () => {
      const text = await readConsole(consolePath);
      return text.split(marker).length - 1 >= count ? text : undefined;
    },
    ms,
    `${count} x ${marker} in ${consolePath}`,
    20,
  );
}

/** Pids of processes started by a supervisor whose run dir is `runDir` (their cwd is in it). */
export function vmmsUnder(runDir: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const env = readFileSync(`/proc/${d}/environ`, 'latin1');
      if (!env.includes(`${LAUNCH_ENV}=`)) continue;
      if (readlinkSync(`/proc/${d}/cwd`).startsWith(runDir)) pids.push(Number(d));
    } catch {}
  }
  return pids;
}

/** Kills every VMM left under `runDir` and removes the dir. */
export async function sweep(runDir: string): Promise<void> {
  for (const pid of vmmsUnder(runDir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  await rm(runDir, { recursive: true, force: true });
}

// The microvm backend, the Nix-native default: a VM is a microvm.nix runner closure, and running
// it means running `<runner>/bin/microvm-run` (which starts whatever hypervisor the closure was
// built for). Stopped with `<runner>/bin/microvm-shutdown` when the closure has one, else SIGTERM.
// The runner runs in the VM's directory, where microvm.nix runners put their sockets.

import { spawn } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend, BackendProbe, LaunchContext, VmmHandle, VmRecord } from './backend.ts';
import { VmmError } from './backend.ts';
import { LAUNCH_ENV, makeHandle, spawnVmm, VmmProcess } from './proc.ts';

/** How long microvm-shutdown may run; the supervisor's stop timeout bounds the whole stop anyway. */
export const SHUTDOWN_SCRIPT_TIMEOUT_MS = 60_000;

export function microvmBackend(): Backend {
  return {
    name: 'microvm',
    async probe(): Promise<BackendProbe> {
      // Nothing to probe: the runner brings its hypervisor. Whether that hypervisor works here is
      // the qemu/cloud-hypervisor/firecracker probes' business.
      return { available: true };
    },
    async launch(ctx: LaunchContext): Promise<VmmHandle> {
      const runner = ctx.spec.runner;
      if (runner === undefined) {
        throw new VmmError(
          'VMM_LAUNCH_FAILED',
          `${ctx.spec.name}: the microvm backend needs a runner spec`,
        );
      }
      const s = await spawnVmm(join(runner, 'bin', 'microvm-run'), [], {
        consoleFd: ctx.consoleFd,
        launchId: ctx.launchId,
        cwd: ctx.paths.dir,
      });
      return runnerHandle(
        new VmmProcess(s.pid, s.startTicks, s.child),
        runner,
        ctx.paths.dir,
        ctx.paths.console,
      );
    },
    async adopt(
      record: VmRecord,
      pid: number,
      pidStartTicks: number,
    ): Promise<VmmHandle | undefined> {
      if (record.spec.runner === undefined) return undefined;
      return runnerHandle(
        new VmmProcess(pid, pidStartTicks, undefined, record.startedAtMs),
        record.spec.runner,
        record.paths.dir,
        record.paths.console,
      );
    },
  };
}

function runnerHandle(
  proc: VmmProcess,
  runner: string,
  cwd: string,
  consolePath: string,
): VmmHandle {
  const shutdownScript = join(runner, 'bin', 'microvm-shutdown');
  return makeHandle(proc, {
    status: async () => (proc.alive ? 'running' : 'shutdown'),
    async requestStop(): Promise<void> {
      try {
        await access(shutdownScript, constants.X_OK);
      } catch {
        proc.signal('SIGTERM');
        return;
      }
      // Not awaited to completion: microvm.nix's script waits for the VM to end, and so do we.
      // Its output goes to the console log, where an operator looks when a stop misbehaves.
      const fd = openSync(consolePath, 'a');
      try {
        const child = spawn(shutdownScript, [], {
          cwd,
          stdio: ['ignore', fd, fd],
          timeout: SHUTDOWN_SCRIPT_TIMEOUT_MS,
          env: { ...process.env, [LAUNCH_ENV]: '' },
        });
        child.on('error', () => proc.signal('SIGTERM'));
        child.unref();
      } finally {
        closeSync(fd);
      }
    },
    forceStop: async () => proc.signal('SIGTERM'),
  });
}

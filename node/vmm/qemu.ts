// The qemu backend: `qemu-system-x86_64 -M microvm` for kernel specs, controlled over QMP on a
// unix socket. Owns the command line, the accelerator probe (a boot, not an open of /dev/kvm),
// and the mapping of QMP status and SHUTDOWN events to the backend interface.

import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import type { VmSpec } from '../state/vm_spec.ts';
import type {
  Accelerator,
  Backend,
  BackendProbe,
  ExitReason,
  LaunchContext,
  VmmHandle,
  VmmStatus,
  VmRecord,
} from './backend.ts';
import { VmmError } from './backend.ts';
import { makeHandle, spawnVmm, VmmProcess } from './proc.ts';
import { QmpClient } from './qmp.ts';

/** How long the KVM probe waits for the kernel's first console line. TCG prints it in ~3 s here. */
export const ACCEL_PROBE_TIMEOUT_MS = 8000;
/** How long a launch waits for QEMU's QMP socket to answer. */
export const QMP_READY_TIMEOUT_MS = 10_000;
const SOCKET_POLL_MS = 5;

export interface QemuOptions {
  readonly binary?: string;
  /** Kernel the accelerator probe boots; default: the newest /boot/vmlinuz-*. */
  readonly probeKernel?: string;
  /** Skip the probe and use this accelerator (tests, or an operator who knows). */
  readonly accelerator?: Accelerator;
}

export function qemuBackend(
  opts: QemuOptions = {},
): Backend & { accelerator(): Promise<Accelerator> } {
  const binary = opts.binary ?? 'qemu-system-x86_64';
  let probed: Promise<BackendProbe> | undefined;
  const probe = (): Promise<BackendProbe> => (probed ??= probeQemu(binary, opts));
  const accelerator = async (): Promise<Accelerator> =>
    opts.accelerator ?? (await probe()).accelerator ?? 'tcg';

  return {
    name: 'qemu',
    probe,
    accelerator,
    async launch(ctx: LaunchContext): Promise<VmmHandle> {
      const accel = await accelerator();
      const args = qemuArgs(ctx.spec, { accel, qmpSocket: ctx.paths.socket, tap: ctx.tap });
      const s = await spawnVmm(binary, args, {
        consoleFd: ctx.consoleFd,
        launchId: ctx.launchId,
        cwd: ctx.paths.dir,
      });
      const proc = new VmmProcess(s.pid, s.startTicks, s.child);
      let qmp: QmpClient;
      try {
        qmp = await connectWhenReady(ctx.paths.socket, proc);
      } catch (e) {
        proc.signal('SIGKILL');
        throw e;
      }
      return qemuHandle(proc, qmp);
    },
    async adopt(
      record: VmRecord,
      pid: number,
      pidStartTicks: number,
    ): Promise<VmmHandle | undefined> {
      const proc = new VmmProcess(pid, pidStartTicks, undefined, record.startedAtMs);
      try {
        return qemuHandle(proc, await QmpClient.connect(record.paths.socket, 2000));
      } catch {
        return undefined;
      }
    },
  };
}

/** The QEMU command line for a kernel spec (exported for tests and for bench/vm.ts's by-hand row). */
export function qemuArgs(
  spec: VmSpec,
  o: { readonly accel: Accelerator; readonly qmpSocket?: string; readonly tap?: string },
): string[] {
  if (spec.kernel === undefined)
    throw new VmmError('VMM_LAUNCH_FAILED', `${spec.name}: the qemu backend needs a kernel spec`);
  const args = [
    '-name',
    spec.name,
    '-M',
    'microvm,x-option-roms=off,isa-serial=on,rtc=on',
    '-accel',
    o.accel,
    ...(o.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-m',
    String(spec.memoryMiB),
    '-smp',
    String(spec.vcpus),
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    // A guest reboot ends the VMM: the supervisor's restart policy decides what happens next.
    '-no-reboot',
    '-kernel',
    spec.kernel,
    ...(spec.initrd !== undefined ? ['-initrd', spec.initrd] : []),
    '-append',
    spec.cmdline ?? 'console=ttyS0',
    '-serial',
    'stdio',
  ];
  if (o.qmpSocket !== undefined) args.push('-qmp', `unix:${o.qmpSocket},server=on,wait=off`);
  spec.disks.forEach((d, i) => {
    args.push(
      '-drive',
      `id=d${i},file=${d.path},format=raw,if=none${d.readOnly ? ',readonly=on' : ''}`,
      '-device',
      `virtio-blk-device,drive=d${i}`,
    );
  });
  if (spec.network.mode === 'tap') {
    if (o.tap === undefined)
      throw new VmmError('VMM_NETWORK_FAILED', `${spec.name}: no tap device for network mode tap`);
    args.push(
      '-netdev',
      `tap,id=n0,ifname=${o.tap},script=no,downscript=no`,
      '-device',
      `virtio-net-device,netdev=n0${spec.network.mac ? `,mac=${spec.network.mac}` : ''}`,
    );
  }
  return args;
}

function qemuHandle(proc: VmmProcess, qmp: QmpClient): VmmHandle {
  let shutdown: ExitReason['kind'] | undefined;
  qmp.onEvent((e) => {
    if (e.event !== 'SHUTDOWN') return;
    const reason = String(e.data?.reason ?? '');
    shutdown =
      reason === 'guest-shutdown'
        ? 'guest-poweroff'
        : reason === 'host-signal'
          ? 'killed'
          : reason.startsWith('host-')
            ? 'stopped'
            : 'crashed'; // guest-reset (with -no-reboot), guest-panic
  });
  return makeHandle(proc, {
    async status(): Promise<VmmStatus> {
      const r = (await qmp.execute('query-status')) as { status?: string };
      return r.status === 'running'
        ? 'running'
        : r.status === 'shutdown'
          ? 'shutdown'
          : r.status === undefined
            ? 'unknown'
            : 'paused';
    },
    requestStop: async () => void (await qmp.execute('system_powerdown')),
    forceStop: async () => void (await qmp.execute('quit').catch(() => undefined)),
    shutdownReason: () => shutdown,
    close: () => qmp.close(),
  });
}

async function connectWhenReady(socket: string, proc: VmmProcess): Promise<QmpClient> {
  const deadline = Date.now() + QMP_READY_TIMEOUT_MS;
  for (;;) {
    if (!proc.alive)
      throw new VmmError('VMM_LAUNCH_FAILED', 'QEMU exited during launch (see the console log)');
    if (existsSync(socket)) {
      try {
        return await QmpClient.connect(socket, Math.max(1, deadline - Date.now()));
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
    }
    if (Date.now() > deadline) {
      throw new VmmError(
        'VMM_LAUNCH_FAILED',
        `QEMU's QMP socket ${socket} did not answer within ${QMP_READY_TIMEOUT_MS} ms`,
      );
    }
    await new Promise((r) => setTimeout(r, SOCKET_POLL_MS));
  }
}

async function probeQemu(binary: string, opts: QemuOptions): Promise<BackendProbe> {
  const version = await run(binary, ['--version'], 5000);
  if (version === undefined)
    return { available: false, reason: `${binary} not found or does not run` };
  const v = /version (\d+\.\d+\.\d+)/.exec(version)?.[1] ?? 'unknown';
  if (opts.accelerator !== undefined)
    return {
      available: true,
      version: v,
      accelerator: opts.accelerator,
      reason: 'accelerator set by configuration',
    };
  if (!existsSync('/dev/kvm'))
    return { available: true, version: v, accelerator: 'tcg', reason: '/dev/kvm is absent' };
  const kernel = opts.probeKernel ?? newestHostKernel();
  if (kernel === undefined) {
    return {
      available: true,
      version: v,
      accelerator: 'tcg',
      reason: 'no kernel to probe KVM with; TCG assumed',
    };
  }
  const booted = await bootsTo(binary, kernel, 'kvm', 'Linux version', ACCEL_PROBE_TIMEOUT_MS);
  return booted
    ? { available: true, version: v, accelerator: 'kvm' }
    : {
        available: true,
        version: v,
        accelerator: 'tcg',
        reason: `a KVM guest printed no kernel line within ${ACCEL_PROBE_TIMEOUT_MS} ms; using TCG`,
      };
}

/** Boots `kernel` with no initrd and reports whether `needle` appears on its console in time. */
export function bootsTo(
  binary: string,
  kernel: string,
  accel: Accelerator,
  needle: string,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(
      binary,
      [
        '-M',
        'microvm',
        '-accel',
        accel,
        '-m',
        '128',
        '-nodefaults',
        '-no-user-config',
        '-nographic',
        '-no-reboot',
        '-kernel',
        kernel,
        '-append',
        'console=ttyS0 earlyprintk=ttyS0 panic=-1',
        '-serial',
        'stdio',
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    let out = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      // Keep a bounded tail: the needle is short.
      out = (out + d.toString('latin1')).slice(-4096);
      if (out.includes(needle)) done(true);
    });
    child.on('error', () => done(false));
    child.on('exit', () => done(out.includes(needle)));
  });
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'], timeout: timeoutMs });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', () => resolve(undefined));
    child.on('close', (code) => resolve(code === 0 ? out : undefined));
  });
}

/** The newest /boot/vmlinuz-*, the kernel the KVM probe boots when none is configured. */
export function newestHostKernel(): string | undefined {
  try {
    const names = readdirSync('/boot')
      .filter((n) => n.startsWith('vmlinuz-'))
      .sort();
    return names.length === 0 ? undefined : `/boot/${names.at(-1)}`;
  } catch {
    return undefined;
  }
}

/** The first x.y(.z) in `<binary> --version`, 'unknown' if none; undefined if it does not run. */
export async function versionOf(binary: string): Promise<string | undefined> {
  const out = await run(binary, ['--version'], 5000);
  if (out === undefined) return undefined;
  return /(\d+\.\d+(\.\d+)?)/.exec(out)?.[1] ?? 'unknown';
}

// The supervisor with real QEMU under TCG: a boot to the console marker on a tap, a graceful stop,
// a restart after kill -9 of the VMM, and adoption by a second supervisor (the daemon restarted),
// including a VMM found only by its launch id. Three real boots. The refusals, the pid-reuse guard
// and the console cap need no boot.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeWithTools } from '../../test/tools.ts';
import { until } from '../../test/until.ts';
import {
  buildTestVm,
  hostKernel,
  TEST_VM_MARKER,
  TEST_VM_POWERDOWN_MARKER,
  type TestVm,
} from '../../test/vmm/fixture.ts';
import {
  BOOT_TIMEOUT_MS,
  shortTmpDir,
  sweep,
  testVmSpec,
  VM_TOOLS,
  vmmsUnder,
  waitForMarker,
} from '../../test/vmm/helpers.ts';
import { specHash, validateVmSpec } from '../state/vm_spec.ts';
import type { Backend, ExitReason, VmRecord } from './backend.ts';
import { linkExists, tapName } from './net.ts';
import { procStat } from './proc.ts';
import { qemuBackend } from './qemu.ts';
import { RECORD_FILE, Supervisor } from './supervisor.ts';

const hasKernel = hostKernel() !== undefined;
const STOP_MS = 20_000;

describe('Supervisor without a boot', () => {
  let runDir: string;
  let sup: Supervisor;
  afterEach(async () => {
    await sup.close();
    await sweep(runDir);
  });

  it('refuses a VM whose backend is not configured, or whose kernel is missing here, and marks it failed', async () => {
    runDir = shortTmpDir('pcr-sup');
    sup = new Supervisor({ runDir, backends: {} });
    const r = validateVmSpec({ version: 1, name: 'a', kernel: '/nonexistent/vmlinux' });
    if (!r.ok) throw new Error('spec');
    await expect(sup.launch(r.spec)).rejects.toMatchObject({ code: 'VMM_UNAVAILABLE' });
    expect(sup.get('a')?.phase).toBe('failed');

    await sup.close();
    sup = new Supervisor({ runDir, backends: { qemu: qemuBackend({ accelerator: 'tcg' }) } });
    await expect(sup.launch(r.spec)).rejects.toMatchObject({
      code: 'VMM_LAUNCH_FAILED',
      message: expect.stringContaining('kernel: /nonexistent/vmlinux does not exist on this node'),
    });
    expect(sup.get('a')).toMatchObject({
      phase: 'failed',
      reason: expect.stringContaining('kernel'),
    });
  });

  it('refuses a run dir whose socket paths would exceed SOCKET_PATH_BYTES_MAX', async () => {
    runDir = shortTmpDir('pcr-sup');
    sup = new Supervisor({
      runDir: join(runDir, 'x'.repeat(100)),
      backends: { qemu: qemuBackend({ accelerator: 'tcg' }) },
    });
    const r = validateVmSpec({ version: 1, name: 'a', kernel: '/bin/sh' });
    if (!r.ok) throw new Error('spec');
    await expect(sup.launch(r.spec)).rejects.toMatchObject({ code: 'VMM_SOCKET_PATH_TOO_LONG' });
  });

  it('does not adopt a live process whose start time differs from the record (pid reuse)', async () => {
    runDir = shortTmpDir('pcr-sup');
    const r = validateVmSpec({ version: 1, name: 'reused', kernel: '/bin/sh' });
    if (!r.ok) throw new Error('spec');
    sup = new Supervisor({ runDir, backends: { qemu: qemuBackend({ accelerator: 'tcg' }) } });
    const paths = sup.paths('reused');
    const me = procStat(process.pid)!;
    const record: VmRecord = {
      version: 1,
      name: 'reused',
      backend: 'qemu',
      spec: r.spec,
      specHash: specHash(r.spec),
      generation: 1,
      launchId: 'none',
      pid: process.pid, // alive, but not the process that started at these ticks
      pidStartTicks: me.startTicks - 1,
      startedAtMs: Date.now(),
      paths,
      attempts: 0,
    };
    await mkdir(paths.dir, { recursive: true });
    await writeFile(paths.record, JSON.stringify(record));
    const [vm] = await sup.recover();
    expect(vm).toMatchObject({
      name: 'reused',
      phase: 'failed',
      adopted: true,
      lastExit: { kind: 'vanished' },
    });
    expect(procStat(process.pid)).toBeDefined(); // and we were not killed
  });

  it('cuts a console log above its cap down to its tail', async () => {
    runDir = shortTmpDir('pcr-sup');
    const r = validateVmSpec({ version: 1, name: 'chatty', kernel: '/bin/sh' });
    if (!r.ok) throw new Error('spec');
    sup = new Supervisor({ runDir, backends: {}, consoleLogBytesMax: 1000, consoleKeepBytes: 400 });
    const paths = sup.paths('chatty');
    await mkdir(paths.dir, { recursive: true });
    const record = {
      version: 1,
      name: 'chatty',
      backend: 'qemu',
      spec: r.spec,
      specHash: specHash(r.spec),
      generation: 0,
      launchId: 'x',
      startedAtMs: 0,
      paths,
      attempts: 0,
      consoleOffset: 2900,
    };
    await writeFile(paths.record, JSON.stringify(record));
    await sup.recover();
    const text = Array.from({ length: 300 }, (_, i) => `line ${String(i).padStart(4, '0')}\n`).join(
      '',
    );
    await writeFile(paths.console, text);
    expect(await sup.capConsole('chatty')).toBe(true);
    const after = readFileSync(paths.console, 'utf8');
    expect(after).toBe(text.slice(-400));
    expect(await sup.capConsole('chatty')).toBe(false);
    expect(await sup.consoleLog('chatty', 10)).toBe(text.slice(-10));
    expect(sup.events('chatty').map((e) => e.kind)).toContain('console-cut');
    // The run's first byte moved with the cut: 2900 of 3000 bytes, the first 2600 cut away.
    expect(sup.get('chatty')?.consoleOffset).toBe(300);
  });

  // The "VMM" is `sh` printing a line, then `sleep` (a labelled stand-in for QEMU: what is tested
  // is the record's bookkeeping). After a kill -9 the policy starts it again.
  it("records where each run's console output starts, and when it started", async () => {
    runDir = shortTmpDir('pcr-sup');
    let now = 1000;
    sup = new Supervisor({
      runDir,
      backends: { qemu: sleepBackend('echo run; exec sleep 3600') },
      now: () => now,
    });
    const r = validateVmSpec({
      version: 1,
      name: 'runs',
      kernel: '/bin/sh',
      restart: { policy: 'always', backoffInitialMs: 1, backoffMaxMs: 1 },
    });
    if (!r.ok) throw new Error('spec');
    await sup.launch(r.spec);
    expect(sup.get('runs')).toMatchObject({ consoleOffset: 0, startedAtMs: 1000 });
    const console = sup.paths('runs').console;
    await until(() => readFileSync(console, 'utf8') === 'run\n', 10_000, 'the first run line');
    now = 2000;
    process.kill(sup.get('runs')!.pid!, 'SIGKILL');
    await until(
      () => sup.get('runs')?.phase === 'running' && sup.get('runs')?.attempts === 1,
      10_000,
      'the second run',
    );
    expect(sup.get('runs')).toMatchObject({ consoleOffset: 4, startedAtMs: 2000 });
    await sup.remove('runs', 1000);
  });

  // The ordering remove() promises, on a real process: the "VMM" here is `sleep` (a labelled
  // stand-in for QEMU: what is tested is the supervisor's bookkeeping, not a boot). It crashes
  // (kill -9) while the restart policy is on, so a record write is queued as remove() runs.
  it('remove: the VM is gone for callers only once its directory is gone, and stays gone', async () => {
    runDir = shortTmpDir('pcr-sup');
    sup = new Supervisor({ runDir, backends: { qemu: sleepBackend() } });
    for (let round = 0; round < 5; round++) {
      const r = validateVmSpec({
        version: 1,
        name: 'gone',
        kernel: '/bin/sh',
        restart: { policy: 'always', backoffInitialMs: 1, backoffMaxMs: 1 },
      });
      if (!r.ok) throw new Error('spec');
      await sup.launch(r.spec);
      const dir = sup.paths('gone').dir;
      const pid = sup.get('gone')!.pid!;
      process.kill(pid, 'SIGKILL');
      await until(() => sup.events('gone').some((e) => e.kind === 'exited'), 10_000);
      const seen: string[] = [];
      let done = false;
      const removing = sup.remove('gone', 2000).then(() => {
        done = true;
      });
      while (!done) {
        if (sup.get('gone') === undefined && existsSync(dir)) seen.push('entry gone, dir present');
        await new Promise((res) => setImmediate(res));
      }
      await removing;
      expect(seen).toEqual([]);
      expect(sup.get('gone')).toBeUndefined();
      // Nothing queued before the removal may recreate the directory afterwards.
      await new Promise((res) => setTimeout(res, 50));
      expect(existsSync(dir)).toBe(false);
    }
  });
});

/** A backend whose VMM is `sleep 3600` (or a shell script): a real process with a pid, an exit and a kill. */
function sleepBackend(script?: string): Backend {
  return {
    name: 'qemu',
    probe: async () => ({ available: true }),
    adopt: async () => undefined,
    launch: async (ctx) => {
      const stdio = ['ignore', ctx.consoleFd, ctx.consoleFd] as const;
      const child =
        script === undefined
          ? spawn('sleep', ['3600'], { stdio: [...stdio] })
          : spawn('sh', ['-c', script], { stdio: [...stdio] });
      await new Promise<void>((res, rej) => child.once('spawn', res).once('error', rej));
      const pid = child.pid!;
      const exited = new Promise<ExitReason>((res) =>
        child.once('exit', (code, signal) =>
          res({ kind: 'crashed', detail: `exit ${code ?? signal}` }),
        ),
      );
      const kill = async (): Promise<ExitReason> => {
        child.kill('SIGKILL');
        return exited;
      };
      return {
        pid,
        pidStartTicks: procStat(pid)!.startTicks,
        exited,
        status: async () => ({ state: 'running' }) as never,
        stop: kill,
        kill,
        metrics: async () => ({}) as never,
        release: () => child.unref(),
      };
    },
  };
}

describeWithTools([...VM_TOOLS, 'ip'], 'Supervisor with real QEMU (TCG)', () => {
  let vm: TestVm;
  let runDir: string;
  const sups: Supervisor[] = [];
  const bridge = `pcrtbr${process.pid % 10000}`;
  const backends = () => ({ qemu: qemuBackend({ accelerator: 'tcg' }) });

  beforeAll(async () => {
    if (!hasKernel) throw new Error('no /boot/vmlinuz-*: apt-get install linux-image-amd64');
    vm = await buildTestVm();
    runDir = shortTmpDir('pcr-sup');
    execFileSync('ip', ['link', 'add', bridge, 'type', 'bridge']);
  });
  afterEach(async () => {
    for (const s of sups.splice(0)) await s.close();
    for (const pid of vmmsUnder(runDir)) process.kill(pid, 'SIGKILL');
  });
  afterAll(async () => {
    await sweep(runDir);
    try {
      execFileSync('ip', ['link', 'delete', bridge]);
    } catch {}
  });

  it(
    'boots to the marker on a tap, stops gracefully (the guest powers off), removes tap and socket',
    async () => {
      const sup = new Supervisor({ runDir, backends: backends() });
      sups.push(sup);
      const spec = testVmSpec(vm, 'boot', {
        network: { mode: 'tap', bridge, mac: '52:54:00:12:34:56' },
      });
      await sup.launch(spec, 7);
      expect(sup.get('boot')).toMatchObject({
        phase: 'running',
        generation: 7,
        specHash: specHash(spec),
        adopted: false,
      });
      const tap = tapName('boot');
      const link = JSON.parse(
        execFileSync('ip', ['-j', 'link', 'show', 'dev', tap], { encoding: 'utf8' }),
      ) as { master?: string }[];
      expect(link[0]?.master).toBe(bridge);

      await waitForMarker(sup.paths('boot').console, TEST_VM_MARKER);
      expect(await sup.handle('boot')!.status()).toBe('running');
      expect((await sup.metrics('boot'))!.cpuMs).toBeGreaterThan(0);

      const exit = await sup.stop('boot', STOP_MS);
      expect(exit).toMatchObject({ kind: 'stopped' });
      expect(await sup.consoleLog('boot')).toContain(TEST_VM_POWERDOWN_MARKER); // graceful, not killed
      expect(sup.get('boot')).toMatchObject({ phase: 'exited' });
      expect(await linkExists(tap)).toBe(false);
      expect(readFileSync(sup.paths('boot').record, 'utf8')).toContain('"launchId"');
      expect(() => readFileSync(sup.paths('boot').socket)).toThrow();
    },
    BOOT_TIMEOUT_MS * 2,
  );

  it(
    'restarts the VM after kill -9 of its VMM, per its on-failure policy with backoff',
    async () => {
      const sup = new Supervisor({ runDir, backends: backends() });
      sups.push(sup);
      const spec = testVmSpec(vm, 'crashy', {
        restart: {
          policy: 'on-failure',
          maxAttempts: 2,
          backoffInitialMs: 200,
          backoffMaxMs: 1000,
        },
      });
      await sup.launch(spec);
      const console = sup.paths('crashy').console;
      await waitForMarker(console, TEST_VM_MARKER);
      const firstPid = sup.get('crashy')!.pid!;
      process.kill(firstPid, 'SIGKILL');
      const restarted = await until(
        () => {
          const o = sup.get('crashy');
          return o?.phase === 'running' && o.pid !== firstPid ? o : undefined;
        },
        BOOT_TIMEOUT_MS,
        'the restart',
      );
      expect(restarted).toMatchObject({
        attempts: 1,
        lastExit: { kind: 'killed', signal: 'SIGKILL' },
      });
      await waitForMarker(console, TEST_VM_MARKER, 2);
      const kinds = sup.events('crashy').map((e) => e.kind);
      expect(kinds).toEqual([
        'launching',
        'running',
        'exited',
        'restart-scheduled',
        'launching',
        'running',
      ]);
      expect(vmmsUnder(runDir)).toEqual([restarted.pid]);
      await sup.stop('crashy', STOP_MS);
    },
    BOOT_TIMEOUT_MS * 3,
  );

  it(
    'a restarted daemon adopts the running VMM (by record, then by launch id alone) and never launches a duplicate',
    async () => {
      const first = new Supervisor({ runDir, backends: backends() });
      sups.push(first);
      const spec = testVmSpec(vm, 'kept');
      await first.launch(spec, 3);
      await waitForMarker(first.paths('kept').console, TEST_VM_MARKER);
      const pid = first.get('kept')!.pid!;
      await first.close(); // the daemon goes away; the VMM stays

      const second = new Supervisor({ runDir, backends: backends() });
      sups.push(second);
      const recovered = await second.recover();
      expect(recovered.find((v) => v.name === 'kept')).toMatchObject({
        phase: 'running',
        pid,
        adopted: true,
        generation: 3,
      });
      await expect(second.launch(spec)).rejects.toMatchObject({ code: 'VMM_ALREADY_RUNNING' });
      await second.close();

      // A daemon killed between the spawn and the record's second write: no pid in the record.
      const recordPath = join(second.paths('kept').dir, RECORD_FILE);
      const {
        pid: _pid,
        pidStartTicks: _t,
        ...withoutPid
      } = JSON.parse(readFileSync(recordPath, 'utf8')) as VmRecord;
      writeFileSync(recordPath, JSON.stringify(withoutPid));
      const third = new Supervisor({ runDir, backends: backends() });
      sups.push(third);
      await third.recover();
      expect(third.get('kept')).toMatchObject({ phase: 'running', pid, adopted: true });
      expect(vmmsUnder(runDir)).toEqual([pid]);

      expect(await third.stop('kept', STOP_MS)).toMatchObject({ kind: 'stopped' });
      expect(await third.consoleLog('kept')).toContain(TEST_VM_POWERDOWN_MARKER);
      expect(vmmsUnder(runDir)).toEqual([]);
    },
    BOOT_TIMEOUT_MS * 2,
  );
});

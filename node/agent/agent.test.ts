// The agent driving the reconciler: with an in-memory supervisor (closure fetch, report order,
// report retries, removal), then with the real supervisor and QEMU (TCG): a desired VM boots to its
// console marker with reports starting then running, and is stopped and removed once no longer
// desired; and two VMs with console health checks, one that passes on the guest's marker and one
// that never does, each proposed once. Three real boots.

import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeWithTools } from '../../test/tools.ts';
import { until } from '../../test/until.ts';
import { buildTestVm, TEST_VM_MARKER } from '../../test/vmm/fixture.ts';
import {
  BOOT_TIMEOUT_MS,
  shortTmpDir,
  sweep,
  testVmSpec,
  VM_TOOLS,
  waitForMarker,
} from '../../test/vmm/helpers.ts';
import { specHash, type VmSpec, validateVmSpec } from '../state/vm_spec.ts';
import type { VmHealth } from '../state/vms.ts';
import type { ExitReason } from '../vmm/backend.ts';
import { qemuBackend } from '../vmm/qemu.ts';
import { type ObservedVm, Supervisor } from '../vmm/supervisor.ts';
import { Agent, type AgentSupervisor } from './agent.ts';
import { appliedHealth, type HealthVerdict } from './health_verdict.ts';
import type { DesiredVm, VmState } from './reconciler.ts';

const RUNNER = '/nix/store/0c6lw3rq0qvd4n4ys4fvnnbd5bxxc0nk-microvm-run-db';

/** An in-memory supervisor: launches succeed at once, stops end at once. */
class MemorySupervisor implements AgentSupervisor {
  readonly vms = new Map<string, ObservedVm>();
  consoleRead?: AgentSupervisor['consoleRead'];
  readonly calls: string[] = [];
  /** The timeout each stop and remove was given. */
  readonly timeouts: (number | undefined)[] = [];
  observed(): ObservedVm[] {
    return [...this.vms.values()];
  }
  async launch(spec: VmSpec, generation: number): Promise<void> {
    this.calls.push(`launch ${spec.name}`);
    this.vms.set(spec.name, {
      name: spec.name,
      backend: 'microvm',
      specHash: specHash(spec),
      generation,
      phase: 'running',
      sinceMs: 0,
      attempts: 0,
      adopted: false,
    });
  }
  async stop(name: string, timeoutMs?: number): Promise<ExitReason | undefined> {
    this.calls.push(`stop ${name}`);
    this.timeouts.push(timeoutMs);
    const o = this.vms.get(name);
    const exit: ExitReason = { kind: 'stopped', detail: 'stopped by the node' };
    if (o !== undefined) this.vms.set(name, { ...o, phase: 'exited', lastExit: exit });
    return exit;
  }
  async remove(name: string, timeoutMs?: number): Promise<void> {
    this.calls.push(`remove ${name}`);
    this.timeouts.push(timeoutMs);
    this.vms.delete(name);
  }
}

describe('Agent with an in-memory supervisor', () => {
  let agent: Agent;
  afterEach(async () => agent?.stop());

  it('asks the stop budget per VM and reason (a copy moved away gets the short one)', async () => {
    const r = validateVmSpec({ version: 1, name: 'db', runner: RUNNER });
    if (!r.ok) throw new Error('spec');
    let desired: DesiredVm[] = [{ name: 'db', spec: r.spec, generation: 1, state: 'running' }];
    const asked: string[] = [];
    const sup = new MemorySupervisor();
    agent = new Agent({
      supervisor: sup,
      intervalMs: 20,
      stopTimeoutMs: (name, why) => {
        asked.push(`${name} ${why}`);
        return why === 'not-desired' ? 1234 : 99_999;
      },
      deps: {
        desiredForThisNode: () => desired,
        report: async () => undefined,
        ensureClosure: async () => undefined,
        closurePresent: () => true,
      },
    });
    agent.start();
    await until(() => sup.vms.get('db')?.phase === 'running', 5000, 'db running');
    desired = [];
    agent.poke();
    await until(() => sup.calls.includes('stop db'), 5000, 'db stopped');
    expect(asked[0]).toBe('db not-desired');
    expect(sup.timeouts[0]).toBe(1234);
  });

  it('fetches the closure, starts the VM, reports fetching, starting, running in order; removes it when undesired', async () => {
    const r = validateVmSpec({ version: 1, name: 'db', runner: RUNNER });
    if (!r.ok) throw new Error('spec');
    let desired: DesiredVm[] = [{ name: 'db', spec: r.spec, generation: 1, state: 'running' }];
    const reports: string[] = [];
    let present = false;
    const progress: unknown[] = [];
    const sup = new MemorySupervisor();
    agent = new Agent({
      supervisor: sup,
      intervalMs: 20,
      deps: {
        desiredForThisNode: () => desired,
        report: async (name: string, state: VmState) => void reports.push(`${name} ${state}`),
        ensureClosure: async (path, onProgress) => {
          onProgress({ message: `fetching ${path}` });
          progress.push(path);
          present = true;
        },
        closurePresent: () => present,
      },
    });
    agent.start();
    await until(() => agent.lastReported().db?.state === 'running', 5000, 'running');
    expect(progress).toEqual([RUNNER]);
    expect(reports).toEqual(['db fetching', 'db starting', 'db running']);
    expect(sup.calls).toEqual(['launch db']);

    desired = [];
    agent.poke();
    await until(() => sup.vms.size === 0, 5000, 'removal');
    expect(sup.calls).toEqual(['launch db', 'stop db', 'remove db']);
    expect(reports).toEqual(['db fetching', 'db starting', 'db running']);
  });

  it('stops again with the shorter timeout a stop in flight once the timeout shrinks (fenced)', async () => {
    const s = validateVmSpec({ version: 1, name: 'a', kernel: '/k' });
    if (!s.ok) throw new Error('spec');
    // A supervisor whose stops never end by themselves: the VM ignores its graceful stop.
    const timeouts: number[] = [];
    const sup = new MemorySupervisor();
    sup.stop = (name: string, timeoutMs?: number) => {
      timeouts.push(timeoutMs ?? -1);
      const o = sup.vms.get(name);
      if (o !== undefined) sup.vms.set(name, { ...o, phase: 'stopping' });
      return new Promise<ExitReason | undefined>(() => {});
    };
    await sup.launch(s.spec, 1);
    let fenced = false;
    agent = new Agent({
      supervisor: sup,
      intervalMs: 20,
      stopTimeoutMs: () => (fenced ? 1000 : 30_000),
      deps: {
        desiredForThisNode: () => [],
        report: async () => undefined,
        ensureClosure: async () => undefined,
      },
    });
    agent.start();
    await until(() => timeouts.length === 1, 5000, 'the graceful stop');
    expect(timeouts).toEqual([30_000]);
    fenced = true;
    agent.poke();
    await until(() => timeouts.length === 2, 5000, 'the stop again, sooner');
    expect(timeouts).toEqual([30_000, 1000]);
  });

  it('retries a rejected report on a later round, without a busy loop', async () => {
    const s = validateVmSpec({ version: 1, name: 'a', kernel: '/k' });
    if (!s.ok) throw new Error('spec');
    let attempts = 0;
    const errors: string[] = [];
    agent = new Agent({
      supervisor: new MemorySupervisor(),
      intervalMs: 50,
      onError: (what) => errors.push(what),
      deps: {
        desiredForThisNode: () => [{ name: 'a', spec: s.spec, generation: 1, state: 'running' }],
        report: async () => {
          attempts++;
          if (attempts <= 2) throw new Error('NO_LEADER');
        },
        ensureClosure: async () => undefined,
      },
    });
    agent.start();
    await until(
      () => agent.lastReported().a?.state === 'running',
      5000,
      'the report to go through',
    );
    // Two rejected reports (of whatever state the VM was in then), then one that went through,
    // and none after it: nothing changed.
    expect(errors).toHaveLength(2);
    expect(errors.every((e) => e.startsWith('report a '))).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    expect(attempts).toBe(3);
  });

  it("runs the health checks of a running VM on the agent's clock and proposes each change once", async () => {
    const r = validateVmSpec({
      version: 1,
      name: 'web',
      kernel: '/k',
      health: [{ console: 'web ready', graceMs: 1000 }],
    });
    if (!r.ok) throw new Error('spec');
    const dir = await mkdtemp(join(tmpdir(), 'pcr-agent-health-'));
    const log = join(dir, 'console.log');
    await writeFile(log, 'booting\n');
    const sup = new MemorySupervisor();
    // The console as the supervisor's consoleRead serves it: from an offset, at most maxBytes.
    sup.consoleRead = async (_name: string, offset: number, maxBytes: number) => {
      const all = await readFile(log);
      const from = Math.min(offset, all.length);
      const data = all.subarray(from, from + maxBytes);
      return { data: data.toString('utf8'), next: from + data.length, size: all.length };
    };
    let now = 0;
    let row: VmHealth | undefined;
    const proposed: string[] = [];
    agent = new Agent({
      supervisor: sup,
      now: () => now,
      healthTimers: false,
      deps: {
        desiredForThisNode: () => [
          {
            name: 'web',
            spec: r.spec,
            generation: 3,
            state: 'running',
            ...(row !== undefined ? { health: row } : {}),
          },
        ],
        report: async () => undefined,
        ensureClosure: async () => undefined,
        proposeHealth: async (name, generation, v, atMs) => {
          proposed.push(`${name}@${generation} ${v.healthy} ${v.message ?? ''}`.trim());
          row = appliedHealth(row, generation, v, atMs);
        },
      },
    });
    await agent.round(); // starts it (in the background)
    await until(() => sup.vms.get('web')?.phase === 'running', 5000, 'web running');
    await agent.round();
    expect(agent.health?.tracked()).toEqual(['web']);
    await agent.health?.runDue();
    expect(proposed).toEqual([]); // within the grace
    now = 1000;
    await agent.health?.runDue();
    await until(() => proposed.length === 1, 5000, 'the unhealthy verdict');
    await appendFile(log, 'web ready\n');
    now = 1500;
    await agent.health?.runDue();
    await until(() => proposed.length === 2, 5000, 'the healthy verdict');
    for (let i = 0; i < 3; i++) {
      now += 500;
      await agent.round();
      await agent.health?.runDue();
    }
    expect(proposed).toEqual(['web@3 false not seen within 1000 ms of the start', 'web@3 true']);
    expect(row).toMatchObject({ generation: 3, healthy: true, sinceMs: 1500 });
    await rm(dir, { recursive: true, force: true });
  });

  it('reports failed with the reason when a fetch fails', async () => {
    const r = validateVmSpec({ version: 1, name: 'db', runner: RUNNER });
    if (!r.ok) throw new Error('spec');
    agent = new Agent({
      supervisor: new MemorySupervisor(),
      intervalMs: 20,
      deps: {
        desiredForThisNode: () => [{ name: 'db', spec: r.spec, generation: 1, state: 'running' }],
        report: async () => undefined,
        ensureClosure: async () => {
          throw new Error('no peer holds it');
        },
        closurePresent: () => false,
      },
    });
    agent.start();
    const rep = await until(
      () => (agent.lastReported().db?.state === 'failed' ? agent.lastReported().db : undefined),
      5000,
      'failed',
    );
    expect(rep.reason).toBe(`fetching ${RUNNER} failed: no peer holds it (retrying)`);
  });
});

describeWithTools(VM_TOOLS, 'Agent with the real supervisor and QEMU (TCG)', () => {
  let runDir: string;
  let sup: Supervisor;
  let agent: Agent;
  beforeAll(() => {
    runDir = shortTmpDir('pcr-agent');
  });
  afterAll(async () => {
    await agent?.stop();
    await sup?.close();
    await sweep(runDir);
  });

  it(
    'boots a desired VM to its marker, reports starting then running, and stops and removes it when undesired',
    async () => {
      const vm = await buildTestVm();
      sup = new Supervisor({ runDir, backends: { qemu: qemuBackend({ accelerator: 'tcg' }) } });
      const spec = testVmSpec(vm, 'agentvm');
      let desired: DesiredVm[] = [{ name: 'agentvm', spec, generation: 1, state: 'running' }];
      const reports: string[] = [];
      agent = new Agent({
        supervisor: sup,
        stopTimeoutMs: 20_000,
        deps: {
          desiredForThisNode: () => desired,
          report: async (name, state) => void reports.push(`${name} ${state}`),
          ensureClosure: async () => undefined,
        },
      });
      agent.start();
      await waitForMarker(sup.paths('agentvm').console, TEST_VM_MARKER);
      await until(() => agent.lastReported().agentvm?.state === 'running', 10_000, 'running');
      expect(reports).toEqual(['agentvm starting', 'agentvm running']);

      desired = [];
      agent.poke();
      await until(() => sup.get('agentvm') === undefined, 30_000, 'the VM removed');
      expect(existsSync(sup.paths('agentvm').dir)).toBe(false);
      expect(reports).toEqual(['agentvm starting', 'agentvm running']);
    },
    BOOT_TIMEOUT_MS * 2,
  );
});

describeWithTools(VM_TOOLS, 'Agent health checks with the real supervisor and QEMU (TCG)', () => {
  let runDir: string;
  let sup: Supervisor;
  let agent: Agent;
  beforeAll(() => {
    runDir = shortTmpDir('pcr-agenth');
  });
  afterAll(async () => {
    await agent?.stop();
    await sup?.close();
    await sweep(runDir);
  });

  it(
    "proposes healthy once for a console check the guest's marker passes, unhealthy once for one never printed",
    async () => {
      const vm = await buildTestVm();
      sup = new Supervisor({ runDir, backends: { qemu: qemuBackend({ accelerator: 'tcg' }) } });
      const good = testVmSpec(vm, 'hgood', { health: [{ console: TEST_VM_MARKER }] });
      const bad = testVmSpec(vm, 'hbad', {
        health: [{ console: 'never printed by this guest', graceMs: 3000 }],
      });
      // The rows as the state machine would hold them once each proposal committed.
      const rows = new Map<string, VmHealth>();
      const proposals: string[] = [];
      const desiredOf = (spec: VmSpec): DesiredVm => {
        const health = rows.get(spec.name);
        return {
          name: spec.name,
          spec,
          generation: 1,
          state: 'running',
          ...(health !== undefined ? { health } : {}),
        };
      };
      let desired = (): DesiredVm[] => [desiredOf(good), desiredOf(bad)];
      agent = new Agent({
        supervisor: sup,
        stopTimeoutMs: 20_000,
        deps: {
          desiredForThisNode: () => desired(),
          report: async () => undefined,
          ensureClosure: async () => undefined,
          proposeHealth: async (name, generation, v: HealthVerdict, atMs) => {
            proposals.push(`${name} ${v.healthy} ${v.check}${v.message ? `: ${v.message}` : ''}`);
            rows.set(name, appliedHealth(rows.get(name), generation, v, atMs));
          },
        },
      });
      agent.start();
      await until(() => rows.get('hgood')?.healthy === true, BOOT_TIMEOUT_MS, 'hgood healthy');
      await until(() => rows.get('hbad') !== undefined, BOOT_TIMEOUT_MS, 'a verdict for hbad');
      await waitForMarker(sup.paths('hbad').console, TEST_VM_MARKER); // it boots all the same
      // Steady: more agent rounds and console polls, no new proposal.
      const rounds = async (n: number) => {
        for (let i = 0; i < n; i++) await agent.round();
      };
      await rounds(3);
      await new Promise((r) => setTimeout(r, 1500));
      expect(proposals.sort()).toEqual([
        'hbad false console "never printed by this guest": not seen within 3000 ms of the start',
        `hgood true console "${TEST_VM_MARKER}"`,
      ]);

      desired = () => [];
      agent.poke();
      await until(
        () => sup.get('hgood') === undefined && sup.get('hbad') === undefined,
        30_000,
        'both VMs removed',
      );
      expect(agent.health?.tracked()).toEqual([]);
    },
    BOOT_TIMEOUT_MS * 2,
  );
});

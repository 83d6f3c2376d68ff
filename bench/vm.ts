// Time from "run this VM" to the guest's marker on its serial console, through the node's agent
// and supervisor, beside the same VM started by hand. The guest is the test VM (the host's Debian
// kernel, a busybox initramfs that prints PCR-TEST-VM-READY) under QEMU TCG. Rows:
//
//   by hand, kernel        qemu-system-x86_64 with the exact arguments the qemu backend uses
//   agent, kernel          Agent + Supervisor + qemu backend: from the poke that shows the agent
//                          the desired VM to the marker in the console log
//   by hand, runner        <runner>/bin/microvm-run of a closure built by Nix (already present)
//   agent, runner present  the same closure through the agent and the microvm backend
//
// Every row detects the marker the same way (polling the console file every POLL_MS), so the
// detector's cost cancels out of the difference. Runs alternate between rows to spread drift.
//   vm.run API, present    the `vm.run` request `pcr vm run` sends, to a real node process (Raft
//                          commit, apply, the agent, the supervisor, the microvm backend); the
//                          runner closure is already in that node's store
//   pcr vm run, present    the same through the `pcr` command, Node's start included
//   vm.run API, fetched    on a fresh node whose store is empty: the closure comes from a peer
//
//   npm run bench:vm -- [--runs N] [--json]

import '../node/polyfill.ts';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Agent } from '../node/agent/agent.ts';
import type { DesiredVm } from '../node/agent/reconciler.ts';
import { ApiClient } from '../node/api/client.ts';
import { VM_RUN_DIR } from '../node/daemon.ts';
import { readSecret } from '../node/identity.ts';
import { type VmSpec, validateVmSpec } from '../node/state/vm_spec.ts';
import { microvmBackend } from '../node/vmm/microvm.ts';
import { qemuArgs, qemuBackend } from '../node/vmm/qemu.ts';
import { Supervisor } from '../node/vmm/supervisor.ts';
import { type NodeProc, pcr, secretFileOf, startNode, stop } from '../test/procs.ts';
import { buildTestVm, readConsole, TEST_VM_MARKER, type TestVm } from '../test/vmm/fixture.ts';
import { testVmSpec, vmmsUnder } from '../test/vmm/helpers.ts';
import { buildRunnerClosure } from '../test/vmm/runner.ts';
import { machine, machineLine, parseOptions } from './common.ts';

/** The anchor: orchestration overhead (agent minus by hand, closure present) below this. */
const TARGET_OVERHEAD_MS = 100;
const POLL_MS = 5;
const MARKER_TIMEOUT_MS = 60_000;

interface Sample {
  /** From the start to the marker on the console. */
  readonly markerMs: number;
  /** Agent rows: from the poke to the supervisor's launch of the VMM (the node's own latency). */
  readonly launchMs?: number;
}

interface Row {
  readonly name: string;
  /** The by-hand row this one is compared with (overhead = this - that). */
  readonly baseline?: string;
  /** One measurement; cleans up after itself. */
  readonly once: (run: number) => Promise<Sample>;
}

async function waitMarker(path: string, t0: number): Promise<number> {
  for (;;) {
    if ((await readConsole(path)).includes(TEST_VM_MARKER)) return performance.now() - t0;
    if (performance.now() - t0 > MARKER_TIMEOUT_MS)
      throw new Error(`no marker in ${path} within ${MARKER_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Starts `command` with its output to a fresh console file, as an operator would; kills it after. */
async function byHand(dir: string, command: string, args: readonly string[]): Promise<Sample> {
  const runDir = mkdtempSync(`${dir}-`);
  const consolePath = join(runDir, 'console.log');
  const fd = openSync(consolePath, 'a');
  const t0 = performance.now();
  const child = spawn(
    command,
    args.map((a) => a.replace('@DIR@', runDir)),
    // In its own session, like the supervisor's VMMs: with sched_autogroup on (Debian's default), a
    // session is a CPU scheduling group, and a QEMU sharing the benchmark's group measured 100-150 ms
    // slower or faster depending on what else ran there; that is not orchestration overhead.
    { cwd: runDir, stdio: ['ignore', fd, fd], detached: true },
  );
  closeSync(fd);
  try {
    return { markerMs: await waitMarker(consolePath, t0) };
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await rm(runDir, { recursive: true, force: true });
  }
}

/** Shows the agent one desired VM, measures to the marker, then makes it undesired and waits. */
function throughAgent(
  runRoot: string,
  backends: ConstructorParameters<typeof Supervisor>[0]['backends'],
  specFor: (name: string) => VmSpec,
) {
  return async (run: number): Promise<Sample> => {
    let launchedAt: number | undefined;
    const sup = new Supervisor({
      runDir: runRoot,
      backends,
      // Emitted just before the VMM is spawned: what the node adds before QEMU runs.
      onEvent: (e) => {
        if (e.kind === 'launching') launchedAt ??= performance.now();
      },
    });
    let desired: DesiredVm[] = [];
    const agent = new Agent({
      supervisor: sup,
      stopTimeoutMs: 10_000,
      deps: {
        desiredForThisNode: () => desired,
        report: async () => undefined,
        ensureClosure: async () => undefined,
      },
    });
    agent.start();
    const spec = specFor(`bench-${run}`);
    try {
      const t0 = performance.now();
      desired = [{ name: spec.name, spec, generation: 1, state: 'running' }];
      agent.poke();
      const markerMs = await waitMarker(sup.paths(spec.name).console, t0);
      return { markerMs, ...(launchedAt !== undefined ? { launchMs: launchedAt - t0 } : {}) };
    } finally {
      desired = [];
      agent.poke();
      for (let i = 0; i < 2000 && sup.get(spec.name) !== undefined; i++)
        await new Promise((r) => setTimeout(r, 10));
      await agent.stop();
      await sup.close();
    }
  };
}

/**
 * End-to-end rows on real node processes: node A (runner pushed into its node-local store) and,
 * for the fetched row, a fresh node per run that joins A as a learner.
 */
async function clusterRows(
  root: string,
  runner: string,
): Promise<{ rows: Row[]; close(): Promise<void> }> {
  const nodes: NodeProc[] = [];
  const clients: ApiClient[] = [];
  // One voter: the fresh nodes stay learners, so stopping them never touches the quorum.
  const a = await startNode(root, 'a', ['--store', 'local', '--max-voters', '1']);
  nodes.push(a);
  const secret = await readSecret(secretFileOf(a));
  const ca = await ApiClient.connect(a.addr, secret);
  clients.push(ca);
  const push = await ca.request({ op: 'store.push', path: runner }, 120_000);
  if (!push.ok) throw new Error(`store push: ${push.error.message}`);
  const spec = (name: string) => ({ version: 1, name, runner, memoryMiB: 128 });

  /** Waits for the marker in `node`'s console of `name`, then removes the VM and waits it gone. */
  const measure = async (
    node: NodeProc,
    client: ApiClient,
    name: string,
    t0: number,
  ): Promise<Sample> => {
    const runDir = join(node.dataDir, VM_RUN_DIR);
    try {
      return { markerMs: await waitMarker(join(runDir, name, 'console.log'), t0) };
    } finally {
      await client.request({ op: 'vm.rm', name }, 30_000);
      for (let i = 0; i < 3000 && vmmsUnder(join(runDir, name)).length > 0; i++)
        await new Promise((r) => setTimeout(r, 10));
    }
  };
  const rows: Row[] = [
    {
      name: 'vm.run API, present',
      baseline: 'by hand, runner',
      once: async (run) => {
        const name = `api${run}`;
        const t0 = performance.now();
        const r = await ca.request({ op: 'vm.run', spec: spec(name), node: a.id }, 60_000);
        if (!r.ok) throw new Error(r.error.message);
        return measure(a, ca, name, t0);
      },
    },
    {
      name: 'pcr vm run, present',
      baseline: 'by hand, runner',
      once: async (run) => {
        const name = `cli${run}`;
        const file = join(root, `${name}.json`);
        await writeFile(file, JSON.stringify(spec(name)));
        const t0 = performance.now();
        const cli = pcr([
          'vm',
          'run',
          file,
          '--on',
          a.id,
          '--detach',
          '--addr',
          a.addr,
          '--secret-file',
          secretFileOf(a),
        ]);
        const sample = await measure(a, ca, name, t0).finally(() => cli);
        const r = await cli;
        if (r.exitCode !== 0) throw new Error(`pcr vm run: ${r.stderr}`);
        return sample;
      },
    },
    {
      name: 'vm.run API, fetched',
      once: async (run) => {
        const b = await startNode(root, `b${run}`, [
          '--store',
          'local',
          '--seed',
          a.addr,
          '--secret-file',
          secretFileOf(a),
        ]);
        nodes.push(b);
        const cb = await ApiClient.connect(b.addr, secret);
        try {
          for (let i = 0; ; i++) {
            const st = await cb.request({ op: 'status' }, 5000).catch(() => undefined);
            const me = (
              (st as Record<string, unknown> | undefined)?.members as
                | { id: string; role: string }[]
                | undefined
            )?.find((m) => m.id === b.id);
            if (st?.ok === true && st.leader !== '' && me?.role === 'learner') break;
            if (i > 600) throw new Error('the fresh node did not join');
            await new Promise((r) => setTimeout(r, 50));
          }
          const name = `fetch${run}`;
          const t0 = performance.now();
          const r = await cb.request({ op: 'vm.run', spec: spec(name), node: b.id }, 60_000);
          if (!r.ok) throw new Error(r.error.message);
          return await measure(b, cb, name, t0);
        } finally {
          await cb.close();
          await stop(b);
          await ca.request({ op: 'raft.remove', id: b.id }, 10_000).catch(() => undefined);
        }
      },
    },
  ];
  return {
    rows,
    async close() {
      for (const c of clients) await c.close();
      for (const n of nodes) if (n.child.exitCode === null) await stop(n).catch(() => {});
    },
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2), {
    runs: { default: 5, min: 1, integer: true },
    json: { flag: true },
  });
  const vm: TestVm = await buildTestVm();
  const root = mkdtempSync('/tmp/pcr-bench-vm-');
  const kernelSpec = (name: string): VmSpec => testVmSpec(vm, name);
  const rows: Row[] = [
    {
      name: 'by hand, kernel',
      once: () =>
        byHand(
          join(root, 'hand'),
          'qemu-system-x86_64',
          qemuArgs(kernelSpec('bench'), { accel: 'tcg', qmpSocket: '@DIR@/vmm.sock' }),
        ),
    },
    {
      name: 'agent, kernel',
      baseline: 'by hand, kernel',
      once: throughAgent(
        join(root, 'run-k'),
        { qemu: qemuBackend({ accelerator: 'tcg' }) },
        kernelSpec,
      ),
    },
  ];
  let runner: string | undefined;
  try {
    runner = await buildRunnerClosure(vm, 'bench');
  } catch (e) {
    process.stderr.write(
      `bench: no runner rows (building the runner closure with Nix failed: ${(e as Error).message})\n`,
    );
  }
  let cluster: Awaited<ReturnType<typeof clusterRows>> | undefined;
  if (runner !== undefined) {
    const r = runner;
    cluster = await clusterRows(join(root, 'cluster'), r);
    rows.push(
      {
        name: 'by hand, runner',
        once: () => byHand(join(root, 'hand-r'), join(r, 'bin', 'microvm-run'), []),
      },
      {
        name: 'agent, runner present',
        baseline: 'by hand, runner',
        once: throughAgent(join(root, 'run-r'), { microvm: microvmBackend() }, (name) => {
          const s = validateVmSpec({ version: 1, name, runner: r, memoryMiB: 128 });
          if (!s.ok) throw new Error(s.errors[0]!.message);
          return s.spec;
        }),
      },
      ...cluster.rows,
    );
  }

  const samples = new Map<string, Sample[]>(rows.map((r) => [r.name, []]));
  try {
    for (let run = 0; run < opts.runs; run++) {
      for (const row of rows) samples.get(row.name)!.push(await row.once(run));
    }
  } finally {
    await cluster?.close();
    await rm(root, { recursive: true, force: true });
  }

  const results = rows.map((row) => {
    const xs = samples.get(row.name)!.map((x) => x.markerMs);
    const launch = samples
      .get(row.name)!
      .flatMap((x) => (x.launchMs === undefined ? [] : [x.launchMs]));
    const med = median(xs);
    const base =
      row.baseline === undefined ? undefined : samples.get(row.baseline)!.map((x) => x.markerMs);
    return {
      row: row.name,
      runs: xs.length,
      medianMs: Math.round(med),
      minMs: Math.round(Math.min(...xs)),
      maxMs: Math.round(Math.max(...xs)),
      overheadMs: base === undefined ? null : Math.round(med - median(base)),
      overheadOfMinMs: base === undefined ? null : Math.round(Math.min(...xs) - Math.min(...base)),
      launchMedianMs: launch.length === 0 ? null : Number(median(launch).toFixed(1)),
      targetOverheadMs: base === undefined ? null : TARGET_OVERHEAD_MS,
    };
  });
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ machine: machine(), results }, null, 2)}\n`);
    return;
  }
  const cols: [string, number][] = [
    ['median ms', 11],
    ['min', 7],
    ['max', 7],
    ['overhead (median)', 19],
    ['overhead (min)', 16],
    ['poke->spawn ms', 16],
  ];
  process.stdout.write(
    `${machineLine(machine(), `QEMU TCG, kernel ${vm.kernelVersion}, ${opts.runs} runs per row`)}\n\n`,
  );
  process.stdout.write(
    `${'row'.padEnd(24)}${cols.map(([c, w]) => c.padStart(w)).join('')}  target\n`,
  );
  const cell = (v: number | null, w: number) => (v === null ? '' : String(v)).padStart(w);
  for (const r of results) {
    const vals = [r.medianMs, r.minMs, r.maxMs, r.overheadMs, r.overheadOfMinMs, r.launchMedianMs];
    process.stdout.write(
      `${r.row.padEnd(24)}${vals.map((v, k) => cell(v, cols[k]![1])).join('')}  ${r.targetOverheadMs === null ? '' : `< ${r.targetOverheadMs}`}\n`,
    );
  }
  process.stdout.write(
    '\noverhead = agent row minus its by-hand row. A TCG boot varies by hundreds of ms between runs on a\n' +
      "shared machine (seconds under load); poke->spawn is the node's own latency before the VMM is spawned.\n",
  );
}

await main();

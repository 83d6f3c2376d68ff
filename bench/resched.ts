// Reschedule latency on real processes (issue 14): a 3-node cluster runs one runner VM placed by
// the cluster; kill -9 of its node's daemon and VMMs (a machine crash), then the time until the VM
// runs on another node, as `pcr vm list` reports it. The killed node is started again before the
// next run. Printed beside --node-down-after (the detection bound the time must include) and the
// bare start time of the same VM through `pcr vm run` on nodes that hold its closure (CLI start,
// commit, placement, boot, and `pcr`'s 250 ms polling): latency - node-down-after is what
// placement and the boot take once the node is declared down.
//
//   npm run bench:resched -- [--runs 5] [--down-after-s 7]

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { VM_RUN_DIR } from '../node/daemon.ts';
import {
  closeClients,
  kill9,
  type NodeProc,
  pcr,
  secretFileOf,
  startNode,
  until,
} from '../test/procs.ts';
import { buildTestVm } from '../test/vmm/fixture.ts';
import { sweep, vmmsUnder } from '../test/vmm/helpers.ts';
import { buildRunnerClosure } from '../test/vmm/runner.ts';
import { formatTable, machine, machineLine, parseOptions } from './common.ts';

const opts = parseOptions(process.argv.slice(2), {
  runs: { default: 5, min: 1, integer: true },
  'down-after-s': { default: 7, min: 7, integer: true },
});
const WAIT_MS = 180_000;

interface Row {
  name: string;
  node: string;
  state: string;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const base = await mkdtemp('/tmp/pcr-rsb-');
  const procs: NodeProc[] = [];
  const downAfterS = opts['down-after-s'];
  // fence-after: the largest whole second the fencing inequality allows (docs/scheduling.md).
  const fenceAfterS = Math.max(1, Math.floor(downAfterS / 1.05 - 2 - 0.3 - 3 - 0.01));
  const lifecycle = ['--node-down-after', `${downAfterS}s`, '--fence-after', `${fenceAfterS}s`];
  try {
    const vm = await buildTestVm();
    const runner = await buildRunnerClosure(vm, `pcr-rsb-${Date.now()}`);
    const start = (name: string, seed?: NodeProc) =>
      startNode(base, name, [
        '--name',
        name,
        '--store',
        'local',
        ...(seed !== undefined ? ['--seed', seed.addr, '--secret-file', secretFileOf(seed)] : []),
        ...lifecycle,
      ]);
    const a = await start('a');
    procs.push(a, await start('b', a), await start('c', a));
    const cli = (args: string[]) =>
      pcr([...args, '--addr', a.addr, '--secret-file', secretFileOf(a)], WAIT_MS);
    const threeReady = (what: string) =>
      until(
        async () => {
          const r = await cli(['node', 'list', '--json']);
          const nodes = r.exitCode === 0 ? (JSON.parse(r.stdout) as { status: string }[]) : [];
          return nodes.length === 3 && nodes.every((n) => n.status === 'ready') ? true : undefined;
        },
        WAIT_MS,
        what,
      );
    await threeReady('three ready nodes');
    // Every node holds the closure: the reschedule measures detection, placement and boot.
    for (const p of procs) {
      const r = await cli(['store', 'push', runner, '--to', p.id]);
      if (r.exitCode !== 0) throw new Error(`store push: ${r.stderr}`);
    }
    const spec = join(base, 'r.json');
    // Never on a: it serves the client.
    await writeFile(
      spec,
      JSON.stringify({
        version: 1,
        name: 'r',
        runner,
        memoryMiB: 128,
        constraints: [{ attribute: 'name', operator: '!=', value: 'a' }],
      }),
    );
    const t0 = performance.now();
    const run = await cli(['vm', 'run', spec]);
    if (run.exitCode !== 0) throw new Error(`vm run: ${run.stderr}`);
    const bootMs = performance.now() - t0;
    const latencies: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      const rows = JSON.parse((await cli(['vm', 'list', '--json'])).stdout) as Row[];
      const from = rows[0]!.node;
      const victim = procs.find((p) => p.id === from)!;
      const vmms = vmmsUnder(join(victim.dataDir, VM_RUN_DIR));
      const t = performance.now();
      await kill9(victim);
      for (const pid of vmms) process.kill(pid, 'SIGKILL');
      await until(
        async () => {
          const r = await cli(['vm', 'list', '--json']);
          const now = r.exitCode === 0 ? (JSON.parse(r.stdout) as Row[]) : [];
          return now[0]?.state === 'running' && now[0].node !== from ? true : undefined;
        },
        WAIT_MS,
        'the VM running elsewhere',
      );
      latencies.push(performance.now() - t);
      // The crashed machine comes back (same data dir) before the next run.
      await sweep(join(victim.dataDir, VM_RUN_DIR));
      const back = await start(victim.name, a);
      procs[procs.indexOf(victim)] = back;
      await threeReady(`${victim.name} ready again`);
    }
    const m = median(latencies);
    console.log(
      `bench:resched: ${machineLine(machine(), 'three node processes and QEMU TCG share them')}`,
    );
    console.log(
      `kill -9 of the VM's node (daemon and VMMs) until it runs elsewhere; ${opts.runs} runs; closure present on every node\n`,
    );
    console.log(
      formatTable(
        [
          'median',
          'runs',
          'node-down-after',
          'bare start (vm run, closure present)',
          'after detection (median - node-down-after)',
        ],
        [
          [
            `${(m / 1000).toFixed(2)} s`,
            latencies.map((x) => (x / 1000).toFixed(2)).join(' '),
            `${downAfterS} s (fence-after ${fenceAfterS} s)`,
            `${(bootMs / 1000).toFixed(2)} s`,
            `${((m - downAfterS * 1000) / 1000).toFixed(2)} s`,
          ],
        ],
      ),
    );
  } finally {
    await closeClients();
    for (const p of procs) if (p.child.exitCode === null) await kill9(p).catch(() => {});
    for (const p of procs) await sweep(join(p.dataDir, VM_RUN_DIR));
    await rm(base, { recursive: true, force: true });
  }
}

await main();

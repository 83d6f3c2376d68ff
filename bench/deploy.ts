// What a rolling update costs beyond the boots it is made of (issue 19): a deployment of 10
// instances updated with maxParallel 2 (5 waves), two ways, from one run.
//  (a) In the simulator (sim/rollout-run.ts runRolloutTiming): the product's placement and rollout
//      duties and agents over simulated VMMs whose boots take exactly --boot-ms; the rollout's
//      virtual time beside 5 waves x the boot, and 5 waves x (boot + minHealthyMs).
//  (b) On real processes: --nodes node processes sharing the machine's Nix store (by default as
//      many as 10 one-vcpu instances need: placement never overcommits cpus, and each node offers
//      the machine's cores, so 5 nodes on a 2-core machine, 1 on a 10-core one), a test flake whose runner is a labelled stand-in for a hypervisor (it prints "web ready" and
//      sleeps; test/deploy/flakes.ts) behind a console health check. First the same instances
//      started without a rollout, one after the other: `pcr vm run` of each, until the node
//      reports it healthy (its bare boot); then `pcr deploy` of v1, and of v2, whose rollout's wall
//      time (from the rollout's start in the member's table to its success, polled every 50 ms) is
//      printed beside the sum of the bare boots and 5 waves x (median bare boot + minHealthyMs).
//
//   npm run bench:deploy -- [--nodes N] [--min-healthy-ms 500] [--boot-ms 1000]

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { VM_RUN_DIR } from '../node/daemon.ts';
import type { Deployment } from '../node/state/deployments.ts';
import type { VmEntry } from '../node/state/vms.ts';
import { runRolloutTiming } from '../sim/rollout-run.ts';
import { standInRunnerScript, writeTestFlake } from '../test/deploy/flakes.ts';
import {
  closeClients,
  type NodeProc,
  PCR,
  request,
  startCluster,
  stop,
  until,
} from '../test/procs.ts';
import { nixEnv } from '../test/tools.ts';
import { sweep } from '../test/vmm/helpers.ts';
import { formatTable, machine, machineLine, parseOptions } from './common.ts';

const COUNT = 10;
const opts = parseOptions(process.argv.slice(2), {
  nodes: { default: Math.ceil(COUNT / availableParallelism()), min: 1, integer: true },
  'min-healthy-ms': { default: 500, min: 0, integer: true },
  'boot-ms': { default: 1000, min: 1, integer: true },
});
const MAX_PARALLEL = 2;
const WAVES = Math.ceil(COUNT / MAX_PARALLEL);
const WAIT_MS = 180_000;
const POLL_MS = 50;

const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}x`;

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function simulated(): Promise<string> {
  const bootMs = opts['boot-ms'];
  const minHealthyMs = opts['min-healthy-ms'];
  const t = await runRolloutTiming({
    seed: 1,
    count: COUNT,
    maxParallel: MAX_PARALLEL,
    minHealthyMs,
    bootMs,
    stopMs: 100,
  });
  return formatTable(
    [
      '(a) simulated, 5 nodes',
      'rollout (virtual)',
      `${WAVES} waves x boot`,
      'ratio',
      `${WAVES} x (boot + minHealthy)`,
      'ratio',
      'steps',
    ],
    [
      [
        `boot ${bootMs} ms, stop 100 ms`,
        s(t.rolloutMs),
        s(WAVES * bootMs),
        ratio(t.rolloutMs, WAVES * bootMs),
        s(WAVES * (bootMs + minHealthyMs)),
        ratio(t.rolloutMs, WAVES * (bootMs + minHealthyMs)),
        String(t.steps),
      ],
    ],
  );
}

const deployment = (minHealthyMs: number) => `web = {
  spec = { version = 1; runner = "\${runner}"; memoryMiB = 32; count = ${COUNT}; allowSharing = true;
           health = [ { console = "web ready"; graceMs = 0; } ]; };
  update = { maxParallel = ${MAX_PARALLEL}; minHealthyMs = ${minHealthyMs}; healthyDeadlineMs = 120000;
             progressDeadlineMs = 300000; };
};`;

interface RealFigures {
  rolloutMs: number;
  deployCliMs: number;
  bareMs: number[];
}

async function real(base: string, procs: NodeProc[], dirs: string[]): Promise<RealFigures> {
  const names = Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}`);
  // The machine's Nix store is every node's store: the flake's runner is built once, no push.
  const nodes = await startCluster(base, names, ['--store', 'nix', '--cache', 'off'], procs);
  const n = nodes[0]!;
  await until(
    async () => {
      const r = await request(n, n, { op: 'members' }, 3000).catch(() => undefined);
      const m = r?.ok === true ? (r.members as { addrs: string[] }[]) : [];
      return m.length === nodes.length && m.every((x) => x.addrs.length > 0) ? true : undefined;
    },
    WAIT_MS,
    'every node in the member table',
  );
  const flake = async (line: string) => {
    const f = await writeTestFlake({
      deployments: deployment(opts['min-healthy-ms']),
      runnerScript: standInRunnerScript(line),
    });
    dirs.push(f.dir);
    return f.dir;
  };
  const v1 = await flake('web ready v1');
  const v2 = await flake('web ready v2');
  const deploy = async (dir: string, extra: string[] = []) => {
    const r = await execa(
      PCR,
      ['deploy', `${dir}#web`, '--json', '--data-dir', n.dataDir, ...extra],
      {
        env: nixEnv(),
        reject: false,
        stdin: 'ignore',
      },
    );
    if (r.exitCode !== 0) throw new Error(`pcr deploy: ${r.stderr}`);
    return JSON.parse(String(r.stdout)) as { spec: { runner: string } };
  };
  const get = async () =>
    (await request(n, n, { op: 'deploy.get', name: 'web' }, 5000)) as {
      ok: boolean;
      deployment?: Deployment;
    };
  const settled = (to: number) =>
    until(
      async () => {
        const d = (await get().catch(() => undefined))?.deployment;
        if (d?.rollout?.to !== to) return undefined;
        if (d.rollout.state === 'failed') throw new Error(`v${to} failed: ${d.rollout.reason}`);
        return d.rollout.state === 'succeeded' ? { d, atMs: Date.now() } : undefined;
      },
      WAIT_MS,
      `the rollout to v${to}`,
      POLL_MS,
    );

  // The bare instances first (the rollout's instances take every cpu): v1's runner, built by a
  // dry run, is the same stand-in v2's is.
  const runner = (await deploy(v1, ['--dry-run'])).spec.runner;
  const bareMs = await bareBoots(base, n, runner);
  await deploy(v1);
  await settled(1);

  const t0 = performance.now();
  await deploy(v2);
  const deployCliMs = performance.now() - t0;
  const { d, atMs } = await settled(2);
  return { rolloutMs: atMs - d.rollout!.startedAtMs, deployCliMs, bareMs };
}

/** `pcr vm run` of each instance alone, one after the other, until its node reports it healthy. */
async function bareBoots(base: string, n: NodeProc, runner: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < COUNT; i++) {
    const name = `bare-${i}`;
    const file = join(base, `${name}.json`);
    await writeFile(
      file,
      JSON.stringify({
        version: 1,
        name,
        runner,
        memoryMiB: 32,
        health: [{ console: 'web ready', graceMs: 0 }],
      }),
    );
    const t = performance.now();
    const r = await execa(PCR, ['vm', 'run', file, '--data-dir', n.dataDir], {
      reject: false,
      stdin: 'ignore',
    });
    if (r.exitCode !== 0) throw new Error(`pcr vm run: ${r.stderr}`);
    await until(
      async () => {
        const g = await request(n, n, { op: 'vm.get', name }, 5000).catch(() => undefined);
        const v = g?.ok === true ? (g.vm as VmEntry) : undefined;
        return v?.health?.healthy === true && v.health.generation === v.generation
          ? true
          : undefined;
      },
      WAIT_MS,
      `${name} healthy`,
      POLL_MS,
    );
    out.push(performance.now() - t);
    const rmr = await execa(PCR, ['vm', 'rm', name, '--data-dir', n.dataDir], {
      reject: false,
      stdin: 'ignore',
    });
    if (rmr.exitCode !== 0) throw new Error(`pcr vm rm: ${rmr.stderr}`);
  }
  return out;
}

function realTable(f: RealFigures): string {
  const sum = f.bareMs.reduce((a, b) => a + b, 0);
  const waves = WAVES * (median(f.bareMs) + opts['min-healthy-ms']);
  return formatTable(
    [
      `(b) real, ${opts.nodes} node${opts.nodes > 1 ? 's' : ''}`,
      'rollout (wall)',
      `sum of ${COUNT} bare boots`,
      'ratio',
      `${WAVES} x (median boot + minHealthy)`,
      'ratio',
      'pcr deploy (eval, build, push, submit)',
    ],
    [
      [
        `minHealthy ${opts['min-healthy-ms']} ms`,
        s(f.rolloutMs),
        s(sum),
        ratio(f.rolloutMs, sum),
        s(waves),
        ratio(f.rolloutMs, waves),
        s(f.deployCliMs),
      ],
    ],
  );
}

async function main(): Promise<void> {
  if (opts.nodes * availableParallelism() < COUNT) {
    process.stderr.write(
      `bench: ${COUNT} one-vcpu instances need --nodes >= ${Math.ceil(COUNT / availableParallelism())} here (each node offers the machine's ${availableParallelism()} cores)\n`,
    );
    process.exit(2);
  }
  const base = await mkdtemp('/tmp/pcr-dpb-');
  const procs: NodeProc[] = [];
  const dirs: string[] = [base];
  try {
    const sim = await simulated();
    const f = await real(base, procs, dirs);
    console.log(
      `bench:deploy: ${machineLine(machine(), 'loaded: a stress run of the suite shares it; the real figures are noisy')}`,
    );
    console.log(
      `a rollout of ${COUNT} instances, maxParallel ${MAX_PARALLEL} (${WAVES} waves); the duty evaluates on every applied change, when a decision changes by time alone (an instance reaching minHealthyMs, a deadline), and every 1 s as a backstop\n`,
    );
    console.log(sim);
    console.log('');
    console.log(realTable(f));
    console.log(
      `\nbare boots (pcr vm run until healthy): ${f.bareMs.map((x) => (x / 1000).toFixed(2)).join(' ')} s`,
    );
  } finally {
    await closeClients();
    for (const p of procs) if (p.child.exitCode === null) await stop(p).catch(() => {});
    for (const p of procs) await sweep(join(p.dataDir, VM_RUN_DIR));
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
}

await main();

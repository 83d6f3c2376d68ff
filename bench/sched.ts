// The placement function alone (node/sched/place.ts), in one process, no I/O:
//
// 1. Throughput: placements per second of place() on 5,000 simulated nodes (mixed capacities,
//    3 zones, two arches, disk and rack labels) for a batch of VM groups with constraints, with
//    and without a spread over zones. Each round is one place() call over the whole batch (the
//    running view, the class cache and the shuffle are part of the cost). Anchors: Nomad C1M
//    (1M containers on 5,000 nodes in under 5 minutes: 3,750/s), Nomad C2M (about 1,500/s) and
//    kube-scheduler_perf's thresholds at 5,000 nodes (680-810 pods/s).
// 2. Packing: nodes used by bin-pack against first-fit-decreasing (FFD) on a mixed workload,
//    with the lower bound ceil(max(sum cpus / node cpus, sum memory / node memory)).
// 3. Through the replicated state: 10,000 instances (100 groups of 100) submitted as vm.put to
//    three replicas of the state machine (the members of a 3-node cluster, in one process: no
//    network, no disk), placed by the leader's evaluation (node/sched/evaluate.ts) in vm.place
//    batches that every replica applies with the apply-time re-check (checkPlan). Time until all
//    are placed, and how much of it the re-check at apply takes.
//
//   npm run bench:sched -- [--nodes N] [--rounds N] [--instances N] [--seed N]

import { performance } from 'node:perf_hooks';
import { evaluate } from '../node/sched/evaluate.ts';
import { place } from '../node/sched/place.ts';
import type { ClusterView, Demand, Resources } from '../node/sched/types.ts';
import { type Command, StateMachine } from '../node/state/machine.ts';
import { pendingDemands } from '../node/state/view.ts';
import { placedInstance, VM_PLACE_BATCH_MAX } from '../node/state/vms.ts';
import { cluster, demand, eq, node } from '../test/sched/fixture.ts';
import { fmtInt, formatTable, machine, machineLine, parseOptions } from './common.ts';

const TARGET_PLACEMENTS_PER_S = 10_000;
const NOMAD_C1M_PER_S = 3_750;
const NOMAD_C2M_PER_S = 1_500;
const KUBE_PERF_PER_S: readonly [number, number] = [680, 810];
const GROUP_COUNT = 20;
const WARMUP_ROUNDS = 3;
const PACK_NODE: Resources = { cpus: 32, memoryMiB: 131_072 };
/** The mixed workload's shapes: small, cpu-heavy, memory-heavy, big. */
const SHAPES: readonly Resources[] = [
  { cpus: 1, memoryMiB: 512 },
  { cpus: 2, memoryMiB: 4096 },
  { cpus: 8, memoryMiB: 8192 },
  { cpus: 2, memoryMiB: 32_768 },
  { cpus: 4, memoryMiB: 16_384 },
  { cpus: 16, memoryMiB: 65_536 },
];

const opts = parseOptions(process.argv.slice(2), {
  nodes: { default: 5000, min: 1, integer: true },
  rounds: { default: 5, min: 1, integer: true },
  instances: { default: 5000, min: 1, integer: true },
  seed: { default: 1, min: 0, integer: true },
});

type Preference = 'none' | 'spread' | 'affinity';

function workload(instances: number, preference: Preference): Demand[] {
  const out: Demand[] = [];
  for (let g = 0; g * GROUP_COUNT < instances; g++) {
    out.push(
      demand(`g${g}`, {
        count: Math.min(GROUP_COUNT, instances - g * GROUP_COUNT),
        resources: SHAPES[g % 3]!,
        constraints: [
          eq('arch', 'x86_64'),
          {
            attribute: 'label.disk',
            operator: 'in',
            value: g % 2 === 0 ? ['ssd'] : ['ssd', 'hdd'],
          },
        ],
        ...(preference === 'spread' ? { spread: { attribute: 'label.zone', weight: 50 } } : {}),
        ...(preference === 'affinity'
          ? {
              affinities: [
                {
                  attribute: 'label.rack',
                  operator: '=' as const,
                  value: `r${g % 40}`,
                  weight: 50,
                },
              ],
            }
          : {}),
      }),
    );
  }
  return out;
}

interface Throughput {
  readonly name: string;
  readonly placed: number;
  readonly perS: number;
  /** Per second of this process's CPU time: less sensitive to other load on a shared machine. */
  readonly perCpuS: number;
  readonly scoredPerPlacement: number;
}

function throughput(name: string, view: ClusterView, demands: readonly Demand[]): Throughput {
  const rates: number[] = [];
  const cpuRates: number[] = [];
  let placed = 0;
  let scored = 0;
  for (let k = 0; k < opts.rounds; k++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const r = place(view, demands, opts.seed + k);
    const c = process.cpuUsage(c0);
    const s = (performance.now() - t0) / 1000;
    placed = r.placements.length;
    scored = r.placements.reduce((sum, p) => sum + p.scored, 0) / Math.max(1, placed);
    rates.push(placed / s);
    cpuRates.push(placed / ((c.user + c.system) / 1e6));
  }
  return {
    name,
    placed,
    perS: median(rates),
    perCpuS: median(cpuRates),
    scoredPerPlacement: scored,
  };
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function ratio(x: number, anchor: number): string {
  return `${(x / anchor).toFixed(1)}x`;
}

function printThroughput(rows: readonly Throughput[]): void {
  const header = [
    'case',
    'placed',
    'scored/placement',
    'placements/s',
    'per CPU-s',
    'target 10k',
    'Nomad C1M',
    'Nomad C2M',
    'kube 680-810',
  ];
  const cells = rows.map((r) => [
    r.name,
    fmtInt(r.placed),
    r.scoredPerPlacement.toFixed(1),
    fmtInt(r.perS),
    fmtInt(r.perCpuS),
    ratio(r.perS, TARGET_PLACEMENTS_PER_S),
    ratio(r.perS, NOMAD_C1M_PER_S),
    ratio(r.perS, NOMAD_C2M_PER_S),
    `${ratio(r.perS, KUBE_PERF_PER_S[1])}-${ratio(r.perS, KUBE_PERF_PER_S[0])}`,
  ]);
  console.log(formatTable(header, cells));
}

/** A mixed workload in submission order (seeded), one single-instance group per VM. */
function mixed(instances: number, seed: number): Demand[] {
  let x = seed >>> 0 || 1;
  const next = (): number =>
    ((x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0) >>> 16) % SHAPES.length;
  return Array.from({ length: instances }, (_, k) =>
    demand(`v${k}`, { resources: SHAPES[next()]! }),
  );
}

/** First-fit decreasing: the biggest first (by the larger of the two fractions), first node it fits. */
function ffdNodes(demands: readonly Demand[]): number {
  const size = (r: Resources) =>
    Math.max(r.cpus / PACK_NODE.cpus, r.memoryMiB / PACK_NODE.memoryMiB);
  const sorted = [...demands].sort((a, b) => size(b.resources) - size(a.resources));
  const bins: { cpus: number; memoryMiB: number }[] = [];
  for (const d of sorted) {
    const r = d.resources;
    let bin = bins.find(
      (b) => b.cpus + r.cpus <= PACK_NODE.cpus && b.memoryMiB + r.memoryMiB <= PACK_NODE.memoryMiB,
    );
    if (bin === undefined) bins.push((bin = { cpus: 0, memoryMiB: 0 }));
    bin.cpus += r.cpus;
    bin.memoryMiB += r.memoryMiB;
  }
  return bins.length;
}

function packing(instances: number): void {
  const demands = mixed(instances, opts.seed);
  const lower = Math.ceil(
    Math.max(
      demands.reduce((s, d) => s + d.resources.cpus, 0) / PACK_NODE.cpus,
      demands.reduce((s, d) => s + d.resources.memoryMiB, 0) / PACK_NODE.memoryMiB,
    ),
  );
  const ffd = ffdNodes(demands);
  const nodes = Array.from({ length: Math.ceil(lower * 2) }, (_, k) =>
    node(`p${String(k).padStart(5, '0')}`, { capacity: PACK_NODE }),
  );
  const view: ClusterView = { index: 1, nodes, allocations: [], generations: {} };
  const run = (limit: number | undefined, mode: 'binpack' | 'spread'): number => {
    const r = place(
      view,
      demands.map((d) => ({ ...d, packing: mode })),
      opts.seed,
      limit === undefined ? {} : { limit },
    );
    if (r.failures.length > 0) throw new Error(`packing: ${r.failures.length} instances unplaced`);
    return new Set(r.placements.map((p) => p.node)).size;
  };
  const rows: [string, number][] = [
    ['lower bound', lower],
    ['first-fit decreasing', ffd],
    [`bin-pack, sample max(2, ceil(log2 ${nodes.length}))`, run(undefined, 'binpack')],
    ['bin-pack, every node ranked', run(nodes.length, 'binpack')],
    ['spread (for contrast), sample', run(undefined, 'spread')],
  ];
  console.log(
    formatTable(
      ['packing', 'nodes used', 'vs FFD'],
      rows.map(([name, n]) => [name, fmtInt(n), `${(n / ffd).toFixed(3)}x`]),
    ),
  );
  console.log(
    `${fmtInt(instances)} VMs in submission order (6 shapes from 1 cpu/512 MiB to 16 cpus/64 GiB) on ${fmtInt(nodes.length)} nodes of 32 cpus/128 GiB; FFD sorts them first, place() takes them as they come`,
  );
}

function main(): void {
  const view: ClusterView = {
    index: 1,
    nodes: cluster(opts.nodes, 3),
    allocations: [],
    generations: {},
  };
  console.log(`bench:sched: ${machineLine(machine(), 'place() uses one')}`);
  console.log(
    `${fmtInt(opts.nodes)} nodes, ${fmtInt(opts.instances)} instances in groups of ${GROUP_COUNT}, constraints arch = x86_64 and label.disk in [...]; median of ${opts.rounds} rounds\n`,
  );
  const cases: [string, Demand[]][] = [
    ['constraints', workload(opts.instances, 'none')],
    ['constraints + spread over zones', workload(opts.instances, 'spread')],
    ['constraints + affinity to a rack (wider sample)', workload(opts.instances, 'affinity')],
  ];
  // Warm-up of every case before any is measured: the JIT would otherwise bill the first case.
  for (let k = 0; k < WARMUP_ROUNDS; k++) for (const [, ds] of cases) place(view, ds, opts.seed);
  printThroughput(cases.map(([name, ds]) => throughput(name, view, ds)));
  console.log('');
  packing(2000);
  console.log('');
  throughState(100, 100, 500);
}

/** Part 3: `groups` groups of `count` instances through three replicas on `nodes` nodes. */
function throughState(groups: number, count: number, nodes: number): void {
  const replicas = [new StateMachine(), new StateMachine(), new StateMachine()];
  let index = 0;
  let applyMs = 0;
  const apply = (c: Command): void => {
    index++;
    const t = performance.now();
    for (const r of replicas) r.apply(index, c);
    applyMs += performance.now() - t;
  };
  for (let i = 0; i < nodes; i++) {
    const id = `n${String(i).padStart(5, '0')}`;
    apply({ op: 'member.put', member: { id, addrs: [], role: 'voter', name: id } });
    apply({
      op: 'node.register',
      id,
      arch: 'x86_64',
      capacity: { cpus: 64, memoryMiB: 262_144 },
      labels: { zone: `z${i % 3}` },
      backends: ['qemu'],
    });
  }
  const start = performance.now();
  applyMs = 0;
  for (let g = 0; g < groups; g++) {
    apply({
      op: 'vm.put',
      spec: { version: 1, name: `g${g}`, kernel: '/boot/k', memoryMiB: 512, count },
      atMs: 0,
    });
  }
  const leader = replicas[0]!;
  let evaluateMs = 0;
  let batches = 0;
  for (;;) {
    const t = performance.now();
    const view = leader.view();
    const ev = evaluate(
      view,
      pendingDemands(leader.vms),
      () => true,
      () => undefined,
    );
    evaluateMs += performance.now() - t;
    if (ev.placements.length === 0) break;
    for (let i = 0; i < ev.placements.length; i += VM_PLACE_BATCH_MAX) {
      batches++;
      apply({
        op: 'vm.place',
        viewIndex: view.index,
        placements: ev.placements.slice(i, i + VM_PLACE_BATCH_MAX).map(placedInstance),
        atMs: 0,
      });
    }
  }
  const totalMs = performance.now() - start;
  const placed = leader.vms.list().filter((v) => v.node !== '').length;
  const instances = groups * count;
  if (placed !== instances) throw new Error(`placed ${placed} of ${instances}`);
  console.log(
    `through the replicated state: ${fmtInt(instances)} instances (${groups} groups of ${count}) on ${nodes} nodes, 3 replicas, ${batches} vm.place batches of <= ${VM_PLACE_BATCH_MAX}`,
  );
  console.log(
    formatTable(
      [
        'all placed in',
        'instances/s',
        'leader evaluation',
        'apply on 3 replicas (with re-check)',
        'vs target 10,000/s',
      ],
      [
        [
          `${(totalMs / 1000).toFixed(2)} s`,
          fmtInt(Math.round(instances / (totalMs / 1000))),
          `${(evaluateMs / 1000).toFixed(2)} s`,
          `${(applyMs / 1000).toFixed(2)} s`,
          `${(instances / (totalMs / 1000) / TARGET_PLACEMENTS_PER_S).toFixed(2)}x`,
        ],
      ],
    ),
  );
}

main();

// Test and benchmark helpers for node/sched: nodes, demands and views with defaults, and a random
// cluster generator. Not imported by the product.

import type { Affinity, Constraint } from '../../node/sched/constraint.ts';
import type { Allocation, ClusterView, Demand, SchedNode } from '../../node/sched/types.ts';

export function node(id: string, over: Partial<SchedNode> = {}): SchedNode {
  return {
    id,
    name: id,
    arch: 'x86_64',
    capacity: { cpus: 8, memoryMiB: 16_384 },
    labels: {},
    backends: ['qemu', 'microvm'],
    status: 'ready',
    closures: [],
    ...over,
  };
}

export function demand(group: string, over: Partial<Demand> = {}): Demand {
  return {
    group,
    generation: 1,
    count: 1,
    resources: { cpus: 1, memoryMiB: 1024 },
    backend: 'qemu',
    constraints: [],
    affinities: [],
    allowSharing: false,
    packing: 'binpack',
    ...over,
  };
}

export function view(
  nodes: readonly SchedNode[],
  allocations: readonly Allocation[] = [],
  generations: Record<string, number> = {},
): ClusterView {
  return { index: 100, nodes, allocations, generations };
}

export const eq = (attribute: string, value: string): Constraint => ({
  attribute,
  operator: '=',
  value,
});
export const pref = (attribute: string, value: string, weight: number): Affinity => ({
  attribute,
  operator: '=',
  value,
  weight,
});

/** `count` nodes n0000.. over `zones` zones, capacities mixed (4..32 cpus), a few arches and disks. */
export function cluster(count: number, zones = 3): SchedNode[] {
  const out: SchedNode[] = [];
  for (let k = 0; k < count; k++) {
    const cpus = [4, 8, 16, 32][k % 4]!;
    out.push(
      node(`n${String(k).padStart(5, '0')}`, {
        capacity: { cpus, memoryMiB: cpus * 4096 },
        arch: k % 10 === 9 ? 'aarch64' : 'x86_64',
        labels: { zone: `z${k % zones}`, disk: k % 3 === 0 ? 'ssd' : 'hdd', rack: `r${k % 40}` },
      }),
    );
  }
  return out;
}

// The cluster as placement sees it at one Raft index, built from the replicated tables alone (the
// node table and the VM table): the leader's loop, the apply-time re-check (checkPlan inside
// vm.place and vm.put) and `pcr vm plan` all call this, so they agree on the same index.
// Gossip (load) is added by the caller, never here. Pure.

import type { Allocation, ClusterView, SchedNode } from '../sched/types.ts';
import { type NodeTable, statusOf } from './nodes.ts';
import { demandOfRow, type VmEntry, type VmTable } from './vms.ts';

/** `nameOf`: a member's name (its ID when it has none). */
export function clusterView(
  index: number,
  nodes: NodeTable,
  vms: VmTable,
  nameOf: (id: string) => string,
): ClusterView {
  const schedNodes: SchedNode[] = nodes.list().map((n) => ({
    id: n.id,
    name: nameOf(n.id),
    arch: n.arch,
    capacity: n.capacity,
    labels: n.labels,
    backends: n.backends,
    status: statusOf(n),
    closures: [],
  }));
  const allocations: Allocation[] = [];
  const generations: Record<string, number> = {};
  for (const vm of vms.all()) {
    // A deployment's group mid-rollout holds two generations: the newest is the group's.
    generations[vm.group] = Math.max(generations[vm.group] ?? 0, vm.generation);
    if (holdsResources(vm)) {
      allocations.push({
        instance: vm.name,
        group: vm.group,
        node: vm.node,
        resources: { cpus: vm.spec.vcpus, memoryMiB: vm.spec.memoryMiB },
      });
    }
  }
  return { index, nodes: schedNodes, allocations, generations };
}

/**
 * A placed instance counts against its node, running or stopped: a stopped instance keeps its
 * node and its share, so starting it again needs no new placement.
 */
export function holdsResources(vm: VmEntry): boolean {
  return vm.node !== '';
}

/**
 * The groups with instances that want to run and have no node, as demands, oldest generation
 * first (then by name): what the leader's loop places. A group whose rows are at several
 * generations (a deployment mid-rollout: two versions, two specs) gives one demand per generation,
 * each naming its instances.
 */
export function pendingDemands(vms: VmTable): ReturnType<typeof demandOfRow>[] {
  const byKey = new Map<string, VmEntry>();
  const names = new Map<string, string[]>();
  const failedNodes = new Map<string, Record<string, string>>();
  const generationsOf = new Map<string, Set<number>>();
  for (const vm of vms.all()) {
    const gens = generationsOf.get(vm.group) ?? new Set<number>();
    gens.add(vm.generation);
    generationsOf.set(vm.group, gens);
    if (vm.node !== '' || vm.desired !== 'running') continue;
    const key = `${vm.group}\u0000${vm.generation}`;
    if (!byKey.has(key)) byKey.set(key, vm);
    const list = names.get(key);
    if (list === undefined) names.set(key, [vm.name]);
    else list.push(vm.name);
    const last = vm.reschedules?.at(-1);
    if (last !== undefined) {
      const m = failedNodes.get(vm.group) ?? {};
      m[vm.name] = last.node;
      failedNodes.set(vm.group, m);
    }
  }
  return [...byKey.entries()]
    .sort(([, a], [, b]) =>
      a.generation !== b.generation
        ? a.generation - b.generation
        : a.group < b.group
          ? -1
          : a.group > b.group
            ? 1
            : 0,
    )
    .map(([key, vm]) => ({
      ...demandOfRow(vm),
      failedNodes: failedNodes.get(vm.group) ?? {},
      ...(generationsOf.get(vm.group)!.size > 1 ? { instances: names.get(key)!.sort() } : {}),
    }));
}

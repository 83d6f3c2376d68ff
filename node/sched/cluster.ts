// The running view placement works on: the view's nodes sorted by ID (so the caller's order does
// not matter), each node's class, the resources used on each node (committed allocations, then
// each placement of the batch as it is made), the instances of each group per node, and who holds
// which closure. Built once per place() / checkPlan() call in one pass over the view. Pure.

import { attributeValues } from './constraint.ts';
import type { Allocation, ClusterView, SchedNode } from './types.ts';

export interface NodeIndex {
  readonly nodes: readonly SchedNode[];
  readonly pos: ReadonlyMap<string, number>;
  /** Class ID per node: equal arch, backends and labels, equal class. */
  readonly classOf: Int32Array;
  readonly classCount: number;
  readonly usedCpus: Float64Array;
  readonly usedMemoryMiB: Float64Array;
  /** group -> node position -> instances of the group there. */
  readonly groupOnNode: Map<string, Map<number, number>>;
  /** Instances that have a node (committed, or placed earlier in this batch). */
  readonly placed: Set<string>;
  /** closure path -> positions of the nodes holding it, in ID order. */
  readonly holders: ReadonlyMap<string, readonly number[]>;
  /** attribute -> each node's first value of it (spread), filled on first use. */
  readonly valuesOf: Map<string, readonly (string | undefined)[]>;
  /** attribute -> the distinct values of ready nodes (spread), filled on first use. */
  readonly readyValues: Map<string, readonly string[]>;
}

export function buildIndex(view: ClusterView): NodeIndex {
  const nodes = [...view.nodes].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const pos = new Map<string, number>();
  nodes.forEach((n, i) => {
    if (pos.has(n.id)) throw new Error(`invariant: node ${n.id} appears twice in the view`);
    pos.set(n.id, i);
  });
  const { classOf, classCount } = classify(nodes);
  const ix: NodeIndex = {
    nodes,
    pos,
    classOf,
    classCount,
    usedCpus: new Float64Array(nodes.length),
    usedMemoryMiB: new Float64Array(nodes.length),
    groupOnNode: new Map(),
    placed: new Set(),
    holders: closureHolders(nodes),
    valuesOf: new Map(),
    readyValues: new Map(),
  };
  for (const a of view.allocations) {
    ix.placed.add(a.instance);
    const i = pos.get(a.node);
    // A node absent from the view was removed: lifecycle releases its VMs; they use nothing here.
    if (i !== undefined) allocate(ix, i, a);
  }
  return ix;
}

/** Counts an allocation against node i (committed, or a placement of this batch). */
export function allocate(ix: NodeIndex, i: number, a: Omit<Allocation, 'node'>): void {
  ix.usedCpus[i]! += a.resources.cpus;
  ix.usedMemoryMiB[i]! += a.resources.memoryMiB;
  let perNode = ix.groupOnNode.get(a.group);
  if (perNode === undefined) ix.groupOnNode.set(a.group, (perNode = new Map()));
  perNode.set(i, (perNode.get(i) ?? 0) + 1);
  ix.placed.add(a.instance);
}

/** Each node's value of a single-valued attribute, computed once per index and attribute. */
export function nodeValues(ix: NodeIndex, attribute: string): readonly (string | undefined)[] {
  let values = ix.valuesOf.get(attribute);
  if (values === undefined) {
    values = ix.nodes.map((n) => attributeValues(attribute, n)[0]);
    ix.valuesOf.set(attribute, values);
  }
  return values;
}

export function instancesOn(ix: NodeIndex, group: string, i: number): number {
  return ix.groupOnNode.get(group)?.get(i) ?? 0;
}

/** The class key is exact (no hash collisions to reason about); it is computed once per node. */
export function classKey(n: SchedNode): string {
  const labels = Object.keys(n.labels)
    .sort()
    .map((k) => `${k}=${n.labels[k]}`);
  return [n.arch, [...n.backends].sort().join(','), labels.join('\u0001')].join('\u0000');
}

function classify(nodes: readonly SchedNode[]): { classOf: Int32Array; classCount: number } {
  const ids = new Map<string, number>();
  const classOf = new Int32Array(nodes.length);
  nodes.forEach((n, i) => {
    const key = classKey(n);
    let id = ids.get(key);
    if (id === undefined) ids.set(key, (id = ids.size));
    classOf[i] = id;
  });
  return { classOf, classCount: ids.size };
}

function closureHolders(nodes: readonly SchedNode[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    for (const c of n.closures) {
      let list = out.get(c);
      if (list === undefined) out.set(c, (list = []));
      list.push(i);
    }
  });
  return out;
}

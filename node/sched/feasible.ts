// Feasibility: whether a node can take one instance of a demand, and if not, the first filter
// that removed it (the name a failure's counts use). Filters that depend only on a node's class
// (backend; constraints on arch, backend and labels) are decided once per (demand, class) and
// cached; status, name constraints, distinctness and resources are per node. Pure.

import { instancesOn, type NodeIndex } from './cluster.ts';
import { type Constraint, constraintText, matches } from './constraint.ts';
import type { Demand } from './types.ts';

/** What feasibility knows about one demand while it is being placed. */
export interface DemandFilters {
  readonly demand: Demand;
  /** Constraints decided per class (all but `name`), with their texts. */
  readonly classConstraints: readonly Constraint[];
  readonly classTexts: readonly string[];
  readonly nameConstraints: readonly Constraint[];
  readonly nameTexts: readonly string[];
  /** class ID -> the filter that removes the class, '' when the class passes. */
  readonly classVerdict: Map<number, string>;
}

export function demandFilters(demand: Demand): DemandFilters {
  const byName = demand.constraints.filter((c) => c.attribute === 'name');
  const byClass = demand.constraints.filter((c) => c.attribute !== 'name');
  return {
    demand,
    classConstraints: byClass,
    classTexts: byClass.map((c) => `constraint ${constraintText(c)}`),
    nameConstraints: byName,
    nameTexts: byName.map((c) => `constraint ${constraintText(c)}`),
    classVerdict: new Map(),
  };
}

/**
 * The first filter that removes node i for one more instance of the demand, or undefined when the
 * node is feasible. Order: status, backend, class constraints, name constraints, distinct, cpu,
 * memory (docs/scheduling.md, "Feasibility").
 */
export function filterNode(ix: NodeIndex, f: DemandFilters, i: number): string | undefined {
  const n = ix.nodes[i]!;
  if (n.status !== 'ready') return 'status';
  const cls = ix.classOf[i]!;
  let verdict = f.classVerdict.get(cls);
  if (verdict === undefined) f.classVerdict.set(cls, (verdict = classFilter(ix, f, i)));
  if (verdict !== '') return verdict;
  for (let k = 0; k < f.nameConstraints.length; k++) {
    if (!matches(f.nameConstraints[k]!, n)) return f.nameTexts[k];
  }
  const d = f.demand;
  if (!d.allowSharing && instancesOn(ix, d.group, i) > 0) return 'distinct';
  if (ix.usedCpus[i]! + d.resources.cpus > n.capacity.cpus) return 'cpu';
  if (ix.usedMemoryMiB[i]! + d.resources.memoryMiB > n.capacity.memoryMiB) return 'memory';
  return undefined;
}

/** The class-level verdict, computed on node i as the class's representative. */
function classFilter(ix: NodeIndex, f: DemandFilters, i: number): string {
  const n = ix.nodes[i]!;
  if (!n.backends.includes(f.demand.backend)) return 'backend';
  for (let k = 0; k < f.classConstraints.length; k++) {
    if (!matches(f.classConstraints[k]!, n)) return f.classTexts[k]!;
  }
  return '';
}

const PHRASES: Record<string, (n: number, backend: string) => string> = {
  status: (n) => `${n} ${nodes(n)} not ready`,
  backend: (n, backend) => `${n} ${nodes(n)} lacked the backend ${backend}`,
  distinct: (n) => `${n} ${nodes(n)} already held an instance of the group`,
  cpu: (n) => `${n} ${nodes(n)} lacked cpus`,
  memory: (n) => `${n} ${nodes(n)} lacked memory`,
};

function nodes(n: number): string {
  return n === 1 ? 'node' : 'nodes';
}

/** "2 nodes lacked memory, 1 filtered by label.zone = a": biggest count first, then by name. */
export function describeFiltered(
  filtered: Readonly<Record<string, number>>,
  backend: string,
): string {
  const entries = Object.entries(filtered).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  if (entries.length === 0) return 'the cluster has no nodes';
  const parts = entries.map(([name, n]) => {
    const phrase = PHRASES[name];
    return phrase !== undefined
      ? phrase(n, backend)
      : `${n} filtered by ${name.slice('constraint '.length)}`;
  });
  return parts.join(', ');
}

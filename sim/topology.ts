// Who can talk to whom. A partition is a list of groups: two nodes are connected iff some group
// holds both (groups may overlap, which expresses non-transitive partitions such as a bridge or a
// ring). Links are symmetric: a cut drops traffic both ways, as Jepsen's grudges mostly do.
//
// The generators follow Jepsen's partition nemeses (jepsen.nemesis): random halves, one node
// isolated, the leader isolated, majorities ring (every node sees a majority, no two the same one)
// and bridge (two halves joined by one node that sees both).

import type { SimRandom } from './random.ts';

export type Groups = readonly (readonly string[])[];

export const PARTITION_MODES = [
  'halves',
  'isolate-one',
  'isolate-leader',
  'majorities-ring',
  'bridge',
] as const;
export type PartitionMode = (typeof PARTITION_MODES)[number];

export function isPartitionMode(x: unknown): x is PartitionMode {
  return typeof x === 'string' && (PARTITION_MODES as readonly string[]).includes(x);
}

/**
 * The groups of a partition of `ids` in this mode. `leader` is the node isolated by
 * 'isolate-leader' (a random node when no leader is known). Groups list nodes in `ids` order.
 */
export function partitionGroups(
  mode: PartitionMode,
  ids: readonly string[],
  random: SimRandom,
  leader?: string,
): string[][] {
  const n = ids.length;
  const order = (g: readonly string[]): string[] => ids.filter((id) => g.includes(id));
  switch (mode) {
    case 'halves': {
      const s = random.shuffle(ids);
      const cut = Math.floor(n / 2);
      return [order(s.slice(0, cut)), order(s.slice(cut))].filter((g) => g.length > 0);
    }
    case 'isolate-one':
    case 'isolate-leader': {
      const alone =
        mode === 'isolate-leader' && leader !== undefined && ids.includes(leader)
          ? leader
          : random.pick(ids);
      return [[alone], ids.filter((id) => id !== alone)].filter((g) => g.length > 0);
    }
    case 'majorities-ring': {
      // A random ring; each node sees the nodes within distance d, where 2d + 1 >= a majority.
      // Windows of d + 1 consecutive nodes cover exactly the pairs at distance <= d.
      const ring = random.shuffle(ids);
      const majority = Math.floor(n / 2) + 1;
      const d = Math.ceil((majority - 1) / 2);
      if (2 * d + 1 >= n) return [order(ids)];
      const groups: string[][] = [];
      for (let i = 0; i < n; i++) {
        const w: string[] = [];
        for (let k = 0; k <= d; k++) w.push(ring[(i + k) % n]!);
        groups.push(order(w));
      }
      return groups;
    }
    case 'bridge': {
      const s = random.shuffle(ids);
      const bridge = s[0]!;
      const rest = s.slice(1);
      const cut = Math.floor(rest.length / 2);
      return [order([bridge, ...rest.slice(0, cut)]), order([bridge, ...rest.slice(cut)])];
    }
  }
}

/** Connectivity among a fixed set of nodes, by index; everything connected initially. */
export class Topology {
  readonly ids: readonly string[];
  private readonly n: number;
  private readonly links: Uint8Array;
  private groupsNow: string[][] | undefined;

  constructor(ids: readonly string[]) {
    this.ids = ids;
    this.n = ids.length;
    this.links = new Uint8Array(this.n * this.n).fill(1);
  }

  /** Whether nodes i and j (indexes into ids) can exchange messages. */
  connected(i: number, j: number): boolean {
    return this.links[i * this.n + j] === 1;
  }

  /** The groups in force, or undefined when healed. */
  get groups(): Groups | undefined {
    return this.groupsNow;
  }

  /** Cuts every link except within groups; a node in no group is isolated. Throws on an unknown id. */
  partition(groups: Groups): void {
    const index = new Map(this.ids.map((id, i) => [id, i]));
    for (const g of groups) {
      for (const id of g) {
        if (!index.has(id)) {
          throw new Error(
            `partition: unknown node ${JSON.stringify(id)} (nodes: ${this.ids.join(', ')})`,
          );
        }
      }
    }
    this.links.fill(0);
    for (let i = 0; i < this.n; i++) this.links[i * this.n + i] = 1;
    for (const g of groups) {
      for (const a of g) {
        for (const b of g) this.links[index.get(a)! * this.n + index.get(b)!] = 1;
      }
    }
    this.groupsNow = groups.map((g) => [...g]);
  }

  heal(): void {
    this.links.fill(1);
    this.groupsNow = undefined;
  }

  /** The nodes each node can reach (itself included), for tests and reports. */
  reachable(id: string): string[] {
    const i = this.ids.indexOf(id);
    return this.ids.filter((_, j) => this.connected(i, j));
  }
}

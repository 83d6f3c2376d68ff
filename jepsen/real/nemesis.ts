// The nemeses as pure plans: given the nodes, the current leader (if known) and a seeded random
// source, what a fault does (which node drops whose packets, which nodes die or stop, how much
// loss). faults.ts carries a plan out on the real namespaces and processes; the plans are tested
// here without root.

import type { RandomSource } from '../../consensus/index.ts';

export const NEMESES = ['partition', 'kill', 'pause', 'loss', 'skew'] as const;
export type NemesisName = (typeof NEMESES)[number];

export const PARTITIONS = ['halves', 'leader', 'ring', 'oneway', 'bridge'] as const;
export type PartitionKind = (typeof PARTITIONS)[number];

/** `node` drops every packet from `from` (a DROP rule in node's INPUT chain). */
export interface Drop {
  readonly node: string;
  readonly from: string;
}

export type Fault =
  | {
      readonly kind: 'partition';
      readonly variant: PartitionKind;
      readonly drops: readonly Drop[];
      /** Who hears whom, for the report: each node, then the peers it receives from. */
      readonly groups: readonly (readonly string[])[];
    }
  | {
      readonly kind: 'kill';
      readonly target: 'random' | 'leader';
      readonly nodes: readonly string[];
    }
  | {
      readonly kind: 'pause';
      readonly target: 'random' | 'leader';
      readonly nodes: readonly string[];
    }
  | { readonly kind: 'loss'; readonly nodes: readonly string[]; readonly probability: number }
  | { readonly kind: 'skew'; readonly nodes: readonly string[]; readonly offsetS: number };

/** Packet loss a `loss` fault applies on each affected node's input (iptables statistic). */
export const LOSS_PROBABILITY = 0.3;
/** Clock offsets a `skew` fault picks from, in seconds (libfaketime's relative offset). */
export const SKEW_OFFSETS_S = [-30, -5, 5, 30, 120] as const;

export function parseNemeses(list: string): NemesisName[] {
  if (list === 'none' || list === '') return [];
  const names = list.split(',').map((s) => s.trim());
  for (const n of names) {
    if (!(NEMESES as readonly string[]).includes(n)) {
      throw new Error(
        `unknown nemesis ${JSON.stringify(n)}: expected ${NEMESES.join(', ')} or none`,
      );
    }
  }
  return [...new Set(names)] as NemesisName[];
}

function shuffled<T>(xs: readonly T[], random: RandomSource): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = random.intn(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

const pick = <T>(xs: readonly T[], random: RandomSource): T => xs[random.intn(xs.length)]!;

/** A minority of nodes, at least one: the most a kill or pause takes at once. */
function minority(nodes: readonly string[], random: RandomSource): string[] {
  const most = Math.max(1, Math.floor((nodes.length - 1) / 2));
  return shuffled(nodes, random).slice(0, 1 + random.intn(most));
}

/** Both directions cut between every node of a and every node of b. */
function cut(a: readonly string[], b: readonly string[]): Drop[] {
  const drops: Drop[] = [];
  for (const x of a) {
    for (const y of b) drops.push({ node: x, from: y }, { node: y, from: x });
  }
  return drops;
}

/** Each node's view: the node first, then the other nodes whose packets it receives. */
export function hears(nodes: readonly string[], drops: readonly Drop[]): string[][] {
  return nodes.map((n) => [
    n,
    ...nodes.filter((m) => m !== n && !drops.some((d) => d.node === n && d.from === m)),
  ]);
}

/**
 * Ring distance within which nodes of a majorities ring hear each other: each node then hears a
 * majority (itself and `d` neighbours on each side), and no two nodes' majorities are the same.
 */
export function ringReach(n: number): number {
  const majority = Math.floor(n / 2) + 1;
  return Math.ceil((majority - 1) / 2);
}

export function planPartition(
  variant: PartitionKind,
  nodes: readonly string[],
  leader: string | undefined,
  random: RandomSource,
): Fault {
  const order = shuffled(nodes, random);
  let drops: Drop[];
  switch (variant) {
    case 'halves': {
      const half = Math.floor(nodes.length / 2);
      drops = cut(order.slice(0, half), order.slice(half));
      break;
    }
    case 'leader': {
      const victim = leader ?? order[0]!;
      drops = cut(
        [victim],
        nodes.filter((n) => n !== victim),
      );
      break;
    }
    case 'ring': {
      const d = ringReach(nodes.length);
      drops = [];
      for (const [i, a] of order.entries()) {
        for (const [j, b] of order.entries()) {
          const dist = Math.min(Math.abs(i - j), nodes.length - Math.abs(i - j));
          if (dist > d) drops.push({ node: a, from: b });
        }
      }
      // Three nodes are all within reach of each other: the ring degenerates to the bridge.
      if (drops.length === 0) return planPartition('bridge', nodes, leader, random);
      break;
    }
    case 'oneway': {
      // The victim hears everyone; nobody hears the victim.
      const victim = leader ?? order[0]!;
      drops = nodes.filter((n) => n !== victim).map((n) => ({ node: n, from: victim }));
      break;
    }
    case 'bridge': {
      const [bridge, ...rest] = order;
      const half = Math.ceil(rest.length / 2);
      drops = cut(rest.slice(0, half), rest.slice(half));
      void bridge;
      break;
    }
  }
  return { kind: 'partition', variant, drops, groups: hears(nodes, drops) };
}

/** Plans one fault of the named nemesis. */
export function planFault(
  name: NemesisName,
  nodes: readonly string[],
  leader: string | undefined,
  random: RandomSource,
): Fault {
  switch (name) {
    case 'partition':
      return planPartition(pick(PARTITIONS, random), nodes, leader, random);
    case 'kill':
    case 'pause': {
      const onLeader = leader !== undefined && random.intn(2) === 0;
      return onLeader
        ? { kind: name, target: 'leader', nodes: [leader] }
        : { kind: name, target: 'random', nodes: minority(nodes, random) };
    }
    case 'loss':
      return {
        kind: 'loss',
        nodes: shuffled(nodes, random).slice(0, 1 + random.intn(nodes.length)),
        probability: LOSS_PROBABILITY,
      };
    case 'skew':
      return {
        kind: 'skew',
        nodes: minority(nodes, random),
        offsetS: pick(SKEW_OFFSETS_S, random),
      };
  }
}

/** One line for the log and the report. */
export function describeFault(f: Fault): string {
  switch (f.kind) {
    case 'partition':
      return `partition ${f.variant}: ${f.groups.map((g) => `${g[0]} hears ${g.slice(1).join('+') || 'nobody'}`).join('; ')}`;
    case 'kill':
      return `kill -9 ${f.target === 'leader' ? 'the leader ' : ''}${f.nodes.join(', ')}`;
    case 'pause':
      return `SIGSTOP ${f.target === 'leader' ? 'the leader ' : ''}${f.nodes.join(', ')}`;
    case 'loss':
      return `drop ${Math.round(f.probability * 100)}% of packets into ${f.nodes.join(', ')}`;
    case 'skew':
      return `clock ${f.offsetS > 0 ? '+' : ''}${f.offsetS}s on ${f.nodes.join(', ')}`;
  }
}

// Ranking: the score of a feasible node for one instance, as a breakdown whose terms are in
// docs/scheduling.md ("Ranking"). Bin-pack (or spread) fit after Nomad's ScoreFit*, anti-affinity
// within a sharing group, affinities, spread across an attribute's values, closure locality and
// the failed-node penalty. Pure; reads the running view, changes nothing.

import { instancesOn, type NodeIndex, nodeValues } from './cluster.ts';
import { matches } from './constraint.ts';
import {
  ANTI_AFFINITY_WEIGHT,
  type Demand,
  FAILED_NODE_PENALTY,
  FIT_SCORE_SPAN,
  LOCALITY_BONUS,
  type ScoreBreakdown,
} from './types.ts';

/** Per-demand ranking state: spread counts per attribute value, kept up to date as it places. */
export interface RankState {
  readonly demand: Demand;
  /** value -> instances of the group on nodes with that value (every value of a ready node). */
  readonly spreadCounts: Map<string, number>;
  /** The fewest instances on any value (kept with the counts: scanning them per node would cost
   * O(values) per score, and `spread` over `name` has a value per node). */
  spreadMin: number;
  /** How many values have spreadMin instances: the minimum moves up only when this reaches 0. */
  spreadAtMin: number;
  /** Nodes that hold the demand's closure. */
  readonly holders: ReadonlySet<number>;
}

export function rankState(ix: NodeIndex, demand: Demand): RankState {
  const spreadCounts =
    demand.spread === undefined ? new Map<string, number>() : initialSpread(ix, demand);
  const holders = new Set(
    demand.closure === undefined ? [] : (ix.holders.get(demand.closure) ?? []),
  );
  const spreadMin = minOf(spreadCounts);
  return {
    demand,
    spreadCounts,
    spreadMin,
    spreadAtMin: countAt(spreadCounts, spreadMin),
    holders,
  };
}

/** Every value of a ready node at 0, plus the group's instances where they are (any status). */
function initialSpread(ix: NodeIndex, demand: Demand): Map<string, number> {
  const values = nodeValues(ix, demand.spread!.attribute);
  let seen = ix.readyValues.get(demand.spread!.attribute);
  if (seen === undefined) {
    seen = [
      ...new Set(
        values.filter((v, i): v is string => v !== undefined && ix.nodes[i]!.status === 'ready'),
      ),
    ];
    ix.readyValues.set(demand.spread!.attribute, seen);
  }
  const counts = new Map<string, number>(seen.map((v) => [v, 0]));
  for (const [i, here] of ix.groupOnNode.get(demand.group) ?? []) {
    const v = values[i];
    if (v !== undefined) counts.set(v, (counts.get(v) ?? 0) + here);
  }
  return counts;
}

/** Records one placement on node i in the spread counts. */
export function noteSpread(ix: NodeIndex, r: RankState, i: number): void {
  if (r.demand.spread === undefined) return;
  const value = nodeValues(ix, r.demand.spread.attribute)[i];
  if (value === undefined) return;
  const before = r.spreadCounts.get(value) ?? 0;
  r.spreadCounts.set(value, before + 1);
  if (before !== r.spreadMin) return;
  r.spreadAtMin--;
  if (r.spreadAtMin > 0) return;
  r.spreadMin = minOf(r.spreadCounts);
  r.spreadAtMin = countAt(r.spreadCounts, r.spreadMin);
}

function countAt(counts: ReadonlyMap<string, number>, m: number): number {
  let k = 0;
  for (const x of counts.values()) if (x === m) k++;
  return k;
}

function minOf(counts: ReadonlyMap<string, number>): number {
  let m = Number.POSITIVE_INFINITY;
  for (const x of counts.values()) if (x < m) m = x;
  return m === Number.POSITIVE_INFINITY ? 0 : m;
}

export function scoreNode(
  ix: NodeIndex,
  r: RankState,
  i: number,
  instance: string,
): ScoreBreakdown {
  const d = r.demand;
  const n = ix.nodes[i]!;
  const fit = fitScore(ix, d, i);
  const collisions = d.allowSharing ? instancesOn(ix, d.group, i) : 0;
  const antiAffinity = collisions > 0 ? (-ANTI_AFFINITY_WEIGHT * collisions) / d.count : 0;
  const affinity = affinityScore(d, n);
  const spread = spreadScore(ix, r, i);
  const locality = r.holders.has(i) ? LOCALITY_BONUS : 0;
  const failedNode = d.failedNodes?.[instance] === n.id ? FAILED_NODE_PENALTY : 0;
  const total = fit + antiAffinity + affinity + spread + locality + failedNode;
  return { fit, antiAffinity, affinity, spread, locality, failedNode, total };
}

/**
 * Nomad's ScoreFitBinPack `20 - (10^freeCpu + 10^freeMem)` (or ScoreFitSpread `total - 2`) over the
 * free fractions left after this instance, divided by its span 18 so it lies in 0..1.
 */
export function fitScore(ix: NodeIndex, d: Demand, i: number): number {
  const cap = ix.nodes[i]!.capacity;
  const freeCpu = 1 - (ix.usedCpus[i]! + d.resources.cpus) / cap.cpus;
  const freeMem = 1 - (ix.usedMemoryMiB[i]! + d.resources.memoryMiB) / cap.memoryMiB;
  const total = 10 ** clamp01(freeCpu) + 10 ** clamp01(freeMem);
  return d.packing === 'binpack' ? (20 - total) / FIT_SCORE_SPAN : (total - 2) / FIT_SCORE_SPAN;
}

/** Sum of the weights of the matching affinities over the sum of their absolute weights. */
export function affinityScore(d: Demand, n: Parameters<typeof matches>[1]): number {
  if (d.affinities.length === 0) return 0;
  let sum = 0;
  let abs = 0;
  for (const a of d.affinities) {
    abs += Math.abs(a.weight);
    if (matches(a, n)) sum += a.weight;
  }
  return sum / abs;
}

/**
 * `weight/100 * (m - c) / (c + 1)`: 0 on a value with the fewest instances (m), less the more the
 * node's value already has; a node without the attribute gets the full `-weight/100`.
 */
export function spreadScore(ix: NodeIndex, r: RankState, i: number): number {
  const spread = r.demand.spread;
  if (spread === undefined) return 0;
  const w = spread.weight / 100;
  const value = nodeValues(ix, spread.attribute)[i];
  if (value === undefined) return -w;
  const c = r.spreadCounts.get(value) ?? 0;
  return (w * (Math.min(r.spreadMin, c) - c)) / (c + 1);
}

function clamp01(x: number): number {
  return Math.min(1, Math.max(0, x));
}

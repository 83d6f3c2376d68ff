// place(view, demands, seed): where each unplaced instance of each VM group goes, or why it fits
// nowhere. Feasibility (feasible.ts), ranking (rank.ts), a bounded sample of the nodes in a
// seeded shuffle, the best by score then load then ID. Instances are placed one at a time against
// the running view, so a batch never overcommits; the result's invariants are asserted before it
// is returned. Pure and deterministic: same view, demands and seed, same result.

import { seededRandom } from '../../consensus/rand.ts';
import { allocate, buildIndex, type NodeIndex } from './cluster.ts';
import { type DemandFilters, demandFilters, describeFiltered, filterNode } from './feasible.ts';
import { noteSpread, type RankState, rankState, scoreNode } from './rank.ts';
import {
  AFFINITY_SAMPLE_NODES,
  type ClusterView,
  type Demand,
  type Failure,
  LOCALITY_CANDIDATES_MAX,
  type Placement,
  type PlaceOptions,
  type PlaceResult,
  SAMPLE_NODES_MIN,
  type ScoreBreakdown,
} from './types.ts';

/** Instance names of a group: the group's own name when it has one instance, else `web-0`, `web-1`, ... */
export function instanceName(group: string, k: number, count: number): string {
  return count === 1 ? group : `${group}-${k}`;
}

export function place(
  view: ClusterView,
  demands: readonly Demand[],
  seed: number,
  options: PlaceOptions = {},
): PlaceResult {
  const result = choosePlacements(view, demands, seed, options, filterNode);
  assertPlacements(view, demands, result.placements);
  return result;
}

/** The feasibility place() uses; a parameter so a test can plant a broken one (see the tests). */
export type Feasibility = typeof filterNode;

/** place() without its result assertions, over a given feasibility. */
export function choosePlacements(
  view: ClusterView,
  demands: readonly Demand[],
  seed: number,
  options: PlaceOptions,
  feasible: Feasibility,
): PlaceResult {
  const ix = buildIndex(view);
  const walk: Walk = { order: shuffled(ix.nodes.length, seed), cursor: 0, feasible };
  const placements: Placement[] = [];
  const failures: Failure[] = [];
  for (const d of demands) {
    assertDemand(d);
    placeGroup(ix, walk, d, sampleLimit(ix.nodes.length, d, options), placements, failures);
  }
  return { index: view.index, placements, failures };
}

/**
 * Why a demand could not be placed even on this cluster emptied of VMs (resources above every
 * node's capacity, constraints no node satisfies, more instances than nodes that could hold a
 * non-sharing group), or undefined when it could: the check at submission, before committing.
 */
export function unplaceable(view: ClusterView, demand: Demand): string | undefined {
  const empty: ClusterView = { ...view, allocations: [] };
  const result = place(empty, [demand], 0, { limit: 1 });
  const failure = result.failures[0];
  return failure === undefined ? undefined : `even with no VM placed, ${failure.message}`;
}

/** Nomad's max(2, ceil(log2 N)); wider for groups with affinities (docs: "Bounded sample"). */
export function sampleLimit(nodeCount: number, d: Demand, options: PlaceOptions): number {
  if (options.limit !== undefined) return Math.max(1, options.limit);
  const base = Math.max(SAMPLE_NODES_MIN, Math.ceil(Math.log2(Math.max(1, nodeCount))));
  // A spread needs no wider sample: its counts are over the whole cluster, so a sample only has
  // to contain a node of the least-used value, which 13 random nodes do for a handful of zones
  // (and the next instance corrects a miss). An affinity to a rare class needs the wider look.
  return d.affinities.length > 0 ? Math.max(base, AFFINITY_SAMPLE_NODES) : base;
}

interface Walk {
  readonly order: Int32Array;
  /** Where the next instance starts looking: consecutive instances see fresh nodes. */
  cursor: number;
  readonly feasible: Feasibility;
}

function placeGroup(
  ix: NodeIndex,
  walk: Walk,
  d: Demand,
  limit: number,
  placements: Placement[],
  failures: Failure[],
): void {
  const filters = demandFilters(d);
  const rank = rankState(ix, d);
  let failed: Failure | undefined;
  for (const instance of demandInstances(d)) {
    if (ix.placed.has(instance)) continue;
    // Resources only shrink and distinct nodes only get fewer within a batch: once one instance
    // of the group fits nowhere, the next cannot either, and a second full scan would be waste.
    if (failed !== undefined) {
      failures.push({
        ...failed,
        instance,
        message: `${instance}${failed.message.slice(failed.instance.length)}`,
      });
      continue;
    }
    const choice = choose(ix, walk, filters, rank, instance, limit);
    if ('filtered' in choice) {
      failed = {
        instance,
        group: d.group,
        filtered: choice.filtered,
        message: `${instance}: no node fits: ${describeFiltered(choice.filtered, d.backend)}`,
      };
      failures.push(failed);
      continue;
    }
    const node = ix.nodes[choice.i]!;
    allocate(ix, choice.i, { instance, group: d.group, resources: d.resources });
    noteSpread(ix, rank, choice.i);
    placements.push({
      instance,
      group: d.group,
      generation: d.generation,
      node: node.id,
      resources: d.resources,
      score: choice.score,
      scored: choice.scored,
    });
  }
}

type Choice =
  | { readonly i: number; readonly score: ScoreBreakdown; readonly scored: number }
  | { readonly filtered: Readonly<Record<string, number>> };

interface Best {
  i: number;
  score: ScoreBreakdown | undefined;
  scored: number;
}

/**
 * Ranks up to LOCALITY_CANDIDATES_MAX closure holders, then walks the shuffled order from the
 * cursor until `limit` feasible nodes were ranked or every node was looked at once (the full-scan
 * fallback: then the filter counts cover every node).
 */
function choose(
  ix: NodeIndex,
  walk: Walk,
  f: DemandFilters,
  r: RankState,
  instance: string,
  limit: number,
): Choice {
  const best: Best = { i: -1, score: undefined, scored: 0 };
  const ranked = rankHolders(ix, walk, f, r, instance, best);
  const n = walk.order.length;
  let looked = 0;
  let sampled = 0;
  while (sampled < limit && looked < n) {
    const i = walk.order[(walk.cursor + looked) % n]!;
    looked++;
    if (walk.feasible(ix, f, i) !== undefined) continue;
    sampled++;
    if (!ranked.has(i)) consider(ix, r, i, instance, best);
  }
  walk.cursor = n === 0 ? 0 : (walk.cursor + looked) % n;
  if (best.score === undefined) return { filtered: countFiltered(ix, walk, f) };
  return { i: best.i, score: best.score, scored: best.scored };
}

/**
 * How many nodes each filter removed. Only after a walk found nothing (then it looked at every
 * node, and nothing changed since), so the hot path does not pay for counting.
 */
function countFiltered(ix: NodeIndex, walk: Walk, f: DemandFilters): Record<string, number> {
  const filtered: Record<string, number> = {};
  for (let i = 0; i < ix.nodes.length; i++) {
    const why = walk.feasible(ix, f, i);
    if (why !== undefined) filtered[why] = (filtered[why] ?? 0) + 1;
  }
  return filtered;
}

const NONE: ReadonlySet<number> = new Set();

function rankHolders(
  ix: NodeIndex,
  walk: Walk,
  f: DemandFilters,
  r: RankState,
  instance: string,
  best: Best,
): ReadonlySet<number> {
  const holders = f.demand.closure === undefined ? undefined : ix.holders.get(f.demand.closure);
  if (holders === undefined) return NONE;
  const ranked = new Set<number>();
  for (const i of holders) {
    if (ranked.size >= LOCALITY_CANDIDATES_MAX) break;
    if (walk.feasible(ix, f, i) !== undefined) continue;
    ranked.add(i);
    consider(ix, r, i, instance, best);
  }
  return ranked;
}

function consider(ix: NodeIndex, r: RankState, i: number, instance: string, best: Best): void {
  const score = scoreNode(ix, r, i, instance);
  best.scored++;
  if (best.score === undefined || better(ix, i, score.total, best.i, best.score.total)) {
    best.i = i;
    best.score = score;
  }
}

/** Higher score; on an exact tie the lower gossiped load (both known), then the lower node ID. */
function better(ix: NodeIndex, i: number, total: number, j: number, bestTotal: number): boolean {
  if (total !== bestTotal) return total > bestTotal;
  const li = ix.nodes[i]!.load;
  const lj = ix.nodes[j]!.load;
  if (li !== undefined && lj !== undefined && li !== lj) return li < lj;
  return i < j; // nodes are sorted by ID
}

/** A Fisher-Yates shuffle of 0..n-1 with the seeded PRNG: the seed alone decides the sample. */
function shuffled(n: number, seed: number): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const random = seededRandom(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = random.intn(i + 1);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}

/** The instances a demand places: its explicit list, else every instance of the group's count. */
export function demandInstances(d: Demand): readonly string[] {
  if (d.instances !== undefined) return d.instances;
  return Array.from({ length: d.count }, (_, k) => instanceName(d.group, k, d.count));
}

function assertDemand(d: Demand): void {
  // Demands are built from validated specs: a bad one here is a bug of the caller, not input.
  if (!(Number.isSafeInteger(d.count) && d.count >= 0))
    throw new Error(`invariant: ${d.group}: count ${d.count}`);
  if (!(d.resources.cpus > 0 && d.resources.memoryMiB > 0))
    throw new Error(`invariant: ${d.group}: resources must be positive`);
}

/**
 * The result's safety, recomputed from the view and the placements alone (not from the running
 * view that produced them): no node that received a placement is over capacity; no instance is
 * placed twice or beyond its group's count; no two instances of a non-sharing group share a node.
 */
export function assertPlacements(
  view: ClusterView,
  demands: readonly Demand[],
  placements: readonly Placement[],
): void {
  const used = new Map<string, { cpus: number; memoryMiB: number }>();
  const groupNode = new Set<string>();
  const instances = new Set(view.allocations.map((a) => a.instance));
  // A group mid-rollout has one demand per version (generation): look a placement's up by both.
  const byKey = new Map(demands.map((d) => [`${d.group}\u0000${d.generation}`, d]));
  const add = (node: string, group: string, cpus: number, memoryMiB: number): void => {
    const u = used.get(node) ?? { cpus: 0, memoryMiB: 0 };
    used.set(node, { cpus: u.cpus + cpus, memoryMiB: u.memoryMiB + memoryMiB });
    groupNode.add(`${group}\u0000${node}`);
  };
  for (const a of view.allocations) add(a.node, a.group, a.resources.cpus, a.resources.memoryMiB);
  const nodes = new Map(view.nodes.map((n) => [n.id, n]));
  for (const p of placements) {
    const d = byKey.get(`${p.group}\u0000${p.generation}`)!;
    const key = `${p.group}\u0000${p.node}`;
    if (!d.allowSharing && groupNode.has(key))
      throw new Error(`invariant: ${p.instance}: a second instance of ${p.group} on ${p.node}`);
    if (instances.has(p.instance)) throw new Error(`invariant: ${p.instance} placed twice`);
    if (d.instances !== undefined) {
      if (!d.instances.includes(p.instance))
        throw new Error(`invariant: ${p.instance} is not one of its demand's instances`);
    } else {
      const k = Number(p.instance.slice(p.group.length + 1));
      if (!(k >= 0 && k < d.count))
        throw new Error(`invariant: ${p.instance} beyond count ${d.count}`);
    }
    instances.add(p.instance);
    add(p.node, p.group, p.resources.cpus, p.resources.memoryMiB);
    const n = nodes.get(p.node)!;
    const u = used.get(p.node)!;
    if (n.status !== 'ready')
      throw new Error(`invariant: ${p.instance} placed on ${n.status} node ${p.node}`);
    if (u.cpus > n.capacity.cpus)
      throw new Error(`invariant: ${p.node} over its cpus (${u.cpus} > ${n.capacity.cpus})`);
    if (u.memoryMiB > n.capacity.memoryMiB)
      throw new Error(
        `invariant: ${p.node} over its memory (${u.memoryMiB} > ${n.capacity.memoryMiB} MiB)`,
      );
  }
}

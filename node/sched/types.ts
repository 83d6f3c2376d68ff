// The data of placement: the cluster view at one Raft index, the demands (VM groups), the
// placements and failures it returns, and the named weights and bounds of the pipeline.
// docs/scheduling.md is the contract; this file is its types.

import type { Affinity, Constraint } from './constraint.ts';

/** Only `ready` nodes take new VMs; the others keep what they hold. */
export type NodeStatus = 'ready' | 'down' | 'draining' | 'ineligible';

export interface Resources {
  /** Whole virtual CPUs (a node's capacity: its cores minus --reserve-cpus). */
  readonly cpus: number;
  readonly memoryMiB: number;
}

export interface SchedNode {
  readonly id: string;
  readonly name: string;
  readonly arch: string;
  /** After the node's reserves: what VMs may use. */
  readonly capacity: Resources;
  readonly labels: Readonly<Record<string, string>>;
  readonly backends: readonly string[];
  readonly status: NodeStatus;
  /** Runner closures (store paths) the node holds: a locality hint, never a requirement. */
  readonly closures: readonly string[];
  /** Gossiped load (lower is better): breaks an exact score tie only; omit for a pure plan. */
  readonly load?: number;
}

/** A VM instance committed to a node. */
export interface Allocation {
  readonly instance: string;
  readonly group: string;
  readonly node: string;
  readonly resources: Resources;
}

export interface ClusterView {
  /** The Raft index this view was taken at. */
  readonly index: number;
  readonly nodes: readonly SchedNode[];
  readonly allocations: readonly Allocation[];
  /** Each group's current spec generation (checked at apply). */
  readonly generations: Readonly<Record<string, number>>;
}

export type Packing = 'binpack' | 'spread';

export interface Spread {
  readonly attribute: string;
  /** 1..100 */
  readonly weight: number;
}

/** One VM group to place: its spec's placement fields and what the loop knows about it. */
export interface Demand {
  readonly group: string;
  readonly generation: number;
  readonly count: number;
  readonly resources: Resources;
  readonly backend: string;
  readonly constraints: readonly Constraint[];
  readonly affinities: readonly Affinity[];
  readonly spread?: Spread;
  readonly allowSharing: boolean;
  readonly packing: Packing;
  /** The runner's store path, for closure locality. */
  readonly closure?: string;
  /** instance -> the node where it last failed. */
  readonly failedNodes?: Readonly<Record<string, string>>;
  /**
   * The instances this demand places, when not every instance of the group: a deployment's group
   * in the middle of a rolling update holds rows of two versions (two generations, two specs), and
   * each version's unplaced rows are a demand of their own (node/state/view.ts pendingDemands).
   */
  readonly instances?: readonly string[];
}

export interface ScoreBreakdown {
  readonly fit: number;
  readonly antiAffinity: number;
  readonly affinity: number;
  readonly spread: number;
  readonly locality: number;
  readonly failedNode: number;
  readonly total: number;
}

export interface Placement {
  readonly instance: string;
  readonly group: string;
  readonly generation: number;
  readonly node: string;
  readonly resources: Resources;
  readonly score: ScoreBreakdown;
  /** How many nodes were ranked for this choice. */
  readonly scored: number;
}

/** The filters, in the order a node meets them; a node is counted under the first that removes it. */
export type FilterName =
  | 'status'
  | 'backend'
  | 'distinct'
  | 'cpu'
  | 'memory'
  | `constraint ${string}`;

export interface Failure {
  readonly instance: string;
  readonly group: string;
  /** filter -> nodes it removed (each node counted once). */
  readonly filtered: Readonly<Record<string, number>>;
  /** `web-2: no node fits: 2 nodes lacked memory, 1 filtered by label.zone = a` */
  readonly message: string;
}

export interface PlaceResult {
  readonly index: number;
  readonly placements: readonly Placement[];
  readonly failures: readonly Failure[];
}

export interface PlaceOptions {
  /** Rank this many feasible nodes instead of the default sample (tests, benchmarks). */
  readonly limit?: number;
}

// Ranking weights (docs/scheduling.md, "Ranking"). A preference the user wrote outweighs
// packing (whose term spans 0..1); a node where the instance just failed is a last resort.
export const ANTI_AFFINITY_WEIGHT = 1;
export const LOCALITY_BONUS = 0.5;
export const FAILED_NODE_PENALTY = -1;
/** Nomad's bin-pack score spans 20 - (10^1 + 10^1) = 0 .. 20 - (10^0 + 10^0) = 18. */
export const FIT_SCORE_SPAN = 18;

// The bounded sample (docs/scheduling.md, "Bounded sample").
/** Nodes ranked per instance at least: Nomad's max(2, ceil(log2 N)). */
export const SAMPLE_NODES_MIN = 2;
/** Nodes ranked per instance when the group has affinities (Nomad ranks every node then). */
export const AFFINITY_SAMPLE_NODES = 64;
/** Closure holders ranked per instance beyond the sample. */
export const LOCALITY_CANDIDATES_MAX = 8;

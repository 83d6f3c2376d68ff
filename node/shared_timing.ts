// The timing values every member should share (docs/operations.md, "Tuning"): Raft's heartbeat
// interval and election timeout, and fencing's fence-after and node-down-after, whose bound
// (docs/scheduling.md, "Fencing") holds with the values of the member cut off and of the leader
// that marks it down. Members gossip theirs with their metrics (node/p2p/gossip.ts); this module
// compares them. Pure.

export interface SharedTiming {
  readonly heartbeatIntervalMs: number;
  readonly electionTimeoutMs: number;
  readonly fenceAfterMs: number;
  readonly nodeDownAfterMs: number;
}

export const SHARED_TIMING_KEYS = [
  'heartbeatIntervalMs',
  'electionTimeoutMs',
  'fenceAfterMs',
  'nodeDownAfterMs',
] as const satisfies readonly (keyof SharedTiming)[];

/** Why `x` is not a SharedTiming as gossip carries it, or undefined. */
export function sharedTimingProblem(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null) return 'timing is not an object';
  const t = x as Record<string, unknown>;
  for (const k of SHARED_TIMING_KEYS) {
    const v = t[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      return `timing.${k} is not a number of ms`;
  }
  return undefined;
}

/** How `theirs` differs from `mine`, as `name mine/theirs ms` items; empty when they agree. */
export function timingDifferences(mine: SharedTiming, theirs: SharedTiming): string[] {
  return SHARED_TIMING_KEYS.filter((k) => mine[k] !== theirs[k]).map(
    (k) => `${k} ${mine[k]}/${theirs[k]}`,
  );
}

// The rolling update of a deployment (docs/deploy.md, "Rolling update"): given the deployment as
// committed and its group's rows, what the leader's rollout duty proposes next. Pure and
// deterministic: no clock but `nowMs`, no I/O. The state machine calls the same classification at
// apply (node/state/deployments.ts) to re-check a step against the committed rows, so the
// invariant "instances in flight <= maxParallel" holds for every committed state.
//
// The types here are the structural parts of node/state's Deployment and VmEntry this module
// reads (node/sched imports nothing from node/state: arrows point down).

import { instanceName } from './place.ts';

/** The update policy fields a step reads (UpdatePolicy, node/state/deployments.ts). */
export interface RolloutPolicy {
  readonly maxParallel: number;
  readonly minHealthyMs: number;
  readonly healthyDeadlineMs: number;
  readonly progressDeadlineMs: number;
  readonly canary: number;
}

export interface RolloutVersion {
  readonly n: number;
  /** The rows' generation for this version (the Raft index that created it). */
  readonly index: number;
  readonly spec: {
    readonly name: string;
    readonly placement?: { readonly count: number };
    /** Health checks (docs/deploy.md): a spec without any is healthy while it runs. */
    readonly health?: readonly unknown[];
  };
  readonly update: RolloutPolicy;
}

export interface RolloutDeployment {
  readonly name: string;
  readonly versions: readonly RolloutVersion[];
  readonly rollout?: {
    readonly to: number;
    readonly state: 'running' | 'paused' | 'succeeded' | 'failed' | 'stopped';
    readonly startedAtMs: number;
    readonly progressAtMs: number;
    readonly promoted: boolean;
  };
}

export interface RolloutRow {
  readonly name: string;
  readonly generation: number;
  readonly state: string;
  readonly events: readonly {
    readonly atMs: number;
    readonly generation: number;
    readonly state: string;
  }[];
  readonly health?: {
    readonly generation: number;
    readonly healthy: boolean;
    readonly sinceMs: number;
  };
}

export type RolloutDecision =
  | { readonly kind: 'wait' }
  | { readonly kind: 'step'; readonly replace: string[]; readonly remove: string[] }
  | { readonly kind: 'finish'; readonly outcome: 'succeeded' | 'failed'; readonly reason?: string };

/**
 * One instance of the target version, as the rollout sees it:
 * - `old`: no row, or a row at another generation (to be replaced);
 * - `healthy`: at the target, running and healthy for at least minHealthyMs;
 * - `inFlight`: at the target and not yet healthy (it counts against maxParallel);
 * - `down`: at the target, was healthy, is not now (its node died: the placement loop moves it;
 *   it does not count against maxParallel).
 */
export type InstanceStatus = 'old' | 'healthy' | 'inFlight' | 'down';

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The instance names of a version's spec (its count), sorted by name. */
export function targetInstances(v: RolloutVersion): string[] {
  const count = v.spec.placement?.count ?? 1;
  return Array.from({ length: count }, (_, k) => instanceName(v.spec.name, k, count)).sort(byName);
}

function hasChecks(v: RolloutVersion): boolean {
  return (v.spec.health?.length ?? 0) > 0;
}

/** When the row's current `running` at its generation began (the last such event), if it runs. */
function runningSinceMs(row: RolloutRow): number | undefined {
  if (row.state !== 'running') return undefined;
  for (let i = row.events.length - 1; i >= 0; i--) {
    const e = row.events[i]!;
    if (e.state === 'running' && e.generation === row.generation) return e.atMs;
  }
  return undefined;
}

/** Since when the row counts as healthy now (running; its checks passing, if it has any). */
export function healthySinceMs(row: RolloutRow, v: RolloutVersion): number | undefined {
  const running = runningSinceMs(row);
  if (running === undefined) return undefined;
  if (!hasChecks(v)) return running;
  const h = row.health;
  if (h === undefined || h.generation !== row.generation || !h.healthy) return undefined;
  return Math.max(running, h.sinceMs);
}

/**
 * Whether the row was healthy at its generation for minHealthyMs and then stopped running (from
 * its bounded event list: a `running` event followed by another state at least minHealthyMs
 * later). With checks, running that long counts: the checks' history is not kept.
 */
function wasHealthy(row: RolloutRow, minHealthyMs: number): boolean {
  let since: number | undefined;
  for (const e of row.events) {
    if (e.state === 'running' && e.generation === row.generation) since ??= e.atMs;
    else if (since !== undefined) {
      if (e.atMs - since >= minHealthyMs) return true;
      since = undefined;
    }
  }
  return false;
}

/** When the row was set to its generation (its first event at it), if the events still hold it. */
export function atTargetSinceMs(row: RolloutRow): number | undefined {
  return row.events.find((e) => e.generation === row.generation)?.atMs;
}

export function instanceStatus(
  row: RolloutRow | undefined,
  v: RolloutVersion,
  nowMs: number,
): InstanceStatus {
  if (row === undefined || row.generation !== v.index) return 'old';
  const since = healthySinceMs(row, v);
  if (since !== undefined && nowMs - since >= v.update.minHealthyMs) return 'healthy';
  return wasHealthy(row, v.update.minHealthyMs) ? 'down' : 'inFlight';
}

/** The target version's instances by status, and when the rollout last made progress. */
export interface RolloutCensus {
  readonly target: RolloutVersion;
  readonly names: readonly string[];
  readonly status: ReadonlyMap<string, InstanceStatus>;
  readonly inFlight: readonly string[];
  readonly old: readonly string[];
  /** Rows of the group that are not instances of the target (removed once all are healthy). */
  readonly extra: readonly string[];
  /** max(the rollout's progressAtMs, the latest time an instance became healthy). */
  readonly progressAtMs: number;
}

export function census(
  d: RolloutDeployment,
  rows: readonly RolloutRow[],
  nowMs: number,
): RolloutCensus | undefined {
  const r = d.rollout;
  const target = r === undefined ? undefined : d.versions.find((v) => v.n === r.to);
  if (r === undefined || target === undefined) return undefined;
  const rowOf = new Map(rows.map((x) => [x.name, x]));
  const names = targetInstances(target);
  const status = new Map<string, InstanceStatus>();
  let progressAtMs = r.progressAtMs;
  for (const n of names) {
    const s = instanceStatus(rowOf.get(n), target, nowMs);
    status.set(n, s);
    if (s === 'healthy') {
      const since = healthySinceMs(rowOf.get(n)!, target)!;
      progressAtMs = Math.max(progressAtMs, since + target.update.minHealthyMs);
    }
  }
  const inT = new Set(names);
  return {
    target,
    names,
    status,
    inFlight: names.filter((n) => status.get(n) === 'inFlight'),
    old: names.filter((n) => status.get(n) === 'old'),
    extra: rows
      .map((x) => x.name)
      .filter((n) => !inT.has(n))
      .sort(byName),
    progressAtMs,
  };
}

/**
 * The simulator's teeth only (sim/rollout.test.ts, planted bug `ignoreMaxParallel`, which its
 * in-flight check must catch): when `ignore` is true, a step may replace every old instance at
 * once, for the duty and at apply alike. The product never sets it.
 */
export const PLANTED_ROLLOUT_PARALLEL = { ignore: false };

/** Instances of the target a step may still start: maxParallel and the canary's stop. */
export function replaceable(d: RolloutDeployment, c: RolloutCensus): number {
  if (PLANTED_ROLLOUT_PARALLEL.ignore) return c.old.length;
  const u = c.target.update;
  const room = u.maxParallel - c.inFlight.length;
  if (u.canary > 0 && d.rollout?.promoted !== true) {
    const atTarget = c.names.length - c.old.length;
    return Math.max(0, Math.min(room, u.canary - atTarget));
  }
  return Math.max(0, room);
}

function deadlineMissed(
  d: RolloutDeployment,
  c: RolloutCensus,
  rows: readonly RolloutRow[],
  nowMs: number,
): string | undefined {
  const u = c.target.update;
  const rowOf = new Map(rows.map((x) => [x.name, x]));
  for (const n of c.inFlight) {
    const since = atTargetSinceMs(rowOf.get(n)!) ?? d.rollout!.startedAtMs;
    if (nowMs - since > u.healthyDeadlineMs)
      return `${n} not healthy within healthyDeadlineMs (${u.healthyDeadlineMs} ms) of its start at version ${c.target.n}`;
  }
  // A canary waiting for its promotion is not stuck: the progress deadline waits with it.
  if (d.rollout!.state === 'paused') return undefined;
  if (nowMs - c.progressAtMs > u.progressDeadlineMs)
    return `no instance of version ${c.target.n} became healthy within progressDeadlineMs (${u.progressDeadlineMs} ms)`;
  return undefined;
}

/**
 * The next move of a deployment's rollout (docs/deploy.md, "Rolling update"): `rows` are the
 * group's. Only a running or paused rollout moves; a paused one (a canary waiting for
 * `deploy.promote`) only fails on a deadline.
 */
export function rolloutStep(
  d: RolloutDeployment,
  rows: readonly RolloutRow[],
  nowMs: number,
): RolloutDecision {
  const r = d.rollout;
  if (r === undefined || (r.state !== 'running' && r.state !== 'paused')) return { kind: 'wait' };
  const c = census(d, rows, nowMs);
  if (c === undefined) return { kind: 'wait' };
  const healthy = c.names.every((n) => c.status.get(n) === 'healthy');
  if (healthy) {
    if (c.extra.length > 0) return { kind: 'step', replace: [], remove: [...c.extra] };
    return { kind: 'finish', outcome: 'succeeded' };
  }
  const missed = deadlineMissed(d, c, rows, nowMs);
  if (missed !== undefined) return { kind: 'finish', outcome: 'failed', reason: missed };
  if (r.state === 'paused') return { kind: 'wait' };
  const k = replaceable(d, c);
  if (k === 0 || c.old.length === 0) return { kind: 'wait' };
  return { kind: 'step', replace: c.old.slice(0, k), remove: [] };
}

/**
 * The times, after `nowMs`, at which an input of rolloutStep crosses a threshold by time alone
 * (no entry applied): an instance of the target reaching minHealthyMs, an instance in flight
 * passing healthyDeadlineMs, the rollout passing progressDeadlineMs (from its progress now, or from
 * an instance that becomes healthy later). Between two of them the decision cannot change. Sorted,
 * each time once.
 */
function thresholdsMs(
  d: RolloutDeployment,
  c: RolloutCensus,
  rows: readonly RolloutRow[],
  nowMs: number,
): number[] {
  const u = c.target.update;
  const rowOf = new Map(rows.map((x) => [x.name, x]));
  // Deadlines are missed strictly after their bound (`> healthyDeadlineMs`): 1 ms later.
  const out = [c.progressAtMs + u.progressDeadlineMs + 1];
  for (const n of c.names) {
    const row = rowOf.get(n);
    if (row === undefined || row.generation !== c.target.index) continue;
    const since = healthySinceMs(row, c.target);
    if (since !== undefined) {
      out.push(since + u.minHealthyMs, since + u.minHealthyMs + u.progressDeadlineMs + 1);
    }
    out.push((atTargetSinceMs(row) ?? d.rollout!.startedAtMs) + u.healthyDeadlineMs + 1);
  }
  // Instances that started or turned healthy together share their thresholds: each time once,
  // or nextRolloutChangeMs evaluates the same step again for every instance of a wave.
  return [...new Set(out.filter((t) => t > nowMs))].sort((a, b) => a - b);
}

const sameDecision = (a: RolloutDecision, b: RolloutDecision): boolean =>
  JSON.stringify(a) === JSON.stringify(b);

/**
 * The earliest time after `nowMs` at which rolloutStep's decision for these rows changes by time
 * alone, or undefined when none is pending (no open rollout, or only entries can change it). The
 * rollout duty evaluates again then, instead of waiting for its periodic tick (docs/deploy.md,
 * "Rolling update"): a wave costs boot + minHealthyMs, not that rounded up to the tick. Exact: the
 * decision is constant between two thresholds, and the first threshold where it differs is the one
 * returned.
 */
export function nextRolloutChangeMs(
  d: RolloutDeployment,
  rows: readonly RolloutRow[],
  nowMs: number,
): number | undefined {
  const r = d.rollout;
  if (r === undefined || (r.state !== 'running' && r.state !== 'paused')) return undefined;
  const c = census(d, rows, nowMs);
  if (c === undefined) return undefined;
  const now = rolloutStep(d, rows, nowMs);
  for (const t of thresholdsMs(d, c, rows, nowMs)) {
    if (!sameDecision(rolloutStep(d, rows, t), now)) return t;
  }
  return undefined;
}

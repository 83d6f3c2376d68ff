// The nemesis: a schedule of timed faults, generated from the seed or read from a JSON file, and
// its execution against a SimCluster. A fault names what to do and to whom in general terms
// ("crash the leader", "partition into a majorities ring"); which nodes that means is decided when
// it runs, from the cluster's state then and the nemesis's own random stream, and the cluster
// records the concrete action (cluster.faults), which becomes the nemesis part of the history.
//
// A generated schedule runs one timeline per enabled kind (partition, crash, pause, drift), each
// alternating a fault and its repair with random durations, so faults of different kinds overlap.
// Every fault is repaired by the end of the schedule; the run then heals whatever is left anyway
// (a user's schedule need not), so the final phase can check liveness.

import type { SimCluster } from './cluster.ts';
import type { SimRandom } from './random.ts';
import {
  type Groups,
  isPartitionMode,
  PARTITION_MODES,
  type PartitionMode,
  partitionGroups,
} from './topology.ts';

export const NEMESIS_KINDS = [
  'partition',
  'crash',
  'pause',
  'drift',
  'membership',
  'placement',
  'rollout',
] as const;
export type NemesisKind = (typeof NEMESIS_KINDS)[number];
/** The kinds a run uses when none is named (membership changes how the cluster starts). */
export const NEMESIS_KINDS_DEFAULT = ['partition', 'crash', 'pause', 'drift'] as const;

export function isNemesisKind(x: unknown): x is NemesisKind {
  return typeof x === 'string' && (NEMESIS_KINDS as readonly string[]).includes(x);
}

/** Which nodes: a rule resolved when the fault runs, or explicit node IDs. */
export type Target = 'one' | 'leader' | 'minority' | 'majority' | 'all' | readonly string[];
export const TARGET_RULES = ['one', 'leader', 'minority', 'majority', 'all'] as const;

export type Fault =
  | { readonly at: number; readonly kind: 'partition'; readonly mode: PartitionMode }
  | { readonly at: number; readonly kind: 'partition'; readonly groups: Groups }
  | { readonly at: number; readonly kind: 'heal' }
  | { readonly at: number; readonly kind: 'crash'; readonly target: Target }
  /** Without a target: every node that is down. */
  | { readonly at: number; readonly kind: 'restart'; readonly target?: Target }
  | { readonly at: number; readonly kind: 'pause'; readonly target: Target }
  /** Without a target: every paused node. */
  | { readonly at: number; readonly kind: 'resume'; readonly target?: Target }
  | {
      readonly at: number;
      readonly kind: 'drift';
      readonly target: Target;
      readonly factor: number;
    }
  /** Back to each node's nominal drift; without a target: every node. */
  | { readonly at: number; readonly kind: 'drift-reset'; readonly target?: Target }
  // Membership (a membership run only, sim/membership.ts):
  /** Start a node that never ran (default: the first), joining through `seed` (default: a member). */
  | { readonly at: number; readonly kind: 'join'; readonly node?: string; readonly seed?: string }
  /** The operator removes a member: `voter`, `learner`, `leader`, `any` or a node ID. */
  | { readonly at: number; readonly kind: 'remove'; readonly target: string }
  /** Restart one node that stopped because it was removed. */
  | { readonly at: number; readonly kind: 'restart-removed' };

/** What a membership fault needs from the run (sim/membership.ts MembershipSim). */
export interface MembershipDriver {
  join(node?: string, seed?: string): void;
  remove(target: string): void;
  restartRemoved(): void;
}
export const REMOVE_TARGETS = ['voter', 'learner', 'leader', 'any'] as const;

export type FaultKind = Fault['kind'];
const FAULT_KINDS: readonly FaultKind[] = [
  'partition',
  'heal',
  'crash',
  'restart',
  'pause',
  'resume',
  'drift',
  'drift-reset',
  'join',
  'remove',
  'restart-removed',
];

export interface GenerateOptions {
  readonly kinds: readonly NemesisKind[];
  /** Faults start at or after this... */
  readonly startMs: number;
  /** ...and are all repaired by this. */
  readonly endMs: number;
  readonly faultMinMs: number;
  readonly faultMaxMs: number;
  readonly gapMinMs: number;
  readonly gapMaxMs: number;
  /** Drift factors are drawn in [driftFactorMin, driftFactorMax]. */
  readonly driftFactorMin: number;
  readonly driftFactorMax: number;
}

export const GENERATE_DEFAULTS = {
  startMs: 500,
  faultMinMs: 200,
  faultMaxMs: 2000,
  gapMinMs: 100,
  gapMaxMs: 1000,
  driftFactorMin: 0.5,
  driftFactorMax: 2,
} as const;

/** Weighted choice. */
function weighted<T>(random: SimRandom, choices: readonly (readonly [T, number])[]): T {
  const total = choices.reduce((s, [, w]) => s + w, 0);
  let x = random.float() * total;
  for (const [v, w] of choices) {
    x -= w;
    if (x < 0) return v;
  }
  return choices[choices.length - 1]![0];
}

const CRASH_TARGETS = [
  ['one', 4],
  ['leader', 3],
  ['minority', 1.5],
  ['majority', 1],
  ['all', 0.5],
] as const;
const PAUSE_TARGETS = [
  ['one', 4],
  ['leader', 4],
  ['minority', 1],
  ['majority', 1],
] as const;

/** A schedule from the nemesis's random stream: per kind, faults and repairs alternating. */
export function generateSchedule(random: SimRandom, o: GenerateOptions): Fault[] {
  const timelines: Fault[][] = [];
  const round = (ms: number): number => Math.round(ms * 1000) / 1000;
  for (const kind of NEMESIS_KINDS) {
    // Membership has its own timeline and random stream (generateMembershipSchedule); placement
    // and rollout their own runs (sim/placement-run.ts, sim/rollout-run.ts).
    if (
      kind === 'membership' ||
      kind === 'placement' ||
      kind === 'rollout' ||
      !o.kinds.includes(kind)
    )
      continue;
    const faults: Fault[] = [];
    let t = o.startMs + random.between(0, o.gapMaxMs);
    while (t + o.faultMinMs <= o.endMs) {
      const at = round(t);
      const end = round(Math.min(o.endMs, t + random.between(o.faultMinMs, o.faultMaxMs)));
      switch (kind) {
        case 'partition':
          faults.push({ at, kind: 'partition', mode: random.pick(PARTITION_MODES) });
          faults.push({ at: end, kind: 'heal' });
          break;
        case 'crash':
          faults.push({ at, kind: 'crash', target: weighted(random, CRASH_TARGETS) });
          faults.push({ at: end, kind: 'restart' });
          break;
        case 'pause':
          faults.push({ at, kind: 'pause', target: weighted(random, PAUSE_TARGETS) });
          faults.push({ at: end, kind: 'resume' });
          break;
        case 'drift': {
          const factor = round(random.between(o.driftFactorMin, o.driftFactorMax));
          const target = random.chance(0.5) ? 'leader' : 'one';
          faults.push({ at, kind: 'drift', target, factor });
          faults.push({ at: end, kind: 'drift-reset' });
          break;
        }
      }
      t = end + random.between(o.gapMinMs, o.gapMaxMs);
    }
    timelines.push(faults);
  }
  // Merge by time; at equal times, kinds in NEMESIS_KINDS order (the sort is stable).
  return timelines.flat().sort((a, b) => a.at - b.at);
}

const REMOVE_WEIGHTS = [
  ['voter', 2],
  ['learner', 1],
  ['leader', 1],
  ['any', 1],
] as const;

/**
 * The membership timeline, from its own random stream (so that adding it leaves the other kinds'
 * schedules as they were): `initialJoins` nodes join at once, then joins, removals and restarts of
 * removed nodes alternate with gaps; after a join or a removal, the leader (or a node) may crash a
 * few milliseconds later, while the change is in flight, and restart after a while.
 */
export function generateMembershipSchedule(
  random: SimRandom,
  o: GenerateOptions,
  initialJoins: number,
): Fault[] {
  const round = (ms: number): number => Math.round(ms * 1000) / 1000;
  const faults: Fault[] = [];
  for (let i = 0; i < initialJoins; i++)
    faults.push({ at: round(random.between(0, 50)), kind: 'join' });
  let t = round(o.startMs + random.between(0, o.gapMaxMs));
  while (t + o.faultMinMs <= o.endMs) {
    const what = weighted(random, [
      ['join', 3],
      ['remove', 2.5],
      ['restart-removed', 1.5],
    ] as const);
    if (what === 'join') faults.push({ at: t, kind: 'join' });
    else if (what === 'remove')
      faults.push({ at: t, kind: 'remove', target: weighted(random, REMOVE_WEIGHTS) });
    else faults.push({ at: t, kind: 'restart-removed' });
    if (what !== 'restart-removed' && random.chance(0.4)) {
      const crashAt = round(t + random.between(1, 30));
      const restartAt = round(
        Math.min(o.endMs, crashAt + random.between(o.faultMinMs, o.faultMaxMs)),
      );
      faults.push({ at: crashAt, kind: 'crash', target: random.chance(0.6) ? 'leader' : 'one' });
      faults.push({ at: restartAt, kind: 'restart' });
    }
    t = round(t + random.between(o.gapMinMs * 3, o.gapMaxMs * 1.5));
  }
  return faults.sort((a, b) => a.at - b.at);
}

/** Schedules every fault on the cluster's event queue (times are from the cluster's time 0). */
export function scheduleFaults(
  cluster: SimCluster,
  faults: readonly Fault[],
  random: SimRandom,
  membership?: MembershipDriver,
): void {
  for (const fault of faults) {
    cluster.schedule(Math.max(0, fault.at - cluster.nowMs), () =>
      applyFault(cluster, fault, random, membership),
    );
  }
}

/** Resolves a target among `candidates` (nodes in a state the action applies to). */
export function resolveTarget(
  cluster: SimCluster,
  target: Target,
  candidates: readonly string[],
  random: SimRandom,
): string[] {
  if (typeof target !== 'string') return cluster.ids.filter((id) => target.includes(id));
  if (candidates.length === 0) return [];
  const n = cluster.ids.length;
  const take = (k: number): string[] => {
    const picked = random.shuffle(candidates).slice(0, Math.max(1, Math.min(k, candidates.length)));
    return cluster.ids.filter((id) => picked.includes(id));
  };
  switch (target) {
    case 'one':
      return take(1);
    case 'leader': {
      const leader = cluster.leader();
      return leader !== undefined && candidates.includes(leader) ? [leader] : take(1);
    }
    case 'minority':
      return take(Math.floor((n - 1) / 2));
    case 'majority':
      return take(Math.floor(n / 2) + 1);
    case 'all':
      return [...candidates];
  }
  return [];
}

/** Runs one fault now. */
export function applyFault(
  cluster: SimCluster,
  fault: Fault,
  random: SimRandom,
  membership?: MembershipDriver,
): void {
  if (fault.kind === 'join' || fault.kind === 'remove' || fault.kind === 'restart-removed') {
    if (membership === undefined) {
      throw new Error(`a ${fault.kind} fault needs a membership run (nemesis membership)`);
    }
    if (fault.kind === 'join') membership.join(fault.node, fault.seed);
    else if (fault.kind === 'remove') membership.remove(fault.target);
    else membership.restartRemoved();
    return;
  }
  const inState = (...states: string[]): string[] =>
    cluster.ids.filter((id) => states.includes(cluster.processOf(id)));
  switch (fault.kind) {
    case 'partition': {
      const groups =
        'groups' in fault
          ? fault.groups
          : partitionGroups(fault.mode, cluster.ids, random, cluster.leader());
      cluster.partition(groups);
      return;
    }
    case 'heal':
      cluster.heal();
      return;
    case 'crash':
      for (const id of resolveTarget(cluster, fault.target, inState('up', 'paused'), random)) {
        cluster.crash(id);
      }
      return;
    case 'restart': {
      // A node that never ran or exited by itself (removed) is not restarted by a generic restart.
      const down = inState('down').filter((id) => !cluster.isRetired(id));
      for (const id of resolveTarget(cluster, fault.target ?? 'all', down, random)) {
        cluster.restart(id);
      }
      return;
    }
    case 'pause':
      for (const id of resolveTarget(cluster, fault.target, inState('up'), random)) {
        cluster.pause(id);
      }
      return;
    case 'resume':
      for (const id of resolveTarget(cluster, fault.target ?? 'all', inState('paused'), random)) {
        cluster.resume(id);
      }
      return;
    case 'drift':
      for (const id of resolveTarget(cluster, fault.target, cluster.ids, random)) {
        cluster.setDrift(id, fault.factor);
      }
      return;
    case 'drift-reset':
      for (const id of resolveTarget(cluster, fault.target ?? 'all', cluster.ids, random)) {
        cluster.resetDrift(id);
      }
      return;
  }
}

/** Heals everything: links, paused and crashed processes, clocks (not retired nodes: see SimCluster.exit). */
export function healAll(cluster: SimCluster): void {
  if (cluster.topology.groups !== undefined) cluster.heal();
  for (const id of cluster.ids) {
    const p = cluster.processOf(id);
    if (p === 'paused') cluster.resume(id);
    else if (p === 'down' && !cluster.isRetired(id)) cluster.restart(id);
    cluster.resetDrift(id);
  }
}

// -----------------------------------------------------------------------------------------------
// Reading a schedule from JSON.

export class NemesisFileError extends Error {
  override readonly name = 'NemesisFileError';
}

/** "1500", 1500, "1500ms", "1.5s", "2m" -> milliseconds; bare numbers are `unitMs` each. */
export function parseDuration(x: unknown, unitMs = 1): number | undefined {
  if (typeof x === 'number') return Number.isFinite(x) && x >= 0 ? x * unitMs : undefined;
  if (typeof x !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(x);
  if (m === null) return undefined;
  const v = Number(m[1]);
  const unit = m[2];
  return unit === 'ms' ? v : unit === 's' ? v * 1000 : unit === 'm' ? v * 60_000 : v * unitMs;
}

/**
 * Parses a nemesis file: a JSON array of faults, or { "faults": [...] }. Times (`at`) are
 * milliseconds or strings with a unit ("2.5s"). Throws NemesisFileError naming the fault.
 */
export function parseSchedule(text: string, ids: readonly string[]): Fault[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new NemesisFileError(`not valid JSON: ${(e as Error).message}`);
  }
  const list = Array.isArray(raw)
    ? raw
    : typeof raw === 'object' && raw !== null
      ? (raw as { faults?: unknown }).faults
      : undefined;
  if (!Array.isArray(list)) {
    throw new NemesisFileError('expected a JSON array of faults, or an object { "faults": [...] }');
  }
  const faults = list.map((f, i) => parseFault(f, i, ids));
  return faults
    .map((f, i) => ({ f, i }))
    .sort((a, b) => a.f.at - b.f.at || a.i - b.i)
    .map((x) => x.f);
}

function parseFault(raw: unknown, i: number, ids: readonly string[]): Fault {
  const where = `fault ${i + 1}`;
  const bad = (what: string): never => {
    throw new NemesisFileError(`${where}: ${what}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return bad('expected an object like {"at": "2s", "kind": "crash", "target": "leader"}');
  }
  const o = raw as Record<string, unknown>;
  const at = parseDuration(o.at);
  if (at === undefined)
    return bad(`at is ${JSON.stringify(o.at)}; expected milliseconds or "2.5s"`);
  const kind = o.kind;
  if (typeof kind !== 'string' || !(FAULT_KINDS as readonly string[]).includes(kind)) {
    return bad(`kind is ${JSON.stringify(kind)}; expected one of ${FAULT_KINDS.join(', ')}`);
  }
  const target = (required: boolean): Target | undefined => {
    const t = o.target ?? o.node;
    if (t === undefined)
      return required
        ? bad(`${kind} needs a target (${TARGET_RULES.join(', ')} or node IDs)`)
        : undefined;
    if (typeof t === 'string' && (TARGET_RULES as readonly string[]).includes(t))
      return t as Target;
    const list = typeof t === 'string' ? [t] : t;
    if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === 'string')) {
      return bad(
        `target is ${JSON.stringify(t)}; expected ${TARGET_RULES.join(', ')}, a node ID or a list of them`,
      );
    }
    for (const id of list as string[]) {
      if (!ids.includes(id)) bad(`unknown node ${JSON.stringify(id)} (nodes: ${ids.join(', ')})`);
    }
    return list as string[];
  };
  switch (kind as FaultKind) {
    case 'partition': {
      if (o.groups !== undefined) {
        const g = o.groups;
        if (
          !Array.isArray(g) ||
          !g.every((x) => Array.isArray(x) && x.every((y) => typeof y === 'string'))
        ) {
          return bad(
            'groups must be a list of lists of node IDs, e.g. [["n1","n2"],["n3","n4","n5"]]',
          );
        }
        for (const id of (g as string[][]).flat()) {
          if (!ids.includes(id))
            bad(`unknown node ${JSON.stringify(id)} (nodes: ${ids.join(', ')})`);
        }
        return { at, kind: 'partition', groups: g as string[][] };
      }
      const mode = o.mode ?? 'halves';
      if (!isPartitionMode(mode)) {
        return bad(
          `mode is ${JSON.stringify(mode)}; expected one of ${PARTITION_MODES.join(', ')} (or give groups)`,
        );
      }
      return { at, kind: 'partition', mode };
    }
    case 'heal':
      return { at, kind: 'heal' };
    case 'crash':
      return { at, kind: 'crash', target: target(true)! };
    case 'pause':
      return { at, kind: 'pause', target: target(true)! };
    case 'restart':
    case 'resume':
    case 'drift-reset': {
      const t = target(false);
      return (t === undefined ? { at, kind } : { at, kind, target: t }) as Fault;
    }
    case 'join':
    case 'remove':
    case 'restart-removed':
      return parseMembershipFault(o, at, kind as 'join' | 'remove' | 'restart-removed', ids, bad);
    case 'drift': {
      const factor = o.factor;
      if (typeof factor !== 'number' || !(factor >= 0.1 && factor <= 10)) {
        return bad(
          `factor is ${JSON.stringify(factor)}; expected a number in [0.1, 10] (1 = nominal)`,
        );
      }
      return { at, kind: 'drift', target: target(true)!, factor };
    }
  }
}

/** The membership faults of a nemesis file: join, remove, restart-removed. */
function parseMembershipFault(
  o: Record<string, unknown>,
  at: number,
  kind: 'join' | 'remove' | 'restart-removed',
  ids: readonly string[],
  bad: (what: string) => never,
): Fault {
  switch (kind) {
    case 'join': {
      const node = o.node ?? o.target;
      for (const [k, v] of [
        ['node', node],
        ['seed', o.seed],
      ] as const) {
        if (v !== undefined && (typeof v !== 'string' || !ids.includes(v))) {
          bad(`${k} is ${JSON.stringify(v)}; expected a node ID (nodes: ${ids.join(', ')})`);
        }
      }
      return {
        at,
        kind: 'join',
        ...(node === undefined ? {} : { node: node as string }),
        ...(o.seed === undefined ? {} : { seed: o.seed as string }),
      };
    }
    case 'remove': {
      const t = o.target ?? o.node;
      const rules: readonly string[] = REMOVE_TARGETS;
      if (typeof t !== 'string' || !(rules.includes(t) || ids.includes(t))) {
        return bad(
          `target is ${JSON.stringify(t)}; expected ${REMOVE_TARGETS.join(', ')} or a node ID`,
        );
      }
      return { at, kind: 'remove', target: t };
    }
    case 'restart-removed':
      return { at, kind: 'restart-removed' };
  }
}

// `pcr deploy plan`: what submitting a flake's deployment would change against the version the
// cluster holds now: the closure diff of their boot paths (diff.ts), the spec fields and update
// policy fields that differ. Pure: the closures come through a lookup the caller gives (the local
// Nix store, the member's store), walked here within CLOSURE_PATHS_MAX.

import { canonicalJson } from '../state/canonical_json.ts';
import { specHash, type VmSpec } from '../state/vm_spec.ts';
import { instanceNames } from '../state/vms.ts';
import {
  CLOSURE_PATHS_MAX,
  type ClosureDiff,
  ClosureError,
  type ClosurePathInfo,
  diffClosures,
  formatClosureDiff,
} from './diff.ts';

/** The part of a committed version a plan compares with (docs/deploy.md DeployVersion). */
export interface CurrentVersion {
  readonly n: number;
  readonly spec: Record<string, unknown>;
  readonly update?: Record<string, unknown>;
}

export interface DeployPlan {
  readonly name: string;
  /** The version compared with; absent for a deployment not submitted yet. */
  readonly current?: number;
  readonly closure: ClosureDiff;
  /** Top-level spec fields whose value differs (added or removed count), sorted. */
  readonly specFields: readonly string[];
  /** Update policy fields the flake sets to another value than the current version holds. */
  readonly updateFields: readonly string[];
  /** What happens to each instance (empty for a first version: every one starts). */
  readonly instances: InstanceChanges;
  /** Anything at all would change: the exit code of `pcr deploy plan`. */
  readonly changes: boolean;
}

/** An instance as the cluster runs it now (a row of `vm.list`). */
export interface RunningInstance {
  readonly name: string;
  /** The member's ID, '' while unplaced. */
  readonly node: string;
  readonly spec: VmSpec;
}

export interface InstanceChanges {
  /** New instance names (a bigger count): placement decides where. */
  readonly start: readonly string[];
  /** Instances whose spec changes: stopped and started again by the rollout, where they run now if it still fits. */
  readonly replace: readonly { readonly name: string; readonly node: string }[];
  /** Instances beyond the new count: stopped once the new ones are healthy. */
  readonly stop: readonly { readonly name: string; readonly node: string }[];
  /** Instances that keep running as they are (a change of placement fields or policy only). */
  readonly unchanged: number;
}

/**
 * What the rollout of `next` would do to each instance, from the rows that run now: the same
 * instance names (instanceNames) and the same restart rule as the agent (specHash, which leaves
 * placement fields out: moving or scaling does not restart an instance).
 */
export function instanceChanges(next: VmSpec, rows: readonly RunningInstance[]): InstanceChanges {
  const names = instanceNames(next);
  const byName = new Map(rows.map((r) => [r.name, r]));
  const start: string[] = [];
  const replace: { name: string; node: string }[] = [];
  let unchanged = 0;
  for (const name of names) {
    const row = byName.get(name);
    if (row === undefined) start.push(name);
    else if (specHash({ ...row.spec, name }) === specHash({ ...next, name })) unchanged++;
    else replace.push({ name, node: row.node });
  }
  const kept = new Set(names);
  const stop = rows
    .filter((r) => !kept.has(r.name))
    .map((r) => ({ name: r.name, node: r.node }))
    .sort((a, b) => a.name.localeCompare(b.name));
  return { start, replace, stop, unchanged };
}

/** Paths asked of a lookup at once. */
export const CLOSURE_LOOKUP_BATCH_PATHS = 256;

/**
 * The closure of `roots`, asking `lookup` for the infos of paths not seen yet, a batch at a time;
 * a path the lookup does not answer for is refused by name.
 */
export async function walkClosure(
  roots: readonly string[],
  lookup: (paths: readonly string[]) => Promise<ReadonlyMap<string, ClosurePathInfo>>,
): Promise<ClosurePathInfo[]> {
  const seen = new Map<string, ClosurePathInfo>();
  // Every path ever queued (so each is asked once), and the queue read from `next` on.
  const queued = new Set(roots);
  const queue = [...queued];
  for (let next = 0; next < queue.length; ) {
    const batch = queue.slice(next, next + CLOSURE_LOOKUP_BATCH_PATHS);
    next += batch.length;
    const infos = await lookup(batch);
    for (const path of batch) {
      const info = infos.get(path);
      if (info === undefined) throw new ClosureError(`no path info for ${path}`);
      if (seen.size >= CLOSURE_PATHS_MAX) {
        throw new ClosureError(
          `the closure has more than CLOSURE_PATHS_MAX ${CLOSURE_PATHS_MAX} paths`,
        );
      }
      seen.set(path, info);
      for (const r of info.references) {
        if (!queued.has(r)) {
          queued.add(r);
          queue.push(r);
        }
      }
    }
  }
  return [...seen.values()];
}

function differingFields(
  before: Record<string, unknown>,
  after: Record<string, unknown>,
  keys: Iterable<string>,
): string[] {
  const out = new Set<string>();
  for (const k of keys) {
    const a = before[k] === undefined ? undefined : canonicalJson(before[k]);
    const b = after[k] === undefined ? undefined : canonicalJson(after[k]);
    if (a !== b) out.add(k);
  }
  return [...out].sort();
}

/**
 * The plan of deploying `next` (a validated spec, the update policy as the flake gives it, its
 * boot closure) over `current` (undefined: a first version) whose boot closure is `currentClosure`.
 */
export function planDeploy(
  name: string,
  next: { spec: Record<string, unknown>; update?: Record<string, unknown> },
  nextClosure: readonly ClosurePathInfo[],
  current: CurrentVersion | undefined,
  currentClosure: readonly ClosurePathInfo[],
  /** The deployment's instances as they run now, with the validated next spec. */
  running:
    | { readonly next: VmSpec; readonly rows: readonly RunningInstance[] }
    | undefined = undefined,
): DeployPlan {
  const closure = diffClosures(currentClosure, nextClosure);
  const before = current?.spec ?? {};
  const specFields = differingFields(
    before,
    next.spec,
    new Set([...Object.keys(before), ...Object.keys(next.spec)]),
  );
  // Only the fields the flake sets: the rest take the defaults (the member fills them in).
  const updateFields =
    next.update === undefined
      ? []
      : differingFields(current?.update ?? {}, next.update, Object.keys(next.update));
  const instances =
    current === undefined || running === undefined
      ? { start: [], replace: [], stop: [], unchanged: 0 }
      : instanceChanges(running.next, running.rows);
  const changes =
    current === undefined || closure.differs || specFields.length > 0 || updateFields.length > 0;
  return {
    name,
    ...(current !== undefined ? { current: current.n } : {}),
    closure,
    specFields,
    updateFields,
    instances,
    changes,
  };
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** `name (on node)`, the node by the caller's naming (a member's name), `unplaced` without one. */
function onNode(x: { name: string; node: string }, nodeName: (id: string) => string): string {
  return `${x.name} (${x.node === '' ? 'unplaced' : `on ${nodeName(x.node)}`})`;
}

/** The instance lines of a plan: replaced, started, stopped, unchanged. */
function instanceLines(i: InstanceChanges, nodeName: (id: string) => string): string[] {
  const lines: string[] = [];
  if (i.replace.length > 0)
    lines.push(`  replace ${i.replace.map((x) => onNode(x, nodeName)).join(', ')}`);
  if (i.start.length > 0) lines.push(`  start   ${i.start.join(', ')} (placement decides where)`);
  if (i.stop.length > 0)
    lines.push(`  stop    ${i.stop.map((x) => onNode(x, nodeName)).join(', ')}`);
  if (i.unchanged > 0) lines.push(`  keep    ${i.unchanged} running as they are`);
  return lines.length > 0 ? ['instances:', ...lines] : [];
}

/** The plan for people: the package lines as Nix prints them, then what else changes. */
export function planText(p: DeployPlan, nodeName: (id: string) => string = (id) => id): string {
  const head =
    p.current === undefined
      ? `${p.name}: not deployed yet; version 1 would be submitted`
      : p.changes
        ? `${p.name}: changes against version ${p.current}`
        : `${p.name}: no changes against version ${p.current}`;
  const lines = [head];
  const packages = formatClosureDiff(p.closure, '  ');
  if (packages.length > 0) lines.push('closure:', ...packages);
  else if (p.closure.differs) lines.push('closure: rebuilt paths, no package or size change');
  lines.push(
    `closure size: ${p.closure.pathsBefore} -> ${p.closure.pathsAfter} paths, ${mib(p.closure.bytesBefore)} -> ${mib(p.closure.bytesAfter)}`,
  );
  if (p.current !== undefined && p.specFields.length > 0) {
    lines.push(`spec: ${p.specFields.join(', ')} changed`);
  }
  if (p.updateFields.length > 0) lines.push(`update policy: ${p.updateFields.join(', ')} changed`);
  lines.push(...instanceLines(p.instances, nodeName));
  return lines.join('\n');
}

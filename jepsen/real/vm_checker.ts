// The vms workload's checker. Input: the clients' history of VM commands (run, stop, rm of whole
// groups), the observer's samples of which VMM processes are live on which node (read from the
// nodes' processes, never from the cluster's state), the desired set the cluster lists after the
// final heal, and when that heal was. It checks:
//   at most one copy: no sample sees an instance's VMM running (not frozen) on two nodes;
//   no lost command:  every group whose run was acknowledged, and that no client tried to stop or
//                     remove, is desired running after the heal; nothing is desired running that
//                     no client may have run (or that a client surely stopped or removed);
//   recovery:         every instance desired running after the heal runs on exactly one node from
//                     some time within `boundMs` of the heal to the last sample; nothing else runs.
// Pure: a history and samples in, counts and a verdict out.

import type { HistoryEvent } from '../checker/index.ts';

/** One VMM process the observer saw: whose instance, on which node, and whether SIGSTOPped. */
export interface VmmSeen {
  readonly instance: string;
  readonly node: string;
  readonly pid: number;
  /** The process was stopped (state T: its machine is paused): it exists but runs nothing. */
  readonly frozen: boolean;
}

export interface VmSample {
  /** ms since the workload began. */
  readonly time: number;
  readonly seen: readonly VmmSeen[];
}

/** A run of consecutive samples in which one instance ran on two nodes or more. */
export interface DoubleRun {
  readonly instance: string;
  readonly nodes: readonly string[];
  readonly from: number;
  readonly to: number;
  readonly samples: number;
}

/** What a vms client submits: a group of `count` instances. */
export interface GroupValue {
  readonly group: string;
  readonly count?: number;
  readonly memoryMiB?: number;
}

export interface VmCheckInput {
  readonly history: readonly HistoryEvent[];
  readonly samples: readonly VmSample[];
  /** Instances the cluster lists with desired `running` after the final heal (a ReadIndex read). */
  readonly finalDesired: readonly string[] | undefined;
  /** When the final heal completed (every process back, every rule gone). */
  readonly healAt: number;
  /** How long after the heal every desired instance has to be running on one node. */
  readonly boundMs: number;
}

export interface VmResult {
  readonly valid: boolean;
  readonly samples: number;
  readonly doubleRuns: readonly DoubleRun[];
  /** Samples in which a frozen copy existed while another copy ran (not a violation: it ran nothing). */
  readonly frozenOverlaps: number;
  /** Acknowledged runs, never stopped or removed by anyone, missing from the final desired set. */
  readonly lost: readonly string[];
  /** Desired running after the heal, though no run may have made it so. */
  readonly unexpected: readonly string[];
  /** Desired running, but not running on exactly one node within the bound (to the last sample). */
  readonly notRunning: readonly string[];
  /** Running on a node at the last sample though not desired running. */
  readonly strays: readonly string[];
  /** Per desired instance: from the heal to the moment it ran steadily on one node. */
  readonly recoveryMs: Readonly<Record<string, number>>;
  /** The final desired set could not be read: nothing after the heal can be checked. */
  readonly finalUnread: boolean;
}

/** The instance names of a group: its name alone for count 1, else `<group>-<k>` (vm_spec). */
export function instancesOf(v: GroupValue): string[] {
  const count = v.count ?? 1;
  if (count === 1) return [v.group];
  return Array.from({ length: count }, (_, k) => `${v.group}-${k}`);
}

/** Node -> live (not frozen) copies, and whether a frozen copy exists, per instance in a sample. */
function copiesOf(s: VmSample): Map<string, { live: Set<string>; frozen: boolean }> {
  const m = new Map<string, { live: Set<string>; frozen: boolean }>();
  for (const v of s.seen) {
    let e = m.get(v.instance);
    if (e === undefined) m.set(v.instance, (e = { live: new Set(), frozen: false }));
    if (v.frozen) e.frozen = true;
    else e.live.add(v.node);
  }
  return m;
}

/** Consecutive samples in which an instance was live on two nodes or more, merged per instance. */
export function doubleRuns(samples: readonly VmSample[]): {
  runs: DoubleRun[];
  frozenOverlaps: number;
} {
  const runs: DoubleRun[] = [];
  const open = new Map<string, { nodes: Set<string>; from: number; to: number; samples: number }>();
  let frozenOverlaps = 0;
  const close = (instance: string): void => {
    const o = open.get(instance)!;
    runs.push({ instance, nodes: [...o.nodes].sort(), from: o.from, to: o.to, samples: o.samples });
    open.delete(instance);
  };
  for (const s of samples) {
    const copies = copiesOf(s);
    for (const [instance, c] of copies) {
      if (c.frozen && c.live.size > 0) frozenOverlaps++;
      if (c.live.size < 2) continue;
      const o = open.get(instance);
      if (o === undefined) {
        open.set(instance, { nodes: new Set(c.live), from: s.time, to: s.time, samples: 1 });
      } else {
        for (const n of c.live) o.nodes.add(n);
        o.to = s.time;
        o.samples++;
      }
    }
    for (const instance of [...open.keys()]) {
      if ((copies.get(instance)?.live.size ?? 0) < 2) close(instance);
    }
  }
  for (const instance of [...open.keys()]) close(instance);
  runs.sort((a, b) => a.from - b.from || a.instance.localeCompare(b.instance));
  return { runs, frozenOverlaps };
}

/**
 * From the history: the instances that must be desired running (an acknowledged run, and no stop
 * or rm that may have taken effect after it), and those that may be (a run that may have taken
 * effect, and no acknowledged stop or rm after it, unless the run was indeterminate: it may take
 * effect after them). Commands on one group are issued one at a
 * time by one client, so a group's events are in order.
 */
export function desiredBounds(history: readonly HistoryEvent[]): {
  must: Set<string>;
  may: Set<string>;
} {
  const invoked = new Map<number, HistoryEvent>();
  const byGroup = new Map<
    string,
    { must: boolean; may: boolean; sticky: boolean; instances: string[] }
  >();
  for (const e of history) {
    if (e.type === 'invoke') {
      invoked.set(e.process, e);
      continue;
    }
    const inv = invoked.get(e.process);
    invoked.delete(e.process);
    if (inv === undefined) throw new Error(`completion without invocation: ${JSON.stringify(e)}`);
    if (e.type === 'fail') continue; // certainly no effect
    const v = inv.value as GroupValue;
    let g = byGroup.get(v.group);
    if (g === undefined)
      byGroup.set(v.group, (g = { must: false, may: false, sticky: false, instances: [] }));
    if (e.f === 'run') {
      g.instances = instancesOf(v);
      g.may = true;
      g.must = e.type === 'ok';
      // An indeterminate run may take effect at any later time, after a stop or rm too.
      if (e.type === 'info') g.sticky = true;
    } else {
      g.must = false;
      if (e.type === 'ok' && !g.sticky) g.may = false;
    }
  }
  const must = new Set<string>();
  const may = new Set<string>();
  for (const g of byGroup.values()) {
    for (const i of g.instances) {
      if (g.must) must.add(i);
      if (g.may) may.add(i);
    }
  }
  return { must, may };
}

/** When each instance began to run steadily on exactly one node, after `healAt` (or undefined). */
function steadySince(samples: readonly VmSample[], healAt: number): Map<string, number> {
  const since = new Map<string, number>();
  const after = samples.filter((s) => s.time >= healAt);
  const everSeen = new Set(after.flatMap((s) => s.seen.map((v) => v.instance)));
  for (const instance of everSeen) {
    let start: number | undefined;
    for (const s of after) {
      const live = copiesOf(s).get(instance)?.live.size ?? 0;
      if (live === 1) start ??= s.time;
      else start = undefined;
    }
    if (start !== undefined) since.set(instance, start);
  }
  return since;
}

export function checkVms(input: VmCheckInput): VmResult {
  const { runs, frozenOverlaps } = doubleRuns(input.samples);
  const base = {
    samples: input.samples.length,
    doubleRuns: runs,
    frozenOverlaps,
  };
  if (input.finalDesired === undefined) {
    const empty = { lost: [], unexpected: [], notRunning: [], strays: [], recoveryMs: {} };
    return { ...base, ...empty, valid: false, finalUnread: true };
  }
  const desired = new Set(input.finalDesired);
  const { must, may } = desiredBounds(input.history);
  const lost = [...must].filter((i) => !desired.has(i)).sort();
  const unexpected = [...desired].filter((i) => !may.has(i)).sort();
  const steady = steadySince(input.samples, input.healAt);
  const recoveryMs: Record<string, number> = {};
  const notRunning: string[] = [];
  for (const i of [...desired].sort()) {
    const t = steady.get(i);
    if (t === undefined || t - input.healAt > input.boundMs) notRunning.push(i);
    else recoveryMs[i] = Math.round(t - input.healAt);
  }
  const last = input.samples.at(-1);
  const strays =
    last === undefined
      ? []
      : [...copiesOf(last).entries()]
          .filter(([i, c]) => c.live.size > 0 && !desired.has(i))
          .map(([i]) => i)
          .sort();
  const valid =
    runs.length === 0 &&
    lost.length === 0 &&
    unexpected.length === 0 &&
    notRunning.length === 0 &&
    strays.length === 0 &&
    last !== undefined &&
    last.time >= input.healAt;
  return { ...base, valid, lost, unexpected, notRunning, strays, recoveryMs, finalUnread: false };
}

// The replicated VM table: what users asked for (a spec, the node to run it on, running or
// stopped) and what that node last reported (state, reason, a bounded event list). Pure and
// deterministic like the rest of the state machine: every field comes from a command.
//
// A `vm.put` carries the spec as the user wrote it; apply validates it (validateVmSpec, pure) and
// keeps the normalized form, so a spec that the validator refuses is never stored. The Raft index
// of the put is the VM's generation: the node's agent starts a failed VM again only for a newer
// generation, and a report for an older generation is ignored (docs/vmm.md, docs/protocols.md).
// Its version is what people read: 1 for the first spec of a name (a group), one more at each
// put that replaces it (counted at apply, so every member holds the same number; D33).

import { checkPlan } from '../sched/check.ts';
import { demandOf } from '../sched/demand.ts';
import { instanceName } from '../sched/place.ts';
import type { ClusterView, Demand, Placement, Resources } from '../sched/types.ts';
import { formatSpecErrors, placementOf, specHash, type VmSpec, validateVmSpec } from './vm_spec.ts';

/** VMs the cluster holds at most. */
export const VMS_MAX = 10_000;
/** Events kept per VM (the oldest go first). */
export const VM_EVENTS_MAX = 32;
/** Longest reason a report may carry, and the longest placement explanation kept. */
export const VM_REASON_BYTES_MAX = 1024;
/** Placements one vm.place carries at most (the leader's loop splits a bigger batch). */
export const VM_PLACE_BATCH_MAX = 500;

/**
 * The simulator's teeth only (sim/placement.ts, planted bug `applyWithoutRecheck`, which must be
 * caught by a sweep): when `skip` is true, vm.place commits every placement without checkPlan.
 * The product never sets it.
 */
export const PLANTED_PLACE_RECHECK = { skip: false };

export type VmState =
  | 'pending'
  | 'fetching'
  | 'starting'
  | 'running'
  | 'stopping'
  | 'stopped'
  | 'failed';
export const VM_STATES: readonly VmState[] = [
  'pending',
  'fetching',
  'starting',
  'running',
  'stopping',
  'stopped',
  'failed',
];

export interface VmEvent {
  readonly atMs: number;
  readonly generation: number;
  /** The VM's version when it happened (absent in events recorded before versions existed). */
  readonly version?: number;
  readonly state: VmState;
  readonly reason?: string;
}

export interface VmEntry {
  /** The instance's name: the spec's name when count is 1, else `<group>-<k>`. */
  readonly name: string;
  /** The spec's name (the group of instances). */
  readonly group: string;
  /** The group's spec with `name` set to the instance's (the VMM runs it under that name). */
  readonly spec: VmSpec;
  /** The member that runs it; '' while unplaced (the scheduler has not placed it yet). */
  readonly node: string;
  /** Raft index of the vm.put that set the spec. */
  readonly generation: number;
  /** 1 for the group's first spec, +1 at each vm.put that replaced it (what tables show). */
  readonly version: number;
  readonly desired: 'running' | 'stopped';
  /** Last reported by the node (`pending` until it reports). */
  readonly state: VmState;
  readonly reason?: string;
  readonly events: readonly VmEvent[];
  /** The last placement's explanation: where and its score, or why it fits nowhere. */
  readonly placement?: string;
  /** Reschedules after a failure, oldest first (bounded: RESCHEDULES_KEPT). */
  readonly reschedules?: readonly { readonly node: string; readonly atMs: number }[];
  /**
   * The health checks' verdict, as the agent of its node last committed it (vm.health): for
   * `generation` only; a new generation or another node drops it. Absent: not known yet (or the
   * spec has no checks: healthy while it runs). docs/deploy.md.
   */
  readonly health?: {
    readonly generation: number;
    readonly healthy: boolean;
    readonly sinceMs: number;
    readonly check: string;
    readonly message?: string;
  };
}

/** A row's health verdict (vm.health). */
export type VmHealth = NonNullable<VmEntry['health']>;

/** Reschedules remembered per instance (the policy counts those within its interval). */
export const RESCHEDULES_KEPT = 16;

/** One placement the leader's loop proposes (a Placement of node/sched, flattened). */
export interface PlacedInstance {
  readonly instance: string;
  readonly group: string;
  readonly generation: number;
  readonly node: string;
  readonly resources: Resources;
  /** The score total and how many nodes were ranked: for the explanation only. */
  readonly score: number;
  readonly scored: number;
}

/** A placement as the leader proposes it: the score's total only, to 3 decimals (the log keeps it). */
export function placedInstance(p: Placement): PlacedInstance {
  return {
    instance: p.instance,
    group: p.group,
    generation: p.generation,
    node: p.node,
    resources: p.resources,
    score: Math.round(p.score.total * 1000) / 1000,
    scored: p.scored,
  };
}

/** What the VM table needs of the rest of the state to apply placement commands. */
export interface PlacementContext {
  isMember(id: string): boolean;
  /** The cluster as committed now (node table and this VM table; node/state/view.ts). */
  view(): ClusterView;
  /** A member's display name, for explanations. */
  nameOf(id: string): string;
}

export type VmCommand =
  /** `node`: only in entries written before the scheduler (pinned, placed without a check). */
  | { readonly op: 'vm.put'; readonly spec: unknown; readonly node?: string; readonly atMs: number }
  | {
      readonly op: 'vm.place';
      readonly viewIndex: number;
      readonly placements: readonly PlacedInstance[];
      readonly atMs: number;
    }
  | {
      readonly op: 'vm.unplaced';
      readonly group: string;
      readonly generation: number;
      readonly message: string;
      readonly atMs: number;
    }
  | {
      readonly op: 'vm.release';
      readonly name: string;
      readonly generation: number;
      readonly reason: string;
      readonly atMs: number;
      /** A reschedule after a failure: remembered, and its node ranked last for it. */
      readonly failed?: boolean;
    }
  | { readonly op: 'vm.stop'; readonly name: string; readonly atMs: number }
  | { readonly op: 'vm.rm'; readonly name: string }
  | {
      readonly op: 'vm.report';
      readonly name: string;
      readonly node: string;
      readonly generation: number;
      readonly state: VmState;
      readonly reason?: string;
      readonly atMs: number;
    }
  /** The node's agent, when the verdict of a running instance's health checks changes. */
  | {
      readonly op: 'vm.health';
      readonly name: string;
      readonly node: string;
      readonly generation: number;
      readonly healthy: boolean;
      /** Which check decided, as text (`http 10.0.0.2:80/health`); all of them when healthy. */
      readonly check: string;
      readonly message?: string;
      readonly atMs: number;
    };

export type VmQuery =
  | { readonly op: 'vm.get'; readonly name: string }
  | { readonly op: 'vm.list'; readonly node?: string; readonly group?: string };

export type VmResult =
  | { ok: true; vm?: VmEntry; vms?: VmEntry[]; verdicts?: string[] }
  | { ok: false; code: 'notFound' | 'invalid' | 'stale'; message: string };

const nonEmpty = (x: unknown): x is string => typeof x === 'string' && x.length > 0;

const textProblem = (x: unknown, field: string): string | undefined =>
  typeof x !== 'string' || Buffer.byteLength(x) > VM_REASON_BYTES_MAX
    ? `${field} must be a string of at most VM_REASON_BYTES_MAX (${VM_REASON_BYTES_MAX}) bytes`
    : undefined;

function placedProblem(p: unknown): string | undefined {
  if (typeof p !== 'object' || p === null) return 'a placement must be an object';
  const o = p as Record<string, unknown>;
  const r = o.resources as Record<string, unknown> | null | undefined;
  if (!nonEmpty(o.instance) || !nonEmpty(o.group) || !nonEmpty(o.node))
    return 'a placement needs instance, group and node';
  if (!Number.isSafeInteger(o.generation) || !Number.isSafeInteger(o.scored))
    return 'a placement needs integer generation and scored';
  if (typeof o.score !== 'number' || !Number.isFinite(o.score)) return 'score must be a number';
  if (
    typeof r !== 'object' ||
    r === null ||
    !Number.isSafeInteger(r.cpus) ||
    !Number.isSafeInteger(r.memoryMiB)
  )
    return 'a placement needs integer resources';
  return undefined;
}

/** Whether a snapshot row's health is malformed. */
function healthRowProblem(h: unknown): boolean {
  if (typeof h !== 'object' || h === null) return true;
  const o = h as Record<string, unknown>;
  return (
    !Number.isSafeInteger(o.generation) ||
    typeof o.healthy !== 'boolean' ||
    !Number.isSafeInteger(o.sinceMs) ||
    typeof o.check !== 'string' ||
    (o.message !== undefined && typeof o.message !== 'string')
  );
}

/** Shape problems of a vm command (state-independent), or undefined. */
export function vmCommandProblem(o: Record<string, unknown>): string | undefined {
  if (!Number.isSafeInteger(o.atMs) && o.op !== 'vm.rm') return 'atMs must be an integer';
  switch (o.op) {
    case 'vm.put': {
      if (o.node !== undefined && !nonEmpty(o.node)) return 'node must be a member id';
      const r = validateVmSpec(o.spec);
      return r.ok ? undefined : formatSpecErrors(r.errors);
    }
    case 'vm.place':
      if (!Number.isSafeInteger(o.viewIndex)) return 'viewIndex must be an integer';
      if (!Array.isArray(o.placements) || o.placements.length > VM_PLACE_BATCH_MAX)
        return `placements must be a list of at most VM_PLACE_BATCH_MAX (${VM_PLACE_BATCH_MAX})`;
      for (const p of o.placements) {
        const why = placedProblem(p);
        if (why !== undefined) return why;
      }
      return undefined;
    case 'vm.unplaced':
      if (!nonEmpty(o.group) || !Number.isSafeInteger(o.generation))
        return 'vm.unplaced needs group and generation';
      return textProblem(o.message, 'message');
    case 'vm.release':
      if (!nonEmpty(o.name) || !Number.isSafeInteger(o.generation))
        return 'vm.release needs name and generation';
      if (o.failed !== undefined && typeof o.failed !== 'boolean')
        return 'failed must be a boolean';
      return textProblem(o.reason, 'reason');
    case 'vm.stop':
    case 'vm.rm':
      return nonEmpty(o.name) ? undefined : 'name must be a non-empty string';
    case 'vm.report':
      if (!nonEmpty(o.name) || !nonEmpty(o.node)) return 'report needs name and node';
      if (!Number.isSafeInteger(o.generation) || (o.generation as number) < 1)
        return 'generation must be a positive integer';
      if (!VM_STATES.includes(o.state as VmState)) return `unknown VM state ${String(o.state)}`;
      return o.reason === undefined ? undefined : textProblem(o.reason, 'reason');
    case 'vm.health':
      if (!nonEmpty(o.name) || !nonEmpty(o.node)) return 'vm.health needs name and node';
      if (!Number.isSafeInteger(o.generation) || (o.generation as number) < 1)
        return 'generation must be a positive integer';
      if (typeof o.healthy !== 'boolean') return 'healthy must be a boolean';
      if (!nonEmpty(o.check)) return 'check must be a non-empty string';
      return (
        textProblem(o.check, 'check') ??
        (o.message === undefined ? undefined : textProblem(o.message, 'message'))
      );
    default:
      return `unknown command op ${JSON.stringify(o.op)}`;
  }
}

export function vmQueryProblem(o: Record<string, unknown>): string | undefined {
  if (o.op === 'vm.get') return nonEmpty(o.name) ? undefined : 'name must be a non-empty string';
  if (o.op === 'vm.list') {
    if (o.group !== undefined && !nonEmpty(o.group)) return 'group must be a VM name';
    return o.node === undefined || nonEmpty(o.node) ? undefined : 'node must be a member id';
  }
  return `unknown query op ${JSON.stringify(o.op)}`;
}

/** The instance names of a spec: its name alone when count is 1, else `<name>-<k>`. */
export function instanceNames(spec: VmSpec): string[] {
  const count = placementOf(spec).count;
  return Array.from({ length: count }, (_, k) => instanceName(spec.name, k, count));
}

/** A proposed placement carries only its total; the breakdown is not replicated. */
const NO_SCORE = {
  fit: 0,
  antiAffinity: 0,
  affinity: 0,
  spread: 0,
  locality: 0,
  failedNode: 0,
  total: 0,
} as const;

/** The demand placement works on for a group, from one of its rows. */
export function demandOfRow(vm: VmEntry): Demand {
  return demandOf({ ...vm.spec, name: vm.group }, placementOf(vm.spec), vm.generation);
}

/** Whether a row already runs `spec` (its hash, the part the agent compares), under its name. */
function sameSpec(row: VmEntry, spec: VmSpec): boolean {
  return specHash(row.spec) === specHash({ ...spec, name: row.name });
}

function withEvent(vm: VmEntry, e: VmEvent): VmEvent[] {
  const events = [...vm.events, e];
  return events.length > VM_EVENTS_MAX ? events.slice(events.length - VM_EVENTS_MAX) : events;
}

export class VmTable {
  private vms = new Map<string, VmEntry>();
  /**
   * Counts changes to the table (not replicated, not in the snapshot): a node's agent and the
   * leader's loop look at it after each applied entry to know when to act.
   */
  changes = 0;

  apply(index: number, c: VmCommand, ctx: PlacementContext): VmResult {
    const r = this.applyOne(index, c, ctx);
    if (r.ok) this.changes++;
    return r;
  }

  private applyOne(index: number, c: VmCommand, ctx: PlacementContext): VmResult {
    switch (c.op) {
      case 'vm.put':
        return this.put(index, c, ctx);
      case 'vm.place':
        return this.place(index, c, ctx);
      case 'vm.unplaced': {
        let changed = 0;
        for (const vm of this.groupRows(c.group)) {
          if (vm.generation !== c.generation || vm.node !== '' || vm.placement === c.message)
            continue;
          this.vms.set(vm.name, { ...vm, placement: c.message });
          changed++;
        }
        return changed > 0 ? { ok: true } : { ok: false, code: 'stale', message: 'no change' };
      }
      case 'vm.release': {
        const vm = this.vms.get(c.name);
        if (vm === undefined) return { ok: false, code: 'notFound', message: `no VM ${c.name}` };
        if (vm.generation !== c.generation || vm.node === '')
          return { ok: false, code: 'stale', message: `${c.name} moved or changed since` };
        if (c.failed === true) {
          if (vm.state !== 'failed')
            return { ok: false, code: 'stale', message: `${c.name} is ${vm.state}, not failed` };
          const reschedules = [...(vm.reschedules ?? []), { node: vm.node, atMs: c.atMs }];
          this.vms.set(vm.name, { ...vm, reschedules: reschedules.slice(-RESCHEDULES_KEPT) });
        }
        this.unplace(this.vms.get(c.name)!, index, c.atMs, c.reason);
        return { ok: true, vm: this.vms.get(c.name)! };
      }
      case 'vm.stop': {
        const rows = this.named(c.name);
        if (rows.length === 0) return { ok: false, code: 'notFound', message: `no VM ${c.name}` };
        for (const vm of rows) {
          if (vm.desired !== 'stopped') this.vms.set(vm.name, { ...vm, desired: 'stopped' });
        }
        return { ok: true, vm: this.vms.get(rows[0]!.name)!, vms: this.named(c.name) };
      }
      case 'vm.rm': {
        const rows = this.named(c.name);
        if (rows.length === 0) return { ok: false, code: 'notFound', message: `no VM ${c.name}` };
        for (const vm of rows) this.vms.delete(vm.name);
        return { ok: true };
      }
      case 'vm.report':
        return this.report(c);
      case 'vm.health':
        return this.health(c);
    }
  }

  /** An instance by its name, or every instance of a group by the group's name. */
  private named(name: string): VmEntry[] {
    const one = this.vms.get(name);
    if (one !== undefined) return [one];
    return this.groupRows(name);
  }

  private groupRows(group: string): VmEntry[] {
    return [...this.vms.values()].filter((v) => v.group === group);
  }

  /**
   * A new spec for a group: one row per instance, all at this generation. An instance that had a
   * node keeps it when that node still passes every filter for the new spec (an update in
   * place); instances beyond `count` are deleted; the rest wait for the leader's loop.
   */
  private put(index: number, c: VmCommand & { op: 'vm.put' }, ctx: PlacementContext): VmResult {
    const r = validateVmSpec(c.spec);
    if (!r.ok) return { ok: false, code: 'invalid', message: formatSpecErrors(r.errors) };
    if (c.node !== undefined && !ctx.isMember(c.node)) {
      return { ok: false, code: 'notFound', message: `no member ${c.node}: see pcr members` };
    }
    const old = new Map(this.groupRows(r.spec.name).map((v) => [v.name, v]));
    const version = Math.max(0, ...[...old.values()].map((v) => v.version)) + 1;
    return this.writeGroup(index, r.spec, version, c.atMs, ctx, c.node);
  }

  /**
   * Whether rows named `names` may be written for `group`: within VMS_MAX, and no name taken by an
   * instance of another group. The refusal, or undefined.
   */
  private writeProblem(group: string, names: readonly string[]): VmResult | undefined {
    const added = names.filter((n) => !this.vms.has(n)).length;
    if (this.vms.size + added > VMS_MAX) {
      return { ok: false, code: 'invalid', message: `the cluster holds VMS_MAX (${VMS_MAX}) VMs` };
    }
    const clash = names.find(
      (n) => this.vms.get(n)?.group !== undefined && this.vms.get(n)!.group !== group,
    );
    if (clash === undefined) return undefined;
    return {
      ok: false,
      code: 'invalid',
      message: `${clash} is an instance of the VM group ${this.vms.get(clash)!.group}: choose another name`,
    };
  }

  /**
   * Every instance of a group to a validated spec at generation `index` and version `version`
   * (vm.put, and a deployment's version written whole: node/state/deployments.ts). Refused (and
   * nothing changed) beyond VMS_MAX or when a name belongs to another group.
   */
  writeGroup(
    index: number,
    spec: VmSpec,
    version: number,
    atMs: number,
    ctx: PlacementContext,
    pinned?: string,
  ): VmResult {
    const group = spec.name;
    const names = instanceNames(spec);
    const old = new Map(this.groupRows(group).map((v) => [v.name, v]));
    const refused = this.writeProblem(group, names);
    if (refused !== undefined) return refused;
    const kept = pinned === undefined ? this.keptNodes(index, spec, names, old, ctx) : undefined;
    for (const [name] of old) if (!names.includes(name)) this.vms.delete(name);
    for (const name of names) {
      const prev = old.get(name);
      const node = pinned ?? kept?.get(name) ?? '';
      this.setRow(prev, name, group, spec, node, index, version, atMs);
    }
    this.changes++;
    return { ok: true, vm: this.vms.get(names[0]!)!, vms: names.map((n) => this.vms.get(n)!) };
  }

  /** A row (new, or replacing `prev`) at a generation and version: pending, health dropped. */
  private setRow(
    prev: VmEntry | undefined,
    name: string,
    group: string,
    spec: VmSpec,
    node: string,
    generation: number,
    version: number,
    atMs: number,
  ): void {
    const base: VmEntry = {
      name,
      group,
      spec: { ...spec, name },
      node,
      generation,
      version,
      desired: 'running',
      state: 'pending',
      events: prev?.events ?? [],
      ...(node === '' && prev?.node ? { placement: `its node no longer fits the new spec` } : {}),
    };
    this.vms.set(name, {
      ...base,
      events: withEvent(base, { atMs, generation, version, state: 'pending' }),
    });
  }

  /**
   * Named instances of a group to a spec at generation `generation` and version `version` (a
   * rolling update's step: node/state/deployments.ts), rows created for names that have none. An
   * instance keeps its node when that node still passes every filter for the spec with the
   * replaced instances taken out of the view (as vm.put keeps nodes); else it waits for placement.
   * Refused (nothing changed) beyond VMS_MAX or when a name belongs to another group.
   */
  replaceInstances(
    generation: number,
    spec: VmSpec,
    version: number,
    names: readonly string[],
    atMs: number,
    ctx: PlacementContext,
  ): VmResult {
    const group = spec.name;
    const refused = this.writeProblem(group, names);
    if (refused !== undefined) return refused;
    const old = new Map(
      names.flatMap((n) => {
        const v = this.vms.get(n);
        return v === undefined ? [] : [[n, v] as const];
      }),
    );
    const kept = this.keptNodes(generation, spec, names, old, ctx, 'replaced');
    for (const name of names) {
      const prev = old.get(name);
      const node = kept.get(name) ?? '';
      this.setRow(prev, name, group, spec, node, generation, version, atMs);
      // The same spec on the same node (a revert to what still runs there): the agent restarts
      // nothing (it compares spec hashes) and so reports nothing new; the row keeps the state it
      // reported, at the new generation, as an update in place.
      if (
        prev !== undefined &&
        prev.desired === 'running' &&
        node !== '' &&
        node === prev.node &&
        sameSpec(prev, spec)
      )
        this.keepState(name, prev, generation, version, atMs);
    }
    this.changes++;
    return { ok: true, vms: names.map((n) => this.vms.get(n)!) };
  }

  /** A replaced row takes its previous state (and reason) at its new generation, as an event. */
  private keepState(
    name: string,
    prev: VmEntry,
    generation: number,
    version: number,
    atMs: number,
  ): void {
    const row = this.vms.get(name)!;
    const { reason: _r, ...rest } = row;
    const why = prev.reason !== undefined ? { reason: prev.reason } : {};
    this.vms.set(name, {
      ...rest,
      state: prev.state,
      ...why,
      events: withEvent(row, { atMs, generation, version, state: prev.state, ...why }),
    });
  }

  /** Deletes named rows (a rolling update's extra instances; their node's agent stops them). */
  /** Every instance of a group desired stopped (a deployment's stop). */
  stopInstances(names: readonly string[]): void {
    for (const n of names) {
      const vm = this.vms.get(n);
      if (vm !== undefined && vm.desired !== 'stopped') {
        this.vms.set(n, { ...vm, desired: 'stopped' });
        this.changes++;
      }
    }
  }

  removeInstances(names: readonly string[]): void {
    for (const n of names) if (this.vms.delete(n)) this.changes++;
  }

  /** Every instance of a group, sorted by name. */
  groupInstances(group: string): VmEntry[] {
    return this.list(undefined, group);
  }

  /** For the instances that had a node: that node, if it passes every filter for the new spec. */
  private keptNodes(
    index: number,
    spec: VmSpec,
    names: readonly string[],
    old: ReadonlyMap<string, VmEntry>,
    ctx: PlacementContext,
    /** `group`: the whole group is replaced (vm.put); `replaced`: only `names` (a rollout step). */
    scope: 'group' | 'replaced' = 'group',
  ): Map<string, string> {
    const out = new Map<string, string>();
    const candidates = names.filter((n) => (old.get(n)?.node ?? '') !== '');
    if (candidates.length === 0) return out;
    const view = ctx.view();
    const group = spec.name;
    const leaving = new Set(names);
    const without: ClusterView = {
      ...view,
      allocations: view.allocations.filter((a) =>
        scope === 'group' ? a.group !== group : !leaving.has(a.instance),
      ),
      generations: { ...view.generations, [group]: index },
    };
    const demand = {
      ...demandOf(spec, placementOf(spec), index),
      ...(scope === 'replaced' ? { instances: [...names] } : {}),
    };
    const plan: Placement[] = candidates.map((n) => ({
      instance: n,
      group,
      generation: index,
      node: old.get(n)!.node,
      resources: demand.resources,
      score: NO_SCORE,
      scored: 0,
    }));
    checkPlan(without, { [group]: demand }, plan).forEach((v, i) => {
      if (v.ok) out.set(plan[i]!.instance, plan[i]!.node);
    });
    return out;
  }

  /**
   * The leader's placements, each re-checked against the cluster at this index (checkPlan):
   * a stale one (node gone or full, spec changed, instance placed meanwhile) is not committed.
   */
  private place(index: number, c: VmCommand & { op: 'vm.place' }, ctx: PlacementContext): VmResult {
    const view = ctx.view();
    // Each row's own demand (a deployment's group mid-rollout holds two specs), once per version.
    const demands = new Map<string, Demand>();
    const plan: Placement[] = [];
    const verdicts: string[] = [];
    const valid: boolean[] = [];
    for (const p of c.placements) {
      const row = this.vms.get(p.instance);
      const ok = row !== undefined && row.group === p.group && row.desired === 'running';
      valid.push(ok);
      if (!ok) continue;
      const key = `${row.group}\u0000${row.generation}`;
      if (!demands.has(key)) demands.set(key, demandOfRow(row));
      plan.push({ ...p, score: { ...NO_SCORE, total: p.score } });
    }
    const demandOfPlaced = (p: Placement): Demand | undefined => {
      const row = this.vms.get(p.instance)!;
      return demands.get(`${row.group}\u0000${row.generation}`);
    };
    const checked = PLANTED_PLACE_RECHECK.skip
      ? plan.map(() => ({ ok: true }) as const)
      : checkPlan(view, demandOfPlaced, plan);
    let k = 0;
    c.placements.forEach((p, i) => {
      if (!valid[i]) {
        verdicts.push(`${p.instance}: stale placement: no such instance wants to run`);
        return;
      }
      const v = checked[k++]!;
      if (!v.ok) {
        verdicts.push(v.reason);
        return;
      }
      const row = this.vms.get(p.instance)!;
      const why = `placed on ${ctx.nameOf(p.node)} at index ${index} (planned at ${c.viewIndex}): score ${p.score.toFixed(2)}, best of ${p.scored} ranked`;
      // A new node: a verdict of another node (there is none for an unplaced row) is dropped.
      const { reason: _r, health: _h, ...rest } = row;
      const next: VmEntry = { ...rest, node: p.node, state: 'pending', placement: why };
      this.vms.set(p.instance, {
        ...next,
        events: withEvent(next, {
          atMs: c.atMs,
          generation: row.generation,
          version: row.version,
          state: 'pending',
          reason: why,
        }),
      });
      verdicts.push('ok');
    });
    return { ok: true, verdicts };
  }

  private report(c: VmCommand & { op: 'vm.report' }): VmResult {
    const vm = this.vms.get(c.name);
    if (vm === undefined) return { ok: false, code: 'notFound', message: `no VM ${c.name}` };
    if (vm.node !== c.node || vm.generation !== c.generation) {
      return {
        ok: false,
        code: 'stale',
        message: `report for ${c.name} generation ${c.generation} on ${c.node}; current is generation ${vm.generation} on ${vm.node || 'no node'}`,
      };
    }
    if (vm.state === c.state && vm.reason === c.reason) return { ok: true, vm };
    const { reason: _drop, ...rest } = vm;
    const next: VmEntry = {
      ...rest,
      state: c.state,
      ...(c.reason !== undefined ? { reason: c.reason } : {}),
      events: withEvent(vm, {
        atMs: c.atMs,
        generation: c.generation,
        version: vm.version,
        state: c.state,
        ...(c.reason !== undefined ? { reason: c.reason } : {}),
      }),
    };
    this.vms.set(c.name, next);
    return { ok: true, vm: next };
  }

  /**
   * A new verdict of the row's node for the row's generation. The same verdict again changes
   * nothing (stale: the agent proposes only changes, and a retry may commit twice); `sinceMs`
   * moves only when `healthy` flips (a new message for the same verdict keeps it).
   */
  private health(c: VmCommand & { op: 'vm.health' }): VmResult {
    const vm = this.vms.get(c.name);
    if (vm === undefined) return { ok: false, code: 'notFound', message: `no VM ${c.name}` };
    if (vm.node !== c.node || vm.generation !== c.generation) {
      return {
        ok: false,
        code: 'stale',
        message: `health of ${c.name} generation ${c.generation} on ${c.node}; current is generation ${vm.generation} on ${vm.node || 'no node'}`,
      };
    }
    const prev = vm.health?.generation === c.generation ? vm.health : undefined;
    if (
      prev !== undefined &&
      prev.healthy === c.healthy &&
      prev.check === c.check &&
      prev.message === c.message
    ) {
      return { ok: false, code: 'stale', message: `${c.name}: the same verdict again` };
    }
    const next: VmEntry = {
      ...vm,
      health: {
        generation: c.generation,
        healthy: c.healthy,
        sinceMs: prev?.healthy === c.healthy ? prev.sinceMs : c.atMs,
        check: c.check,
        ...(c.message !== undefined ? { message: c.message } : {}),
      },
    };
    this.vms.set(c.name, next);
    return { ok: true, vm: next };
  }

  /** Takes a row off its node: the node's health verdict goes with it. */
  private unplace(vm: VmEntry, index: number, atMs: number, reason: string): void {
    const { reason: _drop, health: _health, ...rest } = vm;
    const next: VmEntry = {
      ...rest,
      node: '',
      state: 'pending',
      reason,
      events: withEvent(vm, {
        atMs,
        generation: index,
        version: vm.version,
        state: 'pending',
        reason,
      }),
    };
    this.vms.set(vm.name, next);
  }

  /**
   * Unplaces every VM of a node that left the cluster or went down: no node runs it until the
   * leader's loop places it again. Its state goes back to pending with the reason, as an event.
   */
  release(node: string, index: number, atMs: number, reason: string): void {
    for (const vm of [...this.vms.values()]) {
      if (vm.node !== node) continue;
      this.unplace(vm, index, atMs, reason);
      this.changes++;
    }
  }

  get(name: string): VmEntry | undefined {
    return this.vms.get(name);
  }

  query(q: VmQuery): VmResult {
    if (q.op === 'vm.get') {
      const vm = this.vms.get(q.name);
      return vm === undefined
        ? { ok: false, code: 'notFound', message: `no VM ${q.name}` }
        : { ok: true, vm };
    }
    return { ok: true, vms: this.list(q.node, q.group) };
  }

  /** Sorted by name; only one node's (or one group's) when given. */
  list(node?: string, group?: string): VmEntry[] {
    return [...this.vms.values()]
      .filter(
        (v) =>
          (node === undefined || v.node === node) && (group === undefined || v.group === group),
      )
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Every row (unsorted): the view builder's input. */
  all(): IterableIterator<VmEntry> {
    return this.vms.values();
  }

  /** Rows for the snapshot, sorted by name. */
  rows(): VmEntry[] {
    return this.list();
  }

  /**
   * Replaces the table by snapshot rows; throws on a malformed row (nothing changes). A row from
   * before versions existed restores as version 1 (its history of puts is not in the image).
   */
  restore(rows: unknown): void {
    if (!Array.isArray(rows)) throw new Error('state machine: malformed snapshot VM table');
    const vms = new Map<string, VmEntry>();
    for (const row of rows as unknown[]) {
      const v = row as Partial<VmEntry> | null;
      if (
        v === null ||
        typeof v !== 'object' ||
        !nonEmpty(v.name) ||
        typeof v.node !== 'string' ||
        !Number.isSafeInteger(v.generation) ||
        (v.desired !== 'running' && v.desired !== 'stopped') ||
        !VM_STATES.includes(v.state as VmState) ||
        !Array.isArray(v.events) ||
        typeof v.spec !== 'object' ||
        v.spec === null ||
        (v.version !== undefined && !(Number.isSafeInteger(v.version) && v.version >= 1))
      ) {
        throw new Error('state machine: malformed snapshot VM row');
      }
      if (v.group !== undefined && !nonEmpty(v.group))
        throw new Error('state machine: malformed snapshot VM row');
      if (v.health !== undefined && healthRowProblem(v.health))
        throw new Error('state machine: malformed snapshot VM row (health)');
      // Rows from before groups (snapshot version 4 and older) are groups of one; rows from
      // before versions are version 1. Keys in vm.put's order: equal states keep equal bytes.
      const { name, group, spec, node, generation, version, ...rest } = v as VmEntry;
      vms.set(name, {
        name,
        group: group ?? name,
        spec,
        node,
        generation,
        version: version ?? 1,
        ...rest,
      });
    }
    this.vms = vms;
    this.changes++;
  }
}

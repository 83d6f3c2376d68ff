// The replicated VM table: what users asked for (a spec, the node to run it on, running or
// stopped) and what that node last reported (state, reason, a bounded event list). Pure and
// deterministic like the rest of the state machine: every field comes from a command.
//
// A `vm.put` carries the spec as the user wrote it; apply validates it (validateVmSpec, pure) and
// keeps the normalized form, so a spec that the validator refuses is never stored. The Raft index
// of the put is the VM's generation: the node's agent starts a failed VM again only for a newer
// generation, and a report for an older generation is ignored (docs/vmm.md, docs/protocols.md).
// Its version is what people read: 1 for the first spec of a name, one more at each put that
// replaces it (counted at apply, so every member holds the same number).

import { formatSpecErrors, type VmSpec, validateVmSpec } from './vm_spec.ts';

/** VMs the cluster holds at most. */
export const VMS_MAX = 10_000;
/** Events kept per VM (the oldest go first). */
export const VM_EVENTS_MAX = 32;
/** Longest reason a report may carry. */
export const VM_REASON_BYTES_MAX = 1024;

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
  readonly name: string;
  readonly spec: VmSpec;
  /** The member that runs it; '' while unplaced (its node was removed). */
  readonly node: string;
  /** Raft index of the vm.put that set the spec. */
  readonly generation: number;
  /** 1 for the first spec of this name, +1 at each vm.put that replaced it (what tables show). */
  readonly version: number;
  readonly desired: 'running' | 'stopped';
  /** Last reported by the node (`pending` until it reports). */
  readonly state: VmState;
  readonly reason?: string;
  readonly events: readonly VmEvent[];
}

export type VmCommand =
  | { readonly op: 'vm.put'; readonly spec: unknown; readonly node: string; readonly atMs: number }
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
    };

export type VmQuery =
  | { readonly op: 'vm.get'; readonly name: string }
  | { readonly op: 'vm.list'; readonly node?: string };

export type VmResult =
  | { ok: true; vm?: VmEntry; vms?: VmEntry[] }
  | { ok: false; code: 'notFound' | 'invalid' | 'stale'; message: string };

const nonEmpty = (x: unknown): x is string => typeof x === 'string' && x.length > 0;

/** Shape problems of a vm command (state-independent), or undefined. */
export function vmCommandProblem(o: Record<string, unknown>): string | undefined {
  switch (o.op) {
    case 'vm.put': {
      if (!nonEmpty(o.node)) return 'node must be a member id';
      if (!Number.isSafeInteger(o.atMs)) return 'atMs must be an integer';
      const r = validateVmSpec(o.spec);
      return r.ok ? undefined : formatSpecErrors(r.errors);
    }
    case 'vm.stop':
      if (!Number.isSafeInteger(o.atMs)) return 'atMs must be an integer';
      return nonEmpty(o.name) ? undefined : 'name must be a non-empty string';
    case 'vm.rm':
      return nonEmpty(o.name) ? undefined : 'name must be a non-empty string';
    case 'vm.report':
      if (!nonEmpty(o.name) || !nonEmpty(o.node)) return 'report needs name and node';
      if (!Number.isSafeInteger(o.generation) || (o.generation as number) < 1)
        return 'generation must be a positive integer';
      if (!VM_STATES.includes(o.state as VmState)) return `unknown VM state ${String(o.state)}`;
      if (!Number.isSafeInteger(o.atMs)) return 'atMs must be an integer';
      if (
        o.reason !== undefined &&
        (typeof o.reason !== 'string' || Buffer.byteLength(o.reason) > VM_REASON_BYTES_MAX)
      )
        return `reason must be a string of at most VM_REASON_BYTES_MAX (${VM_REASON_BYTES_MAX}) bytes`;
      return undefined;
    default:
      return `unknown command op ${JSON.stringify(o.op)}`;
  }
}

export function vmQueryProblem(o: Record<string, unknown>): string | undefined {
  if (o.op === 'vm.get') return nonEmpty(o.name) ? undefined : 'name must be a non-empty string';
  if (o.op === 'vm.list')
    return o.node === undefined || nonEmpty(o.node) ? undefined : 'node must be a member id';
  return `unknown query op ${JSON.stringify(o.op)}`;
}

function withEvent(vm: VmEntry, e: VmEvent): VmEvent[] {
  const events = [...vm.events, e];
  return events.length > VM_EVENTS_MAX ? events.slice(events.length - VM_EVENTS_MAX) : events;
}

export class VmTable {
  private vms = new Map<string, VmEntry>();
  /**
   * Counts changes to the table (not replicated, not in the snapshot): a node's agent looks at it
   * after each applied entry to know when to reconcile.
   */
  changes = 0;

  /** `isMember` says whether a node id is in the member table (vm.put must name a member). */
  apply(index: number, c: VmCommand, isMember: (id: string) => boolean): VmResult {
    const r = this.applyOne(index, c, isMember);
    if (r.ok) this.changes++;
    return r;
  }

  private applyOne(index: number, c: VmCommand, isMember: (id: string) => boolean): VmResult {
    switch (c.op) {
      case 'vm.put': {
        const r = validateVmSpec(c.spec);
        if (!r.ok) return { ok: false, code: 'invalid', message: formatSpecErrors(r.errors) };
        if (!isMember(c.node)) {
          return { ok: false, code: 'notFound', message: `no member ${c.node}: see pcr members` };
        }
        const old = this.vms.get(r.spec.name);
        if (old === undefined && this.vms.size >= VMS_MAX) {
          return {
            ok: false,
            code: 'invalid',
            message: `the cluster holds VMS_MAX (${VMS_MAX}) VMs`,
          };
        }
        const base: VmEntry = {
          name: r.spec.name,
          spec: r.spec,
          node: c.node,
          generation: index,
          version: (old?.version ?? 0) + 1,
          desired: 'running',
          state: 'pending',
          events: old?.events ?? [],
        };
        const vm = {
          ...base,
          events: withEvent(base, {
            atMs: c.atMs,
            generation: index,
            version: base.version,
            state: 'pending',
          }),
        };
        this.vms.set(vm.name, vm);
        return { ok: true, vm };
      }
      case 'vm.stop': {
        const vm = this.vms.get(c.name);
        if (vm === undefined) return { ok: false, code: 'notFound', message: `no VM ${c.name}` };
        if (vm.desired === 'stopped') return { ok: true, vm };
        const next = { ...vm, desired: 'stopped' as const };
        this.vms.set(c.name, next);
        return { ok: true, vm: next };
      }
      case 'vm.rm':
        if (!this.vms.delete(c.name)) {
          return { ok: false, code: 'notFound', message: `no VM ${c.name}` };
        }
        return { ok: true };
      case 'vm.report': {
        const vm = this.vms.get(c.name);
        if (vm === undefined) return { ok: false, code: 'notFound', message: `no VM ${c.name}` };
        if (vm.node !== c.node || vm.generation !== c.generation) {
          return {
            ok: false,
            code: 'stale',
            message: `report for ${c.name} generation ${c.generation} on ${c.node}; current is generation ${vm.generation} on ${vm.node}`,
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
    }
  }

  /**
   * Unplaces every VM of a node that left the cluster: no node runs it until it is placed again.
   * Its state goes back to pending with the reason, as an event, so `pcr vm status` says why.
   */
  release(node: string, index: number, atMs: number, reason: string): void {
    for (const vm of this.vms.values()) {
      if (vm.node !== node) continue;
      const { reason: _drop, ...rest } = vm;
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
    return { ok: true, vms: this.list(q.node) };
  }

  /** Sorted by name; only one node's when `node` is given. */
  list(node?: string): VmEntry[] {
    return [...this.vms.values()]
      .filter((v) => node === undefined || v.node === node)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
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
      // version right after generation, where vm.put puts it: equal states keep equal bytes.
      const { name, spec, node, generation, version, ...rest } = v as VmEntry;
      vms.set(name, { name, spec, node, generation, version: version ?? 1, ...rest });
    }
    this.vms = vms;
    this.changes++;
  }
}

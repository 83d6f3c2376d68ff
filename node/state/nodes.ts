// The replicated node table: what placement needs to know of each member (docs/scheduling.md,
// "Replicated state"). Capacity, arch, labels and backends come from the node itself at start
// (`node.register`); eligibility and drains from the operator; `down` from the leader's lifecycle.
// Gossip never decides feasibility: every member computes the same placement from this table at
// one index. Pure and deterministic like the rest of the state machine.

import { validateLabels } from '../sched/spec.ts';
import type { NodeStatus, Resources } from '../sched/types.ts';

/** Backends a node may advertise at most, and the longest name of one. */
export const NODE_BACKENDS_MAX = 16;
export const NODE_BACKEND_BYTES_MAX = 64;
/** The longest arch string (`x86_64`, `aarch64`, ...). */
export const NODE_ARCH_BYTES_MAX = 32;
/** A node's capacity is at most this many cpus and MiB (a sanity bound on what a node claims). */
export const NODE_CPUS_MAX = 4096;
export const NODE_MEMORY_MIB_MAX = 64 * 1024 * 1024;

export interface NodeInfo {
  readonly id: string;
  readonly arch: string;
  readonly capacity: Resources;
  readonly labels: Readonly<Record<string, string>>;
  readonly backends: readonly string[];
  readonly eligible: boolean;
  /** Set while draining: the instant (proposer's clock) after which the rest is released at once. */
  readonly drain?: { readonly deadlineMs: number };
  /** Marked by the leader's lifecycle: no Raft answer for --node-down-after. */
  readonly down: boolean;
  /** Raft index of the last change of `down` (for `pcr node status`). */
  readonly since: number;
}

export type NodeCommand =
  | {
      readonly op: 'node.register';
      readonly id: string;
      readonly arch: string;
      readonly capacity: Resources;
      readonly labels: Readonly<Record<string, string>>;
      readonly backends: readonly string[];
    }
  | {
      readonly op: 'node.status';
      readonly id: string;
      readonly down: boolean;
      readonly atMs: number;
    }
  | { readonly op: 'node.eligibility'; readonly id: string; readonly eligible: boolean }
  | {
      readonly op: 'node.drain';
      readonly id: string;
      readonly deadlineMs?: number;
      readonly cancel?: boolean;
    };

export type NodeResult =
  | { ok: true; node?: NodeInfo }
  | { ok: false; code: 'notFound' | 'invalid'; message: string };

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const nonEmpty = (x: unknown): x is string => typeof x === 'string' && x.length > 0;
const wholeIn = (x: unknown, max: number): boolean =>
  Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= max;

/** Shape problems of a node command (state-independent), or undefined. */
export function nodeCommandProblem(o: Record<string, unknown>): string | undefined {
  if (!nonEmpty(o.id)) return 'id must be a member id';
  switch (o.op) {
    case 'node.register':
      return registerProblem(o);
    case 'node.status':
      if (typeof o.down !== 'boolean') return 'down must be true or false';
      return Number.isSafeInteger(o.atMs) ? undefined : 'atMs must be an integer';
    case 'node.eligibility':
      return typeof o.eligible === 'boolean' ? undefined : 'eligible must be true or false';
    case 'node.drain':
      if (o.cancel === true) return undefined;
      return Number.isSafeInteger(o.deadlineMs) ? undefined : 'deadlineMs must be an integer';
    default:
      return `unknown command op ${JSON.stringify(o.op)}`;
  }
}

function registerProblem(o: Record<string, unknown>): string | undefined {
  if (!nonEmpty(o.arch) || Buffer.byteLength(o.arch) > NODE_ARCH_BYTES_MAX)
    return `arch must be a string of 1 to ${NODE_ARCH_BYTES_MAX} bytes (NODE_ARCH_BYTES_MAX)`;
  const c = o.capacity;
  if (!isObj(c) || !wholeIn(c.cpus, NODE_CPUS_MAX) || !wholeIn(c.memoryMiB, NODE_MEMORY_MIB_MAX))
    return `capacity must be { cpus: 0..${NODE_CPUS_MAX}, memoryMiB: 0..${NODE_MEMORY_MIB_MAX} } (NODE_CPUS_MAX, NODE_MEMORY_MIB_MAX), whole numbers`;
  if (!isObj(o.labels)) return 'labels must be an object of strings';
  const why = validateLabels(o.labels as Record<string, string>);
  if (why.length > 0) return why.join('; ');
  const b = o.backends;
  if (
    !Array.isArray(b) ||
    b.length > NODE_BACKENDS_MAX ||
    !b.every((x) => nonEmpty(x) && Buffer.byteLength(x) <= NODE_BACKEND_BYTES_MAX)
  )
    return `backends must be at most ${NODE_BACKENDS_MAX} names (NODE_BACKENDS_MAX) of at most ${NODE_BACKEND_BYTES_MAX} bytes`;
  return undefined;
}

/** The status placement sees (docs/scheduling.md): down, then draining, then ineligible. */
export function statusOf(n: NodeInfo): NodeStatus {
  if (n.down) return 'down';
  if (n.drain !== undefined) return 'draining';
  return n.eligible ? 'ready' : 'ineligible';
}

export class NodeTable {
  private nodes = new Map<string, NodeInfo>();
  /** Counts changes (not replicated): the leader's loop evaluates again when it moves. */
  changes = 0;

  /** `isMember`: node.* commands name members only. */
  apply(index: number, c: NodeCommand, isMember: (id: string) => boolean): NodeResult {
    if (!isMember(c.id))
      return { ok: false, code: 'notFound', message: `no member ${c.id}: see pcr members` };
    const old = this.nodes.get(c.id);
    let next: NodeInfo;
    if (c.op === 'node.register') {
      next = {
        id: c.id,
        arch: c.arch,
        capacity: { cpus: c.capacity.cpus, memoryMiB: c.capacity.memoryMiB },
        labels: sortedLabels(c.labels),
        backends: [...new Set(c.backends)].sort(),
        eligible: old?.eligible ?? true,
        ...(old?.drain !== undefined ? { drain: old.drain } : {}),
        // It answers: it just had a command committed. (The leader marks it down again if not.)
        down: false,
        since: old === undefined || old.down ? index : old.since,
      };
    } else {
      if (old === undefined)
        return {
          ok: false,
          code: 'notFound',
          message: `node ${c.id} has not registered its capacity yet (it registers when it starts)`,
        };
      if (c.op === 'node.status') {
        if (old.down === c.down) return { ok: true, node: old };
        next = { ...old, down: c.down, since: index };
      } else if (c.op === 'node.eligibility') {
        next = { ...old, eligible: c.eligible };
      } else if (c.cancel === true) {
        const { drain: _d, ...rest } = old;
        next = rest;
      } else {
        next = { ...old, drain: { deadlineMs: c.deadlineMs! }, eligible: false };
      }
    }
    this.nodes.set(c.id, next);
    this.changes++;
    return { ok: true, node: next };
  }

  /** A member left the cluster: its row goes with it. */
  forget(id: string): void {
    if (this.nodes.delete(id)) this.changes++;
  }

  get(id: string): NodeInfo | undefined {
    return this.nodes.get(id);
  }

  /** Sorted by ID. */
  list(): NodeInfo[] {
    return [...this.nodes.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  rows(): NodeInfo[] {
    return this.list();
  }

  /** Replaces the table by snapshot rows; throws on a malformed row (nothing changes). */
  restore(rows: unknown): void {
    if (!Array.isArray(rows)) throw new Error('state machine: malformed snapshot node table');
    const nodes = new Map<string, NodeInfo>();
    for (const row of rows as unknown[]) {
      if (
        !isObj(row) ||
        registerProblem(row) !== undefined ||
        !nonEmpty(row.id) ||
        typeof row.eligible !== 'boolean' ||
        typeof row.down !== 'boolean' ||
        !Number.isSafeInteger(row.since) ||
        (row.drain !== undefined &&
          (!isObj(row.drain) || !Number.isSafeInteger(row.drain.deadlineMs)))
      )
        throw new Error('state machine: malformed snapshot node row');
      nodes.set(row.id, row as unknown as NodeInfo);
    }
    this.nodes = nodes;
    this.changes++;
  }
}

function sortedLabels(labels: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(labels).sort()) out[k] = labels[k]!;
  return out;
}

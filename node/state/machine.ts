// The replicated state machine of the cluster: what every member holds once it has applied the
// committed log. Pure and deterministic: apply(index, command) depends only on the state and its
// arguments, never throws on bad input (a malformed command applies as a no-op with an error
// result, identically on every member), and snapshot() encodes the same state to the same bytes.
// The node (node/raft/node.ts) and the simulator (sim/) run this very code.
//
// Parts: a key-value space (for users and tests; lin-kv semantics for read, write and
// compare-and-set), the member table, the VM table (node/state/vms.ts: specs, the node each
// runs on, reported state) and the binary cache's token table (node/state/tokens.ts). New parts
// come as new command families and snapshot sections (bump SNAPSHOT_VERSION).

import { Packr } from 'msgpackr';
import { assert, assertSafeIndex } from '../../consensus/assert.ts';
import type { ClusterView } from '../sched/types.ts';
import {
  type DeployCommand,
  type Deployment,
  DeploymentTable,
  type DeployQuery,
  type DeployResult,
  deployCommandProblem,
  deploymentOwns,
  deployQueryProblem,
} from './deployments.ts';
import { KEY_BYTES_MAX, VALUE_BYTES_MAX } from './kv_limits.ts';
import { type NodeCommand, type NodeInfo, NodeTable, nodeCommandProblem } from './nodes.ts';
import {
  type TokenCommand,
  type TokenEntry,
  type TokenQuery,
  type TokenResult,
  TokenTable,
  tokenCommandProblem,
} from './tokens.ts';
import { clusterView } from './view.ts';
import {
  type VmCommand,
  type VmEntry,
  type VmQuery,
  type VmResult,
  VmTable,
  vmCommandProblem,
  vmQueryProblem,
} from './vms.ts';

export { KEY_BYTES_MAX, VALUE_BYTES_MAX };
/** Longest request ID carried in an entry. */
export const REQUEST_ID_BYTES_MAX = 128;
/** Format of snapshot() images; restore() refuses others. */
export const SNAPSHOT_VERSION = 7;
/**
 * Removed members remembered (tombstones); beyond this the one removed longest ago is forgotten.
 * A removed node learns of its removal from them, and a removed ID cannot be recorded again.
 */
export const REMOVED_MEMBERS_MAX = 1024;
/**
 * Client sessions (Raft dissertation §6.3): a request ID is `<session>.<seq in base 36>`, seqs
 * increasing within a session. A command whose (session, seq) was already applied is not applied
 * again: a forwarded proposal delivered twice is committed twice but takes effect once. A seq more
 * than SESSION_WINDOW below the session's highest is refused too (it can only be a very late copy).
 */
export const SESSION_WINDOW = 1024;
/** Sessions remembered; beyond this the one applied longest ago is forgotten. */
export const SESSIONS_MAX = 4096;

export type Role = 'voter' | 'learner' | 'member';

export interface Member {
  readonly id: string;
  readonly addrs: readonly string[];
  readonly role: Role;
  /** The name the operator gave the node (`pcr node start --name`); absent in old records. */
  readonly name?: string;
}

/** Longest node name (a DNS label's length: names end up in host names and tables). */
export const MEMBER_NAME_BYTES_MAX = 63;
/** A node name: letters, digits, '.', '_' and '-', starting with a letter or a digit. */
export const MEMBER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Why `name` is not a usable node name, or undefined. */
export function memberNameProblem(name: unknown): string | undefined {
  if (!isString(name)) return 'a node name must be a string';
  if (name.length === 0 || name.length > MEMBER_NAME_BYTES_MAX)
    return `a node name has 1 to ${MEMBER_NAME_BYTES_MAX} characters (MEMBER_NAME_BYTES_MAX)`;
  if (!MEMBER_NAME_PATTERN.test(name))
    return "a node name has letters, digits, '.', '_' and '-', and starts with a letter or digit";
  return undefined;
}

export type Command =
  | { readonly op: 'kv.put'; readonly key: string; readonly value: string }
  /** Sets `to` if the current value is `from`; `from: null` means "only if absent". */
  | {
      readonly op: 'kv.cas';
      readonly key: string;
      readonly from: string | null;
      readonly to: string;
    }
  | { readonly op: 'kv.del'; readonly key: string }
  | { readonly op: 'member.put'; readonly member: Member }
  /** `atMs`: the proposer's clock, for the events of the VMs it releases. */
  | { readonly op: 'member.remove'; readonly id: string; readonly atMs?: number }
  | NodeCommand
  | VmCommand
  | TokenCommand
  | DeployCommand;

export type Query =
  | { readonly op: 'kv.get'; readonly key: string }
  | { readonly op: 'kv.list'; readonly prefix: string; readonly limit?: number }
  | { readonly op: 'members' }
  | { readonly op: 'nodes' }
  | VmQuery
  | TokenQuery
  | DeployQuery;

export interface KvEntry {
  readonly key: string;
  readonly value: string;
  /** Raft index of the write that set this value (etcd's mod_revision). */
  readonly revision: number;
}

export type ErrorCode =
  /** kv.get, kv.del or kv.cas of a key that does not exist. */
  | 'notFound'
  /** kv.cas whose expected value differs from the current one. */
  | 'casMismatch'
  /** A command or query that is malformed or out of bounds; nothing changed. */
  | 'invalid'
  /** A request ID already applied (a duplicated proposal); nothing changed. */
  | 'duplicate'
  /** A VM report for another generation or node than the current one; ignored. */
  | 'stale'
  /** member.put of a node the cluster removed: it may not come back under that identity. */
  | 'removed';

export type Result =
  | {
      readonly ok: true;
      readonly value?: string | null;
      readonly revision: number;
      readonly entries?: readonly KvEntry[];
      readonly members?: readonly Member[];
      readonly vm?: VmEntry;
      readonly vms?: readonly VmEntry[];
      readonly nodes?: readonly NodeInfo[];
      readonly node?: NodeInfo;
      /** vm.place: one verdict per placement, `ok` or why it was refused. */
      readonly verdicts?: readonly string[];
      readonly token?: TokenEntry;
      readonly tokens?: readonly TokenEntry[];
      readonly deployment?: Deployment;
      readonly deployments?: readonly Deployment[];
      /** deploy.submit, deploy.rollback: the version; `noop`: an identical re-submission. */
      readonly version?: number;
      readonly noop?: boolean;
    }
  | {
      readonly ok: false;
      readonly code: ErrorCode;
      readonly message: string;
      readonly current?: string;
    };

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
const encoder = new TextEncoder();

function utf8Length(s: string): number {
  return encoder.encode(s).byteLength;
}

function isString(x: unknown): x is string {
  return typeof x === 'string';
}

function keyProblem(key: unknown): string | undefined {
  if (!isString(key)) return 'key must be a string';
  if (key.length === 0) return 'key must not be empty';
  if (utf8Length(key) > KEY_BYTES_MAX)
    return `key longer than KEY_BYTES_MAX (${KEY_BYTES_MAX} bytes)`;
  return undefined;
}

function valueProblem(value: unknown, field = 'value'): string | undefined {
  if (!isString(value)) return `${field} must be a string`;
  if (utf8Length(value) > VALUE_BYTES_MAX)
    return `${field} longer than VALUE_BYTES_MAX (${VALUE_BYTES_MAX} bytes)`;
  return undefined;
}

function memberProblem(m: unknown): string | undefined {
  if (typeof m !== 'object' || m === null) return 'member must be an object';
  const o = m as Record<string, unknown>;
  if (!isString(o.id) || o.id.length === 0 || utf8Length(o.id) > KEY_BYTES_MAX)
    return 'member.id must be a non-empty string';
  if (!Array.isArray(o.addrs) || !o.addrs.every(isString))
    return 'member.addrs must be a list of strings';
  if (o.role !== 'voter' && o.role !== 'learner' && o.role !== 'member')
    return 'member.role must be voter, learner or member';
  if (o.name !== undefined) {
    const why = memberNameProblem(o.name);
    if (why !== undefined) return `member.name: ${why}`;
  }
  return undefined;
}

/** Why a decoded command is unusable, or undefined if it is well formed and within bounds. */
export function commandProblem(c: unknown): string | undefined {
  if (typeof c !== 'object' || c === null) return 'command must be an object';
  const o = c as Record<string, unknown>;
  switch (o.op) {
    case 'kv.put':
      return keyProblem(o.key) ?? valueProblem(o.value);
    case 'kv.cas':
      return (
        keyProblem(o.key) ??
        (o.from === null ? undefined : valueProblem(o.from, 'from')) ??
        valueProblem(o.to, 'to')
      );
    case 'kv.del':
      return keyProblem(o.key);
    case 'member.put':
      return memberProblem(o.member);
    case 'member.remove':
      if (o.atMs !== undefined && !Number.isSafeInteger(o.atMs)) return 'atMs must be an integer';
      return isString(o.id) && o.id.length > 0 ? undefined : 'id must be a non-empty string';
    case 'node.register':
    case 'node.status':
    case 'node.eligibility':
    case 'node.drain':
      return nodeCommandProblem(o);
    case 'vm.put':
    case 'vm.place':
    case 'vm.unplaced':
    case 'vm.release':
    case 'vm.stop':
    case 'vm.rm':
    case 'vm.report':
    case 'vm.health':
      return vmCommandProblem(o);
    case 'token.put':
    case 'token.rm':
      return tokenCommandProblem(o);
    case 'deploy.submit':
    case 'deploy.step':
    case 'deploy.finish':
    case 'deploy.promote':
    case 'deploy.rollback':
    case 'deploy.stop':
    case 'deploy.rm':
      return deployCommandProblem(o);
    default:
      return `unknown command op ${JSON.stringify(o.op)}`;
  }
}

export function queryProblem(q: unknown): string | undefined {
  if (typeof q !== 'object' || q === null) return 'query must be an object';
  const o = q as Record<string, unknown>;
  switch (o.op) {
    case 'kv.get':
      return keyProblem(o.key);
    case 'kv.list':
      if (!isString(o.prefix)) return 'prefix must be a string';
      if (o.limit !== undefined && (!Number.isSafeInteger(o.limit) || (o.limit as number) < 1))
        return 'limit must be a positive integer';
      return undefined;
    case 'members':
    case 'nodes':
      return undefined;
    case 'vm.get':
    case 'vm.list':
      return vmQueryProblem(o);
    case 'token.list':
      return undefined;
    case 'deploy.get':
    case 'deploy.list':
      return deployQueryProblem(o);
    default:
      return `unknown query op ${JSON.stringify(o.op)}`;
  }
}

/** What a normal entry carries: the proposer's request ID (to answer it after apply) and the command. */
export interface Envelope {
  readonly requestId: string;
  readonly command: Command;
}

export function encodeEnvelope(e: Envelope): Uint8Array {
  return packr.pack([e.requestId, e.command]);
}

/** Decodes an entry's payload; a string says why it is unusable. */
export function decodeEnvelope(data: Uint8Array): Envelope | string {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (e) {
    return `undecodable entry: ${(e as Error).message}`;
  }
  if (!Array.isArray(raw) || raw.length !== 2) return 'entry is not [requestId, command]';
  const [requestId, command] = raw as [unknown, unknown];
  if (!isString(requestId) || utf8Length(requestId) > REQUEST_ID_BYTES_MAX) return 'bad request ID';
  const problem = commandProblem(command);
  if (problem !== undefined) return problem;
  return { requestId, command: command as Command };
}

interface Slot {
  value: string;
  revision: number;
}

interface Session {
  /** Highest seq applied. */
  max: number;
  /** Seqs applied within the window below max. */
  seen: Set<number>;
  /** Index of the last entry applied for this session (for eviction). */
  lastIndex: number;
}

/** Splits a request ID into its session and seq; undefined if it has no `.<base36>` suffix. */
export function parseRequestId(id: string): { session: string; seq: number } | undefined {
  const dot = id.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const tail = id.slice(dot + 1);
  if (!/^[0-9a-z]{1,10}$/.test(tail)) return undefined;
  return { session: id.slice(0, dot), seq: Number.parseInt(tail, 36) };
}

export class StateMachine {
  private kv = new Map<string, Slot>();
  private members = new Map<string, Member>();
  /** Removed members' IDs, each with the index of its removal (bounded: REMOVED_MEMBERS_MAX). */
  private removed = new Map<string, number>();
  private sessions = new Map<string, Session>();
  /** The VM table (node/state/vms.ts). */
  readonly vms = new VmTable();
  /** The node table: capacity, labels, lifecycle (node/state/nodes.ts). */
  readonly nodes = new NodeTable();
  /** The binary cache's tokens (node/state/tokens.ts). */
  readonly tokens = new TokenTable();
  /** Deployments: versions and rollouts of VM groups (node/state/deployments.ts). */
  readonly deployments = new DeploymentTable();
  /** Index of the last entry applied (or of the snapshot restored). */
  private appliedIndex = 0;

  get applied(): number {
    return this.appliedIndex;
  }

  /**
   * Applies the command of the committed entry at `index`. Entries must come in log order; a
   * malformed command changes nothing but the applied index.
   */
  apply(index: number, command: unknown): Result {
    this.advanceApplied(index, 'applied');
    const problem = commandProblem(command);
    if (problem !== undefined) return { ok: false, code: 'invalid', message: problem };
    const c = command as Command;
    switch (c.op) {
      case 'kv.put':
        this.kv.set(c.key, { value: c.value, revision: index });
        return { ok: true, revision: index };
      case 'kv.cas': {
        const cur = this.kv.get(c.key);
        if (cur === undefined && c.from !== null) {
          return {
            ok: false,
            code: 'notFound',
            message: `key ${JSON.stringify(c.key)} does not exist`,
          };
        }
        if (cur !== undefined && cur.value !== c.from) {
          return {
            ok: false,
            code: 'casMismatch',
            message: `key ${JSON.stringify(c.key)} is ${JSON.stringify(cur.value)}, expected ${JSON.stringify(c.from)}`,
            current: cur.value,
          };
        }
        this.kv.set(c.key, { value: c.to, revision: index });
        return { ok: true, revision: index };
      }
      case 'kv.del':
        if (!this.kv.delete(c.key)) {
          return {
            ok: false,
            code: 'notFound',
            message: `key ${JSON.stringify(c.key)} does not exist`,
          };
        }
        return { ok: true, revision: index };
      case 'member.put':
        if (this.removed.has(c.member.id)) {
          return {
            ok: false,
            code: 'removed',
            message: `member ${c.member.id} was removed from the cluster; it joins again only as a new node (pcr node start --rejoin)`,
          };
        }
        this.members.set(c.member.id, {
          id: c.member.id,
          addrs: [...c.member.addrs],
          role: c.member.role,
          ...(c.member.name !== undefined ? { name: c.member.name } : {}),
        });
        return { ok: true, revision: index };
      case 'member.remove':
        // A tombstone even without a record (a node removed before its record was committed):
        // the ID is what must not come back. Repeating a removal changes nothing more.
        this.members.delete(c.id);
        this.nodes.forget(c.id);
        this.tombstone(c.id, index);
        // Its VMs are released: unplaced until the leader's loop places them again.
        this.vms.release(c.id, index, c.atMs ?? 0, `its node ${c.id} was removed from the cluster`);
        return { ok: true, revision: index };
      case 'node.register':
      case 'node.status':
      case 'node.eligibility':
      case 'node.drain': {
        const r = this.nodes.apply(index, c, (id) => this.members.has(id));
        if (!r.ok) return r;
        // Marked down: the node fenced itself by now (docs/scheduling.md, "Fencing"); its
        // instances may be placed elsewhere.
        if (c.op === 'node.status' && c.down)
          this.vms.release(c.id, index, c.atMs, `its node ${this.nameOf(c.id)} is down`);
        return { ok: true, revision: index, ...(r.node !== undefined ? { node: r.node } : {}) };
      }
      case 'vm.put':
      case 'vm.place':
      case 'vm.unplaced':
      case 'vm.release':
      case 'vm.stop':
      case 'vm.rm':
      case 'vm.report':
      case 'vm.health': {
        const owner = this.deploymentOf(c);
        if (owner !== undefined)
          return { ok: false, code: 'invalid', message: deploymentOwns(owner) };
        return this.vmResult(this.vms.apply(index, c, this.placementContext()), index);
      }
      case 'token.put':
      case 'token.rm':
        return this.tokenResult(this.tokens.apply(index, c), index);
      case 'deploy.submit':
      case 'deploy.step':
      case 'deploy.finish':
      case 'deploy.promote':
      case 'deploy.rollback':
      case 'deploy.stop':
      case 'deploy.rm':
        return this.deployResult(
          this.deployments.apply(index, c, { vms: this.vms, placement: this.placementContext() }),
          index,
        );
    }
  }

  private placementContext() {
    return {
      isMember: (id: string) => this.members.has(id),
      view: () => this.view(),
      nameOf: (id: string) => this.nameOf(id),
    };
  }

  /** The deployment whose group a user's vm.put, vm.stop or vm.rm names (refused), if any. */
  private deploymentOf(c: VmCommand): string | undefined {
    let group: string | undefined;
    if (c.op === 'vm.put') group = (c.spec as { name: string }).name;
    else if (c.op === 'vm.stop' || c.op === 'vm.rm') group = this.vms.get(c.name)?.group ?? c.name;
    return group !== undefined && this.deployments.owns(group) ? group : undefined;
  }

  private deployResult(r: DeployResult, revision: number): Result {
    if (!r.ok) return r;
    return {
      ok: true,
      revision,
      ...(r.deployment !== undefined ? { deployment: r.deployment } : {}),
      ...(r.deployments !== undefined ? { deployments: r.deployments } : {}),
      ...(r.version !== undefined ? { version: r.version } : {}),
      ...(r.noop !== undefined ? { noop: r.noop } : {}),
    };
  }

  /** The cluster as placement sees it at the applied index (node/state/view.ts). */
  view(): ClusterView {
    return clusterView(this.appliedIndex, this.nodes, this.vms, (id) => this.nameOf(id));
  }

  /** A member's name, or its ID when it has none (records from before names). */
  nameOf(id: string): string {
    return this.members.get(id)?.name ?? id;
  }

  private tokenResult(r: TokenResult, revision: number): Result {
    if (!r.ok) return r;
    return { ok: true, revision, ...(r.token !== undefined ? { token: r.token } : {}) };
  }

  private vmResult(r: VmResult, revision: number): Result {
    if (!r.ok) return r;
    return {
      ok: true,
      revision,
      ...(r.vm !== undefined ? { vm: r.vm } : {}),
      ...(r.vms !== undefined ? { vms: r.vms } : {}),
      ...(r.verdicts !== undefined ? { verdicts: r.verdicts } : {}),
    };
  }

  /**
   * Applies the command of a client request, at most once per request ID (see SESSION_WINDOW).
   * A duplicate moves only the applied index and returns a 'duplicate' result.
   */
  applyRequest(index: number, requestId: string, command: unknown): Result {
    const parsed = parseRequestId(requestId);
    if (parsed === undefined) return this.apply(index, command);
    const { session, seq } = parsed;
    const s = this.sessions.get(session);
    if (s !== undefined && (s.seen.has(seq) || seq <= s.max - SESSION_WINDOW)) {
      this.skip(index);
      return { ok: false, code: 'duplicate', message: `request ${requestId} was already applied` };
    }
    const result = this.apply(index, command);
    if (s === undefined) {
      this.sessions.set(session, { max: seq, seen: new Set([seq]), lastIndex: index });
      if (this.sessions.size > SESSIONS_MAX) this.evictSession();
    } else {
      if (seq > s.max) {
        // Drop the seqs the window slid over (not a scan of the whole set: this runs per entry).
        if (seq - s.max >= SESSION_WINDOW) s.seen.clear();
        else
          for (let q = s.max - SESSION_WINDOW + 1; q <= seq - SESSION_WINDOW; q++) s.seen.delete(q);
        s.max = seq;
      }
      s.seen.add(seq);
      s.lastIndex = index;
    }
    return result;
  }

  private evictSession(): void {
    let oldest: string | undefined;
    let oldestIndex = Number.POSITIVE_INFINITY;
    for (const [id, s] of this.sessions) {
      if (
        s.lastIndex < oldestIndex ||
        (s.lastIndex === oldestIndex && oldest !== undefined && id < oldest)
      ) {
        oldest = id;
        oldestIndex = s.lastIndex;
      }
    }
    if (oldest !== undefined) this.sessions.delete(oldest);
  }

  /** Moves the applied index over an entry with no command (the leader's no-op, a conf change). */
  skip(index: number): void {
    this.advanceApplied(index, 'skipped');
  }

  /** Entries come in log order: the applied index is a safe integer and only moves forward. */
  private advanceApplied(index: number, what: 'applied' | 'skipped'): void {
    assertSafeIndex(index, `state machine: the index of an entry ${what}`);
    assert(
      index > this.appliedIndex,
      `state machine: entry ${index} ${what} after ${this.appliedIndex}`,
    );
    this.appliedIndex = index;
  }

  member(id: string): Member | undefined {
    return this.members.get(id);
  }

  /** Whether the cluster removed this node (as far as the tombstones remember). */
  isRemoved(id: string): boolean {
    return this.removed.has(id);
  }

  private tombstone(id: string, index: number): void {
    this.removed.set(id, index);
    if (this.removed.size <= REMOVED_MEMBERS_MAX) return;
    let oldest: string | undefined;
    let oldestIndex = Number.POSITIVE_INFINITY;
    for (const [rid, at] of this.removed) {
      if (at < oldestIndex) {
        oldest = rid;
        oldestIndex = at;
      }
    }
    this.removed.delete(oldest!);
  }

  query(q: unknown): Result {
    const problem = queryProblem(q);
    if (problem !== undefined) return { ok: false, code: 'invalid', message: problem };
    const query = q as Query;
    switch (query.op) {
      case 'kv.get': {
        const slot = this.kv.get(query.key);
        if (slot === undefined) {
          return {
            ok: false,
            code: 'notFound',
            message: `key ${JSON.stringify(query.key)} does not exist`,
          };
        }
        return { ok: true, value: slot.value, revision: slot.revision };
      }
      case 'kv.list': {
        const keys = [...this.kv.keys()].filter((k) => k.startsWith(query.prefix)).sort();
        const limited = query.limit === undefined ? keys : keys.slice(0, query.limit);
        const entries = limited.map((key) => {
          const s = this.kv.get(key)!;
          return { key, value: s.value, revision: s.revision };
        });
        return { ok: true, revision: this.appliedIndex, entries };
      }
      case 'members':
        return {
          ok: true,
          revision: this.appliedIndex,
          members: [...this.members.values()].sort((a, b) =>
            a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
          ),
        };
      case 'nodes':
        return { ok: true, revision: this.appliedIndex, nodes: this.nodes.list() };
      case 'vm.get':
      case 'vm.list':
        return this.vmResult(this.vms.query(query), this.appliedIndex);
      case 'token.list':
        return { ok: true, revision: this.appliedIndex, tokens: this.tokens.list() };
      case 'deploy.get':
      case 'deploy.list':
        return this.deployResult(this.deployments.query(query), this.appliedIndex);
    }
  }

  /** The whole state, encoded canonically (sorted), so equal states give equal bytes. */
  snapshot(): Uint8Array {
    const kv = [...this.kv.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, s]) => [k, s.value, s.revision]);
    const members = [...this.members.values()]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      // The name only when set: snapshots of members without names keep their old bytes.
      .map((m) =>
        m.name === undefined ? [m.id, [...m.addrs], m.role] : [m.id, [...m.addrs], m.role, m.name],
      );
    const sessions = [...this.sessions.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([id, x]) => [id, x.max, [...x.seen].sort((p, q) => p - q), x.lastIndex]);
    return packr.pack([
      SNAPSHOT_VERSION,
      this.appliedIndex,
      kv,
      members,
      sessions,
      this.vms.rows(),
      [...this.removed.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      this.nodes.rows(),
      this.tokens.rows(),
      this.deployments.rows(),
    ]);
  }

  /** Replaces the state by a snapshot image. Throws on an image it cannot read (nothing changes). */
  restore(data: Uint8Array): void {
    const raw = packr.unpack(data) as unknown;
    // Versions 2 (before the VM table), 3 (before tombstones), 4 (before the node table and
    // tokens), 5 (the node table, before tokens) and 6 (before deployments) are still read.
    const v2 = Array.isArray(raw) && raw.length === 5 && raw[0] === 2;
    const v3 = Array.isArray(raw) && raw.length === 6 && raw[0] === 3;
    const v4 = Array.isArray(raw) && raw.length === 7 && raw[0] === 4;
    const v5 = Array.isArray(raw) && raw.length === 8 && raw[0] === 5;
    const v6 = Array.isArray(raw) && raw.length === 9 && raw[0] === 6;
    const v7 = Array.isArray(raw) && raw.length === 10 && raw[0] === SNAPSHOT_VERSION;
    if (!v2 && !v3 && !v4 && !v5 && !v6 && !v7) {
      throw new Error(`state machine: not a version 2 to ${SNAPSHOT_VERSION} snapshot`);
    }
    const [
      ,
      applied,
      kvRows,
      memberRows,
      sessionRows,
      vmRows,
      removedRows,
      nodeRows,
      tokenRows,
      deployRows,
    ] = raw as unknown[];
    if (
      !Number.isSafeInteger(applied) ||
      !Array.isArray(kvRows) ||
      !Array.isArray(memberRows) ||
      !Array.isArray(sessionRows)
    ) {
      throw new Error('state machine: malformed snapshot');
    }
    const sessions = new Map<string, Session>();
    for (const row of sessionRows as unknown[]) {
      const [id, max, seen, lastIndex] = row as [unknown, unknown, unknown, unknown];
      if (
        !isString(id) ||
        !Number.isSafeInteger(max) ||
        !Number.isSafeInteger(lastIndex) ||
        !Array.isArray(seen) ||
        !seen.every((q) => Number.isSafeInteger(q))
      ) {
        throw new Error('state machine: malformed snapshot session row');
      }
      sessions.set(id, {
        max: max as number,
        seen: new Set(seen as number[]),
        lastIndex: lastIndex as number,
      });
    }
    const kv = new Map<string, Slot>();
    for (const row of kvRows as unknown[]) {
      const [k, value, revision] = row as [unknown, unknown, unknown];
      if (keyProblem(k) !== undefined || !isString(value) || !Number.isSafeInteger(revision)) {
        throw new Error('state machine: malformed snapshot key-value row');
      }
      kv.set(k as string, { value, revision: revision as number });
    }
    const members = new Map<string, Member>();
    for (const row of memberRows as unknown[]) {
      const [id, addrs, role, name] = row as [unknown, unknown, unknown, unknown];
      const m = { id, addrs, role, ...(name !== undefined ? { name } : {}) };
      if (memberProblem(m) !== undefined)
        throw new Error('state machine: malformed snapshot member row');
      members.set(id as string, m as Member);
    }
    const removed = restoreTombstones(v4 || v5 || v6 || v7 ? removedRows : []);
    // Each table checks its rows before any is replaced (a throw leaves the state as it was).
    new NodeTable().restore(v5 || v6 || v7 ? nodeRows : []);
    new TokenTable().restore(v6 || v7 ? tokenRows : []);
    new DeploymentTable().restore(v7 ? deployRows : []);
    this.vms.restore(v2 ? [] : vmRows);
    this.nodes.restore(v5 || v6 || v7 ? nodeRows : []);
    this.tokens.restore(v6 || v7 ? tokenRows : []);
    this.deployments.restore(v7 ? deployRows : []);
    this.kv = kv;
    this.members = members;
    this.removed = removed;
    this.sessions = sessions;
    this.appliedIndex = applied as number;
  }
}

function restoreTombstones(rows: unknown): Map<string, number> {
  if (!Array.isArray(rows)) throw new Error('state machine: malformed snapshot tombstones');
  const removed = new Map<string, number>();
  for (const row of rows as unknown[]) {
    const [id, at] = row as [unknown, unknown];
    if (!isString(id) || id.length === 0 || !Number.isSafeInteger(at)) {
      throw new Error('state machine: malformed snapshot tombstone row');
    }
    removed.set(id, at as number);
  }
  return removed;
}

// The API's requests as one discriminated union on `op`: the state machine's commands and queries
// as clients send them (the member fills in what is its to fill: the clock of a vm.stop, a node
// named by an ID prefix), and the admin operations. parseRequest() checks a decoded frame against
// it once, at the door, so the handlers read typed fields; what the state machine validates
// (key and value bounds, VM specs) it keeps validating, with the same messages.
//
// The wire (wire.ts, session.ts) carries any `{op}` object; this union is what the member serves
// and what `pcr` sends.

import {
  type Command,
  commandProblem,
  memberNameProblem,
  type Query,
  queryProblem,
} from '../state/machine.ts';
import { type TokenScope, tokenCommandProblem, tokenNameProblem } from '../state/tokens.ts';

type Stale = { readonly stale?: boolean };
type CommandOf<Op extends Command['op']> = Extract<Command, { op: Op }>;
type QueryOf<Op extends Query['op']> = Extract<Query, { op: Op }>;

/** Reads and writes of the replicated state, as the state machine defines them. */
export type StateRequest =
  | CommandOf<'kv.put' | 'kv.cas' | 'kv.del' | 'vm.rm'>
  | Omit<CommandOf<'vm.stop'>, 'atMs'>
  | (QueryOf<'kv.get' | 'vm.get'> & Stale)
  /** `prefix` defaults to '' (every key). */
  | ({ readonly op: 'kv.list'; readonly prefix?: string; readonly limit?: number } & Stale)
  /** `node`: a member's ID or a unique prefix of it. */
  | ({ readonly op: 'vm.list'; readonly node?: string; readonly group?: string } & Stale)
  /**
   * vm.put; the cluster places it. `node` (--on: a name, an ID or a prefix) becomes the
   * constraint `name = <that member's name>`. The spec is validated by the state machine.
   */
  | { readonly op: 'vm.run'; readonly spec: unknown; readonly node?: string }
  /** The placement vm.run would make now, without committing anything. */
  | { readonly op: 'vm.plan'; readonly spec: unknown; readonly node?: string }
  /** The node table: status, capacity, allocations, labels (docs/scheduling.md). */
  | ({ readonly op: 'node.list' } & Stale)
  /** `deadlineMs`: from now (default one hour); `cancel`: end a drain. */
  | {
      readonly op: 'node.drain';
      readonly node: string;
      readonly deadlineMs?: number;
      readonly cancel?: boolean;
    }
  | { readonly op: 'node.eligibility'; readonly node: string; readonly eligible: boolean }
  /** Deployments (docs/deploy.md): the member fills in `atMs`. */
  | Omit<CommandOf<'deploy.submit'>, 'atMs'>
  /** What deploy.submit of this would answer, committing nothing (pcr deploy, before pushing). */
  | {
      readonly op: 'deploy.check';
      readonly name: string;
      readonly spec: unknown;
      readonly update?: unknown;
    }
  | Omit<CommandOf<'deploy.promote'>, 'atMs'>
  | Omit<CommandOf<'deploy.rollback'>, 'atMs'>
  | Omit<CommandOf<'deploy.stop' | 'deploy.rm'>, 'atMs'>
  | (QueryOf<'deploy.get' | 'deploy.list'> & Stale);

export type AdminRequest =
  | { readonly op: 'status' }
  | { readonly op: 'members' }
  | { readonly op: 'nodes' }
  | {
      readonly op: 'join';
      readonly id: string;
      readonly addrs: readonly string[];
      /** A member announcing new addresses, not a new node asking to be added. */
      readonly announce?: boolean;
      /** The name the node was started with (`--name`). */
      readonly name?: string;
    }
  | { readonly op: 'instance.check'; readonly id: string; readonly nonce: string }
  /** Does the cluster still count this node? (a leaderless node asks: docs/membership.md) */
  | { readonly op: 'member.check'; readonly id: string }
  | { readonly op: 'raft.transfer'; readonly to?: string }
  | { readonly op: 'raft.remove'; readonly id: string }
  | {
      readonly op: 'vm.logs';
      readonly name: string;
      readonly offset?: number;
      /** Set by the member that forwards the request to the VM's node. */
      readonly forwarded?: boolean;
    }
  | StoreRequest;

export type StoreRequest =
  | { readonly op: 'store.info' | 'store.where'; readonly path: string }
  | { readonly op: 'store.fetch'; readonly path: string; readonly progressId?: string }
  | { readonly op: 'store.progress'; readonly progressId?: string }
  | { readonly op: 'store.push'; readonly path: string; readonly to?: readonly string[] }
  | { readonly op: 'store.stats' }
  | { readonly op: 'store.verify'; readonly repair?: boolean }
  /** A cache token: `pcr` made the secret and sends only its sha256 (hex). */
  | {
      readonly op: 'store.token.create';
      readonly name: string;
      readonly sha256: string;
      readonly scopes: readonly TokenScope[];
    }
  | { readonly op: 'store.token.revoke'; readonly name: string }
  | { readonly op: 'store.token.list' }
  /** Frees what no VM on this node needs; `maxFreedBytes`: stop once that much is freed. */
  | { readonly op: 'store.gc'; readonly maxFreedBytes?: number; readonly dryRun?: boolean };

export type Request = StateRequest | AdminRequest;
export type Op = Request['op'];
export type RequestOf<O extends Op> = Extract<Request, { op: O }>;

const isString = (x: unknown): x is string => typeof x === 'string';

/** The longest drain deadline a request may ask for. */
export const DRAIN_DEADLINE_MS_MAX = 30 * 24 * 3_600_000;

/** The shape problem of each op's fields, or undefined; the state's own checks where it has them. */
const PROBLEMS: { readonly [O in Op]: (o: Record<string, unknown>) => string | undefined } = {
  status: () => undefined,
  members: () => undefined,
  nodes: () => undefined,
  'kv.get': (o) => queryProblem(o),
  'kv.list': (o) => queryProblem({ ...o, prefix: o.prefix ?? '' }),
  'vm.get': (o) => queryProblem(o),
  'vm.list': (o) =>
    (o.node === undefined ? undefined : nodeProblem(o.node)) ??
    (o.group === undefined || (isString(o.group) && o.group.length > 0)
      ? undefined
      : 'group must be a VM name'),
  'kv.put': (o) => commandProblem(o),
  'kv.cas': (o) => commandProblem(o),
  'kv.del': (o) => commandProblem(o),
  'vm.rm': (o) => commandProblem(o),
  'vm.stop': (o) => commandProblem({ ...o, atMs: 0 }),
  'vm.run': (o) => (o.node === undefined ? undefined : nodeProblem(o.node)),
  'vm.plan': (o) => (o.node === undefined ? undefined : nodeProblem(o.node)),
  'node.list': () => undefined,
  'deploy.submit': (o) => commandProblem({ ...o, atMs: 0 }),
  // The submit's own shape check; `source` is not the check's business.
  'deploy.check': (o) => commandProblem({ ...o, op: 'deploy.submit', source: {}, atMs: 0 }),
  'deploy.promote': (o) => commandProblem({ ...o, atMs: 0 }),
  'deploy.rollback': (o) => commandProblem({ ...o, atMs: 0 }),
  'deploy.stop': (o) => commandProblem({ ...o, atMs: 0 }),
  'deploy.rm': (o) => commandProblem({ ...o, atMs: 0 }),
  'deploy.get': (o) => queryProblem(o),
  'deploy.list': (o) => queryProblem(o),
  'node.drain': (o) => {
    if (o.cancel !== undefined && typeof o.cancel !== 'boolean') return 'cancel must be a boolean';
    if (
      o.deadlineMs !== undefined &&
      (!Number.isSafeInteger(o.deadlineMs) ||
        (o.deadlineMs as number) < 0 ||
        (o.deadlineMs as number) > DRAIN_DEADLINE_MS_MAX)
    )
      return `deadline must be 0 to ${DRAIN_DEADLINE_MS_MAX} ms (DRAIN_DEADLINE_MS_MAX: 30 days)`;
    return nodeProblem(o.node);
  },
  'node.eligibility': (o) =>
    typeof o.eligible === 'boolean' ? nodeProblem(o.node) : 'eligible must be true or false',
  join: (o) => {
    if (!isString(o.id) || !Array.isArray(o.addrs) || !o.addrs.every(isString))
      return 'join needs id and addrs';
    if (o.announce !== undefined && typeof o.announce !== 'boolean')
      return 'announce must be a boolean';
    return o.name === undefined ? undefined : memberNameProblem(o.name);
  },
  'instance.check': (o) =>
    isString(o.id) && isString(o.nonce)
      ? undefined
      : "instance.check takes the asker's own id and a nonce",
  'member.check': (o) => (isString(o.id) ? undefined : 'member.check needs id'),
  'raft.transfer': (o) =>
    o.to === undefined || isString(o.to) ? undefined : 'to must be a member id',
  'raft.remove': (o) => (isString(o.id) ? undefined : 'remove needs id'),
  'vm.logs': (o) => {
    if (!isString(o.name)) return 'vm.logs needs a name';
    if (o.offset !== undefined && (!Number.isSafeInteger(o.offset) || (o.offset as number) < 0))
      return 'offset must be a non-negative integer';
    return undefined;
  },
  'store.info': (o) => pathProblem(o),
  'store.where': (o) => pathProblem(o),
  'store.fetch': (o) => pathProblem(o) ?? progressIdProblem(o),
  'store.progress': (o) => progressIdProblem(o),
  'store.push': (o) => {
    if (o.to !== undefined && (!Array.isArray(o.to) || !o.to.every(isString)))
      return 'name a node: --on ID';
    return pathProblem(o);
  },
  'store.stats': () => undefined,
  'store.verify': (o) =>
    o.repair === undefined || typeof o.repair === 'boolean'
      ? undefined
      : 'repair must be a boolean',
  'store.token.create': (o) => tokenCommandProblem({ ...o, op: 'token.put', atMs: 0 }),
  'store.token.revoke': (o) => tokenNameProblem(o.name),
  'store.token.list': () => undefined,
  'store.gc': (o) => {
    if (
      o.maxFreedBytes !== undefined &&
      (!Number.isSafeInteger(o.maxFreedBytes) || (o.maxFreedBytes as number) < 1)
    )
      return 'maxFreedBytes must be a positive integer';
    if (o.dryRun !== undefined && typeof o.dryRun !== 'boolean') return 'dryRun must be a boolean';
    return undefined;
  },
};

function nodeProblem(x: unknown): string | undefined {
  return isString(x) && x.length > 0 ? undefined : 'name a node: --on ID';
}
function pathProblem(o: Record<string, unknown>): string | undefined {
  return isString(o.path) ? undefined : `${String(o.op)} needs a store path`;
}
function progressIdProblem(o: Record<string, unknown>): string | undefined {
  return o.progressId === undefined || isString(o.progressId)
    ? undefined
    : 'progressId must be a string';
}

function isOp(x: unknown): x is Op {
  return isString(x) && Object.hasOwn(PROBLEMS, x);
}

/** A decoded frame as a Request, or why it is not one (the answer is INVALID). */
export function parseRequest(raw: unknown): Request | string {
  if (typeof raw !== 'object' || raw === null || !isString((raw as { op?: unknown }).op)) {
    return 'a request is an object with an op';
  }
  const o = raw as Record<string, unknown>;
  if (!isOp(o.op)) return `unknown op ${JSON.stringify(o.op)}`;
  const problem = PROBLEMS[o.op](o);
  return problem ?? (o as Request);
}

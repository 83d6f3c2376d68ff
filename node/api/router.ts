// The member's side of the client API: one table from op to handler, and the translation of a
// RaftNode outcome into an answer. The handlers live beside it by concern (kv and views here,
// VMs, the store and membership in their own files); they reach the node only through ApiDeps,
// which the daemon fills in, so a request passes through the daemon once, at the door.

import type { Connection } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Logger } from 'pino';
import type { NodeId } from '../../consensus/index.ts';
import { outcomeError } from '../errors.ts';
import type { Gossip } from '../p2p/gossip.ts';
import type { Host } from '../p2p/host.ts';
import type { Outcome, RaftNode } from '../raft/node.ts';
import type { Command, Query } from '../state/machine.ts';
import type { FetchProgress } from '../store/fetch.ts';
import type { StoreService } from '../store/service.ts';
import type { Supervisor } from '../vmm/supervisor.ts';
import {
  handleInstanceCheck,
  handleJoin,
  handleMemberCheck,
  handleRemove,
  handleTransfer,
} from './member_handlers.ts';
import { parseRequest, type Request } from './requests.ts';
import { handleStoreRequest } from './store_handlers.ts';
import { membersView, nodesView, statusView } from './views.ts';
import { handleVmList, handleVmLogs, handleVmRun } from './vm_handlers.ts';
import { type ApiResponse, apiError } from './wire.ts';

/** What the handlers may use of the node: its parts and its few verbs. */
export interface ApiDeps {
  readonly id: NodeId;
  readonly node: RaftNode;
  readonly host: Host;
  readonly gossip: Gossip;
  readonly log: Logger;
  /** The store and the supervisor start after the API is served: undefined until then. */
  readonly store: () => StoreService | undefined;
  readonly supervisor: () => Supervisor | undefined;
  /** Closure fetches started through the API, by the client's progress id. */
  readonly fetchProgress: Map<string, FetchProgress>;
  addrsOf(id: NodeId): Multiaddr[];
  /** Remembers addresses learned outside the member table (a join request). */
  learnAddrs(id: NodeId, addrs: Multiaddr[]): void;
  submit(c: Command): Promise<Outcome>;
  read(q: Query, stale: boolean): Promise<Outcome>;
  change(type: 'addLearner' | 'addVoter' | 'removeNode', nodeId: NodeId): Promise<Outcome>;
  /** One request to another member (peerRequestTimeoutMs). */
  request(addrs: Multiaddr[], req: Request): Promise<ApiResponse>;
  /** Set once this node learned the cluster removed it (docs/membership.md). */
  removedWhy(): string | undefined;
  /** Why no leader, when a quorum of voters is unreachable from here (membership/quorum.ts). */
  quorumProblem(): string | undefined;
}

/** Answers one decoded request frame. */
export async function route(
  deps: ApiDeps,
  raw: unknown,
  connection: Connection,
): Promise<ApiResponse> {
  const req = parseRequest(raw);
  if (typeof req === 'string') return apiError('INVALID', req);
  const removed = deps.removedWhy();
  if (removed !== undefined && req.op !== 'status') {
    return apiError('REMOVED', `this node was removed from the cluster (${removed})`);
  }
  const resp = await dispatch(deps, req, connection);
  if (!resp.ok && resp.error.code === 'NO_LEADER') {
    // Name the real state when it is known: which voters this member cannot reach.
    const why = deps.quorumProblem();
    if (why !== undefined) return apiError('NO_LEADER', why);
  }
  return resp;
}

async function dispatch(deps: ApiDeps, req: Request, connection: Connection): Promise<ApiResponse> {
  switch (req.op) {
    case 'status':
      return { ok: true, ...statusView(deps) };
    case 'members':
      return { ok: true, members: membersView(deps) };
    case 'nodes':
      return { ok: true, nodes: nodesView(deps) };
    case 'kv.get':
      return answer(await deps.read({ op: 'kv.get', key: req.key }, req.stale === true));
    case 'vm.get':
      return answer(await deps.read({ op: 'vm.get', name: req.name }, req.stale === true));
    case 'kv.list': {
      const q = { op: 'kv.list', prefix: req.prefix ?? '' } as const;
      const limit = req.limit !== undefined ? { limit: req.limit } : {};
      return answer(await deps.read({ ...q, ...limit }, req.stale === true));
    }
    // Commands are rebuilt field by field: what a client adds beyond them stays out of the log.
    case 'kv.put':
      return answer(await deps.submit({ op: 'kv.put', key: req.key, value: req.value }));
    case 'kv.cas':
      return answer(await deps.submit({ op: 'kv.cas', key: req.key, from: req.from, to: req.to }));
    case 'kv.del':
      return answer(await deps.submit({ op: 'kv.del', key: req.key }));
    case 'vm.rm':
      return answer(await deps.submit({ op: 'vm.rm', name: req.name }));
    case 'vm.stop':
      return answer(await deps.submit({ op: 'vm.stop', name: req.name, atMs: Date.now() }));
    case 'vm.run':
      return handleVmRun(deps, req);
    case 'vm.list':
      return handleVmList(deps, req, req.stale === true);
    case 'vm.logs':
      return handleVmLogs(deps, req);
    case 'join':
      return handleJoin(deps, req);
    case 'instance.check':
      return handleInstanceCheck(deps, req, connection);
    case 'member.check':
      return handleMemberCheck(deps, req);
    case 'raft.transfer':
      return handleTransfer(deps, req);
    case 'raft.remove':
      return handleRemove(deps, req);
    default:
      return handleStoreRequest(deps, req);
  }
}

/** A RaftNode outcome as an API answer, its error code unchanged (node/errors.ts). */
export function answer(o: Outcome): ApiResponse {
  const e = outcomeError(o);
  if (e !== undefined) return apiError(e.code, e.message);
  if (!o.ok || !o.result.ok) throw new Error('unreachable: outcomeError covers every failure');
  const { ok: _ok, ...rest } = o.result;
  return { ok: true, index: o.index, ...rest };
}

/** A member's full peer ID from the ID or a unique prefix of it. */
export function resolveNode(deps: ApiDeps, x: unknown): string | ApiResponse {
  if (typeof x !== 'string' || x.length === 0) return apiError('INVALID', 'name a node: --on ID');
  const table = deps.node.sm.query({ op: 'members' });
  const ids = (table.ok ? (table.members ?? []) : []).map((m) => m.id);
  const hits = ids.filter((id) => id.startsWith(x));
  if (hits.length === 1) return hits[0]!;
  if (hits.length === 0) return apiError('NOT_FOUND', `no member ${x}: see pcr members`);
  return apiError('INVALID', `${x} names ${hits.length} members: give more of the ID`);
}

// What the API handlers may use of the node (ApiDeps), and the two helpers every handler shares:
// an outcome as an answer, a node named by ID or prefix. A room of its own so that the router and
// the handlers both import it and none imports the other (test/imports.test.ts: no cycles).

import type { Multiaddr } from '@multiformats/multiaddr';
import type { Logger } from 'pino';
import type { NodeId } from '../../consensus/index.ts';
import { outcomeError } from '../errors.ts';
import { resolveMember } from '../names.ts';
import type { Gossip } from '../p2p/gossip.ts';
import type { Host } from '../p2p/host.ts';
import type { Outcome, RaftNode } from '../raft/node.ts';
import type { Command, Query } from '../state/machine.ts';
import type { FetchProgress } from '../store/fetch.ts';
import type { StoreService } from '../store/service.ts';
import type { Supervisor } from '../vmm/supervisor.ts';
import type { Request } from './requests.ts';
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

/** A RaftNode outcome as an API answer, its error code unchanged (node/errors.ts). */
export function answer(o: Outcome): ApiResponse {
  const e = outcomeError(o);
  if (e !== undefined) return apiError(e.code, e.message);
  if (!o.ok || !o.result.ok) throw new Error('unreachable: outcomeError covers every failure');
  const { ok: _ok, ...rest } = o.result;
  return { ok: true, index: o.index, ...rest };
}

/** A member's full peer ID from its name, its ID or a unique prefix of it (node/names.ts). */
export function resolveNode(deps: ApiDeps, x: unknown): string | ApiResponse {
  if (typeof x !== 'string' || x.length === 0)
    return apiError('INVALID', 'name a node: --on NAME or ID');
  const table = deps.node.sm.query({ op: 'members' });
  const r = resolveMember(x, table.ok ? (table.members ?? []) : []);
  if (r.ok) return r.id;
  if (r.why === 'none') return apiError('NOT_FOUND', `no member ${x}: see pcr members`);
  return apiError('INVALID', `${x} names ${r.candidates.length} members: give more of the ID`);
}

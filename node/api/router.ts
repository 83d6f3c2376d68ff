// The member's side of the client API: one table from op to handler (ApiDeps and the shared
// helpers are in deps.ts). The handlers live beside it by concern (kv and views here,
// VMs, the store and membership in their own files); they reach the node only through ApiDeps,
// which the daemon fills in, so a request passes through the daemon once, at the door.

import type { Connection } from '@libp2p/interface';
import {
  handleDeployCheck,
  handleDeployPromote,
  handleDeployRead,
  handleDeployRollback,
  handleDeployStop,
  handleDeploySubmit,
} from './deploy_handlers.ts';
import { type ApiDeps, answer } from './deps.ts';
import {
  handleInstanceCheck,
  handleJoin,
  handleMemberCheck,
  handleRemove,
  handleTransfer,
} from './member_handlers.ts';
import {
  handleNodeDrain,
  handleNodeEligibility,
  handleNodeList,
  handleVmPlan,
  handleVmRun,
} from './placement_handlers.ts';
import { parseRequest, type Request } from './requests.ts';
import { handleStoreRequest } from './store_handlers.ts';
import { membersView, nodesView, statusView } from './views.ts';
import { handleVmList, handleVmLogs } from './vm_handlers.ts';
import { type ApiResponse, apiError } from './wire.ts';

export type { ApiDeps } from './deps.ts';
export { answer, resolveNode } from './deps.ts';

/** Answers one decoded request frame. */
export async function route(
  deps: ApiDeps,
  raw: unknown,
  /** undefined for the local socket (node/api/local_socket.ts). */
  connection: Connection | undefined,
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

async function dispatch(
  deps: ApiDeps,
  req: Request,
  connection: Connection | undefined,
): Promise<ApiResponse> {
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
    case 'vm.plan':
      return handleVmPlan(deps, req);
    case 'node.list':
      return handleNodeList(deps, req);
    case 'node.drain':
      return handleNodeDrain(deps, req);
    case 'node.eligibility':
      return handleNodeEligibility(deps, req);
    case 'vm.list':
      return handleVmList(deps, req, req.stale === true);
    case 'deploy.submit':
      return handleDeploySubmit(deps, req);
    case 'deploy.check':
      return handleDeployCheck(deps, req);
    case 'deploy.get':
    case 'deploy.list':
      return handleDeployRead(deps, req);
    case 'deploy.promote':
      return handleDeployPromote(deps, req);
    case 'deploy.rollback':
      return handleDeployRollback(deps, req);
    case 'deploy.stop':
    case 'deploy.rm':
      return handleDeployStop(deps, req);
    case 'vm.logs':
      return handleVmLogs(deps, req);
    case 'join':
      return handleJoin(deps, req);
    case 'instance.check':
      if (connection === undefined)
        return apiError('INVALID', 'instance.check comes over libp2p, from the asking member');
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

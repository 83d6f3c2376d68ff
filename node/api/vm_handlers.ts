// vm.list (a node named by an ID prefix) and vm.logs (read where the VM runs; a member
// forwards to that node). The other vm.* ops are plain commands and queries (router.ts).

import { type ApiDeps, answer, resolveNode } from './deps.ts';
import type { RequestOf } from './requests.ts';
import { type ApiResponse, apiError } from './wire.ts';

/** Bytes of console log one vm.logs answer carries at most. */
export const VM_LOGS_BYTES_MAX = 1024 * 1024;

export async function handleVmList(
  deps: ApiDeps,
  req: RequestOf<'vm.list'>,
  stale: boolean,
): Promise<ApiResponse> {
  let node: string | undefined;
  if (req.node !== undefined) {
    const r = resolveNode(deps, req.node);
    if (typeof r !== 'string') return r;
    node = r;
  }
  const group = req.group !== undefined ? { group: req.group } : {};
  return answer(
    await deps.read({ op: 'vm.list', ...(node !== undefined ? { node } : {}), ...group }, stale),
  );
}

/** A VM's console log, read where the VM runs (a member forwards to that node). */
export async function handleVmLogs(deps: ApiDeps, req: RequestOf<'vm.logs'>): Promise<ApiResponse> {
  const vm = deps.node.sm.vms.get(req.name);
  if (vm === undefined) return apiError('NOT_FOUND', `no VM ${req.name}`);
  if (vm.node !== deps.id) {
    if (req.forwarded === true) {
      return apiError('UNAVAILABLE', `${req.name} runs on ${vm.node}, not here`);
    }
    const to = deps.addrsOf(vm.node);
    if (to.length === 0) return apiError('UNAVAILABLE', `no address for ${vm.node}`);
    return deps
      .request(to, { ...req, forwarded: true })
      .catch((e: Error) =>
        apiError('UNAVAILABLE', `node ${vm.node} (runs ${req.name}) unreachable: ${e.message}`),
      );
  }
  const read = await deps
    .supervisor()
    ?.consoleRead(req.name, req.offset, VM_LOGS_BYTES_MAX)
    .catch((e: { code?: string }) => {
      // Committed but not started here yet: no console so far.
      if (e.code === 'VMM_NOT_FOUND') return { data: '', next: 0, size: 0 };
      throw e;
    });
  if (read === undefined) return apiError('UNAVAILABLE', 'this node is still starting');
  return { ok: true, ...read };
}

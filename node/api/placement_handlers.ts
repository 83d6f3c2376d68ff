// vm.run (the cluster places it; `--on NODE` is the constraint `name = NODE`), vm.plan (the same
// placement as a dry run), and the node table's operator verbs: node.list, node.drain,
// node.eligibility (docs/scheduling.md). A spec no node could ever hold is refused before anything
// is committed (UNPLACEABLE, with what each filter removed).

import { demandOf } from '../sched/demand.ts';
import { place, unplaceable } from '../sched/place.ts';
import type { ClusterView, Demand } from '../sched/types.ts';
import { deploymentOwns } from '../state/deployments.ts';
import { statusOf } from '../state/nodes.ts';
import { placementOf, type VmSpec, validateVmSpec } from '../state/vm_spec.ts';
import { demandOfRow, instanceNames, type VmEntry } from '../state/vms.ts';
import { type ApiDeps, answer, resolveNode } from './deps.ts';
import type { RequestOf } from './requests.ts';
import { type ApiResponse, apiError } from './wire.ts';

/** How long vm.run waits for the leader's loop to place the new instances before it answers. */
export const PLACE_WAIT_MS = 5000;
const PLACE_POLL_MS = 50;

/** The spec as submitted, with `--on` turned into a constraint on the member's name. */
function specWithOn(deps: ApiDeps, spec: unknown, on: string | undefined): unknown | ApiResponse {
  if (on === undefined) return spec;
  const id = resolveNode(deps, on);
  if (typeof id !== 'string') return id;
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) return spec;
  const s = spec as Record<string, unknown>;
  const given = Array.isArray(s.constraints) ? s.constraints : [];
  return {
    ...s,
    constraints: [...given, { attribute: 'name', operator: '=', value: deps.node.sm.nameOf(id) }],
  };
}

/** The demand of a submitted spec as it would be at generation `generation`. */
function demandOfSpec(spec: VmSpec, generation: number): Demand {
  return demandOf(spec, placementOf(spec), generation);
}

function parseSpec(
  deps: ApiDeps,
  req: { spec: unknown; node?: string | undefined },
): { spec: VmSpec; raw: unknown } | ApiResponse {
  const raw = specWithOn(deps, req.spec, req.node);
  if (typeof raw === 'object' && raw !== null && 'ok' in raw && (raw as ApiResponse).ok === false)
    return raw as ApiResponse;
  const r = validateVmSpec(raw);
  if (!r.ok) return apiError('INVALID', r.errors.map((e) => e.message).join('\n'));
  return { spec: r.spec, raw };
}

/** Whether every member has its row in the node table (registered its capacity). */
function allRegistered(deps: ApiDeps): boolean {
  const table = deps.node.sm.query({ op: 'members' });
  const members = table.ok ? (table.members ?? []) : [];
  return members.every((m) => deps.node.sm.nodes.get(m.id) !== undefined);
}

/** The view with the group's own instances taken out: a new spec replaces them. */
function viewWithout(view: ClusterView, group: string): ClusterView {
  return { ...view, allocations: view.allocations.filter((a) => a.group !== group) };
}

/**
 * Why no node of the cluster could ever hold `spec` (even with no VM placed), or undefined: what
 * vm.run and deploy.submit refuse as UNPLACEABLE before anything is committed. Asked only when
 * every member has registered: a member still starting may be the one that fits (then the VM
 * waits, pending, with the reason). The group's own instances are left out (a new spec replaces
 * them).
 */
export function neverPlaceable(deps: ApiDeps, spec: VmSpec): string | undefined {
  if (!allRegistered(deps)) return undefined;
  const sm = deps.node.sm;
  return unplaceable(viewWithout(sm.view(), spec.name), demandOfSpec(spec, sm.applied + 1));
}

export async function handleVmRun(deps: ApiDeps, req: RequestOf<'vm.run'>): Promise<ApiResponse> {
  const parsed = parseSpec(deps, req);
  if ('ok' in parsed) return parsed;
  const sm = deps.node.sm;
  // A deployment's group changes only through versions (the state machine refuses it too).
  if (sm.deployments.owns(parsed.spec.name))
    return apiError('INVALID', deploymentOwns(parsed.spec.name));
  const never = neverPlaceable(deps, parsed.spec);
  if (never !== undefined) return apiError('UNPLACEABLE', never);
  const out = await deps.submit({ op: 'vm.put', spec: parsed.raw, atMs: Date.now() });
  const a = answer(out);
  if (!a.ok || !out.ok) return a;
  const names = instanceNames(parsed.spec);
  const rows = await placedOrExplained(deps, names, out.index);
  return { ...a, vms: rows };
}

/**
 * Waits (up to PLACE_WAIT_MS) until each instance has a node or a placement explanation on this
 * member, so `pcr vm run` can say where and why; answers what it has after that.
 */
async function placedOrExplained(
  deps: ApiDeps,
  names: readonly string[],
  generation: number,
): Promise<VmEntry[]> {
  const rows = (): VmEntry[] =>
    names.flatMap((n) => {
      const v = deps.node.sm.vms.get(n);
      return v === undefined || v.generation !== generation ? [] : [v];
    });
  const settled = (): boolean => {
    const r = rows();
    return r.length === names.length && r.every((v) => v.node !== '' || v.placement !== undefined);
  };
  const deadline = Date.now() + PLACE_WAIT_MS;
  while (!settled() && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, PLACE_POLL_MS));
  }
  return rows();
}

/** A dry run: where each instance would go now, with scores, or why nowhere. */
export async function handleVmPlan(deps: ApiDeps, req: RequestOf<'vm.plan'>): Promise<ApiResponse> {
  const parsed = parseSpec(deps, req);
  if ('ok' in parsed) return parsed;
  // A linearizable read first: the plan is made on state at least as new as the request.
  const fresh = await deps.read({ op: 'members' }, false);
  if (!fresh.ok) return answer(fresh);
  const sm = deps.node.sm;
  const view = viewWithout(sm.view(), parsed.spec.name);
  const demand = demandOfSpec(parsed.spec, sm.applied + 1);
  const r = place(
    { ...view, generations: { ...view.generations, [demand.group]: demand.generation } },
    [demand],
    view.index,
  );
  const never = unplaceable(view, demand);
  return {
    ok: true,
    index: view.index,
    placements: r.placements.map((p) => ({
      instance: p.instance,
      node: p.node,
      name: sm.nameOf(p.node),
      score: p.score,
      scored: p.scored,
    })),
    failures: r.failures.map((f) => ({
      instance: f.instance,
      filtered: f.filtered,
      message: f.message,
    })),
    ...(never !== undefined ? { unplaceable: never } : {}),
  };
}

/** The node table with what each node holds: for `pcr node list` and `pcr node status`. */
export async function handleNodeList(
  deps: ApiDeps,
  req: RequestOf<'node.list'>,
): Promise<ApiResponse> {
  const out = await deps.read({ op: 'nodes' }, req.stale === true);
  if (!out.ok || !out.result.ok) return answer(out);
  const sm = deps.node.sm;
  const byNode = new Map<string, VmEntry[]>();
  for (const v of sm.vms.list()) {
    const list = byNode.get(v.node);
    if (list === undefined) byNode.set(v.node, [v]);
    else list.push(v);
  }
  const nodes = (out.result.nodes ?? []).map((n) => {
    const mine = byNode.get(n.id) ?? [];
    return {
      id: n.id,
      name: sm.nameOf(n.id),
      status: statusOf(n),
      arch: n.arch,
      labels: n.labels,
      backends: n.backends,
      capacity: n.capacity,
      allocated: {
        cpus: mine.reduce((s, v) => s + v.spec.vcpus, 0),
        memoryMiB: mine.reduce((s, v) => s + v.spec.memoryMiB, 0),
      },
      vms: mine.map((v) => ({ name: v.name, state: v.state, desired: v.desired })),
      ...(n.drain !== undefined ? { drainDeadlineMs: n.drain.deadlineMs } : {}),
      eligible: n.eligible,
    };
  });
  return { ok: true, index: out.index, nodes };
}

export async function handleNodeDrain(
  deps: ApiDeps,
  req: RequestOf<'node.drain'>,
): Promise<ApiResponse> {
  const id = resolveNode(deps, req.node);
  if (typeof id !== 'string') return id;
  if (req.cancel === true) return answer(await deps.submit({ op: 'node.drain', id, cancel: true }));
  const sm = deps.node.sm;
  // Draining the last node that could hold a VM strands it: say so (the drain still happens).
  const others = sm.nodes
    .list()
    .filter((n) => n.id !== id && statusOf(n) === 'ready')
    .map((n) => n.id);
  const view = sm.view();
  const rest: ClusterView = { ...view, nodes: view.nodes.filter((n) => others.includes(n.id)) };
  const stranded = sm.vms
    .list(id)
    .filter((v) => v.desired === 'running' && unplaceable(rest, demandOfRow(v)) !== undefined)
    .map((v) => v.name);
  const out = await deps.submit({
    op: 'node.drain',
    id,
    deadlineMs: Date.now() + (req.deadlineMs ?? DRAIN_DEADLINE_DEFAULT_MS),
  });
  const a = answer(out);
  if (!a.ok) return a;
  return { ...a, ...(stranded.length > 0 ? { stranded } : {}) };
}

/** A drain without --deadline (Nomad's default is one hour too). */
export const DRAIN_DEADLINE_DEFAULT_MS = 3_600_000;

export async function handleNodeEligibility(
  deps: ApiDeps,
  req: RequestOf<'node.eligibility'>,
): Promise<ApiResponse> {
  const id = resolveNode(deps, req.node);
  if (typeof id !== 'string') return id;
  return answer(await deps.submit({ op: 'node.eligibility', id, eligible: req.eligible }));
}

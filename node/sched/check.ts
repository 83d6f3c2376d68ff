// The apply-time re-check (Nomad's plan applier): a plan computed at index i is committed at a
// later index j, and between them another plan may have taken the resources, the node may have
// left `ready`, or the spec may have changed. checkPlan re-checks each placement against the view
// at j plus the placements it accepted before it, with the very filters place() used, and refuses
// a stale one: two leaders' plans around a failover can never overcommit a node. Pure.

import { allocate, buildIndex } from './cluster.ts';
import { demandFilters, filterNode } from './feasible.ts';
import { instanceName } from './place.ts';
import type { ClusterView, Demand, Placement } from './types.ts';

export type Verdict = { readonly ok: true } | { readonly ok: false; readonly reason: string };

const FILTER_REASONS: Record<string, string> = {
  status: 'is not ready',
  backend: 'lacks the backend',
  distinct: 'already holds an instance of the group',
  cpu: 'has not enough free cpus',
  memory: 'has not enough free memory',
};

/**
 * One verdict per placement, in order. `demands` is each group's current demand (from the VM table
 * at this index), or a function giving each placement's instance its current demand (a
 * deployment's group mid-rollout holds two generations: the row's own demand is the one that
 * counts, and the group-wide generation of the view is not checked); an accepted placement counts
 * against its node for the ones after it.
 */
export function checkPlan(
  view: ClusterView,
  demands: Readonly<Record<string, Demand>> | ((p: Placement) => Demand | undefined),
  placements: readonly Placement[],
): Verdict[] {
  const ix = buildIndex(view);
  const perInstance = typeof demands === 'function';
  return placements.map((p): Verdict => {
    const d = perInstance
      ? demands(p)
      : Object.hasOwn(demands, p.group)
        ? demands[p.group]
        : undefined;
    const stale = (why: string): Verdict => ({
      ok: false,
      reason: `${p.instance}: stale placement: ${why}`,
    });
    if (d === undefined) return stale(`group ${p.group} has no spec at index ${view.index}`);
    const groupGeneration = perInstance ? p.generation : view.generations[p.group];
    if (groupGeneration !== p.generation || d.generation !== p.generation) {
      return stale(
        `planned for generation ${p.generation}, the spec is now at ${perInstance ? d.generation : (view.generations[p.group] ?? `none (no generation in the view at ${view.index})`)}`,
      );
    }
    if (!isInstanceOf(p.instance, d))
      return stale(`not an instance of ${d.group} (count ${d.count})`);
    if (ix.placed.has(p.instance)) return stale('the instance already has a node');
    if (p.resources.cpus !== d.resources.cpus || p.resources.memoryMiB !== d.resources.memoryMiB) {
      return stale('its resources differ from the spec');
    }
    const i = ix.pos.get(p.node);
    if (i === undefined) return stale(`node ${p.node} is not a member`);
    const why = filterNode(ix, demandFilters(d), i);
    if (why !== undefined) {
      return stale(
        `node ${p.node} ${FILTER_REASONS[why] ?? `fails ${why.slice('constraint '.length)}`}`,
      );
    }
    allocate(ix, i, { instance: p.instance, group: p.group, resources: p.resources });
    return { ok: true };
  });
}

function isInstanceOf(instance: string, d: Demand): boolean {
  if (d.instances !== undefined) return d.instances.includes(instance);
  for (let k = 0; k < d.count; k++) if (instanceName(d.group, k, d.count) === instance) return true;
  return false;
}

import { describe, expect, it } from 'vitest';
import { demand, eq, node, view } from '../../test/sched/fixture.ts';
import { checkPlan } from './check.ts';
import { place } from './place.ts';
import type { Allocation, ClusterView, Placement } from './types.ts';

const web = demand('web', { count: 2, resources: { cpus: 4, memoryMiB: 8192 } });
const nodes = [node('a'), node('b'), node('c', { labels: { zone: 'x' } })];
const v0 = view(nodes, [], { web: 1 });

function commit(v: ClusterView, ps: readonly Placement[]): ClusterView {
  const allocs: Allocation[] = ps.map((p) => ({
    instance: p.instance,
    group: p.group,
    node: p.node,
    resources: p.resources,
  }));
  return { ...v, index: v.index + 1, allocations: [...v.allocations, ...allocs] };
}

describe('checkPlan: the apply-time re-check', () => {
  it('accepts what place produced on the same view', () => {
    const r = place(v0, [web], 1);
    expect(checkPlan(v0, { web }, r.placements)).toEqual([{ ok: true }, { ok: true }]);
  });

  it('two leaders around a failover: the second plan is refused where the first took the room', () => {
    // Both planned at the same index; the first commits, then the second reaches apply.
    const big = (g: string) => demand(g, { count: 3, resources: { cpus: 6, memoryMiB: 8192 } });
    const v = view(nodes, [], { p: 1, q: 1 });
    const first = place(v, [big('p')], 1).placements;
    const second = place(v, [big('q')], 2).placements;
    expect(first).toHaveLength(3);
    expect(second).toHaveLength(3);
    const after = commit(v, first);
    const verdicts = checkPlan(after, { p: big('p'), q: big('q') }, second);
    expect(verdicts.every((x) => !x.ok)).toBe(true);
    expect(verdicts[0]).toEqual({
      ok: false,
      reason: `q-0: stale placement: node ${second[0]!.node} has not enough free cpus`,
    });
  });

  it('within one plan, an accepted placement counts against the next', () => {
    const one = demand('w', {
      count: 2,
      allowSharing: true,
      resources: { cpus: 5, memoryMiB: 1024 },
    });
    const forged: Placement[] = ['w-0', 'w-1'].map((instance) => ({
      instance,
      group: 'w',
      generation: 1,
      node: 'a',
      resources: one.resources,
      score: {
        fit: 0,
        antiAffinity: 0,
        affinity: 0,
        spread: 0,
        locality: 0,
        failedNode: 0,
        total: 0,
      },
      scored: 1,
    }));
    const verdicts = checkPlan(view(nodes, [], { w: 1 }), { w: one }, forged);
    expect(verdicts[0]).toEqual({ ok: true });
    expect(verdicts[1]).toEqual({
      ok: false,
      reason: 'w-1: stale placement: node a has not enough free cpus',
    });
  });

  it('refuses a node that left ready, a changed spec, a placed instance, a gone node, broken constraints', () => {
    const [p] = place(v0, [web], 1).placements;
    const on = (status: 'down' | 'draining') => ({
      ...v0,
      nodes: nodes.map((n) => (n.id === p!.node ? { ...n, status } : n)),
    });
    expect(checkPlan(on('down'), { web }, [p!])[0]).toEqual({
      ok: false,
      reason: `web-0: stale placement: node ${p!.node} is not ready`,
    });
    expect(checkPlan(on('draining'), { web }, [p!])[0]!.ok).toBe(false);
    const respec = { ...v0, generations: { web: 7 } };
    expect(checkPlan(respec, { web: { ...web, generation: 7 } }, [p!])[0]).toEqual({
      ok: false,
      reason: 'web-0: stale placement: planned for generation 1, the spec is now at 7',
    });
    expect(checkPlan(commit(v0, [p!]), { web }, [p!])[0]).toEqual({
      ok: false,
      reason: 'web-0: stale placement: the instance already has a node',
    });
    const gone = { ...v0, nodes: nodes.filter((n) => n.id !== p!.node) };
    expect(checkPlan(gone, { web }, [p!])[0]).toEqual({
      ok: false,
      reason: `web-0: stale placement: node ${p!.node} is not a member`,
    });
    const zoned = { ...web, constraints: [eq('label.zone', 'x')] };
    const onA = { ...p!, node: 'a' };
    expect(checkPlan(v0, { web: zoned }, [onA])[0]).toEqual({
      ok: false,
      reason: 'web-0: stale placement: node a fails label.zone = x',
    });
    expect(checkPlan(v0, {}, [p!])[0]).toEqual({
      ok: false,
      reason: 'web-0: stale placement: group web has no spec at index 100',
    });
    expect(checkPlan(v0, { web: { ...web, count: 0 } }, [p!])[0]!.ok).toBe(false);
  });
});

describe('a group of two versions (a deployment mid-rollout, D37)', () => {
  // web-0 runs version 1 (generation 1) on a; web-1 and web-2 are unplaced, web-1 at version 2
  // (generation 5, more memory) and web-2 still at version 1.
  const v1 = demand('web', { count: 3, generation: 1, instances: ['web-2'] });
  const v2 = demand('web', {
    count: 3,
    generation: 5,
    resources: { cpus: 1, memoryMiB: 4096 },
    instances: ['web-1'],
  });
  const running: Allocation = {
    instance: 'web-0',
    group: 'web',
    node: 'a',
    resources: v1.resources,
  };
  const v = view(nodes, [running], { web: 5 });

  it('place places only each demand’s instances, each at its own generation, distinct from the other version', () => {
    const r = place(v, [v1, v2], 1);
    expect(r.placements.map((p) => [p.instance, p.generation])).toEqual([
      ['web-2', 1],
      ['web-1', 5],
    ]);
    expect(r.placements.every((p) => p.node !== 'a')).toBe(true);
    expect(r.placements[0]!.node).not.toBe(r.placements[1]!.node);
  });

  it('checkPlan with per-instance demands checks each against its own generation and instances', () => {
    const r = place(v, [v1, v2], 1);
    const own = (p: Placement) => (p.generation === 5 ? v2 : v1);
    expect(checkPlan(v, own, r.placements)).toEqual([{ ok: true }, { ok: true }]);
    // The group-wide record form refuses the version-1 instance (the group is at 5)...
    expect(checkPlan(v, { web: v2 }, r.placements)[0]).toMatchObject({ ok: false });
    // ...and a per-instance demand refuses an instance it does not name, or a stale generation.
    expect(checkPlan(v, () => v2, r.placements)[0]).toEqual({
      ok: false,
      reason: 'web-2: stale placement: planned for generation 1, the spec is now at 5',
    });
    const wrong = { ...r.placements[1]!, instance: 'web-2' };
    expect(checkPlan(v, () => v2, [wrong])[0]).toEqual({
      ok: false,
      reason: 'web-2: stale placement: not an instance of web (count 3)',
    });
  });
});

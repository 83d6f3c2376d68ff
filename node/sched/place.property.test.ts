// Property tests over random clusters and demands: what place() returns never overcommits a node,
// never puts two instances of a non-sharing group on one node, places everything when the cluster
// is trivially sufficient, and passes checkPlan on the same view while a plan gone stale is
// refused. The checker below is independent of the code under test (it recomputes from the view
// and the placements); a planted bug (feasibility that ignores memory) proves it has teeth.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkPlan } from './check.ts';
import { filterNode } from './feasible.ts';
import { assertPlacements, choosePlacements, type Feasibility, place } from './place.ts';
import type { Allocation, ClusterView, Demand, PlaceResult, SchedNode } from './types.ts';

const BACKENDS = ['qemu', 'microvm', 'firecracker'];

const nodeArb = (id: number): fc.Arbitrary<SchedNode> =>
  fc.record({
    id: fc.constant(`n${id}`),
    name: fc.constant(`n${id}`),
    arch: fc.constantFrom('x86_64', 'aarch64'),
    capacity: fc.record({
      cpus: fc.integer({ min: 0, max: 16 }),
      memoryMiB: fc.integer({ min: 0, max: 16_384 }),
    }),
    labels: fc.record({ zone: fc.constantFrom('a', 'b', 'c') }),
    backends: fc.subarray(BACKENDS, { minLength: 1 }),
    status: fc.constantFrom('ready', 'ready', 'ready', 'down', 'draining'),
    closures: fc.constant([]),
  });

const demandArb = (group: string): fc.Arbitrary<Demand> =>
  fc
    .record({
      group: fc.constant(group),
      generation: fc.constant(1),
      count: fc.integer({ min: 1, max: 8 }),
      resources: fc.record({
        cpus: fc.integer({ min: 1, max: 8 }),
        memoryMiB: fc.integer({ min: 32, max: 8192 }),
      }),
      backend: fc.constantFrom(...BACKENDS),
      constraints: fc.oneof(
        fc.constant([]),
        fc
          .constantFrom('a', 'b')
          .map((z) => [{ attribute: 'label.zone', operator: '!=' as const, value: z }]),
      ),
      affinities: fc.oneof(
        fc.constant([]),
        fc.constant([{ attribute: 'arch', operator: '=' as const, value: 'aarch64', weight: 50 }]),
      ),
      allowSharing: fc.boolean(),
      packing: fc.constantFrom('binpack' as const, 'spread' as const),
    })
    .chain((d) =>
      fc
        .option(fc.constant({ attribute: 'label.zone', weight: 60 }), { nil: undefined })
        .map((spread) => (spread === undefined ? d : { ...d, spread })),
    );

/** Committed allocations that fit, chosen greedily from random wishes. */
function fittingAllocations(
  nodes: readonly SchedNode[],
  wishes: readonly [number, number, number][],
): Allocation[] {
  const used = nodes.map(() => ({ cpus: 0, memoryMiB: 0 }));
  const out: Allocation[] = [];
  wishes.forEach(([k, cpus, memoryMiB], w) => {
    const i = k % nodes.length;
    const cap = nodes[i]!.capacity;
    if (used[i]!.cpus + cpus > cap.cpus || used[i]!.memoryMiB + memoryMiB > cap.memoryMiB) return;
    used[i] = { cpus: used[i]!.cpus + cpus, memoryMiB: used[i]!.memoryMiB + memoryMiB };
    out.push({
      instance: `old-${w}`,
      group: 'old',
      node: nodes[i]!.id,
      resources: { cpus, memoryMiB },
    });
  });
  return out;
}

const caseArb = fc
  .integer({ min: 1, max: 24 })
  .chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => nodeArb(i))))
  .chain((nodes) =>
    fc.record({
      nodes: fc.constant(nodes),
      wishes: fc.array(
        fc.tuple(fc.nat(), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 32, max: 4096 })),
        { maxLength: 30 },
      ),
      demands: fc
        .integer({ min: 1, max: 4 })
        .chain((g) => fc.tuple(...Array.from({ length: g }, (_, k) => demandArb(`g${k}`)))),
      seed: fc.nat(),
      limit: fc.option(fc.integer({ min: 1, max: 30 }), { nil: undefined }),
    }),
  )
  .map(({ nodes, wishes, demands, seed, limit }) => ({
    view: {
      index: 10,
      nodes,
      allocations: fittingAllocations(nodes, wishes),
      generations: Object.fromEntries(demands.map((d) => [d.group, 1])),
    } as ClusterView,
    demands,
    seed,
    limit,
  }));

/** The safety violations of a result, recomputed from the view and placements alone. */
function violations(view: ClusterView, demands: readonly Demand[], r: PlaceResult): string[] {
  const out: string[] = [];
  const nodes = new Map(view.nodes.map((n) => [n.id, n]));
  const used = new Map<string, { cpus: number; memoryMiB: number }>();
  const seen = new Set<string>();
  const add = (node: string, cpus: number, memoryMiB: number) => {
    const u = used.get(node) ?? { cpus: 0, memoryMiB: 0 };
    used.set(node, { cpus: u.cpus + cpus, memoryMiB: u.memoryMiB + memoryMiB });
  };
  for (const a of view.allocations) add(a.node, a.resources.cpus, a.resources.memoryMiB);
  for (const p of r.placements) {
    add(p.node, p.resources.cpus, p.resources.memoryMiB);
    const d = demands.find((x) => x.group === p.group)!;
    const n = nodes.get(p.node)!;
    if (!d.allowSharing && seen.has(`${p.group}/${p.node}`))
      out.push(`two of ${p.group} on ${p.node}`);
    seen.add(`${p.group}/${p.node}`);
    if (n.status !== 'ready') out.push(`${p.instance} on ${n.status} ${p.node}`);
    if (!n.backends.includes(d.backend))
      out.push(`${p.instance} on ${p.node} without ${d.backend}`);
    for (const c of d.constraints)
      if (n.labels.zone === c.value) out.push(`${p.instance} breaks zone != ${c.value}`);
  }
  for (const [id, u] of used) {
    const cap = nodes.get(id)!.capacity;
    if (u.cpus > cap.cpus || u.memoryMiB > cap.memoryMiB) out.push(`${id} over capacity`);
  }
  for (const d of demands) {
    const placed = r.placements.filter((p) => p.group === d.group).length;
    const failed = r.failures.filter((f) => f.group === d.group).length;
    if (placed + failed !== d.count)
      out.push(`${d.group}: ${placed} placed + ${failed} failed != count ${d.count}`);
  }
  return out;
}

function safe(feasible: Feasibility) {
  return fc.property(caseArb, ({ view, demands, seed, limit }) => {
    const r = choosePlacements(view, demands, seed, limit === undefined ? {} : { limit }, feasible);
    expect(violations(view, demands, r)).toEqual([]);
  });
}

describe('place: properties over random clusters', () => {
  it('no node over capacity, no shared node for a non-sharing group, every instance accounted for', () => {
    fc.assert(safe(filterNode), { numRuns: 300 });
    fc.assert(
      fc.property(caseArb, ({ view, demands, seed }) => {
        expect(violations(view, demands, place(view, demands, seed))).toEqual([]); // with the asserts
      }),
      { numRuns: 100 },
    );
  });

  it('a trivially sufficient cluster places everything', () => {
    fc.assert(
      fc.property(
        fc.tuple(demandArb('a'), demandArb('b'), demandArb('c')),
        fc.nat(),
        (demands, seed) => {
          const total = demands.reduce((s, d) => s + d.count, 0);
          const nodes: SchedNode[] = Array.from({ length: total }, (_, i) => ({
            id: `n${i}`,
            name: `n${i}`,
            arch: 'x86_64',
            capacity: { cpus: 3 * 8, memoryMiB: 3 * 8192 },
            labels: { zone: 'c' },
            backends: BACKENDS,
            status: 'ready',
            closures: [],
          }));
          const r = place({ index: 1, nodes, allocations: [], generations: {} }, demands, seed);
          expect(r.failures).toEqual([]);
          expect(r.placements).toHaveLength(total);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('checkPlan accepts what place produced on the same view, and refuses it once the room was taken', () => {
    fc.assert(
      fc.property(caseArb, ({ view, demands, seed }) => {
        const r = place(view, demands, seed);
        const byGroup = Object.fromEntries(demands.map((d) => [d.group, d]));
        expect(checkPlan(view, byGroup, r.placements).every((v) => v.ok)).toBe(true);
        if (r.placements.length === 0) return;
        // Meanwhile another plan filled the first placement's node to the brim.
        const p = r.placements[0]!;
        const n = view.nodes.find((x) => x.id === p.node)!;
        const filler: Allocation = {
          instance: 'other-0',
          group: 'other',
          node: n.id,
          resources: n.capacity,
        };
        const stale = {
          ...view,
          allocations: [filler, ...view.allocations.filter((a) => a.node !== n.id)],
        };
        const verdicts = checkPlan(stale, byGroup, r.placements);
        expect(verdicts[0]!.ok).toBe(false);
        for (const [k, q] of r.placements.entries())
          if (q.node === n.id) expect(verdicts[k]!.ok).toBe(false);
      }),
      { numRuns: 200 },
    );
  });
});

describe('place: determinism over random clusters', () => {
  it('same view, demands and seed: same result, whatever the order of the nodes and allocations', () => {
    fc.assert(
      fc.property(caseArb, ({ view, demands, seed, limit }) => {
        const options = limit === undefined ? {} : { limit };
        const reordered = {
          ...view,
          nodes: [...view.nodes].reverse(),
          allocations: [...view.allocations].reverse(),
        };
        expect(place(reordered, demands, seed, options)).toEqual(
          place(view, demands, seed, options),
        );
      }),
      { numRuns: 150 },
    );
  });
});

describe('the properties have teeth', () => {
  it('a feasibility that ignores memory makes the capacity property fail, and place() assert', () => {
    const ignoresMemory: Feasibility = (ix, f, i) => {
      const why = filterNode(ix, f, i);
      return why === 'memory' ? undefined : why;
    };
    const out = fc.check(safe(ignoresMemory), { numRuns: 500, seed: 1 });
    expect(out.failed).toBe(true);
    expect(String(out.errorInstance)).toMatch(/over capacity/);
    const [c] = out.counterexample!;
    const r = choosePlacements(
      c.view,
      c.demands,
      c.seed,
      c.limit === undefined ? {} : { limit: c.limit },
      ignoresMemory,
    );
    expect(() => assertPlacements(c.view, c.demands, r.placements)).toThrow(
      /invariant: .* over its memory/,
    );
  });
});

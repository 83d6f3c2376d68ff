import { describe, expect, it } from 'vitest';
import { cluster, demand, eq, node, pref, view } from '../../test/sched/fixture.ts';
import { buildIndex } from './cluster.ts';
import { demandFilters, filterNode } from './feasible.ts';
import { place, sampleLimit, unplaceable } from './place.ts';
import { AFFINITY_SAMPLE_NODES, FAILED_NODE_PENALTY, LOCALITY_BONUS } from './types.ts';

const where = (r: ReturnType<typeof place>) =>
  Object.fromEntries(r.placements.map((p) => [p.instance, p.node]));

describe('feasibility: each filter, counted in the failure', () => {
  it('status: only ready nodes take VMs', () => {
    const v = view([
      node('a', { status: 'down' }),
      node('b', { status: 'draining' }),
      node('c', { status: 'ineligible' }),
      node('d'),
    ]);
    expect(where(place(v, [demand('web')], 1))).toEqual({ web: 'd' });
    const r = place(view(v.nodes.slice(0, 3)), [demand('web')], 1);
    expect(r.failures[0]!.message).toBe('web: no node fits: 3 nodes not ready');
  });

  it('backend: the node must have proved it', () => {
    const v = view([
      node('a', { backends: ['qemu'] }),
      node('b', { backends: ['qemu', 'firecracker'] }),
    ]);
    expect(where(place(v, [demand('fc', { backend: 'firecracker' })], 1))).toEqual({ fc: 'b' });
    const r = place(v, [demand('m', { backend: 'microvm' })], 1);
    expect(r.failures[0]!.message).toBe('m: no node fits: 2 nodes lacked the backend microvm');
  });

  it('constraints, named in the reason; name constraints too', () => {
    const v = view([node('a', { labels: { zone: 'a' } }), node('b', { labels: { zone: 'b' } })]);
    expect(where(place(v, [demand('w', { constraints: [eq('label.zone', 'b')] })], 1))).toEqual({
      w: 'b',
    });
    expect(where(place(v, [demand('w', { constraints: [eq('name', 'a')] })], 1))).toEqual({
      w: 'a',
    });
    const r = place(v, [demand('w', { constraints: [eq('label.zone', 'c')] })], 1);
    expect(r.failures[0]!.message).toBe('w: no node fits: 2 filtered by label.zone = c');
  });

  it('distinct: instances of a group go to distinct nodes unless sharing is allowed', () => {
    const v = view([node('a'), node('b')]);
    const r = place(v, [demand('web', { count: 3 })], 1);
    expect(r.placements.map((p) => p.node).sort()).toEqual(['a', 'b']);
    expect(r.failures.map((f) => f.message)).toEqual([
      'web-2: no node fits: 2 nodes already held an instance of the group',
    ]);
    expect(place(v, [demand('web', { count: 3, allowSharing: true })], 1).placements).toHaveLength(
      3,
    );
  });

  it('cpu and memory against committed allocations: "2 nodes lacked memory, 1 filtered by label.zone = a"', () => {
    const nodes = [
      node('a', { labels: { zone: 'b' }, capacity: { cpus: 8, memoryMiB: 2048 } }),
      node('b', { labels: { zone: 'b' }, capacity: { cpus: 8, memoryMiB: 4096 } }),
      node('c', { labels: { zone: 'a' } }),
      node('d', { labels: { zone: 'b' }, capacity: { cpus: 1, memoryMiB: 65_536 } }),
    ];
    const taken = [
      { instance: 'db-0', group: 'db', node: 'b', resources: { cpus: 1, memoryMiB: 2048 } },
    ];
    const d = demand('web', {
      resources: { cpus: 2, memoryMiB: 3072 },
      constraints: [{ attribute: 'label.zone', operator: '!=', value: 'a' }],
    });
    const r = place(view(nodes, taken), [d], 7);
    expect(r.failures[0]!.filtered).toEqual({ memory: 2, 'constraint label.zone != a': 1, cpu: 1 });
    expect(r.failures[0]!.message).toBe(
      'web: no node fits: 2 nodes lacked memory, 1 filtered by label.zone != a, 1 node lacked cpus',
    );
  });

  it('the class verdict is computed once per class and reused', () => {
    const nodes = cluster(300, 3);
    const ix = buildIndex(view(nodes));
    const f = demandFilters(demand('w', { constraints: [eq('label.zone', 'z1')] }));
    for (let i = 0; i < nodes.length; i++) filterNode(ix, f, i);
    expect(ix.classCount).toBeLessThan(nodes.length / 2);
    expect(f.classVerdict.size).toBe(ix.classCount);
    // Reused, not recomputed: a verdict planted in the cache is what every node of the class gets.
    f.classVerdict.set(ix.classOf[0]!, 'constraint planted');
    expect(filterNode(ix, f, 0)).toBe('constraint planted');
  });

  it('unplaceable: above every node, impossible on this cluster, more instances than nodes', () => {
    const v = view(
      [node('a'), node('b')],
      [{ instance: 'x-0', group: 'x', node: 'a', resources: { cpus: 8, memoryMiB: 1 } }],
    );
    expect(unplaceable(v, demand('w', { count: 2 }))).toBeUndefined(); // allocations do not count here
    expect(unplaceable(v, demand('w', { resources: { cpus: 1, memoryMiB: 20_000 } }))).toBe(
      'even with no VM placed, w: no node fits: 2 nodes lacked memory',
    );
    expect(unplaceable(v, demand('w', { constraints: [eq('arch', 'aarch64')] }))).toMatch(
      /2 filtered by arch = aarch64/,
    );
    expect(unplaceable(v, demand('w', { count: 3 }))).toMatch(
      /w-2: no node fits: 2 nodes already held/,
    );
  });
});

describe('ranking: each term', () => {
  it('binpack fills the fuller node; spread packing the emptier', () => {
    const v = view(
      [node('a'), node('b')],
      [{ instance: 'x-0', group: 'x', node: 'b', resources: { cpus: 4, memoryMiB: 8192 } }],
    );
    const packed = place(v, [demand('w')], 1);
    expect(packed.placements[0]!.node).toBe('b');
    // free after: cpu 3/8, mem 7/16: (20 - 10^0.375 - 10^0.4375) / 18
    expect(packed.placements[0]!.score.fit).toBeCloseTo((20 - 10 ** 0.375 - 10 ** 0.4375) / 18, 12);
    expect(place(v, [demand('w', { packing: 'spread' })], 1).placements[0]!.node).toBe('a');
  });

  it('anti-affinity spreads a sharing group before packing it', () => {
    const v = view([node('a'), node('b')]);
    const r = place(v, [demand('w', { count: 2, allowSharing: true })], 1);
    expect(new Set(r.placements.map((p) => p.node)).size).toBe(2);
    expect(r.placements[1]!.score.antiAffinity).toBe(0);
    const three = place(view([node('a')]), [demand('w', { count: 3, allowSharing: true })], 1);
    expect(three.placements.map((p) => p.score.antiAffinity)).toEqual([0, -1 / 3, -2 / 3]);
  });

  it('affinities: sum of matching weights over the sum of their magnitudes', () => {
    const v = view(
      [node('a', { labels: { disk: 'ssd' } }), node('b', { labels: { disk: 'hdd' } })],
      [
        { instance: 'x-0', group: 'x', node: 'b', resources: { cpus: 4, memoryMiB: 8192 } }, // packing prefers b
      ],
    );
    const r = place(
      v,
      [demand('w', { affinities: [pref('label.disk', 'ssd', 60), pref('arch', 'aarch64', 20)] })],
      1,
    );
    expect(r.placements[0]!.node).toBe('a');
    expect(r.placements[0]!.score.affinity).toBeCloseTo(60 / 80, 12);
    const avoid = place(v, [demand('w', { affinities: [pref('label.disk', 'hdd', -100)] })], 1);
    expect(avoid.placements[0]!.node).toBe('a');
  });

  it('spread: instances go round the values of the attribute', () => {
    const nodes = ['a', 'b', 'c'].flatMap((z) =>
      [0, 1, 2].map((k) => node(`${z}${k}`, { labels: { zone: z } })),
    );
    const r = place(
      view(nodes),
      [demand('w', { count: 6, spread: { attribute: 'label.zone', weight: 100 } })],
      3,
    );
    const perZone: Record<string, number> = {};
    for (const p of r.placements) perZone[p.node[0]!] = (perZone[p.node[0]!] ?? 0) + 1;
    expect(perZone).toEqual({ a: 2, b: 2, c: 2 });
  });

  it('spread: a node without the attribute gets the full penalty', () => {
    const r = place(
      view([node('a'), node('b', { labels: { zone: 'x' } })]),
      [demand('w', { spread: { attribute: 'label.zone', weight: 50 } })],
      1,
    );
    expect(r.placements[0]!.node).toBe('b');
    const only = place(
      view([node('a')]),
      [demand('w', { spread: { attribute: 'label.zone', weight: 50 } })],
      1,
    );
    expect(only.placements[0]!.score.spread).toBe(-0.5);
  });

  it('closure locality: a node holding the runner closure wins, even outside the sample', () => {
    const closure = '/nix/store/00000000000000000000000000000000-runner';
    const nodes = cluster(2000).map((n) => (n.id === 'n01234' ? { ...n, closures: [closure] } : n));
    const r = place(view(nodes), [demand('w', { closure, backend: 'microvm' })], 5);
    expect(r.placements[0]!.node).toBe('n01234');
    expect(r.placements[0]!.score.locality).toBe(LOCALITY_BONUS);
  });

  it('failed-node penalty: the node where the instance just failed is a last resort', () => {
    const v = view(
      [node('a'), node('b')],
      [{ instance: 'x-0', group: 'x', node: 'a', resources: { cpus: 4, memoryMiB: 8192 } }],
    );
    expect(place(v, [demand('w')], 1).placements[0]!.node).toBe('a');
    const r = place(v, [demand('w', { failedNodes: { w: 'a' } })], 1);
    expect(r.placements[0]!.node).toBe('b');
    const alone = place(view([node('a')]), [demand('w', { failedNodes: { w: 'a' } })], 1);
    expect(alone.placements[0]!.score.failedNode).toBe(FAILED_NODE_PENALTY);
  });

  it('ties: the lower gossiped load, then the lower node ID, whatever the input order', () => {
    const nodes = [node('c'), node('a'), node('b')];
    expect(place(view(nodes), [demand('w')], 1, { limit: 3 }).placements[0]!.node).toBe('a');
    const loaded = [node('c', { load: 0.1 }), node('a', { load: 0.9 }), node('b', { load: 0.5 })];
    expect(place(view(loaded), [demand('w')], 1, { limit: 3 }).placements[0]!.node).toBe('c');
  });
});

describe('determinism and the bounded sample', () => {
  const nodes = cluster(5000, 3);
  const spec = demand('web', {
    count: 20,
    constraints: [eq('arch', 'x86_64')],
    spread: { attribute: 'label.zone', weight: 50 },
  });

  it('same view, demands and seed: same result, whatever the node order', () => {
    const a = place(view(nodes), [spec, demand('db', { count: 5 })], 42);
    const b = place(view([...nodes].reverse()), [spec, demand('db', { count: 5 })], 42);
    expect(b).toEqual(a);
  });

  it('another seed may choose other nodes, and stays valid', () => {
    const a = place(view(nodes), [demand('db', { count: 5 })], 1);
    const b = place(view(nodes), [demand('db', { count: 5 })], 2);
    expect(where(a)).not.toEqual(where(b));
    expect(b.placements).toHaveLength(5);
  });

  it('ranks max(2, ceil(log2 N)) nodes; 64 with affinities', () => {
    expect(sampleLimit(5000, demand('w'), {})).toBe(13);
    expect(sampleLimit(1, demand('w'), {})).toBe(2);
    expect(sampleLimit(5000, spec, {})).toBe(13);
    expect(sampleLimit(5000, demand('w', { affinities: [pref('arch', 'x86_64', 1)] }), {})).toBe(
      AFFINITY_SAMPLE_NODES,
    );
    const r = place(view(nodes), [demand('w', { count: 3 })], 9);
    expect(r.placements.map((p) => p.scored)).toEqual([13, 13, 13]);
  });

  it('spread evens a group out over zones with the small sample too', () => {
    const r = place(
      view(nodes),
      [demand('w', { count: 30, spread: { attribute: 'label.zone', weight: 100 } })],
      11,
    );
    const perZone: Record<string, number> = {};
    for (const p of r.placements) {
      const zone = nodes.find((n) => n.id === p.node)!.labels.zone!;
      perZone[zone] = (perZone[zone] ?? 0) + 1;
    }
    expect(perZone).toEqual({ z0: 10, z1: 10, z2: 10 });
  });

  it('full-scan fallback: a single feasible node among 5,000 is found', () => {
    const d = demand('w', { constraints: [eq('name', 'n04321')] });
    const r = place(view(nodes), [d], 3);
    expect(where(r)).toEqual({ w: 'n04321' });
    expect(r.placements[0]!.scored).toBe(1);
  });

  it('a batch never overcommits: the running view subtracts each placement', () => {
    const small = [
      node('a', { capacity: { cpus: 4, memoryMiB: 4096 } }),
      node('b', { capacity: { cpus: 4, memoryMiB: 4096 } }),
    ];
    const r = place(
      view(small),
      [
        demand('x', { count: 3, allowSharing: true, resources: { cpus: 2, memoryMiB: 2048 } }),
        demand('y', { count: 3, allowSharing: true, resources: { cpus: 1, memoryMiB: 1024 } }),
      ],
      1,
    );
    expect(r.placements).toHaveLength(5); // 4 + 4 cpus: x takes 6, y gets 2
    expect(r.failures.map((f) => f.instance)).toEqual(['y-2']);
  });

  it('an empty cluster and a group scaled to 0', () => {
    expect(place(view([]), [demand('w')], 1).failures[0]!.message).toBe(
      'w: no node fits: the cluster has no nodes',
    );
    expect(place(view([node('a')]), [demand('w', { count: 0 })], 1)).toEqual({
      index: 100,
      placements: [],
      failures: [],
    });
  });

  it('places only the instances without a node; committed ones count for distinctness', () => {
    const v = view(
      [node('a'), node('b'), node('c')],
      [{ instance: 'w-1', group: 'w', node: 'a', resources: { cpus: 1, memoryMiB: 1024 } }],
    );
    const r = place(v, [demand('w', { count: 3 })], 1);
    expect(r.placements.map((p) => p.instance)).toEqual(['w-0', 'w-2']);
    expect(r.placements.map((p) => p.node)).not.toContain('a');
  });
});

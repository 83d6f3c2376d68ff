import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../consensus/index.ts';
import { hears, PARTITIONS, parseNemeses, planFault, planPartition, ringReach } from './nemesis.ts';

const five = ['n1', 'n2', 'n3', 'n4', 'n5'];
const three = ['n1', 'n2', 'n3'];
const view = (nodes: string[], f: ReturnType<typeof planPartition>): Map<string, Set<string>> =>
  f.kind === 'partition'
    ? new Map(hears(nodes, f.drops).map(([n, ...rest]) => [n!, new Set(rest)]))
    : new Map();
const majority = (n: number): number => Math.floor(n / 2) + 1;

describe('partition plans', () => {
  it('halves: two sides, no packet crosses, both directions cut', () => {
    const v = view(five, planPartition('halves', five, undefined, seededRandom(1)));
    const sizes = [...v.values()].map((s) => s.size + 1).sort();
    expect(sizes).toEqual([2, 2, 3, 3, 3]);
    for (const [a, peers] of v) for (const b of peers) expect(v.get(b)!.has(a)).toBe(true);
  });

  it('leader: the leader alone, the others together', () => {
    const v = view(five, planPartition('leader', five, 'n3', seededRandom(2)));
    expect(v.get('n3')!.size).toBe(0);
    for (const n of ['n1', 'n2', 'n4', 'n5']) expect(v.get(n)!.size).toBe(3);
  });

  it('majorities ring: every node hears a majority, no two the same one', () => {
    for (const nodes of [five, ['n1', 'n2', 'n3', 'n4'], [...five, 'n6', 'n7']]) {
      const v = view(nodes, planPartition('ring', nodes, undefined, seededRandom(3)));
      const majorities = new Set<string>();
      for (const [n, peers] of v) {
        expect(peers.size + 1).toBeGreaterThanOrEqual(majority(nodes.length));
        expect(peers.size + 1).toBeLessThan(nodes.length);
        majorities.add([n, ...peers].sort().join());
      }
      expect(majorities.size).toBe(nodes.length);
    }
    expect(ringReach(5)).toBe(1);
  });

  it('ring on three nodes degenerates to the bridge', () => {
    const f = planPartition('ring', three, undefined, seededRandom(4));
    expect(f.kind === 'partition' && f.variant).toBe('bridge');
  });

  it('one-way: the victim hears everyone and nobody hears it', () => {
    const v = view(five, planPartition('oneway', five, 'n2', seededRandom(5)));
    expect(v.get('n2')!.size).toBe(4);
    for (const n of ['n1', 'n3', 'n4', 'n5']) expect(v.get(n)!.has('n2')).toBe(false);
  });

  it('bridge: one node hears both halves, the halves do not hear each other', () => {
    const v = view(five, planPartition('bridge', five, undefined, seededRandom(6)));
    const bridges = [...v].filter(([, p]) => p.size === 4);
    expect(bridges).toHaveLength(1);
    const others = [...v].filter(([, p]) => p.size < 4);
    for (const [, p] of others) expect(p.size).toBe(2);
  });

  it('every variant is deterministic for a seed', () => {
    for (const kind of PARTITIONS) {
      const a = planPartition(kind, five, 'n1', seededRandom(9));
      const b = planPartition(kind, five, 'n1', seededRandom(9));
      expect(a).toEqual(b);
    }
  });
});

describe('process and loss plans', () => {
  it('kill and pause take a minority (or the leader), never a majority', () => {
    for (let seed = 0; seed < 50; seed++) {
      for (const name of ['kill', 'pause'] as const) {
        const f = planFault(name, five, 'n4', seededRandom(seed));
        if (f.kind !== 'kill' && f.kind !== 'pause') throw new Error(f.kind);
        expect(f.nodes.length).toBeGreaterThanOrEqual(1);
        expect(f.nodes.length).toBeLessThan(majority(5));
        if (f.target === 'leader') expect(f.nodes).toEqual(['n4']);
      }
    }
  });

  it('parses nemesis lists and refuses unknown names', () => {
    expect(parseNemeses('partition,kill,partition')).toEqual(['partition', 'kill']);
    expect(parseNemeses('none')).toEqual([]);
    expect(() => parseNemeses('partition,flood')).toThrow(/unknown nemesis "flood"/);
  });
});

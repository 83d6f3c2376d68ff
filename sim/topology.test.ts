// The partition generators produce the connectivity their names promise, for several cluster
// sizes and many random draws; the nemesis schedule ends healed; nemesis files are validated.

import { describe, expect, it } from 'vitest';
import { GENERATE_DEFAULTS, generateSchedule, NemesisFileError, parseSchedule } from './nemesis.ts';
import { SimRandom } from './random.ts';
import { PARTITION_MODES, type PartitionMode, partitionGroups, Topology } from './topology.ts';

const idsOf = (n: number): string[] => Array.from({ length: n }, (_, i) => `n${i + 1}`);

/** Builds the topology of a mode and returns, for each node, the set of nodes it reaches. */
function reach(
  mode: PartitionMode,
  n: number,
  seed: number,
  leader?: string,
): Map<string, string[]> {
  const ids = idsOf(n);
  const t = new Topology(ids);
  t.partition(partitionGroups(mode, ids, new SimRandom(seed), leader));
  return new Map(ids.map((id) => [id, t.reachable(id)]));
}

function symmetric(r: Map<string, string[]>): boolean {
  for (const [a, seen] of r) for (const b of seen) if (!r.get(b)!.includes(a)) return false;
  return true;
}

const SIZES = [3, 4, 5, 6, 7];
const SEEDS = Array.from({ length: 20 }, (_, i) => i + 1);

describe('partition modes', () => {
  it.each(SIZES)('halves (%i nodes): two disjoint sides, floor(n/2) and the rest', (n) => {
    for (const seed of SEEDS) {
      const r = reach('halves', n, seed);
      expect(symmetric(r)).toBe(true);
      const sides = new Set([...r.values()].map((s) => s.join()));
      expect(sides.size).toBe(2);
      const sizes = [...sides].map((s) => s.split(',').length).sort((a, b) => a - b);
      expect(sizes).toEqual([Math.floor(n / 2), n - Math.floor(n / 2)]);
    }
  });

  it.each(SIZES)('isolate-one (%i nodes): one node alone, the others together', (n) => {
    for (const seed of SEEDS) {
      const r = reach('isolate-one', n, seed);
      const alone = [...r].filter(([, s]) => s.length === 1);
      expect(alone.length).toBe(1);
      for (const [id, s] of r) if (id !== alone[0]![0]) expect(s.length).toBe(n - 1);
    }
  });

  it('isolate-leader isolates the leader it is given (a random node without one)', () => {
    const r = reach('isolate-leader', 5, 1, 'n4');
    expect(r.get('n4')).toEqual(['n4']);
    for (const id of ['n1', 'n2', 'n3', 'n5']) expect(r.get(id)).toEqual(['n1', 'n2', 'n3', 'n5']);
    const noLeader = reach('isolate-leader', 5, 1);
    expect([...noLeader.values()].filter((s) => s.length === 1).length).toBe(1);
  });

  it.each([4, 5, 6, 7, 9])(
    'majorities-ring (%i nodes): everyone sees a majority, no two nodes the same one',
    (n) => {
      const majority = Math.floor(n / 2) + 1;
      for (const seed of SEEDS) {
        const r = reach('majorities-ring', n, seed);
        expect(symmetric(r)).toBe(true);
        for (const s of r.values()) {
          expect(s.length).toBeGreaterThanOrEqual(majority);
          expect(s.length).toBeLessThan(n);
        }
        expect(new Set([...r.values()].map((s) => s.join())).size).toBe(n);
        // Not transitive: some pair of connected nodes has a neighbour the other cannot reach.
        const n1 = r.get('n1')!;
        expect(n1.some((b) => r.get(b)!.some((c) => !n1.includes(c)))).toBe(true);
      }
    },
  );

  it('majorities-ring of 3 nodes cannot cut anything (every pair is within a majority)', () => {
    for (const s of reach('majorities-ring', 3, 1).values()) expect(s.length).toBe(3);
  });

  it.each(SIZES)('bridge (%i nodes): one node sees everyone, two sides see only it', (n) => {
    for (const seed of SEEDS) {
      const r = reach('bridge', n, seed);
      expect(symmetric(r)).toBe(true);
      const bridges = [...r].filter(([, s]) => s.length === n);
      expect(bridges.length).toBe(1);
      const bridge = bridges[0]![0];
      const sides = new Set([...r].filter(([id]) => id !== bridge).map(([, s]) => s.join()));
      expect(sides.size).toBe(2);
      for (const side of sides) expect(side.split(',')).toContain(bridge);
      // Each side plus the bridge: for an odd n, both are exactly a majority.
      if (n % 2 === 1) {
        for (const side of sides) expect(side.split(',').length).toBe(Math.floor(n / 2) + 1);
      }
    }
  });

  it('every mode is deterministic for a seed', () => {
    for (const mode of PARTITION_MODES) {
      expect(reach(mode, 5, 7, 'n2')).toEqual(reach(mode, 5, 7, 'n2'));
    }
  });

  it('explicit groups: a node in no group is isolated; unknown nodes are refused; heal', () => {
    const t = new Topology(idsOf(4));
    t.partition([['n1', 'n2'], ['n3']]);
    expect(t.reachable('n1')).toEqual(['n1', 'n2']);
    expect(t.reachable('n3')).toEqual(['n3']);
    expect(t.reachable('n4')).toEqual(['n4']);
    expect(() => t.partition([['n1', 'n9']])).toThrow(/unknown node "n9"/);
    t.heal();
    expect(t.reachable('n4')).toEqual(idsOf(4));
    expect(t.groups).toBeUndefined();
  });
});

describe('nemesis schedules', () => {
  it('a generated schedule alternates each fault with its repair and ends healed', () => {
    for (const seed of SEEDS) {
      const faults = generateSchedule(new SimRandom(seed), {
        ...GENERATE_DEFAULTS,
        kinds: ['partition', 'crash', 'pause', 'drift'],
        endMs: 8000,
      });
      expect(faults.length).toBeGreaterThan(4);
      for (let i = 1; i < faults.length; i++)
        expect(faults[i]!.at).toBeGreaterThanOrEqual(faults[i - 1]!.at);
      const open = { partition: 0, crash: 0, pause: 0, drift: 0 };
      const repair = {
        heal: 'partition',
        restart: 'crash',
        resume: 'pause',
        'drift-reset': 'drift',
      } as const;
      for (const f of faults) {
        expect(f.at).toBeGreaterThanOrEqual(GENERATE_DEFAULTS.startMs);
        expect(f.at).toBeLessThanOrEqual(8000);
        if (f.kind in open) {
          expect(open[f.kind as keyof typeof open]).toBe(0);
          open[f.kind as keyof typeof open]++;
        } else {
          const k = repair[f.kind as keyof typeof repair];
          expect(open[k]).toBe(1);
          open[k]--;
        }
      }
      expect(open).toEqual({ partition: 0, crash: 0, pause: 0, drift: 0 });
    }
  });

  it('only the selected kinds are generated', () => {
    const faults = generateSchedule(new SimRandom(1), {
      ...GENERATE_DEFAULTS,
      kinds: ['pause'],
      endMs: 10_000,
    });
    expect(new Set(faults.map((f) => f.kind))).toEqual(new Set(['pause', 'resume']));
    expect(
      generateSchedule(new SimRandom(1), { ...GENERATE_DEFAULTS, kinds: [], endMs: 10_000 }),
    ).toEqual([]);
  });

  it('parses a nemesis file (times in ms or with units), sorted by time', () => {
    const faults = parseSchedule(
      JSON.stringify({
        faults: [
          { at: '2s', kind: 'heal' },
          { at: 500, kind: 'partition', mode: 'bridge' },
          { at: '1.5s', kind: 'crash', target: 'leader' },
          { at: '1500ms', kind: 'pause', node: 'n2' },
          { at: '1m', kind: 'restart' },
          { at: 10, kind: 'partition', groups: [['n1'], ['n2', 'n3']] },
          { at: 20, kind: 'drift', target: ['n1', 'n3'], factor: 1.5 },
        ],
      }),
      idsOf(3),
    );
    expect(faults.map((f) => [f.at, f.kind])).toEqual([
      [10, 'partition'],
      [20, 'drift'],
      [500, 'partition'],
      [1500, 'crash'],
      [1500, 'pause'],
      [2000, 'heal'],
      [60_000, 'restart'],
    ]);
    expect(faults[4]).toEqual({ at: 1500, kind: 'pause', target: ['n2'] });
  });

  it.each([
    ['not json', /not valid JSON/],
    ['{"x":1}', /expected a JSON array of faults/],
    ['[{"at":"soon","kind":"heal"}]', /fault 1: at is "soon"/],
    ['[{"at":1,"kind":"explode"}]', /fault 1: kind is "explode"/],
    ['[{"at":1,"kind":"heal"},{"at":2,"kind":"crash"}]', /fault 2: crash needs a target/],
    ['[{"at":1,"kind":"crash","target":"n9"}]', /unknown node "n9"/],
    ['[{"at":1,"kind":"partition","mode":"triangle"}]', /mode is "triangle"/],
    ['[{"at":1,"kind":"partition","groups":[["n1"],["n7"]]}]', /unknown node "n7"/],
    ['[{"at":1,"kind":"drift","target":"one","factor":50}]', /factor is 50/],
  ])('refuses a bad file: %s', (text, message) => {
    expect(() => parseSchedule(text, idsOf(3))).toThrow(NemesisFileError);
    expect(() => parseSchedule(text, idsOf(3))).toThrow(message);
  });
});

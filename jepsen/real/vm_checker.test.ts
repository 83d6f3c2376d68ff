import { describe, expect, it } from 'vitest';
import type { HistoryEvent } from '../checker/index.ts';
import { checkVms, desiredBounds, doubleRuns, instancesOf, type VmSample } from './vm_checker.ts';

let t = 0;
const op = (
  process: number,
  f: 'run' | 'stop' | 'rm',
  group: string,
  outcome: 'ok' | 'fail' | 'info',
  count = 1,
): HistoryEvent[] => [
  { type: 'invoke', process, f, value: { group, count }, time: t++ },
  { type: outcome, process, f, value: { group, count }, time: t++ },
];

/** A sample at `time`: each [instance, node] a live VMM, each [instance, node, 'T'] a frozen one. */
const at = (time: number, ...seen: [string, string, 'T'?][]): VmSample => ({
  time,
  seen: seen.map(([instance, node, f], pid) => ({ instance, node, pid, frozen: f === 'T' })),
});

describe('vms checker', () => {
  it('names a group of 1 as itself and a group of N as <group>-k', () => {
    expect(instancesOf({ group: 'g1' })).toEqual(['g1']);
    expect(instancesOf({ group: 'g2', count: 2 })).toEqual(['g2-0', 'g2-1']);
  });

  it('valid: one copy per instance throughout, every desired instance steady after the heal', () => {
    const history = [...op(0, 'run', 'a', 'ok'), ...op(1, 'run', 'b', 'ok', 2)];
    const samples = [
      at(100, ['a', 'n1'], ['b-0', 'n2']),
      at(300, ['b-0', 'n2'], ['b-1', 'n3']), // a moved: briefly nowhere
      at(500, ['a', 'n3'], ['b-0', 'n2'], ['b-1', 'n3']),
      at(900, ['a', 'n3'], ['b-0', 'n2'], ['b-1', 'n3']),
    ];
    const r = checkVms({
      history,
      samples,
      finalDesired: ['a', 'b-0', 'b-1'],
      healAt: 400,
      boundMs: 1000,
    });
    expect(r).toMatchObject({ valid: true, doubleRuns: [], lost: [], notRunning: [], strays: [] });
    expect(r.recoveryMs).toEqual({ a: 100, 'b-0': 100, 'b-1': 100 });
  });

  it('teeth: a planted history with an instance live on two nodes at once is invalid, with times and nodes', () => {
    const history = op(0, 'run', 'a', 'ok');
    const samples = [
      at(0, ['a', 'n1']),
      at(200, ['a', 'n1'], ['a', 'n2']),
      at(400, ['a', 'n1'], ['a', 'n2']),
      at(600, ['a', 'n2']),
      at(800, ['a', 'n2'], ['a', 'n3']),
      at(1000, ['a', 'n2']),
    ];
    const r = checkVms({ history, samples, finalDesired: ['a'], healAt: 0, boundMs: 5000 });
    expect(r.valid).toBe(false);
    expect(r.doubleRuns).toEqual([
      { instance: 'a', nodes: ['n1', 'n2'], from: 200, to: 400, samples: 2 },
      { instance: 'a', nodes: ['n2', 'n3'], from: 800, to: 800, samples: 1 },
    ]);
  });

  it('a frozen copy beside a running one is counted, not a violation (a paused machine runs nothing)', () => {
    const r = doubleRuns([at(0, ['a', 'n1', 'T'], ['a', 'n2']), at(200, ['a', 'n2'])]);
    expect(r).toEqual({ runs: [], frozenOverlaps: 1 });
    // ... but the moment it thaws while the other still runs, it is one.
    const thawed = doubleRuns([
      at(0, ['a', 'n1', 'T'], ['a', 'n2']),
      at(200, ['a', 'n1'], ['a', 'n2']),
    ]);
    expect(thawed.runs).toHaveLength(1);
  });

  it('desired bounds: an acknowledged run must run; an indeterminate stop or run only may', () => {
    const h = [
      ...op(0, 'run', 'a', 'ok'),
      ...op(1, 'run', 'b', 'info'),
      ...op(2, 'run', 'c', 'ok', 2),
      ...op(2, 'stop', 'c', 'info'),
      ...op(3, 'run', 'd', 'ok'),
      ...op(3, 'rm', 'd', 'ok'),
      ...op(4, 'run', 'e', 'fail'),
      ...op(5, 'run', 'f', 'ok'),
      ...op(5, 'stop', 'f', 'fail'),
      // An indeterminate run may land after an acknowledged rm (seen on real processes).
      ...op(6, 'run', 'g', 'info'),
      ...op(7, 'rm', 'g', 'ok'),
    ];
    const { must, may } = desiredBounds(h);
    expect([...must].sort()).toEqual(['a', 'f']);
    expect([...may].sort()).toEqual(['a', 'b', 'c-0', 'c-1', 'f', 'g']);
  });

  it('an acknowledged run missing after the heal is lost; a removed group desired is unexpected', () => {
    const h = [...op(0, 'run', 'a', 'ok'), ...op(1, 'run', 'd', 'ok'), ...op(1, 'rm', 'd', 'ok')];
    const samples = [at(0, ['d', 'n1']), at(100, ['d', 'n1'])];
    const r = checkVms({ history: h, samples, finalDesired: ['d'], healAt: 0, boundMs: 50 });
    expect(r).toMatchObject({ valid: false, lost: ['a'], unexpected: ['d'] });
  });

  it('recovery: an instance not steady on one node within the bound is not running; a stopped one still running is a stray', () => {
    const h = [...op(0, 'run', 'a', 'ok'), ...op(1, 'run', 's', 'ok'), ...op(1, 'stop', 's', 'ok')];
    const samples = [
      at(1000, ['s', 'n1']),
      at(2000, ['s', 'n1']),
      at(3000, ['a', 'n2'], ['s', 'n1']),
    ];
    const late = checkVms({
      history: h,
      samples,
      finalDesired: ['a'],
      healAt: 1000,
      boundMs: 1999,
    });
    expect(late).toMatchObject({ valid: false, notRunning: ['a'], strays: ['s'] });
    // At the bound's edge it counts as running.
    const edge = checkVms({
      history: h,
      samples,
      finalDesired: ['a'],
      healAt: 1000,
      boundMs: 2000,
    });
    expect(edge.notRunning).toEqual([]);
    expect(edge.recoveryMs).toEqual({ a: 2000 });
  });

  it('an unread final state is invalid (nothing after the heal was checked)', () => {
    const r = checkVms({
      history: [],
      samples: [],
      finalDesired: undefined,
      healAt: 0,
      boundMs: 1,
    });
    expect(r).toMatchObject({ valid: false, finalUnread: true });
  });
});

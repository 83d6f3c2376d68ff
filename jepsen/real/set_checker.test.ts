import { describe, expect, it } from 'vitest';
import type { HistoryEvent } from '../checker/index.ts';
import { checkSet } from './set_checker.ts';

let t = 0;
const add = (process: number, element: number, outcome: 'ok' | 'fail' | 'info'): HistoryEvent[] => [
  { type: 'invoke', process, f: 'add', value: element, time: t++ },
  { type: outcome, process, f: 'add', value: element, time: t++ },
];
const read = (process: number, elements: number[]): HistoryEvent[] => [
  { type: 'invoke', process, f: 'read', value: null, time: t++ },
  { type: 'ok', process, f: 'read', value: elements, time: t++ },
];

describe('set checker', () => {
  it('valid: every acknowledged add is in every final read', () => {
    const h = [...add(0, 1, 'ok'), ...add(1, 2, 'info'), ...add(2, 3, 'fail'), ...read(3, [1])];
    const r = checkSet(h, [
      { node: 'n1', elements: [1, 2] },
      { node: 'n2', elements: [1, 2] },
    ]);
    expect(r).toMatchObject({ valid: true, attempted: 3, acknowledged: 1, recovered: 1, lost: [] });
  });

  it('an acknowledged add missing from one final read is lost', () => {
    const h = [...add(0, 1, 'ok'), ...add(1, 2, 'ok')];
    const r = checkSet(h, [
      { node: 'n1', elements: [1, 2] },
      { node: 'n2', elements: [1] },
    ]);
    expect(r.valid).toBe(false);
    expect(r.lost).toEqual([2]);
  });

  it('a read that began after an add was acknowledged and misses it is stale', () => {
    const h = [...add(0, 1, 'ok'), ...read(1, []), ...add(2, 2, 'ok')];
    const r = checkSet(h, [{ node: 'n1', elements: [1, 2] }]);
    expect(r.valid).toBe(false);
    expect(r.stale).toEqual([1]);
    expect(r.staleReads).toBe(1);
  });

  it('a read concurrent with the add may miss it', () => {
    const h: HistoryEvent[] = [
      { type: 'invoke', process: 0, f: 'add', value: 1, time: 0 },
      { type: 'invoke', process: 1, f: 'read', value: null, time: 1 },
      { type: 'ok', process: 0, f: 'add', value: 1, time: 2 },
      { type: 'ok', process: 1, f: 'read', value: [], time: 3 },
    ];
    expect(checkSet(h, [{ node: 'n1', elements: [1] }]).valid).toBe(true);
  });

  it('an element nobody added is unexpected; a silent final read is invalid', () => {
    const h = add(0, 1, 'ok');
    expect(checkSet(h, [{ node: 'n1', elements: [1, 7] }]).unexpected).toEqual([7]);
    const silent = checkSet(h, [
      { node: 'n1', elements: [1] },
      { node: 'n2', elements: undefined },
    ]);
    expect(silent.valid).toBe(false);
    expect(silent.unansweredFinal).toEqual(['n2']);
  });
});

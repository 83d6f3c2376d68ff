// The history generator: deterministic for a seed, realistic in shape (overlapping operations,
// lost responses under new process numbers, failed cas), linearizable by construction, and made
// invalid by one injected stale read, which the checker finds on the right key.

import { describe, expect, it } from 'vitest';
import { type GenerateOptions, generateHistory } from './generate.ts';
import { pairHistory } from './history.ts';
import { checkEvents, checkOperations } from './linearizability.ts';
import { casRegister, kvMap } from './model.ts';

const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8];
/** Small and varied: the defaults, high contention on one key, many lost responses. */
const SHAPES: Omit<GenerateOptions, 'seed'>[] = [
  { ops: 400 },
  { ops: 300, keys: 1, processes: 5 },
  { ops: 300, keys: 2, infoRate: 0.1 },
  { ops: 300, keys: 3, mix: { read: 20, write: 40, cas: 40 }, values: 3 },
];

describe('generateHistory', () => {
  it('is deterministic: the same seed gives the same history, another seed another', () => {
    const a = generateHistory({ seed: 42, ops: 500, anomaly: 'stale-read' });
    const b = generateHistory({ seed: 42, ops: 500, anomaly: 'stale-read' });
    const c = generateHistory({ seed: 43, ops: 500, anomaly: 'stale-read' });
    expect(b).toEqual(a);
    expect(c.events).not.toEqual(a.events);
  });

  it('makes histories of the requested shape that pair cleanly', () => {
    const g = generateHistory({ seed: 1, ops: 2_000 });
    const paired = pairHistory(g.events); // throws on a reused process or bad order
    expect(paired.operations).toHaveLength(2_000);
    expect(g.events).toHaveLength(4_000);
    expect(paired.counts).toEqual({
      events: 4_000,
      ok: g.counts.ok,
      fail: g.counts.fail,
      info: g.counts.info,
      pending: 0,
    });
    expect(g.counts.ok + g.counts.fail + g.counts.info).toBe(2_000);
    expect(g.keys).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'k8', 'k9']);
    expect(new Set(paired.operations.map((op) => op.key))).toEqual(new Set(g.keys));
    for (const f of ['read', 'write', 'cas']) {
      expect(paired.operations.some((op) => op.f === f)).toBe(true);
    }
    // Lost responses (about 2%), each under a process number never used again; failed cas.
    expect(g.counts.info).toBeGreaterThan(10);
    expect(g.counts.processIds).toBeGreaterThan(10);
    expect(g.counts.processIds).toBeLessThanOrEqual(10 + g.counts.info);
    for (const op of paired.operations.filter((o) => o.outcome === 'info')) {
      const later = paired.operations.filter((o) => o.process === op.process && o.call > op.call);
      expect(later).toEqual([]);
    }
    expect(
      paired.operations.filter((op) => op.outcome === 'fail').every((op) => op.f === 'cas'),
    ).toBe(true);
    expect(g.counts.fail).toBeGreaterThan(0);
    // Concurrency: many operations overlap the next one invoked.
    const ops = paired.operations;
    const overlapping = ops.filter((op, i) => i + 1 < ops.length && ops[i + 1]!.call <= op.return);
    expect(overlapping.length).toBeGreaterThan(ops.length / 2);
    expect(g.events.every((e, i) => i === 0 || g.events[i - 1]!.time <= e.time)).toBe(true);
  });

  it('makes histories the checker finds linearizable', () => {
    for (const shape of SHAPES) {
      for (const seed of SEEDS) {
        const g = generateHistory({ seed, ...shape });
        for (const model of [kvMap, casRegister]) {
          const r = checkEvents(model, g.events, { stepsMax: 5_000_000 });
          expect(r.verdict, `seed ${seed} ${JSON.stringify(shape)}`).toBe('ok');
        }
      }
    }
  });

  it('injects a stale read that the checker finds, on the right key', () => {
    for (const shape of SHAPES) {
      for (const seed of SEEDS) {
        const g = generateHistory({ seed, ...shape, anomaly: 'stale-read' });
        const a = g.anomaly!;
        const ops = pairHistory(g.events).operations;
        const read = ops[a.opId]!;
        expect(read).toMatchObject({ f: 'read', key: a.key, output: a.stale, outcome: 'ok' });
        expect(a.stale).not.toBe(a.actual);
        // Stale: an 'ok' write or cas of this value returned before the read was invoked.
        const wrote = (v: unknown) =>
          (v === a.stale || (Array.isArray(v) && v[1] === a.stale)) && v !== undefined;
        expect(
          ops.some(
            (op) =>
              op.key === a.key && op.outcome === 'ok' && wrote(op.input) && op.return < read.call,
          ),
        ).toBe(true);
        // Only that read changed.
        const clean = pairHistory(generateHistory({ seed, ...shape }).events).operations;
        expect(
          ops
            .filter((op, i) => JSON.stringify(op.output) !== JSON.stringify(clean[i]!.output))
            .map((op) => op.id),
        ).toEqual([a.opId]);

        const r = checkOperations(kvMap, ops, { stepsMax: 5_000_000 });
        const where = `seed ${seed} ${JSON.stringify(shape)}`;
        expect(r.verdict, where).toBe('violation');
        expect(r.violation!.key, where).toBe(a.key);
        expect(
          r.violation!.window.map((op) => op.id),
          where,
        ).toContain(a.opId);
        expect(checkOperations(casRegister, ops, { stepsMax: 5_000_000 }).verdict).toBe(
          'violation',
        );
      }
    }
  });

  it('rejects bad options', () => {
    expect(() => generateHistory({ seed: 1, ops: -1 })).toThrow(RangeError);
    expect(() => generateHistory({ seed: 1, ops: 10, keys: 0 })).toThrow(/keys/);
    expect(() => generateHistory({ seed: 1, ops: 10, infoRate: 2 })).toThrow(/infoRate/);
    expect(() => generateHistory({ seed: 1, ops: 10, mix: { read: 0, write: 0, cas: 0 } })).toThrow(
      /mix/,
    );
    // Too short to hold a stale read.
    expect(() => generateHistory({ seed: 1, ops: 2, anomaly: 'stale-read' })).toThrow(/stale/);
  });
});

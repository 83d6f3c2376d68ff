// Properties of the checker on generated histories:
// - a history recorded from a real sequential execution (each operation's interval contains its
//   point in the execution) is linearizable, and corrupting one read to return a value that was
//   never written makes it a violation, blamed on that read;
// - on tiny random histories the verdict equals a brute-force search over all orders;
// - kvMap gives the same verdict with and without partitioning (P-compositionality).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { historyFromExecution, type PlanStep, STEP_TIME } from '../../test/checker/histories.ts';
import { type HistoryEvent, type Operation, pairHistory } from './history.ts';
import { checkOperations } from './linearizability.ts';
import { type AnyModel, casRegister, kvMap } from './model.ts';

const NEVER_WRITTEN = 999;

const planStep: fc.Arbitrary<PlanStep> = fc.record({
  key: fc.nat(1),
  kind: fc.constantFrom('read', 'write', 'cas'),
  value: fc.nat(4),
  from: fc.nat(4),
  process: fc.nat(4),
  before: fc.nat(3 * STEP_TIME),
  after: fc.nat(3 * STEP_TIME),
  fate: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'ok', 'info', 'phantom', 'failed'),
  casErrorAsOk: fc.boolean(),
  pending: fc.boolean(),
});

const execution = fc.record({
  plan: fc.array(planStep, { minLength: 1, maxLength: 40 }),
  processes: fc.integer({ min: 1, max: 5 }),
  keys: fc.constantFrom(['x'], ['x', 'y']),
});

describe('histories of a real sequential execution', () => {
  it('are linearizable, and a read of a never-written value makes them a violation', () => {
    fc.assert(
      fc.property(execution, fc.nat(), ({ plan, processes, keys }, pick) => {
        const { events, okReadCompletions } = historyFromExecution(plan, processes, keys);
        for (const model of [casRegister, kvMap]) {
          const ok = checkOperations(model, pairHistory(events).operations);
          expect(ok.verdict).toBe('ok');
        }
        if (okReadCompletions.length === 0) return;
        const at = okReadCompletions[pick % okReadCompletions.length]!;
        const corrupted: HistoryEvent[] = events.map((e, i) =>
          i === at ? { ...e, value: NEVER_WRITTEN } : e,
        );
        const ops = pairHistory(corrupted).operations;
        const r = checkOperations(casRegister, ops);
        expect(r.verdict).toBe('violation');
        const bad = ops.find((op) => op.output === NEVER_WRITTEN)!;
        expect(r.violation!.key).toBe(bad.key);
        expect(r.violation!.blocked.id).toBe(bad.id);
        expect(r.violation!.window.map((op) => op.id)).toContain(bad.id);
      }),
      { numRuns: 300 },
    );
  });
});

// --- brute force ------------------------------------------------------------------------------

/**
 * Linearizable iff some order of the operations respects real time (an operation that returned
 * before another was invoked comes first) and the model, with every 'ok' operation in it and any
 * subset of the indeterminate ones. Tries every order, remembering only exact (set, state) pairs
 * that failed: exponential, for a few operations only, and simple enough to trust.
 */
function bruteForce(model: AnyModel, all: readonly Operation[]): boolean {
  const ops = all.filter((op) => op.outcome !== 'fail');
  expect(ops.length).toBeLessThan(31);
  const decoded = ops.map((op) => {
    const d = model.decode(op);
    if ('error' in d) throw new Error(d.error);
    return d;
  });
  const failed = new Set<string>();
  const search = (placed: number, state: unknown): boolean => {
    if (ops.every((op, i) => placed & (1 << i) || op.outcome !== 'ok')) return true;
    const memo = `${placed}:${model.stateKey(state)}`;
    if (failed.has(memo)) return false;
    for (let i = 0; i < ops.length; i++) {
      if (placed & (1 << i)) continue;
      // No operation that must still be placed may have returned before ops[i] was invoked.
      const mustComeFirst = ops.some(
        (o, j) => !(placed & (1 << j)) && o.outcome === 'ok' && o.return < ops[i]!.call,
      );
      if (mustComeFirst) continue;
      const r = model.step(state, decoded[i]!.input, decoded[i]!.output);
      if (r.ok && search(placed | (1 << i), r.state)) return true;
    }
    failed.add(memo);
    return false;
  };
  return search(0, model.init());
}

/** Whether `order` (operation ids) is a valid linearization of `ops`. */
function validLinearization(model: AnyModel, all: readonly Operation[], order: readonly number[]) {
  const byId = new Map(all.map((op) => [op.id, op]));
  let state = model.init();
  for (let k = 0; k < order.length; k++) {
    const op = byId.get(order[k]!)!;
    for (const later of order.slice(k + 1)) if (byId.get(later)!.return < op.call) return false;
    const d = model.decode(op);
    if ('error' in d) return false;
    const r = model.step(state, d.input, d.output);
    if (!r.ok) return false;
    state = r.state;
  }
  return all.every((op) => op.outcome !== 'ok' || order.includes(op.id));
}

const randomOp = fc.record({
  f: fc.constantFrom('read', 'write', 'cas'),
  a: fc.integer({ min: 0, max: 2 }),
  b: fc.integer({ min: 0, max: 2 }),
  readsNull: fc.boolean(),
  outcome: fc.constantFrom('ok', 'ok', 'ok', 'info', 'fail'),
  key: fc.constantFrom('x', 'y'),
  gap: fc.nat(4),
  length: fc.nat(6),
});

/** Up to 3 processes with up to 3 operations each, outputs chosen at random. */
const tinyHistory = fc
  .array(fc.array(randomOp, { maxLength: 3 }), { maxLength: 3 })
  .map((procs) => {
    const evs: HistoryEvent[] = [];
    procs.forEach((ops, p) => {
      let t = 0;
      for (const o of ops) {
        const call = t + o.gap;
        const ret = call + o.length;
        const input = o.f === 'read' ? null : o.f === 'write' ? o.a : [o.a, o.b];
        const output = o.f === 'read' ? (o.readsNull ? null : o.a) : input;
        evs.push({ type: 'invoke', process: p, f: o.f, key: o.key, value: input, time: call });
        evs.push({ type: o.outcome, process: p, f: o.f, key: o.key, value: output, time: ret });
        t = ret + 1;
        if (o.outcome === 'info') break;
      }
    });
    return evs;
  });

describe('tiny random histories', () => {
  it('get the same verdict as a brute-force search, with a valid linearization', () => {
    let violations = 0;
    fc.assert(
      fc.property(tinyHistory, (evs) => {
        const ops = pairHistory(evs).operations;
        const r = checkOperations(kvMap, ops, { partition: false });
        const expected = bruteForce(kvMap, ops);
        expect(r.verdict).toBe(expected ? 'ok' : 'violation');
        if (r.verdict === 'ok') {
          expect(validLinearization(kvMap, ops, r.perKey[0]?.linearization ?? [])).toBe(true);
        } else violations++;
      }),
      { numRuns: 600 },
    );
    expect(violations).toBeGreaterThan(50); // the generator reaches both verdicts
  });

  it('get the same verdict per key as for the whole map (P-compositionality)', () => {
    fc.assert(
      fc.property(tinyHistory, (evs) => {
        const ops = pairHistory(evs).operations;
        const whole = checkOperations(kvMap, ops, { partition: false }).verdict;
        expect(checkOperations(kvMap, ops).verdict).toBe(whole);
        expect(checkOperations(casRegister, ops).verdict).toBe(whole);
      }),
      { numRuns: 300 },
    );
  });
});

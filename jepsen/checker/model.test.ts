import { describe, expect, it } from 'vitest';
import type { Operation } from './history.ts';
import { canonicalJson, casRegister, INDETERMINATE, kvMap, type RegisterState } from './model.ts';

function op(f: string, input: unknown, output: unknown, extra: Partial<Operation> = {}): Operation {
  return {
    id: 0,
    process: 0,
    f,
    key: 'x',
    input,
    output,
    outcome: 'ok',
    call: 0,
    return: 1,
    gaveUpAt: undefined,
    ...extra,
  };
}

/** Decodes and steps one operation on a register state. */
function step(state: RegisterState, o: Operation) {
  const d = casRegister.decode(o);
  if ('error' in d) throw new Error(d.error);
  return casRegister.step(state, d.input, d.output);
}

describe('casRegister (Maelstrom lin-kv)', () => {
  it('starts absent; an ok read of null (or error 20) observes absence', () => {
    const s = casRegister.init();
    expect(step(s, op('read', null, null)).ok).toBe(true);
    expect(step(s, op('read', null, { type: 'error', code: 20 })).ok).toBe(true);
    expect(step(s, op('read', null, 1)).ok).toBe(false);
  });

  it('writes set the value; reads compare structurally', () => {
    const s = step(null, op('write', { b: 1, a: [2] }, null)).state;
    expect(step(s, op('read', null, { a: [2], b: 1 })).ok).toBe(true);
    expect(step(s, op('read', null, null)).ok).toBe(false);
    expect(step(s, op('read', null, { type: 'error', code: 20 })).ok).toBe(false);
  });

  it('cas succeeds only when the value equals from', () => {
    const s = step(null, op('write', 1, 1)).state;
    expect(step(s, op('cas', [1, 2], [1, 2]))).toEqual({ ok: true, state: '2' });
    expect(step(s, op('cas', { from: 1, to: 3 }, null))).toEqual({ ok: true, state: '3' });
    expect(step(s, op('cas', [0, 2], [0, 2])).ok).toBe(false);
    expect(step(null, op('cas', [1, 2], [1, 2])).ok).toBe(false);
  });

  it('checks cas refusals recorded as ok completions: 22 when different, 20 when absent', () => {
    const refused22 = op('cas', [0, 2], { type: 'error', code: 22 });
    const refused20 = op('cas', [0, 2], { type: 'error', code: 20 });
    expect(step('1', refused22)).toEqual({ ok: true, state: '1' });
    expect(step('0', refused22).ok).toBe(false);
    expect(step(null, refused22).ok).toBe(false);
    expect(step(null, refused20)).toEqual({ ok: true, state: null });
    expect(step('1', refused20).ok).toBe(false);
  });

  it('accepts anything an indeterminate operation may have done', () => {
    const info = { outcome: 'info' as const, return: Number.POSITIVE_INFINITY };
    const d = casRegister.decode(op('read', null, undefined, info));
    expect('error' in d ? d : d.output).toBe(INDETERMINATE);
    expect(step('5', op('read', null, undefined, info)).ok).toBe(true);
    expect(step('5', op('write', 6, undefined, info))).toEqual({ ok: true, state: '6' });
    expect(step('5', op('cas', [5, 7], undefined, info))).toEqual({ ok: true, state: '7' });
    // A non-matching indeterminate cas is simply left out of the linearization by the checker.
    expect(step('4', op('cas', [5, 7], undefined, info)).ok).toBe(false);
  });

  it('rejects operations it cannot interpret, saying why', () => {
    const error = (o: Operation) => {
      const d = casRegister.decode(o);
      return 'error' in d ? d.error : undefined;
    };
    expect(error(op('append', 1, 1))).toMatch(/unknown operation 'append'/);
    expect(error(op('write', null, null))).toMatch(/null stands for an absent key/);
    expect(error(op('cas', [1], null))).toMatch(/not \[from, to\]/);
    expect(error(op('cas', [1, 2], { type: 'error', code: 11 }))).toMatch(/record it as 'fail'/);
  });

  it('describes operations briefly', () => {
    expect(casRegister.describeOperation(op('write', 3, 3))).toBe('write 3');
    expect(casRegister.describeOperation(op('read', null, null))).toBe('read → null');
    expect(casRegister.describeOperation(op('cas', [1, 2], [1, 2]))).toBe('cas 1→2');
    expect(casRegister.describeOperation(op('cas', [1, 2], { type: 'error', code: 22 }))).toBe(
      'cas 1→2 ✗22',
    );
    expect(casRegister.describeOperation(op('write', 4, 4, { outcome: 'info' }))).toBe('write 4 ?');
    expect(casRegister.describeOperation(op('write', 4, 4, { outcome: 'fail' }))).toBe(
      'write 4 (fail)',
    );
    expect(casRegister.describeState(null)).toBe('absent');
  });
});

describe('kvMap', () => {
  it('keeps one register per key in a map', () => {
    const apply = (state: ReturnType<typeof kvMap.init>, o: Operation) => {
      const d = kvMap.decode(o);
      if ('error' in d) throw new Error(d.error);
      return kvMap.step(state, d.input, d.output);
    };
    let s = kvMap.init();
    s = apply(s, op('write', 1, 1, { key: 'x' })).state;
    s = apply(s, op('write', 2, 2, { key: 'y' })).state;
    expect(apply(s, op('read', null, 1, { key: 'x' })).ok).toBe(true);
    expect(apply(s, op('read', null, null, { key: 'z' })).ok).toBe(true);
    expect(kvMap.describeState(s)).toBe('{x=1, y=2}');
    expect(kvMap.stateKey(s)).toBe(kvMap.stateKey(new Map([...s].reverse())));
    const d = kvMap.decode(op('read', null, 1, { key: undefined }));
    expect('error' in d && d.error).toMatch(/has no key/);
  });

  it('partitions per key', () => {
    const ops = [op('write', 1, 1, { id: 0, key: 'x' }), op('write', 1, 1, { id: 1, key: 'y' })];
    ops.push(op('read', null, 1, { id: 2, key: 'x' }));
    expect(kvMap.partition(ops).map((p) => p.map((o) => o.id))).toEqual([[0, 2], [1]]);
  });
});

describe('canonicalJson', () => {
  it('sorts object keys at every depth', () => {
    expect(canonicalJson({ b: [{ d: 1, c: 2 }], a: 'x' })).toBe('{"a":"x","b":[{"c":2,"d":1}]}');
    expect(canonicalJson(3)).toBe('3');
  });
});

import { describe, expect, it } from 'vitest';
import { opPoints, percentile, runStats } from './stats.ts';
import { type Answer, kvCompletion, type RecordedEvent } from './workload.ts';

const ev = (
  type: RecordedEvent['type'],
  process: number,
  f: string,
  time: number,
): RecordedEvent => ({ type, process, f, key: 'k', value: 1, time, node: 'n1' });

describe('run figures', () => {
  it('latency percentiles, availability in and out of faults, recovery after heal', () => {
    const events = [
      ev('invoke', 0, 'write', 0),
      ev('ok', 0, 'write', 10),
      ev('invoke', 1, 'write', 100),
      ev('info', 1, 'write', 300),
      ev('invoke', 2, 'read', 150),
      ev('fail', 2, 'read', 151),
      ev('invoke', 3, 'write', 400),
      ev('ok', 3, 'write', 430),
    ];
    const s = runStats(opPoints('kv', events), [
      { nemesis: 'kill', description: 'kill -9 n1', start: 90, end: 350 },
    ]);
    expect(s).toMatchObject({ operations: 4, ok: 2, fail: 1, info: 1 });
    expect(s.availabilityDuringFaults).toBe(0);
    expect(s.availabilityQuiet).toBe(1);
    expect(s.availabilityByNemesis).toEqual({ kill: 0 });
    expect(s.recoveryMs).toEqual([80]);
    expect(s.latencyP50Ms).toBe(30);
  });

  it('percentile of nothing is undefined; of one value, that value', () => {
    expect(percentile([], 0.5)).toBeUndefined();
    expect(percentile([7], 0.99)).toBe(7);
  });
});

describe('recording the product answers', () => {
  const ok = (extra: Record<string, unknown>): Answer => ({
    kind: 'ok',
    resp: { ok: true, ...extra },
  });
  it('reads: a value, or null for an absent key', () => {
    expect(kvCompletion({ f: 'read', value: null }, ok({ value: '3' }))).toEqual(['ok', 3]);
    expect(
      kvCompletion({ f: 'read', value: null }, { kind: 'refused', code: 'NOT_FOUND' }),
    ).toEqual(['ok', null]);
  });
  it('cas refusals are observations; no leader and a refused connection are definite', () => {
    const cas = { f: 'cas', value: [1, 2] } as const;
    expect(kvCompletion(cas, { kind: 'refused', code: 'CAS_MISMATCH' })).toEqual([
      'ok',
      { type: 'error', code: 22 },
    ]);
    expect(kvCompletion(cas, { kind: 'refused', code: 'NOT_FOUND' })).toEqual([
      'ok',
      { type: 'error', code: 20 },
    ]);
    expect(kvCompletion(cas, { kind: 'refused', code: 'NO_LEADER' })[0]).toBe('fail');
    expect(kvCompletion(cas, { kind: 'refused', code: 'ECONNREFUSED' })[0]).toBe('fail');
  });
  it('a timeout, or an error after the request may have been sent, is indeterminate', () => {
    const w = { f: 'write', value: 4 } as const;
    expect(kvCompletion(w, { kind: 'refused', code: 'TIMEOUT' })[0]).toBe('info');
    expect(kvCompletion(w, { kind: 'indeterminate', why: 'no answer' })[0]).toBe('info');
  });
});

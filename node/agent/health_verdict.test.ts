// The pure verdict of a VM's health checks: grace after the start, the first failing check in the
// spec's order, no verdict while a check is pending, and what the agent proposes given the row's
// committed verdict (only changes; a restarted VM that was healthy is marked unhealthy).

import { describe, expect, it } from 'vitest';
import type { HealthCheck } from '../state/health_spec.ts';
import { VM_REASON_BYTES_MAX, type VmHealth } from '../state/vms.ts';
import {
  appliedHealth,
  bounded,
  checkStatus,
  healthToPropose,
  RESTART_CHECK,
  settledOutcome,
  verdictOf,
} from './health_verdict.ts';

const CONSOLE: HealthCheck = { console: 'web ready', graceMs: 1000 };
const HTTP: HealthCheck = {
  http: { host: '10.0.0.2', port: 80, path: '/health' },
  intervalMs: 500,
  timeoutMs: 200,
  graceMs: 1000,
};
const TCP: HealthCheck = {
  tcp: { host: '10.0.0.2', port: 22 },
  intervalMs: 500,
  timeoutMs: 200,
  graceMs: 0,
};
const START = 10_000;

describe('checkStatus', () => {
  it('a console check: pending until its grace ends, then failing; passing once seen', () => {
    expect(checkStatus(CONSOLE, undefined, START, START + 999)).toEqual({ kind: 'pending' });
    expect(checkStatus(CONSOLE, undefined, START, START + 1000)).toEqual({
      kind: 'fail',
      message: 'not seen within 1000 ms of the start',
    });
    expect(checkStatus(CONSOLE, { ok: true, atMs: START + 5000 }, START, START + 5000)).toEqual({
      kind: 'pass',
    });
  });

  it('a tcp or http check: a failure within the grace does not count, one after it does', () => {
    const fail = (atMs: number) => ({ ok: false, message: '503', atMs });
    expect(checkStatus(HTTP, undefined, START, START + 5000)).toEqual({ kind: 'pending' });
    expect(checkStatus(HTTP, fail(START + 999), START, START + 5000)).toEqual({ kind: 'pending' });
    expect(checkStatus(HTTP, fail(START + 1000), START, START + 1000)).toEqual({
      kind: 'fail',
      message: '503',
    });
    expect(checkStatus(HTTP, { ok: true, atMs: START + 1 }, START, START + 1)).toEqual({
      kind: 'pass',
    });
    // No grace: the first failure counts.
    expect(checkStatus(TCP, fail(START), START, START)).toMatchObject({ kind: 'fail' });
  });
});

describe('settledOutcome', () => {
  const pass = (atMs: number) => ({ ok: true, atMs });
  const fail = (atMs: number) => ({ ok: false, message: 'timeout', atMs });
  /** Plays runs through settledOutcome as the monitor does; the outcome that counts after each. */
  function play(check: HealthCheck, runs: { ok: boolean; atMs: number }[]) {
    let counted: ReturnType<typeof settledOutcome>;
    let streak = { ok: true, n: 0 };
    return runs.map((r) => {
      streak =
        streak.n > 0 && streak.ok === r.ok ? { ok: r.ok, n: streak.n + 1 } : { ok: r.ok, n: 1 };
      counted = settledOutcome(check, counted, r, streak.n);
      return counted === undefined ? '-' : counted.ok ? 'pass' : 'fail';
    });
  }

  it('with the default thresholds every run counts', () => {
    expect(play(TCP, [pass(1), fail(2), pass(3), fail(4)])).toEqual([
      'pass',
      'fail',
      'pass',
      'fail',
    ]);
  });

  it('a passing check fails only after failureThreshold failed runs in a row', () => {
    const flappy: HealthCheck = { ...TCP, failureThreshold: 3 };
    expect(
      play(flappy, [pass(1), fail(2), fail(3), pass(4), fail(5), fail(6), fail(7), pass(8)]),
    ).toEqual(['pass', 'pass', 'pass', 'pass', 'pass', 'pass', 'fail', 'pass']);
  });

  it('a new or failing check passes only after successThreshold passing runs in a row', () => {
    const slow: HealthCheck = { ...TCP, successThreshold: 2 };
    expect(play(slow, [pass(1), pass(2), fail(3), pass(4), fail(5), pass(6), pass(7)])).toEqual([
      '-',
      'pass',
      'fail',
      'fail',
      'fail',
      'fail',
      'pass',
    ]);
    // The outcome that counts keeps its own time (what the grace is measured against).
    expect(settledOutcome(slow, fail(3), pass(4), 1)).toEqual(fail(3));
  });

  it('a console check has no runs to count: what it saw counts', () => {
    expect(settledOutcome(CONSOLE, undefined, pass(5), 1)).toEqual(pass(5));
  });
});

describe('verdictOf', () => {
  const ok = { ok: true, atMs: START + 2000 };
  const bad = { ok: false, message: 'connection refused', atMs: START + 2000 };

  it('healthy when every check passes, naming them all', () => {
    expect(verdictOf([CONSOLE, HTTP, TCP], [ok, ok, ok], START, START + 2000)).toEqual({
      healthy: true,
      check: 'console "web ready", http 10.0.0.2:80/health, tcp 10.0.0.2:22',
    });
  });

  it('unhealthy as soon as one fails, the first failing in the spec order, even with one pending', () => {
    expect(verdictOf([CONSOLE, HTTP, TCP], [undefined, bad, bad], START, START + 500)).toEqual({
      healthy: false,
      check: 'http 10.0.0.2:80/health',
      message: 'connection refused',
    });
  });

  it('no verdict while a check is pending and none fails', () => {
    expect(verdictOf([CONSOLE, HTTP], [ok, undefined], START, START + 2000)).toBeUndefined();
    expect(verdictOf([CONSOLE], [undefined], START, START + 999)).toBeUndefined();
  });

  it('bounds check and message to VM_REASON_BYTES_MAX, on a character boundary', () => {
    const many = Array.from(
      { length: 8 },
      (_, i): HealthCheck => ({ console: `${'é'.repeat(120)}${i}`, graceMs: 0 }),
    );
    const v = verdictOf(
      many,
      many.map(() => ok),
      START,
      START + 1,
    );
    expect(Buffer.byteLength(v!.check)).toBeLessThanOrEqual(VM_REASON_BYTES_MAX);
    expect(v!.check).not.toContain('\uFFFD');
    expect(bounded('x'.repeat(VM_REASON_BYTES_MAX))).toHaveLength(VM_REASON_BYTES_MAX);
    expect(bounded(`${'x'.repeat(VM_REASON_BYTES_MAX - 1)}é`)).toBe(
      'x'.repeat(VM_REASON_BYTES_MAX - 1),
    );
  });
});

describe('healthToPropose', () => {
  const row = (healthy: boolean, sinceMs: number, generation = 7): VmHealth => ({
    generation,
    healthy,
    sinceMs,
    check: healthy ? 'console "web ready"' : 'console "web ready"',
    ...(healthy ? {} : { message: 'not seen within 1000 ms of the start' }),
  });
  const healthy = { healthy: true, check: 'console "web ready"' };
  const sick = {
    healthy: false,
    check: 'console "web ready"',
    message: 'not seen within 1000 ms of the start',
  };

  it('proposes a verdict the row does not hold, and nothing for the one it holds', () => {
    expect(healthToPropose(undefined, 7, healthy, START)).toEqual(healthy);
    expect(healthToPropose(row(true, START + 5), 7, healthy, START)).toBeUndefined();
    expect(healthToPropose(row(false, START + 5), 7, sick, START)).toBeUndefined();
    expect(healthToPropose(row(false, START + 5), 7, healthy, START)).toEqual(healthy);
    expect(healthToPropose(row(true, START + 5), 7, { ...sick, message: '503' }, START)).toEqual({
      ...sick,
      message: '503',
    });
    // The row's verdict of an older generation is no verdict for this one.
    expect(healthToPropose(row(true, START + 5, 6), 7, healthy, START)).toEqual(healthy);
  });

  it('marks a VM that restarted while healthy unhealthy until its checks pass again', () => {
    expect(healthToPropose(row(true, START - 1), 7, undefined, START)).toEqual({
      healthy: false,
      check: RESTART_CHECK,
      message: 'the VM started again; its checks have not passed since',
    });
    // Healthy since this run started (a daemon restart adopted the VM): nothing to say.
    expect(healthToPropose(row(true, START), 7, undefined, START)).toBeUndefined();
    expect(healthToPropose(row(false, START - 1), 7, undefined, START)).toBeUndefined();
    expect(healthToPropose(undefined, 7, undefined, START)).toBeUndefined();
  });

  it('appliedHealth moves sinceMs only on a flip, as the state machine does', () => {
    expect(appliedHealth(undefined, 7, healthy, 50)).toEqual({
      generation: 7,
      healthy: true,
      sinceMs: 50,
      check: healthy.check,
    });
    expect(appliedHealth(row(false, 10), 7, { ...sick, message: '503' }, 50)).toMatchObject({
      sinceMs: 10,
      message: '503',
    });
    expect(appliedHealth(row(false, 10, 6), 7, sick, 50)).toMatchObject({ sinceMs: 50 });
  });
});

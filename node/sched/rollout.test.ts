// The pure rolling-update step (docs/deploy.md, "Rolling update"): the cases one by one, then a
// property over random worlds (rows reporting, failing, health checks flapping, time passing):
// a step never brings the instances in flight above maxParallel, it adds exactly the instances it
// replaces, and the same inputs give the same decision. The world here is a toy (rows as plain
// objects); the same checks through the state machine are in node/state/deployments.test.ts.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  census,
  nextRolloutChangeMs,
  type RolloutDeployment,
  type RolloutRow,
  type RolloutVersion,
  rolloutStep,
} from './rollout.ts';

const POLICY = {
  maxParallel: 1,
  minHealthyMs: 1000,
  healthyDeadlineMs: 5000,
  progressDeadlineMs: 20_000,
  canary: 0,
};

function version(
  n: number,
  index: number,
  count: number,
  policy: Partial<typeof POLICY> = {},
  checks = false,
): RolloutVersion {
  return {
    n,
    index,
    spec: {
      name: 'web',
      placement: { count },
      ...(checks ? { health: [{ console: 'ready' }] } : {}),
    },
    update: { ...POLICY, ...policy },
  };
}

function deployment(
  to: RolloutVersion,
  o: { state?: 'running' | 'paused' | 'succeeded'; promoted?: boolean; startedAtMs?: number } = {},
): RolloutDeployment {
  return {
    name: 'web',
    versions: [version(1, 1, 3), to],
    rollout: {
      to: to.n,
      state: o.state ?? 'running',
      startedAtMs: o.startedAtMs ?? 0,
      progressAtMs: o.startedAtMs ?? 0,
      promoted: o.promoted ?? false,
    },
  };
}

/** A row at `generation` set at `setMs`, running since `runningMs` if given. */
function row(name: string, generation: number, setMs: number, runningMs?: number): RolloutRow {
  return {
    name,
    generation,
    state: runningMs === undefined ? 'pending' : 'running',
    events: [
      { atMs: setMs, generation, state: 'pending' },
      ...(runningMs === undefined ? [] : [{ atMs: runningMs, generation, state: 'running' }]),
    ],
  };
}

const old3 = (): RolloutRow[] => ['web-0', 'web-1', 'web-2'].map((n) => row(n, 1, 0, 0));

describe('rolloutStep', () => {
  it('replaces in name order, as many as maxParallel allows', () => {
    const v2 = version(2, 10, 3, { maxParallel: 2 });
    expect(rolloutStep(deployment(v2), old3(), 100)).toEqual({
      kind: 'step',
      replace: ['web-0', 'web-1'],
      remove: [],
    });
    const rows = [row('web-0', 10, 100), ...old3().slice(1)];
    expect(rolloutStep(deployment(v2), rows, 200)).toEqual({
      kind: 'step',
      replace: ['web-1'],
      remove: [],
    });
  });

  it('an instance counts as healthy only after minHealthyMs of running; until then it is in flight', () => {
    const v2 = version(2, 10, 3);
    const rows = [row('web-0', 10, 100, 500), ...old3().slice(1)];
    expect(rolloutStep(deployment(v2), rows, 1499)).toEqual({ kind: 'wait' });
    expect(rolloutStep(deployment(v2), rows, 1500)).toEqual({
      kind: 'step',
      replace: ['web-1'],
      remove: [],
    });
  });

  it('with health checks: healthy only on a healthy verdict of its generation, since the later of running and the verdict', () => {
    const v2 = version(2, 10, 1, {}, true);
    const base = row('web', 10, 0, 100);
    const d: RolloutDeployment = { ...deployment(v2), versions: [version(1, 1, 1), v2] };
    expect(rolloutStep(d, [base], 5001)).toMatchObject({ kind: 'finish', outcome: 'failed' });
    const stale = { ...base, health: { generation: 9, healthy: true, sinceMs: 200 } };
    expect(census(d, [stale], 2000)!.inFlight).toEqual(['web']);
    const good = { ...base, health: { generation: 10, healthy: true, sinceMs: 2000 } };
    expect(census(d, [good], 2999)!.inFlight).toEqual(['web']);
    expect(rolloutStep(d, [good], 3000)).toEqual({ kind: 'finish', outcome: 'succeeded' });
  });

  it('fails when an instance misses healthyDeadlineMs, or no instance became healthy for progressDeadlineMs', () => {
    const v2 = version(2, 10, 3, { maxParallel: 3 });
    const rows = [row('web-0', 10, 100), ...old3().slice(1)];
    expect(rolloutStep(deployment(v2), rows, 5100).kind).toBe('step');
    expect(rolloutStep(deployment(v2), rows, 5101)).toMatchObject({
      kind: 'finish',
      outcome: 'failed',
      reason: expect.stringMatching(/web-0 not healthy within healthyDeadlineMs/),
    });
    // Healthy web-0 at 1100; web-1 and web-2 keep being replaced anew (never in flight too long).
    const slow = version(2, 10, 3, { progressDeadlineMs: 5000 });
    const later = [row('web-0', 10, 100, 100), row('web-1', 10, 5500), ...old3().slice(2)];
    expect(rolloutStep(deployment(slow), later, 6100).kind).toBe('wait');
    expect(rolloutStep(deployment(slow), later, 6101)).toMatchObject({
      kind: 'finish',
      outcome: 'failed',
      reason: expect.stringMatching(/progressDeadlineMs/),
    });
  });

  it('a canary stops at its k instances; paused, it waits (only a deadline ends it); promoted, it goes on', () => {
    const v2 = version(2, 10, 3, { maxParallel: 3, canary: 1 });
    expect(rolloutStep(deployment(v2), old3(), 0)).toEqual({
      kind: 'step',
      replace: ['web-0'],
      remove: [],
    });
    const rows = [row('web-0', 10, 0, 0), ...old3().slice(1)];
    expect(rolloutStep(deployment(v2), rows, 1000)).toEqual({ kind: 'wait' });
    expect(rolloutStep(deployment(v2, { state: 'paused' }), rows, 900_000)).toEqual({
      kind: 'wait',
    });
    const promoted = deployment(v2, { promoted: true, startedAtMs: 1000 });
    expect(rolloutStep(promoted, rows, 1000)).toEqual({
      kind: 'step',
      replace: ['web-1', 'web-2'],
      remove: [],
    });
  });

  it('every instance healthy: remove the extra rows, then finish succeeded', () => {
    const v2 = version(2, 10, 2);
    const rows = [row('web-0', 10, 0, 0), row('web-1', 10, 0, 0), row('web-2', 1, 0, 0)];
    expect(rolloutStep(deployment(v2), rows, 1000)).toEqual({
      kind: 'step',
      replace: [],
      remove: ['web-2'],
    });
    expect(rolloutStep(deployment(v2), rows.slice(0, 2), 1000)).toEqual({
      kind: 'finish',
      outcome: 'succeeded',
    });
    expect(rolloutStep(deployment(v2, { state: 'succeeded' }), rows, 1000)).toEqual({
      kind: 'wait',
    });
  });

  it('an instance that was healthy and went down (its node died) is not in flight', () => {
    const v2 = version(2, 10, 3);
    const died: RolloutRow = {
      name: 'web-0',
      generation: 10,
      state: 'pending',
      events: [
        { atMs: 0, generation: 10, state: 'pending' },
        { atMs: 0, generation: 10, state: 'running' },
        { atMs: 4000, generation: 77, state: 'pending' },
      ],
    };
    const c = census(deployment(v2), [died, ...old3().slice(1)], 4000)!;
    expect(c.status.get('web-0')).toBe('down');
    expect(c.inFlight).toEqual([]);
    expect(rolloutStep(deployment(v2), [died, ...old3().slice(1)], 4000).kind).toBe('step');
  });
});

describe('nextRolloutChangeMs', () => {
  it('an instance running: the moment it reaches minHealthyMs (the next step), not the next tick', () => {
    const v2 = version(2, 10, 3);
    const rows = [row('web-0', 10, 100, 500), ...old3().slice(1)];
    expect(nextRolloutChangeMs(deployment(v2), rows, 600)).toBe(1500);
    expect(rolloutStep(deployment(v2), rows, 1500).kind).toBe('step');
    // Two in flight at maxParallel 2: the earlier one frees a place.
    const two = version(2, 10, 3, { maxParallel: 2 });
    const both = [row('web-0', 10, 100, 900), row('web-1', 10, 100, 400), old3()[2]!];
    expect(nextRolloutChangeMs(deployment(two), both, 1000)).toBe(1400);
  });

  it('an instance that never runs: 1 ms past healthyDeadlineMs from its start at the target', () => {
    const v2 = version(2, 10, 3, { maxParallel: 3 });
    const rows = [row('web-0', 10, 100), ...old3().slice(1)];
    expect(rolloutStep(deployment(v2), rows, 200).kind).toBe('step');
    expect(nextRolloutChangeMs(deployment(v2), rows, 200)).toBe(5101);
    expect(rolloutStep(deployment(v2), rows, 5101)).toMatchObject({ outcome: 'failed' });
  });

  it('no healthy instance for progressDeadlineMs: 1 ms past it, from the last instance that became healthy', () => {
    const slow = version(2, 10, 3, { progressDeadlineMs: 5000 });
    const later = [row('web-0', 10, 100, 100), row('web-1', 10, 5500), ...old3().slice(2)];
    expect(nextRolloutChangeMs(deployment(slow), later, 5600)).toBe(6101);
  });

  it('a paused canary, or a rollout that ended: nothing pending by time alone', () => {
    const v2 = version(2, 10, 3, { maxParallel: 3, canary: 1 });
    const canary = [row('web-0', 10, 0, 0), ...old3().slice(1)];
    // Before it is healthy, its becoming healthy does not change the decision (wait): skipped.
    expect(nextRolloutChangeMs(deployment(v2, { state: 'paused' }), canary, 500)).toBeUndefined();
    expect(nextRolloutChangeMs(deployment(v2, { state: 'paused' }), canary, 1000)).toBeUndefined();
    const done = deployment(version(2, 10, 3), { state: 'succeeded' });
    expect(nextRolloutChangeMs(done, canary, 1000)).toBeUndefined();
    // Every instance healthy: the decision (finish) stays what it is.
    const all = ['web-0', 'web-1', 'web-2'].map((n) => row(n, 10, 0, 0));
    expect(nextRolloutChangeMs(deployment(version(2, 10, 3)), all, 1000)).toBeUndefined();
  });
});

/**
 * The property of nextRolloutChangeMs at one moment of a world: at the time it returns the
 * decision differs, and 1 ms before it (and at a point between) it is still the one of now; with
 * nothing pending, the decision is the same at later times.
 */
function checkNextChange(
  d: RolloutDeployment,
  rows: readonly RolloutRow[],
  now: number,
  probeMs: number,
): void {
  const t = nextRolloutChangeMs(d, rows, now);
  const same = JSON.stringify(rolloutStep(d, rows, now));
  const at = (ms: number) => JSON.stringify(rolloutStep(d, rows, ms));
  if (t === undefined) {
    for (const ms of [now + 1 + probeMs, now + 1_000_000]) expect(at(ms)).toBe(same);
    return;
  }
  expect(t).toBeGreaterThan(now);
  expect(at(t)).not.toBe(same);
  expect(at(t - 1)).toBe(same);
  expect(at(now + (probeMs % (t - now)))).toBe(same);
}

/** One random round of the world: time passes, rows report, checks flip. */
const roundArb = fc.record({
  dtMs: fc.integer({ min: 0, max: 1500 }),
  events: fc.array(
    fc.record({
      k: fc.nat(7),
      what: fc.constantFrom('running', 'failed', 'died', 'healthy', 'unhealthy', 'none'),
    }),
    { maxLength: 4 },
  ),
  promote: fc.boolean(),
});

const worldArb = fc.record({
  count: fc.integer({ min: 1, max: 6 }),
  oldCount: fc.integer({ min: 1, max: 6 }),
  maxParallel: fc.integer({ min: 1, max: 3 }),
  canary: fc.nat(3),
  checks: fc.boolean(),
  minHealthyMs: fc.integer({ min: 0, max: 2000 }),
  rounds: fc.array(roundArb, { minLength: 1, maxLength: 60 }),
});

type World = typeof worldArb extends fc.Arbitrary<infer W> ? W : never;

function applyEvent(r: RolloutRow, what: string, now: number): RolloutRow {
  const ev = (state: string, generation = r.generation) => ({
    ...r,
    state,
    events: [...r.events, { atMs: now, generation, state }].slice(-32),
  });
  if (what === 'running' && r.state !== 'running') return ev('running');
  if (what === 'failed' && r.state !== 'failed') return ev('failed');
  if (what === 'died') return ev('pending', r.generation + 1000);
  if (what === 'healthy' || what === 'unhealthy')
    return {
      ...r,
      health: { generation: r.generation, healthy: what === 'healthy', sinceMs: now },
    };
  return r;
}

/** Runs a world; checks the step properties after every step. Returns the decisions, for replay. */
function runWorld(w: World, checkNext = false): string[] {
  const to = version(2, 10, w.count, {
    maxParallel: w.maxParallel,
    canary: Math.min(w.canary, w.count),
    minHealthyMs: w.minHealthyMs,
    healthyDeadlineMs: w.minHealthyMs + 6000,
    progressDeadlineMs: w.minHealthyMs + 12_000,
  });
  if (w.checks) (to.spec as { health?: unknown[] }).health = [{ console: 'up' }];
  const from = version(1, 1, w.oldCount);
  let rows = new Map(
    Array.from({ length: w.oldCount }, (_, k) => {
      const name = w.oldCount === 1 ? 'web' : `web-${k}`;
      return [name, row(name, 1, 0, 0)] as const;
    }),
  );
  let state: 'running' | 'paused' | 'succeeded' | 'failed' = 'running';
  let promoted = false;
  let now = 0;
  const decisions: string[] = [];
  for (const round of w.rounds) {
    now += round.dtMs;
    const names = [...rows.keys()].sort();
    for (const e of round.events) {
      const name = names[e.k % Math.max(1, names.length)];
      if (name !== undefined) rows.set(name, applyEvent(rows.get(name)!, e.what, now));
    }
    if (!w.checks && state !== 'paused') {
      // Without checks, in flight only grows through steps: the bound holds at every moment.
      const d0: RolloutDeployment = {
        name: 'web',
        versions: [from, to],
        rollout: { to: 2, state, startedAtMs: 0, progressAtMs: 0, promoted },
      };
      expect(census(d0, [...rows.values()], now)!.inFlight.length).toBeLessThanOrEqual(
        w.maxParallel,
      );
    }
    if (round.promote && state === 'paused') {
      state = 'running';
      promoted = true;
    }
    const d: RolloutDeployment = {
      name: 'web',
      versions: [from, to],
      rollout: { to: 2, state, startedAtMs: 0, progressAtMs: 0, promoted },
    };
    const list = [...rows.values()];
    if (checkNext) checkNextChange(d, list, now, round.dtMs * 7 + 13);
    const s = rolloutStep(d, list, now);
    expect(rolloutStep(d, list, now)).toEqual(s); // deterministic
    decisions.push(JSON.stringify(s));
    if (s.kind === 'finish') {
      state = s.outcome;
      break;
    }
    if (s.kind === 'wait') continue;
    const before = census(d, list, now)!;
    for (const n of s.replace) rows.set(n, row(n, 10, now));
    for (const n of s.remove) rows.delete(n);
    rows = new Map([...rows.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
    const after = census(d, [...rows.values()], now)!;
    expect(after.inFlight.length).toBe(before.inFlight.length + s.replace.length);
    if (s.replace.length > 0) expect(after.inFlight.length).toBeLessThanOrEqual(w.maxParallel);
    if (!w.checks) expect(after.inFlight.length).toBeLessThanOrEqual(w.maxParallel);
    if (s.remove.length > 0) expect(before.names.every((n) => before.status.get(n) === 'healthy'));
    const atTarget = after.names.length - after.old.length;
    if (to.update.canary > 0 && !promoted && atTarget >= to.update.canary && after.old.length > 0)
      state = 'paused';
  }
  return decisions;
}

describe('rolloutStep over random worlds', () => {
  it('a step never brings in-flight instances above maxParallel (without flapping checks: never at all), and adds exactly those it replaces', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        runWorld(w);
      }),
      { numRuns: 300, seed: 19 },
    );
  });

  it('nextRolloutChangeMs: the decision changes at the time it returns and not before; with none, it does not change', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        runWorld(w, true);
      }),
      { numRuns: 300, seed: 23 },
    );
  });

  it('deterministic: the same world gives the same decisions', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        expect(runWorld(w)).toEqual(runWorld(w));
      }),
      { numRuns: 100, seed: 7 },
    );
  });
});

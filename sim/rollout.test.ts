// Rollouts in the simulator (sim/rollout-run.ts, docs/sim.md "Rollout runs"): the product's
// rollout and placement duties over simulated VMMs, a deployment updated again and again (a third
// of the versions broken), under machine crashes and leader failovers. Clean seeds find nothing
// and end on a working version; the same seed replays the same run; a planted bug (steps that
// ignore maxParallel, for the duty and at apply) is caught by the in-flight check at once.

import { describe, expect, it } from 'vitest';
import { type RolloutRunResult, runRolloutSimulation, runRolloutTiming } from './rollout-run.ts';

const clean = (r: RolloutRunResult) => ({
  seed: r.seed,
  violations: r.violations,
  live: r.liveness.ok ? true : r.liveness.message,
});

describe('rollouts in the simulator', () => {
  it('finds nothing on clean seeds; every run ends on a working version, broken ones reverted', async () => {
    let reverted = 0;
    for (let seed = 1; seed <= 5; seed++) {
      const r = await runRolloutSimulation({ seed });
      expect(clean(r)).toEqual({ seed, violations: [], live: true });
      // The run did what it is for: versions rolled step by step, each step checked.
      expect(r.stepsChecked).toBeGreaterThan(0);
      expect(r.stats.rolloutSteps).toBeGreaterThan(0);
      reverted += r.stats.rolloutsFailed;
    }
    // Broken versions failed their rollouts and autoRevert brought the known-good spec back.
    expect(reverted).toBeGreaterThan(0);
  });

  it('replays a seed exactly', async () => {
    const a = await runRolloutSimulation({ seed: 8 });
    const b = await runRolloutSimulation({ seed: 8 });
    expect(b.hash).toBe(a.hash);
    expect(b.stats).toEqual(a.stats);
    expect(b.stepsChecked).toBe(a.stepsChecked);
  });

  it('with steps that ignore maxParallel, the in-flight check fires; without, the same seed is clean', async () => {
    const found = await runRolloutSimulation({ seed: 1, planted: 'ignoreMaxParallel' });
    console.log(`teeth: ignoreMaxParallel at seed 1: ${found.violations[0]?.message ?? 'nothing'}`);
    expect(found.violations.some((v) => v.kind === 'rollout-parallel')).toBe(true);
    expect(clean(await runRolloutSimulation({ seed: 1 }))).toEqual({
      seed: 1,
      violations: [],
      live: true,
    });
  });

  it('a fault-free timing run (bench:deploy) replaces at most maxParallel at a time, each instance in flight for at least a boot plus minHealthyMs', async () => {
    const o = { seed: 1, count: 10, maxParallel: 2, minHealthyMs: 500, bootMs: 1000, stopMs: 100 };
    const t = await runRolloutTiming(o);
    // One step per wave of two, or one per instance when the two of a wave became healthy at
    // different moments (the duty steps at each one's minHealthyMs, not at a common tick).
    expect(t.steps).toBeGreaterThanOrEqual(5);
    expect(t.steps).toBeLessThanOrEqual(10);
    // 10 instances, each in flight for a boot plus minHealthyMs, at most 2 at a time.
    expect(t.rolloutMs).toBeGreaterThanOrEqual(5 * (o.bootMs + o.minHealthyMs));
    expect(t.firstMs).toBeGreaterThanOrEqual(o.bootMs + o.minHealthyMs);
    expect(await runRolloutTiming(o)).toEqual(t);
  });
});

// Placement in the simulator (sim/placement.ts, docs/sim.md "Placement runs"): the product's duty
// and reconciler over simulated VMMs under crashes, partitions, drains and failovers. Clean seeds
// find nothing and every instance runs after the heal; the same seed replays the same run; the
// planted bugs (skip fencing; apply without the re-check) are caught by a sweep whose seeds are
// clean without them; the settings must satisfy the product's fencing inequality; and a leader's
// death does not count as silence of the leader (a finding: every node fenced).

import { describe, expect, it } from 'vitest';
import { SimCluster } from './cluster.ts';
import {
  PLACEMENT_DRIFT_MAX,
  PLACEMENT_SIM_DEFAULTS,
  PlacementSim,
  type PlantedPlacementBug,
} from './placement.ts';
import { converged, type PlacementRunResult, runPlacementSimulation } from './placement-run.ts';

/** The recheck sweep gives up after this many seeds. */
const SEEDS_MAX = 40;
const TIME_MS = 30_000;

const run = (seed: number, planted?: PlantedPlacementBug): Promise<PlacementRunResult> =>
  runPlacementSimulation({
    seed,
    timeMs: TIME_MS,
    ...(planted === undefined ? {} : { placement: { planted } }),
  });

function clean(r: PlacementRunResult) {
  return { seed: r.seed, violations: r.violations, live: r.liveness.ok };
}

describe('placement in the simulator', () => {
  it('finds nothing on clean seeds, and every instance runs after the heal within the bound', async () => {
    for (let seed = 1; seed <= 6; seed++) {
      const r = await run(seed);
      expect(clean(r)).toEqual({ seed, violations: [], live: true });
      expect(r.liveness.settledInMs).toBeLessThanOrEqual(PLACEMENT_SIM_DEFAULTS.settleMs);
      // The run did what it is for: instances placed, VMMs started and checked.
      expect(r.stats.placed).toBeGreaterThan(0);
      expect(r.checks.copiesStarted).toBeGreaterThan(0);
    }
  });

  it('replays a seed exactly (same actions, same hash)', async () => {
    const a = await run(7);
    const b = await run(7);
    expect(b.hash).toBe(a.hash);
    expect(b.stats).toEqual(a.stats);
    expect(b.checks).toEqual(a.checks);
  });

  it('with fencing skipped, a sweep finds two copies of an instance; without, the same seeds are clean', async () => {
    const found = await run(1, 'skipFencing');
    console.log(`teeth: skipFencing at seed 1: ${found.violations[0]?.message ?? 'nothing'}`);
    expect(found.violations.some((v) => v.kind === 'two-copies')).toBe(true);
    expect(clean(await run(1))).toEqual({ seed: 1, violations: [], live: true });
  });

  it('with vm.place applied without the re-check, a sweep finds a bad placement; without, the same seeds are clean', async () => {
    let first: PlacementRunResult | undefined;
    for (let seed = 1; seed <= SEEDS_MAX && first === undefined; seed++) {
      const r = await run(seed, 'applyWithoutRecheck');
      if (r.violationCount > 0) first = r;
    }
    console.log(
      `teeth: applyWithoutRecheck found at seed ${first?.seed}: ${first?.violations[0]?.message}`,
    );
    expect(first).toBeDefined();
    expect(
      first!.violations.every((v) =>
        ['placed-on-unready', 'two-copies', 'over-capacity'].includes(v.kind),
      ),
    ).toBe(true);
    expect(clean(await run(first!.seed))).toEqual({
      seed: first!.seed,
      violations: [],
      live: true,
    });
  });

  /** One VM `solo` placed and running on a 5-node cluster; the test drives the faults. */
  async function solo(seed: number) {
    const c = new SimCluster({ seed, nodes: 5, driftMax: PLACEMENT_DRIFT_MAX });
    const sim = new PlacementSim(c, PLACEMENT_SIM_DEFAULTS);
    sim.start();
    await sim.runUntil(() => c.leader() !== undefined, 5000);
    c.submit(c.leader()!, {
      op: 'vm.put',
      spec: {
        version: 1,
        name: 'solo',
        kernel: '/boot/vmlinuz',
        vcpus: 1,
        memoryMiB: 512,
        restart: { policy: 'always', maxAttempts: 0 },
      },
      atMs: 1,
    });
    expect(
      await sim.runUntil(
        () => converged(c, sim) === undefined && sim.checks.copiesOf('solo').length === 1,
        10_000,
      ),
    ).toBe(true);
    return { c, sim, home: sim.checks.copiesOf('solo')[0]! };
  }

  it('a node cut off between fence-after and node-down-after stops its VM, and runs it again once it hears the cluster', async () => {
    const { c, sim, home } = await solo(11);
    c.partition([[home], c.ids.filter((x) => x !== home)]);
    // Fenced after fence-after (1 s): it stops the VM. The cut heals while the VM stops, so the
    // node is free again when the stop ends (the reconciler once took that stop for final).
    const starts = sim.checks.counts.copiesStarted;
    expect(await sim.runUntil(() => sim.fenced(home), 2000, 10)).toBe(true);
    c.heal();
    // Back on the same node: it was never marked down, so the cluster still places it there.
    expect(await sim.runUntil(() => converged(c, sim) === undefined, 10_000)).toBe(true);
    expect(sim.checks.copiesOf('solo')).toEqual([home]);
    // A new VMM process: the fenced node stopped the VM, and started it again.
    expect(sim.checks.counts.copiesStarted).toBe(starts + 1);
    expect(c.violations).toEqual([]);
    sim.finish();
  });

  it('a node cut off beyond node-down-after: its VM is stopped before its replacement starts elsewhere', async () => {
    const { c, sim, home } = await solo(12);
    c.partition([[home], c.ids.filter((x) => x !== home)]);
    const cutAt = c.nowMs;
    const elsewhere = () => sim.checks.copiesOf('solo').some((n) => n !== home);
    expect(await sim.runUntil(elsewhere, 15_000, 10)).toBe(true);
    // The replacement starts no earlier than node-down-after, and alone.
    expect(c.nowMs - cutAt).toBeGreaterThanOrEqual(PLACEMENT_SIM_DEFAULTS.nodeDownAfterMs * 0.95);
    expect(sim.checks.copiesOf('solo')).not.toContain(home);
    c.heal();
    expect(await sim.runUntil(() => converged(c, sim) === undefined, 15_000)).toBe(true);
    expect(c.violations).toEqual([]);
    sim.finish();
  });

  it('refuses settings that break the fencing inequality (fencingProblem)', () => {
    const cluster = new SimCluster({ seed: 1, nodes: 3 });
    expect(
      () => new PlacementSim(cluster, { ...PLACEMENT_SIM_DEFAULTS, nodeDownAfterMs: 4500 }),
    ).toThrow(/node-down-after 4500 ms must exceed/);
    expect(
      () => new PlacementSim(cluster, { ...PLACEMENT_SIM_DEFAULTS, nodeDownAfterMs: 4600 }),
    ).not.toThrow();
  });

  it('a follower that knows no leader during an election still counts from the last leader it heard', () => {
    const c = new SimCluster({ seed: 3, nodes: 3 });
    expect(c.runUntil(() => c.leader() !== undefined, 5000)).toBe(true);
    c.runFor(500);
    const old = c.leader()!;
    c.crash(old);
    const crashedAt = c.nowMs;
    const others = c.ids.filter((id) => id !== old);
    // Until some follower campaigns: it then follows no one (lead '').
    expect(c.runUntil(() => others.some((id) => c.raftNode(id)!.rn.raft.lead === ''), 5000)).toBe(
      true,
    );
    const id = others.find((x) => c.raftNode(x)!.rn.raft.lead === '')!;
    const age = c.raftNode(id)!.contact().leaderAgeTicks;
    // Finite, and about the time since the crash (ticks of 10 ms, drift within 10%).
    expect(Number.isFinite(age)).toBe(true);
    expect(age * 10).toBeLessThanOrEqual((c.nowMs - crashedAt) * 1.2 + 20);
  });
});

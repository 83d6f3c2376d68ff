// The leader's rollout duty driven through its ports with a real state machine, the real
// placement duty's loop placing what a step unplaced, and a clock the test moves (no Raft: a
// submitted command applies at once). docs/deploy.md, "Rolling update".

import { describe, expect, it } from 'vitest';
import { type Command, type Result, StateMachine } from '../state/machine.ts';
import { type DutyPorts, PlacementDuty } from './duty.ts';
import { ROLLOUT_EVALUATE_MS, RolloutDuty } from './rollout_duty.ts';

const quiet = { info: () => {}, warn: () => {}, debug: () => {} };
const SPEC = (memoryMiB: number) => ({
  version: 1,
  kernel: '/boot/vmlinuz',
  memoryMiB,
  count: 3,
});
const UPDATE = {
  maxParallel: 1,
  minHealthyMs: 1000,
  healthyDeadlineMs: 5000,
  progressDeadlineMs: 10_000,
  autoRevert: true,
};

function harness(o: { leader: boolean }) {
  const sm = new StateMachine();
  let index = 0;
  const state = { now: 1000 };
  const submitted: Command[] = [];
  const apply = (c: Command): Result => sm.apply(++index, c);
  for (const id of ['n1', 'n2', 'n3', 'n4']) {
    apply({ op: 'member.put', member: { id, addrs: [], role: 'voter', name: id } });
    apply({
      op: 'node.register',
      id,
      arch: 'x86_64',
      capacity: { cpus: 2, memoryMiB: 2048 },
      labels: {},
      backends: ['qemu'],
    });
  }
  const submit = async (c: Command) => {
    submitted.push(c);
    return apply(c);
  };
  const placement = new PlacementDuty({
    self: 'n1',
    tickMs: 50,
    electionTimeoutMs: 300,
    nodeDownAfterMs: 10_000,
    fenceAfterMs: 4000,
    sm: () => sm,
    raft: () => ({ leader: o.leader, ticks: 0, heard: new Map(), leaderAgeTicks: 0 }),
    counted: () => true,
    registration: () => ({
      arch: 'x86_64',
      capacity: { cpus: 2, memoryMiB: 2048 },
      labels: {},
      backends: ['qemu'],
    }),
    submit,
    barrier: async () => true,
    now: () => state.now,
    pokeAgent: () => {},
    log: quiet,
  } satisfies DutyPorts);
  // The fake timer: the test fires what is due by moving the clock (fire below).
  const timers: { atMs: number; f: () => void; live: boolean }[] = [];
  const rollouts = new RolloutDuty({
    sm: () => sm,
    leader: () => o.leader,
    submit,
    now: () => state.now,
    after: (ms, f) => {
      const t = { atMs: state.now + ms, f, live: true };
      timers.push(t);
      return () => {
        t.live = false;
      };
    },
    log: quiet,
  });
  return { sm, state, submitted, apply, placement, rollouts, timers };
}

type H = ReturnType<typeof harness>;

const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
};

/** What the daemon does after applied entries, then every node's agent starting what it holds. */
async function round(h: H): Promise<void> {
  h.placement.poke();
  await settle();
  for (const v of h.sm.vms.list()) {
    if (v.node === '' || v.state === 'running') continue;
    h.apply({
      op: 'vm.report',
      name: v.name,
      node: v.node,
      generation: v.generation,
      state: 'running',
      atMs: h.state.now,
    });
  }
  h.rollouts.poke();
  await settle();
}

/** Moves the clock to the earliest live timer and runs it; false when none is set. */
async function fire(h: H): Promise<boolean> {
  const live = h.timers.filter((t) => t.live).sort((a, b) => a.atMs - b.atMs);
  const t = live[0];
  if (t === undefined) return false;
  t.live = false;
  h.state.now = Math.max(h.state.now, t.atMs);
  t.f();
  await settle();
  return true;
}

/** Reports every placed instance that is not running as running now (its agent started it). */
function startPlaced(h: H): void {
  for (const v of h.sm.vms.list()) {
    if (v.node === '' || v.state === 'running') continue;
    h.apply({
      op: 'vm.report',
      name: v.name,
      node: v.node,
      generation: v.generation,
      state: 'running',
      atMs: h.state.now,
    });
  }
}

const deploySubmit = (h: H, memoryMiB: number): Result =>
  h.apply({
    op: 'deploy.submit',
    name: 'web',
    spec: SPEC(memoryMiB),
    update: UPDATE,
    source: {},
    atMs: h.state.now,
  });

describe('rollout duty', () => {
  it('a follower proposes nothing', async () => {
    const h = harness({ leader: false });
    deploySubmit(h, 256);
    h.rollouts.poke();
    h.state.now += 60_000;
    h.rollouts.tick();
    await settle();
    expect(h.submitted).toEqual([]);
  });

  it('the leader rolls a new version one instance at a time and finishes; the placement loop places what a step unplaced', async () => {
    const h = harness({ leader: true });
    deploySubmit(h, 256);
    for (let i = 0; i < 20 && h.sm.deployments.get('web')!.rollout!.state === 'running'; i++) {
      await round(h);
      h.state.now += 600;
    }
    expect(h.sm.deployments.get('web')!.knownGood).toBe(1);
    // Version 2 may not run where web-0 runs: web-0 loses its node and the placement loop puts it
    // on the one node that holds no instance of the group; web-1 and web-2 keep theirs.
    const where = Object.fromEntries(h.sm.vms.groupInstances('web').map((v) => [v.name, v.node]));
    const free = ['n1', 'n2', 'n3', 'n4'].find((n) => !Object.values(where).includes(n));
    h.apply({
      op: 'deploy.submit',
      name: 'web',
      spec: {
        ...SPEC(512),
        constraints: [{ attribute: 'name', operator: '!=', value: where['web-0'] }],
      },
      update: UPDATE,
      source: {},
      atMs: h.state.now,
    });
    for (let i = 0; i < 60 && h.sm.deployments.get('web')!.rollout!.state === 'running'; i++) {
      await round(h);
      h.state.now += 600;
    }
    expect(h.sm.deployments.get('web')!.rollout).toMatchObject({ to: 2, state: 'succeeded' });
    const steps = h.submitted.filter((c) => c.op === 'deploy.step');
    expect(steps.map((c) => (c as { replace: readonly string[] }).replace)).toEqual([
      ['web-0'],
      ['web-1'],
      ['web-2'],
    ]);
    expect(h.sm.vms.groupInstances('web').every((v) => v.spec.memoryMiB === 512)).toBe(true);
    const after = Object.fromEntries(h.sm.vms.groupInstances('web').map((v) => [v.name, v.node]));
    expect(after).toEqual({ ...where, 'web-0': free });
    expect(h.sm.vms.get('web-0')!.placement).toMatch(/^placed on n\d/);
    expect(h.submitted.filter((c) => c.op === 'deploy.finish')).toHaveLength(2);
  });

  it('on its timer, with no entry applied, a missed deadline fails the rollout and autoRevert brings back the known-good version', async () => {
    const h = harness({ leader: true });
    deploySubmit(h, 256);
    for (let i = 0; i < 20 && h.sm.deployments.get('web')!.rollout!.state === 'running'; i++) {
      await round(h);
      h.state.now += 600;
    }
    deploySubmit(h, 512);
    h.rollouts.poke();
    await settle();
    h.placement.poke();
    await settle();
    // web-0 at version 2 never reports running. Nothing is applied; only time passes.
    const applied = h.sm.applied;
    h.state.now += 5001;
    h.rollouts.tick();
    await settle();
    expect(h.sm.applied).toBe(applied + 1);
    const d = h.sm.deployments.get('web')!;
    expect(d.versions.map((v) => v.n)).toEqual([1, 2, 3]);
    expect(d.rollout).toMatchObject({ from: 2, to: 3, state: 'running' });
    expect(d.versions[2]!.source.revertOf).toBe(2);
    // A tick sooner than ROLLOUT_EVALUATE_MS after the last proposes nothing more.
    const n = h.submitted.length;
    h.state.now += ROLLOUT_EVALUATE_MS - 1;
    h.rollouts.tick();
    await settle();
    expect(h.submitted.length).toBe(n);
    for (let i = 0; i < 30 && h.sm.deployments.get('web')!.rollout!.state === 'running'; i++) {
      await round(h);
      h.state.now += 600;
    }
    expect(h.sm.deployments.get('web')!.rollout).toMatchObject({ to: 3, state: 'succeeded' });
    expect(h.sm.vms.groupInstances('web').every((v) => v.spec.memoryMiB === 256)).toBe(true);
  });

  it('without a tick, its timer evaluates when the instance in flight reaches minHealthyMs: each wave costs exactly minHealthyMs once running', async () => {
    const h = harness({ leader: true });
    deploySubmit(h, 256);
    for (let i = 0; i < 20 && h.sm.deployments.get('web')!.rollout!.state === 'running'; i++) {
      await round(h);
      h.state.now += 600;
    }
    expect(h.sm.deployments.get('web')!.knownGood).toBe(1);
    deploySubmit(h, 512);
    // From here no tick: entries poke the duty, and its timer is the only other wake-up.
    const started: number[] = [];
    for (let wave = 0; wave < 3; wave++) {
      h.rollouts.poke();
      await settle();
      h.placement.poke();
      await settle();
      h.state.now += 700; // the boot
      startPlaced(h);
      started.push(h.state.now);
      h.rollouts.poke();
      await settle();
      // The instance just started: the next change is exactly minHealthyMs later.
      expect(h.rollouts.nextEvaluationMs()).toBe(h.state.now + UPDATE.minHealthyMs);
      expect(await fire(h)).toBe(true);
    }
    expect(h.sm.deployments.get('web')!.rollout).toMatchObject({ to: 2, state: 'succeeded' });
    const proposals = h.submitted.filter((c) => c.op === 'deploy.step' || c.op === 'deploy.finish');
    // Steps 2 and 3 and the finish were proposed by the timer at running + minHealthyMs.
    expect(proposals.slice(-3).map((c) => c.atMs)).toEqual(
      started.map((t) => t + UPDATE.minHealthyMs),
    );
    expect(proposals.slice(-3).map((c) => c.op)).toEqual([
      'deploy.step',
      'deploy.step',
      'deploy.finish',
    ]);
    // Ended: no timer is left pending.
    expect(h.rollouts.nextEvaluationMs()).toBeUndefined();
  });

  it('an instance that never runs: the timer fires 1 ms past healthyDeadlineMs and the rollout fails, with no tick', async () => {
    const h = harness({ leader: true });
    deploySubmit(h, 256);
    for (let i = 0; i < 20 && h.sm.deployments.get('web')!.rollout!.state === 'running'; i++) {
      await round(h);
      h.state.now += 600;
    }
    deploySubmit(h, 512);
    h.rollouts.poke();
    await settle();
    const step = h.submitted.at(-1)!;
    expect(step.op).toBe('deploy.step');
    const stepAtMs = (step as { atMs: number }).atMs;
    expect(h.rollouts.nextEvaluationMs()).toBe(stepAtMs + UPDATE.healthyDeadlineMs + 1);
    expect(await fire(h)).toBe(true);
    const d = h.sm.deployments.get('web')!;
    expect(d.versions.at(-1)!.source.revertOf).toBe(2);
  });

  it('a follower sets no timer', async () => {
    const h = harness({ leader: false });
    deploySubmit(h, 256);
    h.rollouts.poke();
    await settle();
    expect(h.timers).toEqual([]);
  });
});

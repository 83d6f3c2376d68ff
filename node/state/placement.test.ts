// Placement through the replicated state (docs/scheduling.md, "The wiring"): the node table, VM
// groups, the leader's evaluation committed as vm.place, the apply-time re-check that keeps two
// leaders' plans from overcommitting a node, in-place updates, down nodes, drains, and the
// lifecycle and fencing decisions. Pure: the state machine and the decision functions alone.

import { describe, expect, it } from 'vitest';
import {
  FENCE_AFTER_MS_DEFAULT,
  failedInstances,
  fencingProblem,
  NODE_DOWN_AFTER_MS_DEFAULT,
} from '../placement/duty.ts';
import {
  drainMoves,
  evaluate,
  lifecycle,
  rescheduleDelayMs,
  rescheduleMoves,
} from '../sched/evaluate.ts';
import { RESCHEDULE_DEFAULT } from '../sched/spec.ts';
import { type Command, type Result, StateMachine } from './machine.ts';
import { pendingDemands } from './view.ts';
import { type PlacedInstance, placedInstance } from './vms.ts';

const KERNEL_SPEC = (name: string, extra: Record<string, unknown> = {}) => ({
  version: 1,
  name,
  kernel: '/boot/vmlinuz',
  vcpus: 1,
  memoryMiB: 512,
  ...extra,
});

class Cluster {
  readonly sm = new StateMachine();
  private index = 0;

  apply(c: Command): Result {
    return this.sm.apply(++this.index, c);
  }

  /** Members n1..nN, each registered with 4 cpus, 4 GiB, zone label, qemu. */
  static of(n: number): Cluster {
    const c = new Cluster();
    for (let i = 1; i <= n; i++) {
      const id = `n${i}`;
      c.apply({ op: 'member.put', member: { id, addrs: [], role: 'voter', name: `node${i}` } });
      const r = c.apply({
        op: 'node.register',
        id,
        arch: 'x86_64',
        capacity: { cpus: 4, memoryMiB: 4096 },
        labels: { zone: `z${i}` },
        backends: ['qemu'],
      });
      expect(r.ok).toBe(true);
    }
    return c;
  }

  /** One evaluation as the leader runs it, as the placements it would propose. */
  plan(): { viewIndex: number; placements: PlacedInstance[] } {
    const view = this.sm.view();
    const ev = evaluate(
      view,
      pendingDemands(this.sm.vms),
      (i) => this.sm.vms.get(i)?.desired === 'running',
      () => undefined,
    );
    return {
      viewIndex: view.index,
      placements: ev.placements.map(placedInstance),
    };
  }

  commit(plan: { viewIndex: number; placements: PlacedInstance[] }): readonly string[] {
    const r = this.apply({ op: 'vm.place', ...plan, atMs: 1 });
    expect(r.ok).toBe(true);
    return r.ok ? (r.verdicts ?? []) : [];
  }

  where(): Record<string, string> {
    return Object.fromEntries(this.sm.vms.list().map((v) => [v.name, v.node]));
  }

  /** cpus used per node by committed state: never above 4. */
  used(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const v of this.sm.vms.list())
      if (v.node !== '') out[v.node] = (out[v.node] ?? 0) + v.spec.vcpus;
    return out;
  }
}

describe('placement through the state machine', () => {
  it('a spec without a node is unplaced until the leader places it; count makes instances on distinct nodes', () => {
    const c = Cluster.of(3);
    const put = c.apply({ op: 'vm.put', spec: KERNEL_SPEC('web', { count: 2 }), atMs: 1 });
    expect(put.ok).toBe(true);
    expect(c.where()).toEqual({ 'web-0': '', 'web-1': '' });
    expect(c.sm.vms.get('web-0')!.group).toBe('web');
    expect(c.sm.vms.get('web-0')!.spec.name).toBe('web-0');
    expect(c.commit(c.plan())).toEqual(['ok', 'ok']);
    const w = c.where();
    expect(w['web-0']).not.toBe('');
    expect(w['web-1']).not.toBe('');
    expect(w['web-0']).not.toBe(w['web-1']);
    expect(c.sm.vms.get('web-0')!.placement).toMatch(/^placed on node\d at index \d+/);
    // A group of one keeps the spec's name.
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('db'), atMs: 1 });
    expect(c.sm.vms.get('db')?.group).toBe('db');
  });

  it('two leaders’ plans made on one view cannot overcommit a node: apply re-checks the second', () => {
    const c = Cluster.of(1); // one node of 4 cpus
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('a', { vcpus: 3 }), atMs: 1 });
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('b', { vcpus: 3 }), atMs: 1 });
    // Old leader planned only `a`, new leader only `b`, both on the same view (a failover).
    const both = c.plan();
    expect(both.placements.map((p) => p.instance)).toEqual(['a']); // one batch never overcommits
    const forA = both;
    const forB = {
      viewIndex: both.viewIndex,
      placements: [
        {
          ...both.placements[0]!,
          instance: 'b',
          group: 'b',
          generation: c.sm.vms.get('b')!.generation,
        },
      ],
    };
    expect(c.commit(forA)).toEqual(['ok']);
    const second = c.commit(forB);
    expect(second[0]).toMatch(/^b: stale placement: node n1 has not enough free cpus/);
    expect(c.used()).toEqual({ n1: 3 });
    expect(c.where()).toEqual({ a: 'n1', b: '' });
  });

  it('refuses a stale generation, an unknown instance, a down node and a placement twice', () => {
    const c = Cluster.of(2);
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('w'), atMs: 1 });
    const old = c.plan();
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('w', { memoryMiB: 256 }), atMs: 1 }); // new generation
    expect(c.commit(old)[0]).toMatch(/stale placement: planned for generation/);
    const fresh = c.plan();
    const ghost = { ...fresh, placements: [{ ...fresh.placements[0]!, instance: 'nope' }] };
    expect(c.commit(ghost)[0]).toMatch(/no such instance wants to run/);
    const target = fresh.placements[0]!.node;
    c.apply({ op: 'node.status', id: target, down: true, atMs: 1 });
    expect(c.commit(fresh)[0]).toMatch(/is not ready/);
    c.apply({ op: 'node.status', id: target, down: false, atMs: 1 });
    expect(c.commit(fresh)).toEqual(['ok']);
    expect(c.commit(fresh)[0]).toMatch(/already has a node/);
  });

  it('a new spec keeps an instance on its node while it still fits; one that no longer fits is unplaced', () => {
    const c = Cluster.of(2);
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('w'), atMs: 1 });
    c.commit(c.plan());
    const node = c.where().w!;
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('w', { memoryMiB: 1024 }), atMs: 1 });
    expect(c.where()).toEqual({ w: node }); // in place
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('w', { vcpus: 8 }), atMs: 1 });
    expect(c.where()).toEqual({ w: '' });
    expect(c.sm.vms.get('w')!.placement).toBe('its node no longer fits the new spec');
    // Scaling down deletes the instances beyond count.
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('s', { count: 3 }), atMs: 1 });
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('s', { count: 2 }), atMs: 1 });
    expect(c.sm.vms.list(undefined, 's').map((v) => v.name)).toEqual(['s-0', 's-1']);
  });

  it('a node marked down releases its instances, which go elsewhere; stop and rm take a group', () => {
    const c = Cluster.of(3);
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('web', { count: 2 }), atMs: 1 });
    c.commit(c.plan());
    const before = c.where();
    const dead = before['web-0']!;
    c.apply({ op: 'node.status', id: dead, down: true, atMs: 1 });
    expect(c.sm.vms.get('web-0')).toMatchObject({ node: '', state: 'pending' });
    expect(c.sm.vms.get('web-0')!.reason).toMatch(/is down/);
    expect(c.commit(c.plan())).toEqual(['ok']);
    const after = c.where();
    expect(after['web-0']).not.toBe(dead);
    expect(after['web-0']).not.toBe(after['web-1']);
    c.apply({ op: 'vm.stop', name: 'web', atMs: 1 });
    expect(c.sm.vms.list(undefined, 'web').map((v) => v.desired)).toEqual(['stopped', 'stopped']);
    c.apply({ op: 'vm.rm', name: 'web' });
    expect(c.sm.vms.list()).toEqual([]);
  });

  it('an unplaceable group gets the reason, once; a stopped instance is not placed', () => {
    const c = Cluster.of(2);
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('big', { vcpus: 8 }), atMs: 1 });
    const view = c.sm.view();
    const ev = evaluate(
      view,
      pendingDemands(c.sm.vms),
      () => true,
      () => undefined,
    );
    expect(ev.placements).toEqual([]);
    expect(ev.unplaced[0]!.message).toBe('big: no node fits: 2 nodes lacked cpus');
    c.apply({ op: 'vm.unplaced', ...ev.unplaced[0]!, atMs: 1 });
    expect(c.sm.vms.get('big')!.placement).toBe('big: no node fits: 2 nodes lacked cpus');
    const again = evaluate(
      view,
      pendingDemands(c.sm.vms),
      () => true,
      () => c.sm.vms.get('big')!.placement,
    );
    expect(again.unplaced).toEqual([]);
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('idle'), atMs: 1 });
    c.apply({ op: 'vm.stop', name: 'idle', atMs: 1 });
    expect(c.plan().placements).toEqual([]);
  });

  it('drains, eligibility, and the node table in snapshots', () => {
    const c = Cluster.of(2);
    c.apply({ op: 'node.eligibility', id: 'n2', eligible: false });
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('a'), atMs: 1 });
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('b'), atMs: 1 });
    c.commit(c.plan());
    expect(c.where()).toEqual({ a: 'n1', b: 'n1' }); // n2 takes nothing new
    c.apply({ op: 'node.eligibility', id: 'n2', eligible: true });
    c.apply({ op: 'node.drain', id: 'n1', deadlineMs: 1000 });
    expect(c.sm.view().nodes.find((n) => n.id === 'n1')!.status).toBe('draining');
    const running = c.sm.vms.list().map((v) => ({ ...v, state: 'running' }));
    // One at a time before the deadline; everything at it.
    expect(
      drainMoves({ nowMs: 0, draining: [{ id: 'n1', deadlineMs: 1000 }], instances: running }).map(
        (m) => m.name,
      ),
    ).toEqual(['a']);
    const moving = running.map((v) => (v.name === 'a' ? { ...v, node: '' } : v));
    expect(
      drainMoves({ nowMs: 0, draining: [{ id: 'n1', deadlineMs: 1000 }], instances: moving }),
    ).toEqual([]);
    expect(
      drainMoves({
        nowMs: 1000,
        draining: [{ id: 'n1', deadlineMs: 1000 }],
        instances: moving,
      }).map((m) => m.name),
    ).toEqual(['b']);
    const image = c.sm.snapshot();
    const copy = new StateMachine();
    copy.restore(image);
    expect(copy.nodes.list()).toEqual(c.sm.nodes.list());
    expect(copy.vms.list()).toEqual(c.sm.vms.list());
    expect(Buffer.from(copy.snapshot()).equals(Buffer.from(image))).toBe(true);
  });

  it('refuses bad node commands by name', () => {
    const c = Cluster.of(1);
    const bad = (x: Record<string, unknown>) => c.apply(x as unknown as Command);
    expect(
      bad({
        op: 'node.register',
        id: 'n1',
        arch: 'x86_64',
        capacity: { cpus: -1, memoryMiB: 1 },
        labels: {},
        backends: [],
      }),
    ).toMatchObject({ ok: false, code: 'invalid' });
    const r = c.apply({
      op: 'node.register',
      id: 'n1',
      arch: 'x86_64',
      capacity: { cpus: 1, memoryMiB: 1 },
      labels: { 'Bad Key': 'x' },
      backends: [],
    } as Command);
    expect(r).toMatchObject({ ok: false, code: 'invalid' });
    expect(!r.ok && r.message).toMatch(/label key "Bad Key"/);
    expect(c.apply({ op: 'node.status', id: 'nx', down: true, atMs: 1 })).toMatchObject({
      ok: false,
      code: 'notFound',
    });
    expect(
      c.apply({ op: 'vm.place', viewIndex: 1, placements: [{ instance: 'x' }] as never, atMs: 1 }),
    ).toMatchObject({ ok: false, code: 'invalid' });
  });
});

describe('rescheduling an instance that failed beyond its restart policy', () => {
  it('places it again after its delay, away from the node it failed on, within its attempts', () => {
    const c = Cluster.of(2);
    const policy = { attempts: 1, intervalMs: 60_000, delayMs: 1000, delayFunction: 'constant' };
    c.apply({ op: 'vm.put', spec: KERNEL_SPEC('w', { reschedule: policy }), atMs: 0 });
    c.commit(c.plan());
    const first = c.where().w!;
    const gen = c.sm.vms.get('w')!.generation;
    const fail = (node: string, atMs: number) =>
      c.apply({
        op: 'vm.report',
        name: 'w',
        node,
        generation: gen,
        state: 'failed',
        reason: 'exit 1',
        atMs,
      });
    fail(first, 100);
    expect(rescheduleMoves(1099, failedInstances(c.sm, 1099))).toEqual([]);
    const [move] = rescheduleMoves(1100, failedInstances(c.sm, 1100));
    expect(move).toMatchObject({
      name: 'w',
      reason: `rescheduled after it failed on ${first} (reschedule 1)`,
    });
    expect(c.apply({ op: 'vm.release', ...move!, failed: true, atMs: 1100 }).ok).toBe(true);
    expect(c.commit(c.plan())).toEqual(['ok']);
    const second = c.where().w!;
    expect(second).not.toBe(first); // the node it failed on ranks last
    fail(second, 2000);
    // One attempt per minute: the next waits for the interval to pass.
    expect(rescheduleMoves(10_000, failedInstances(c.sm, 10_000))).toEqual([]);
    expect(rescheduleMoves(61_101, failedInstances(c.sm, 61_101))).toHaveLength(1);
    // A release for an instance that is not failed is refused (the report moved on).
    expect(
      c.apply({ op: 'vm.release', name: 'w', generation: gen, reason: 'x', failed: true, atMs: 0 }),
    ).toMatchObject({ ok: true });
    expect(
      c.apply({ op: 'vm.release', name: 'w', generation: gen, reason: 'x', failed: true, atMs: 0 }),
    ).toMatchObject({ ok: false, code: 'stale' });
  });

  it('the default is unlimited, exponential from 30 s to one hour; bad policies are refused by field', () => {
    expect([0, 1, 2, 10].map((n) => rescheduleDelayMs(RESCHEDULE_DEFAULT, n))).toEqual([
      30_000, 60_000, 120_000, 3_600_000,
    ]);
    const c = Cluster.of(1);
    const r = c.apply({
      op: 'vm.put',
      spec: KERNEL_SPEC('x', { reschedule: { attempts: 101, delayFunction: 'linear', colour: 1 } }),
      atMs: 0,
    });
    expect(r.ok).toBe(false);
    const msg = !r.ok ? r.message : '';
    expect(msg).toMatch(
      /reschedule.attempts: 101 is out of bounds: 0..100 \(RESCHEDULE_ATTEMPTS_MAX\)/,
    );
    expect(msg).toMatch(/reschedule.delayFunction: must be "constant" or "exponential"/);
    expect(msg).toMatch(/reschedule.colour: unknown field/);
  });
});

describe('lifecycle and fencing decisions', () => {
  const base = {
    leaderSinceMs: 0,
    downAfterMs: 10_000,
    self: 'n1',
    nodes: [
      { id: 'n1', down: false },
      { id: 'n2', down: false },
      { id: 'n3', down: true },
    ],
  };
  it('marks a node down after the period of silence, counted from the leader’s election at the earliest', () => {
    const heard = new Map([
      ['n2', 1000],
      ['n3', 9000],
    ]);
    expect(lifecycle({ ...base, nowMs: 10_999, lastHeardMs: heard })).toEqual([
      { id: 'n3', down: false },
    ]);
    expect(lifecycle({ ...base, nowMs: 11_000, lastHeardMs: heard })).toEqual([
      { id: 'n2', down: true },
      { id: 'n3', down: false },
    ]);
    // A new leader that never heard n2: nothing before a full period since its election.
    expect(
      lifecycle({ ...base, leaderSinceMs: 5000, nowMs: 14_999, lastHeardMs: new Map() }),
    ).toEqual([]);
    expect(
      lifecycle({ ...base, leaderSinceMs: 5000, nowMs: 15_000, lastHeardMs: new Map() }),
    ).toEqual([{ id: 'n2', down: true }]);
  });

  it('the defaults satisfy the fencing inequality; settings that break it are refused with the numbers', () => {
    const e = 300;
    expect(
      fencingProblem({
        fenceAfterMs: FENCE_AFTER_MS_DEFAULT,
        nodeDownAfterMs: NODE_DOWN_AFTER_MS_DEFAULT,
        electionTimeoutMs: e,
      }),
    ).toBeUndefined();
    expect(
      fencingProblem({ fenceAfterMs: 8000, nodeDownAfterMs: 10_000, electionTimeoutMs: e }),
    ).toMatch(/must exceed .* = 12495 ms/);
  });
});

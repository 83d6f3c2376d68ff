// The deployment table driven by hand through the state machine, as the leader's placement loop,
// the agents and the rollout duty would drive it (node/state/deployments.test.ts,
// node/state/deploy_pins.test.ts): nodes registered, versions submitted, instances placed and
// reported running, rollout steps and finishes proposed from rolloutStep. Not used by the product.

import { expect } from 'vitest';
import { evaluate } from '../../node/sched/evaluate.ts';
import { rolloutStep } from '../../node/sched/rollout.ts';
import type { Deployment } from '../../node/state/deployments.ts';
import { type Command, type Result, StateMachine } from '../../node/state/machine.ts';
import { pendingDemands } from '../../node/state/view.ts';
import { placedInstance } from '../../node/state/vms.ts';

export const SPEC = (extra: Record<string, unknown> = {}) => ({
  version: 1,
  kernel: '/boot/vmlinuz',
  vcpus: 1,
  memoryMiB: 256,
  count: 3,
  ...extra,
});
export const FAST = {
  maxParallel: 1,
  minHealthyMs: 1000,
  healthyDeadlineMs: 5000,
  progressDeadlineMs: 10_000,
};

export class Cluster {
  readonly sm = new StateMachine();
  index = 0;
  now = 1000;

  apply(c: Command): Result {
    return this.sm.apply(++this.index, c);
  }

  static of(n: number, backends: readonly string[] = ['qemu']): Cluster {
    const c = new Cluster();
    for (let i = 1; i <= n; i++) {
      const id = `n${i}`;
      c.apply({ op: 'member.put', member: { id, addrs: [], role: 'voter', name: `node${i}` } });
      c.apply({
        op: 'node.register',
        id,
        arch: 'x86_64',
        capacity: { cpus: 4, memoryMiB: 4096 },
        labels: {},
        backends: [...backends],
      });
    }
    return c;
  }

  submit(extra: Record<string, unknown> = {}, update: unknown = FAST, name = 'web'): Result {
    return this.apply({
      op: 'deploy.submit',
      name,
      spec: SPEC(extra),
      update,
      source: { flake: 'git+file:///src#web' },
      atMs: this.now,
    } as Command);
  }

  dep(name = 'web'): Deployment {
    return this.sm.deployments.get(name)!;
  }

  /** The leader's placement loop, once. */
  place(): void {
    const view = this.sm.view();
    const ev = evaluate(
      view,
      pendingDemands(this.sm.vms),
      () => true,
      () => undefined,
    );
    if (ev.placements.length === 0) return;
    const r = this.apply({
      op: 'vm.place',
      viewIndex: view.index,
      placements: ev.placements.map(placedInstance),
      atMs: this.now,
    });
    expect(r.ok).toBe(true);
  }

  /** Every placed row that is not running reports running (its node's agent started it). */
  run(except: readonly string[] = []): void {
    for (const v of this.sm.vms.list()) {
      if (v.node === '' || v.state === 'running' || except.includes(v.name)) continue;
      const r = this.apply({
        op: 'vm.report',
        name: v.name,
        node: v.node,
        generation: v.generation,
        state: 'running',
        atMs: this.now,
      });
      expect(r.ok).toBe(true);
    }
  }

  /** What the leader's rollout duty would propose now, applied. */
  drive(name = 'web'): Result | undefined {
    const d = this.dep(name);
    const s = rolloutStep(d, this.sm.vms.groupInstances(name), this.now);
    if (s.kind === 'wait') return undefined;
    const to = d.rollout!.to;
    if (s.kind === 'step')
      return this.apply({
        op: 'deploy.step',
        name,
        to,
        viewIndex: this.sm.applied,
        replace: s.replace,
        remove: s.remove,
        atMs: this.now,
      });
    return this.apply({
      op: 'deploy.finish',
      name,
      to,
      outcome: s.outcome,
      ...(s.reason !== undefined ? { reason: s.reason } : {}),
      atMs: this.now,
    });
  }

  /** Place, run and drive until the rollout ends (time moves 600 ms a round). */
  settle(except: readonly string[] = [], rounds = 200): void {
    for (let i = 0; i < rounds; i++) {
      const r = this.dep().rollout!;
      if (r.state !== 'running') return;
      this.place();
      this.run(except);
      this.drive();
      this.now += 600;
    }
  }

  versionsOfRows(name = 'web'): Record<string, number> {
    return Object.fromEntries(this.sm.vms.groupInstances(name).map((v) => [v.name, v.version]));
  }
}

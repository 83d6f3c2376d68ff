// The placement duty's fencing phases and the leader's loop, driven through its ports with a real
// state machine and a clock the test moves (no Raft: what the duty reads of Raft is its contact()
// figures, given here). docs/scheduling.md, "Fencing".

import { describe, expect, it } from 'vitest';
import { type Command, type Result, StateMachine } from '../state/machine.ts';
import { FORCE_GRACE_MS } from '../vmm/proc.ts';
import { type DutyPorts, FENCE_GRACEFUL_MS, FENCE_STOP_MS, PlacementDuty } from './duty.ts';

function harness(o: { leader: boolean }) {
  const sm = new StateMachine();
  let index = 0;
  const state = { now: 0, leaderAgeTicks: Number.POSITIVE_INFINITY, barrierOk: true, pokes: 0 };
  const submitted: Command[] = [];
  const apply = (c: Command): Result => sm.apply(++index, c);
  apply({ op: 'member.put', member: { id: 'self', addrs: [], role: 'voter', name: 'self' } });
  const ports: DutyPorts = {
    self: 'self',
    tickMs: 50,
    electionTimeoutMs: 300,
    nodeDownAfterMs: 10_000,
    fenceAfterMs: 4000,
    sm: () => sm,
    raft: () => ({
      leader: o.leader,
      ticks: 0,
      heard: new Map(),
      leaderAgeTicks: state.leaderAgeTicks,
    }),
    counted: () => true,
    registration: () => ({
      arch: 'x86_64',
      capacity: { cpus: 2, memoryMiB: 2048 },
      labels: { zone: 'a' },
      backends: ['qemu'],
    }),
    submit: async (c) => {
      submitted.push(c);
      return apply(c);
    },
    barrier: async () => state.barrierOk,
    now: () => state.now,
    pokeAgent: () => {
      state.pokes++;
    },
    log: { info: () => {}, warn: () => {}, debug: () => {} },
  };
  return { duty: new PlacementDuty(ports), sm, state, submitted, apply };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe('placement duty', () => {
  it('a fenced stop is forced, then killed, within FENCE_STOP_MS (the bound of the fencing argument)', () => {
    expect(FENCE_GRACEFUL_MS + FORCE_GRACE_MS).toBeLessThanOrEqual(FENCE_STOP_MS);
  });

  it('holds at start (agent idle), frees after a barrier, fences after fence-after of silence, frees again', async () => {
    const h = harness({ leader: false });
    expect(h.duty.agentMayAct()).toBe(false);
    h.state.leaderAgeTicks = 1; // a leader heard
    await h.duty.tick();
    await settle();
    expect(h.duty.agentMayAct()).toBe(true);
    expect(h.duty.isFenced()).toBe(false);
    h.state.leaderAgeTicks = 4000 / 50 - 1;
    await h.duty.tick();
    expect(h.duty.isFenced()).toBe(false);
    h.state.leaderAgeTicks = 4000 / 50;
    await h.duty.tick();
    expect(h.duty.isFenced()).toBe(true);
    // Heard again, but the barrier (a linearizable read) fails: still fenced.
    h.state.leaderAgeTicks = 0;
    h.state.barrierOk = false;
    await h.duty.tick();
    await settle();
    expect(h.duty.isFenced()).toBe(true);
    h.state.barrierOk = true;
    await h.duty.tick();
    await settle();
    expect(h.duty.isFenced()).toBe(false);
  });

  it('a node that never hears a leader fences fence-after after its start (it stops what it adopted)', async () => {
    const h = harness({ leader: false });
    await h.duty.tick();
    expect(h.duty.isFenced()).toBe(false);
    h.state.now = 4000;
    await h.duty.tick();
    expect(h.duty.isFenced()).toBe(true);
    expect(h.duty.agentMayAct()).toBe(true);
  });

  it('registers its attributes once, and the leader places a pending VM on it', async () => {
    const h = harness({ leader: true });
    h.state.leaderAgeTicks = 0;
    await h.duty.tick();
    await h.duty.tick();
    expect(h.submitted.filter((c) => c.op === 'node.register')).toHaveLength(1);
    expect(h.sm.nodes.get('self')).toMatchObject({ capacity: { cpus: 2 }, labels: { zone: 'a' } });
    h.apply({
      op: 'vm.put',
      spec: { version: 1, name: 'v', kernel: '/boot/k', memoryMiB: 512 },
      atMs: 0,
    });
    h.duty.poke();
    for (let i = 0; i < 10 && h.sm.vms.get('v')!.node === ''; i++) await settle();
    expect(h.sm.vms.get('v')!.node).toBe('self');
  });
});

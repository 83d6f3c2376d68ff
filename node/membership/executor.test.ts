// The executor with fakes of its ports (no libp2p, no Raft): each action of decide() is carried
// out through the right port, answers of the members become the verdict, and a removal is acted
// on once.

import { describe, expect, it } from 'vitest';
import type { Request } from '../api/requests.ts';
import { type ApiResponse, apiError } from '../api/wire.ts';
import type { Outcome } from '../raft/node.ts';
import type { Command, Member } from '../state/machine.ts';
import { MEMBERSHIP_DEFAULTS } from './decide.ts';
import {
  combineVerdicts,
  MembershipExecutor,
  type MembershipPorts,
  PROBE_TIMEOUT_MS,
  type RaftView,
} from './executor.ts';

const A = ['/ip4/127.0.0.1/tcp/1'];
const B = ['/ip4/127.0.0.1/tcp/2'];
const OK: Outcome = { ok: true, index: 7, result: { ok: true, revision: 7 } };

/** A world the executor acts on: every port call is recorded; answers come from `answer`. */
class FakeWorld {
  raft: RaftView = {
    state: 'follower',
    lead: 'n2',
    lastIndex: 100,
    config: { voters: ['n1', 'n2', 'n3'], learners: [] },
    fresh: false,
  };
  name: string | undefined = undefined;
  record: Member | undefined = { id: 'n1', addrs: A, role: 'voter' };
  tombstone = false;
  addrs = A;
  peers = ['n2', 'n3'];
  nowMs = 0;
  answer: (id: string, req: Request) => ApiResponse | Error = () => ({ ok: true });
  submitResult: Outcome = OK;
  readonly asked: { id: string; req: Request; timeoutMs: number | undefined }[] = [];
  readonly submitted: Command[] = [];
  readonly promoted: string[] = [];
  readonly removed: string[] = [];
  readonly warnings: string[] = [];

  ports(): MembershipPorts {
    return {
      self: 'n1',
      status: () => this.raft,
      record: () => this.record,
      removedHere: () => this.tombstone,
      addrs: () => this.addrs,
      name: () => this.name,
      peers: () => this.peers,
      ask: async (id, req, timeoutMs) => {
        this.asked.push({ id, req, timeoutMs });
        const a = this.answer(id, req);
        if (a instanceof Error) throw a;
        return a;
      },
      submit: async (c) => {
        this.submitted.push(c);
        return this.submitResult;
      },
      addVoter: async (id) => {
        this.promoted.push(id);
        return OK;
      },
      removed: (why) => void this.removed.push(why),
      now: () => this.nowMs,
      log: {
        info: () => {},
        debug: () => {},
        warn: (_f, msg) => void this.warnings.push(msg),
      },
    };
  }
}

function setup(): { w: FakeWorld; x: MembershipExecutor } {
  const w = new FakeWorld();
  return { w, x: new MembershipExecutor(w.ports(), MEMBERSHIP_DEFAULTS) };
}

describe('MembershipExecutor', () => {
  it('a settled follower does nothing and asks nobody', async () => {
    const { w, x } = setup();
    expect(await x.tick()).toBeUndefined();
    expect(w.asked).toEqual([]);
    expect(w.submitted).toEqual([]);
  });

  it('join: asks the peers in order until one accepts', async () => {
    const { w, x } = setup();
    w.raft = { ...w.raft, lead: '', config: { voters: [], learners: [] }, fresh: true };
    w.record = undefined;
    w.answer = (id) => (id === 'n2' ? new Error('unreachable') : { ok: true });
    expect(await x.tick()).toEqual({ kind: 'join' });
    expect(w.asked.map((a) => [a.id, a.req])).toEqual([
      ['n2', { op: 'join', id: 'n1', addrs: A }],
      ['n3', { op: 'join', id: 'n1', addrs: A }],
    ]);
  });

  it('join refused with REMOVED: the next tick acts on the removal, once', async () => {
    const { w, x } = setup();
    w.raft = { ...w.raft, lead: '', config: { voters: [], learners: [] }, fresh: true };
    w.answer = () => apiError('REMOVED', 'node n1 was removed');
    expect(await x.tick()).toEqual({ kind: 'join' });
    expect(w.asked).toHaveLength(1); // a refusal is an answer: nobody else is asked
    expect(await x.tick()).toMatchObject({ kind: 'removed' });
    expect(w.removed).toEqual(['a member answered that this node was removed']);
    expect(x.isRemoved).toBe(true);
    expect(await x.tick()).toBeUndefined();
    expect(w.removed).toHaveLength(1);
  });

  it('a node that applied its own removal hears from no leader that counts it: it probes, never joins', async () => {
    const { w, x } = setup();
    // Still following the old leader, but in no configuration of its own.
    w.raft = { ...w.raft, lead: 'n2', config: { voters: ['n2', 'n3'], learners: [] } };
    expect(x.view().lead).toBe('');
    expect(await x.tick()).toBeUndefined();
    w.nowMs += MEMBERSHIP_DEFAULTS.probeAfterMs;
    expect(await x.tick()).toEqual({ kind: 'probe' });
    expect(w.asked.every((a) => a.req.op === 'member.check')).toBe(true);
  });

  it('a learner whose leader went silent counts no leader (it cannot time it out in Raft)', () => {
    const { w, x } = setup();
    w.raft = { ...w.raft, config: { voters: ['n2', 'n3'], learners: ['n1'] } };
    expect(x.view().lead).toBe('n2');
    w.raft = { ...w.raft, leaderSilent: true };
    expect(x.view().lead).toBe('');
  });

  it('a failed join backs off and warns once per reason', async () => {
    const { w, x } = setup();
    w.raft = { ...w.raft, lead: '', config: { voters: [], learners: [] }, fresh: true };
    w.peers = ['n2'];
    w.answer = () => new Error('unreachable');
    expect(await x.tick()).toEqual({ kind: 'join' });
    expect(w.asked).toHaveLength(1);
    await x.tick(); // not due yet: nobody is asked
    expect(w.asked).toHaveLength(1);
    w.nowMs += 10_000;
    await x.tick();
    expect(w.asked).toHaveLength(2);
    expect(w.warnings).toHaveLength(1);
  });

  it('announce: new addresses go to a member as a join', async () => {
    const { w, x } = setup();
    w.raft = { ...w.raft, lead: '' };
    w.addrs = B;
    expect(await x.tick()).toEqual({ kind: 'announce', addrs: B });
    expect(w.asked[0]).toMatchObject({
      id: 'n2',
      req: { op: 'join', id: 'n1', addrs: B, announce: true },
    });
  });

  it('probe: only after probeAfterMs without a leader, by its own clock; removed wins', async () => {
    const { w, x } = setup();
    w.raft = { ...w.raft, lead: '' };
    w.nowMs = 10_000;
    expect(await x.tick()).toBeUndefined(); // the clock starts at the first leaderless tick
    w.nowMs += MEMBERSHIP_DEFAULTS.probeAfterMs - 1;
    expect(await x.tick()).toBeUndefined();
    w.nowMs += 1;
    w.answer = (id) =>
      id === 'n2' ? { ok: true, verdict: 'member' } : { ok: true, verdict: 'removed' };
    expect(await x.tick()).toEqual({ kind: 'probe' });
    expect(w.asked.map((a) => [a.id, a.req.op, a.timeoutMs])).toEqual([
      ['n2', 'member.check', PROBE_TIMEOUT_MS],
      ['n3', 'member.check', PROBE_TIMEOUT_MS],
    ]);
    expect(x.view().peerVerdict).toBe('removed');
    expect(await x.tick()).toMatchObject({ kind: 'removed' });
    expect(w.removed).toHaveLength(1);
  });

  it('a leader seen again resets the leaderless clock', async () => {
    const { w, x } = setup();
    w.raft = { ...w.raft, lead: '' };
    await x.tick();
    w.nowMs = 5000;
    expect(x.view().leaderlessMs).toBe(5000);
    w.raft = { ...w.raft, lead: 'n2' };
    expect(x.view().leaderlessMs).toBe(0);
    w.raft = { ...w.raft, lead: '' };
    w.nowMs = 6000;
    expect(x.view().leaderlessMs).toBe(0);
  });

  it('record: commits member.put with the role Raft gives', async () => {
    const { w, x } = setup();
    w.record = undefined;
    expect(await x.tick()).toMatchObject({ kind: 'record' });
    expect(w.submitted).toEqual([
      { op: 'member.put', member: { id: 'n1', addrs: A, role: 'voter' } },
    ]);
  });

  it('promote: the leader adds a caught-up learner as voter', async () => {
    const { w, x } = setup();
    w.raft = {
      state: 'leader',
      lead: 'n1',
      lastIndex: 100,
      config: { voters: ['n1', 'n2'], learners: ['n3'] },
      progress: { n1: { match: 100 }, n2: { match: 100 }, n3: { match: 95 } },
      fresh: false,
    };
    expect(await x.tick()).toEqual({ kind: 'promote', id: 'n3' });
    expect(w.promoted).toEqual(['n3']);
  });

  it('a tombstone applied here: removed at once, without asking anyone', async () => {
    const { w, x } = setup();
    w.tombstone = true;
    expect(await x.tick()).toMatchObject({ kind: 'removed' });
    expect(w.removed).toEqual(['the applied member table records this node as removed']);
    expect(w.asked).toEqual([]);
    expect(w.warnings).toEqual(['this node was removed from the cluster; stopping']);
  });

  it('overlapping ticks are skipped: one action at a time', async () => {
    const { w } = setup();
    w.raft = { ...w.raft, lead: '', config: { voters: [], learners: [] }, fresh: true };
    let release: () => void = () => {};
    w.answer = () => ({ ok: true });
    const ports = w.ports();
    const slow = new MembershipExecutor({
      ...ports,
      ask: (id, req) =>
        new Promise((r) => {
          w.asked.push({ id, req, timeoutMs: undefined });
          release = () => r({ ok: true });
        }),
    });
    const first = slow.tick();
    expect(await slow.tick()).toBeUndefined();
    release();
    expect(await first).toEqual({ kind: 'join' });
    expect(w.asked).toHaveLength(1);
  });

  it('counted: a leader that has us in the configuration, or a member that vouched; never removed', async () => {
    const { w, x } = setup();
    expect(x.counted()).toBe(true);
    w.raft = { ...w.raft, lead: '' };
    expect(x.counted()).toBe(false);
    w.nowMs = MEMBERSHIP_DEFAULTS.probeAfterMs;
    await x.tick(); // starts the leaderless clock
    w.nowMs *= 2;
    w.answer = () => ({ ok: true, verdict: 'member' });
    expect(await x.tick()).toEqual({ kind: 'probe' });
    expect(x.counted()).toBe(true);
    w.raft = { ...w.raft, lead: 'n2', config: { voters: ['n2', 'n3'], learners: [] } };
    w.tombstone = true;
    expect(x.counted()).toBe(false);
  });

  it('combineVerdicts: removed wins, then member, then unknown; no answer is no verdict', () => {
    expect(combineVerdicts(['member', 'removed', undefined])).toBe('removed');
    expect(combineVerdicts(['unknown', 'member'])).toBe('member');
    expect(combineVerdicts(['unknown', undefined])).toBe('unknown');
    expect(combineVerdicts([undefined, undefined])).toBeUndefined();
  });
});

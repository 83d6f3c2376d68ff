// Targeted scenarios on a SimCluster: restart from disk, snapshot install, pause, drift, the API.

import { describe, expect, it } from 'vitest';
import { RaftError } from '../consensus/index.ts';
import type { Outcome } from '../node/raft/node.ts';
import { DurableStorage } from '../node/raft/storage.ts';
import { SimCluster } from './cluster.ts';

/** A cluster with a leader, on a quiet network (no loss, no duplicates). */
function quietCluster(opts: Partial<ConstructorParameters<typeof SimCluster>[0]> = {}): SimCluster {
  const c = new SimCluster({
    seed: 11,
    nodes: 3,
    network: { dropProbability: 0, duplicateProbability: 0 },
    ...opts,
  });
  expect(c.runUntil(() => c.leader() !== undefined, 2000)).toBe(true);
  c.runFor(50); // the followers hear of it
  return c;
}

/** Submits `n` writes through the leader one after another; returns how many were ok. */
function writeMany(c: SimCluster, n: number, key = 'k'): number {
  let ok = 0;
  for (let i = 0; i < n; i++) {
    const leader = c.leader();
    if (leader === undefined) {
      c.runFor(50);
      continue;
    }
    let done: Outcome | undefined;
    c.submit(leader, { op: 'kv.put', key, value: String(i) }, (o) => {
      done = o;
    });
    c.runUntil(() => done !== undefined, 2000);
    if (done?.ok === true) ok++;
  }
  return ok;
}

function applied(c: SimCluster, id: string): number {
  return c.node(id).applied ?? -1;
}

describe('SimCluster', () => {
  it('elects a leader, answers submit and read (callback and promise), and the followers apply', async () => {
    const c = quietCluster();
    const leader = c.leader()!;
    const follower = c.ids.find((id) => id !== leader)!;
    let cbOutcome: Outcome | undefined;
    const p = c.submit(follower, { op: 'kv.put', key: 'x', value: '1' }, (o) => {
      cbOutcome = o;
    });
    c.runUntil(() => cbOutcome !== undefined, 1000);
    expect(cbOutcome?.ok).toBe(true);
    expect(await p).toEqual(cbOutcome);
    const read = c.read(leader, { op: 'kv.get', key: 'x' });
    c.runFor(100);
    const r = await read;
    expect(r.ok && r.result.ok && r.result.value).toBe('1');
    c.runFor(100);
    const index = (cbOutcome as { index: number }).index;
    for (const id of c.ids) expect(applied(c, id)).toBeGreaterThanOrEqual(index);
    expect(c.entries(leader).at(-1)!.index).toBe(c.node(leader).lastIndex);
    expect(c.violations).toEqual([]);
  });

  it('a request to a down node fails definitely, at once', async () => {
    const c = quietCluster();
    c.crash('n1');
    const o = await c.submit('n1', { op: 'kv.put', key: 'x', value: '1' });
    expect(o).toMatchObject({ ok: false, code: 'STOPPED', indeterminate: false });
  });

  it('a crashed node restarts from exactly what its disk synced, then catches up', () => {
    const c = quietCluster({ disk: { minMs: 2, maxMs: 4 } });
    expect(writeMany(c, 20)).toBe(20);
    const leader = c.leader()!;
    const victim = c.ids.find((id) => id !== leader)!;
    // Crash the follower while writes are in flight, so that some of its batches are unsynced.
    for (let i = 0; i < 5; i++) c.submit(leader, { op: 'kv.put', key: 'k', value: `late${i}` });
    c.runUntil(() => c.disk(victim).pendingBatches > 0, 500);
    expect(c.disk(victim).pendingBatches).toBeGreaterThan(0);
    const before = c.node(victim);
    const lostBefore = c.disk(victim).stats.lost;
    c.crash(victim);
    expect(c.disk(victim).stats.lost).toBeGreaterThan(lostBefore);
    const synced = DurableStorage.recover(c.diskRecords(victim));
    // What it had in memory (acknowledged or not) may be ahead of what the disk kept.
    expect(synced.lastIndex()).toBeLessThanOrEqual(before.lastIndex!);

    c.runFor(200);
    c.restart(victim);
    const after = c.node(victim);
    expect(after.incarnation).toBe(2);
    expect(after.lastIndex).toBe(synced.lastIndex());
    expect(after.commit).toBe(synced.hardState.commit);
    expect(after.term).toBe(synced.hardState.term);
    expect(c.entries(victim).map((e) => [e.index, e.term])).toEqual(
      synced
        .entries(synced.firstIndex(), synced.lastIndex() + 1, Infinity)
        .map((e) => [e.index, e.term]),
    );

    // It catches up: same log and same state as the leader.
    expect(writeMany(c, 5)).toBe(5);
    const target = c.node(c.leader()!).applied!;
    expect(c.runUntil(() => applied(c, victim) >= target, 2000)).toBe(true);
    const tail = (id: string) =>
      c
        .entries(id)
        .filter((e) => e.index > after.lastIndex! && e.index <= target)
        .map((e) => `${e.index}/${e.term}/${Buffer.from(e.data).toString('hex')}`);
    expect(tail(victim)).toEqual(tail(c.leader()!));
    expect(c.violations).toEqual([]);
  });

  it('a node down while the log is compacted past it is caught up by a snapshot install', () => {
    const c = quietCluster({ snapshotEntries: 20, keepEntries: 5 });
    const leader = c.leader()!;
    const victim = c.ids.find((id) => id !== leader)!;
    c.crash(victim);
    expect(writeMany(c, 80)).toBe(80);
    expect(c.node(c.leader()!).snapshotIndex).toBeGreaterThan(c.node(c.leader()!).firstIndex! - 2);
    expect(c.node(c.leader()!).firstIndex).toBeGreaterThan(30);
    c.restart(victim);
    const target = c.node(c.leader()!).applied!;
    expect(c.runUntil(() => applied(c, victim) >= target, 3000)).toBe(true);
    expect(c.node(victim).stats!.snapshotsRestored).toBeGreaterThan(0);
    expect(c.totals().snapshotsRestored).toBeGreaterThan(0);
    // Its state machine holds the last value, read locally.
    let value: unknown;
    c.read(
      victim,
      { op: 'kv.get', key: 'k' },
      (o) => {
        value = o.ok && o.result.ok ? o.result.value : o;
      },
      { stale: true },
    );
    expect(value).toBe('79');
    expect(c.violations).toEqual([]);
  });

  it('pause: no ticks, no deliveries, no disk completions; resume runs what queued, in order', () => {
    const c = quietCluster();
    const leader = c.leader()!;
    const victim = c.ids.find((id) => id !== leader)!;
    const node = c.raftNode(victim)!;
    let ticks = 0;
    let received = 0;
    const tick = node.tick.bind(node);
    const receive = node.receive.bind(node);
    node.tick = () => {
      ticks++;
      tick();
    };
    node.receive = (m) => {
      received++;
      receive(m);
    };
    // A disk batch in flight when it stops: its completion must wait too.
    c.submit(leader, { op: 'kv.put', key: 'p', value: '0' });
    c.runUntil(() => c.disk(victim).pendingBatches > 0, 200);
    c.pause(victim);
    expect(c.node(victim).process).toBe('paused');
    const commitBefore = c.node(victim).commit!;
    const lastBefore = c.node(victim).lastIndex!;
    const [t0, r0] = [ticks, received];
    expect(writeMany(c, 10)).toBe(10); // the other two are a majority
    c.runFor(300);
    expect([ticks, received]).toEqual([t0, r0]);
    expect(c.node(victim).commit).toBe(commitBefore);
    expect(c.node(victim).lastIndex).toBe(lastBefore);
    const readWhilePaused = c.read(victim, { op: 'kv.get', key: 'p' });
    let answered = false;
    void readWhilePaused.then(() => {
      answered = true;
    });

    c.resume(victim);
    expect(received).toBeGreaterThan(r0); // the queued messages, at once
    c.runFor(300);
    expect(ticks).toBeGreaterThan(t0);
    expect(applied(c, victim)).toBe(c.node(c.leader()!).applied);
    expect(answered || c.node(victim).process === 'up').toBe(true);
    expect(c.violations).toEqual([]);
  });

  it('drift scales a node’s tick interval', () => {
    const c = new SimCluster({ seed: 3, nodes: 3, driftMax: 0 });
    const count = (id: string): (() => number) => {
      const node = c.raftNode(id)!;
      let ticks = 0;
      const tick = node.tick.bind(node);
      node.tick = () => {
        ticks++;
        tick();
      };
      return () => ticks;
    };
    const n1 = count('n1');
    const n2 = count('n2');
    c.setDrift('n2', 2);
    c.runFor(1000);
    // 10 ms ticks: about 100 for n1, 50 for n2.
    expect(Math.abs(n1() - 100)).toBeLessThanOrEqual(1);
    expect(Math.abs(n2() - 50)).toBeLessThanOrEqual(1);
    expect(() => c.setDrift('n1', 0)).toThrow(/drift factor/);
    c.resetDrift('n2');
    expect(c.node('n2').drift).toBe(1);
    expect(c.faults.map((f) => f.f)).toEqual(['drift', 'drift']);
  });

  it('a partition cuts the minority off; heal brings it back', () => {
    const c = quietCluster({ nodes: 5 });
    const leader = c.leader()!;
    const others = c.ids.filter((id) => id !== leader);
    c.partition([[leader, others[0]!], others.slice(1)]);
    // The old leader steps down (check-quorum); the majority elects another.
    expect(
      c.runUntil(() => {
        const l = c.leader();
        return l !== undefined && l !== leader && c.node(leader).role !== 'leader';
      }, 3000),
    ).toBe(true);
    expect(others.slice(1)).toContain(c.leader());
    c.heal();
    expect(writeMany(c, 3)).toBe(3);
    const target = c.node(c.leader()!).applied!;
    expect(c.runUntil(() => c.ids.every((id) => applied(c, id) >= target), 2000)).toBe(true);
    expect(c.faults.map((f) => f.f)).toEqual(['partition', 'heal']);
    expect(c.violations).toEqual([]);
  });

  it('an exception in a node is a finding: the process dies and can be restarted', () => {
    const c = quietCluster();
    const victim = c.ids.find((id) => id !== c.leader())!;
    const node = c.raftNode(victim)!;
    node.tick = () => {
      throw new Error('boom');
    };
    c.runFor(50);
    expect(c.node(victim).process).toBe('down');
    expect(c.violations[0]).toMatchObject({ kind: 'node-failure', node: victim });
    expect(c.violations[0]!.message).toMatch(/boom/);
    c.restart(victim);
    c.runFor(200);
    expect(c.node(victim).process).toBe('up');
    expect(c.violationCount).toBe(1);
  });

  it('a broken invariant in the core while stepping a message is not swallowed: the process dies', () => {
    const c = quietCluster();
    const victim = c.ids.find((id) => id !== c.leader())!;
    const rn = c.raftNode(victim)!.rn;
    rn.step = () => {
      throw new RaftError('INVARIANT', 'raft invariant violated: planted by the test');
    };
    c.runFor(50); // the leader's heartbeats arrive
    expect(c.node(victim).process).toBe('down');
    expect(c.violations[0]).toMatchObject({ kind: 'node-failure', node: victim });
    expect(c.violations[0]!.message).toMatch(/planted by the test/);
  });

  it('a duplicated forwarded proposal is committed twice but takes effect once (client sessions)', () => {
    // Every message is delivered twice. A follower forwards the client's proposal to the leader
    // (MsgProp); both copies are appended and committed; the state machine applies the first and
    // recognises the second by its request ID (docs/sim.md, Findings).
    const c = quietCluster({ network: { dropProbability: 0, duplicateProbability: 1 } });
    const follower = c.ids.find((id) => id !== c.leader())!;
    const outcomes: Outcome[] = [];
    c.submit(follower, { op: 'kv.cas', key: 'x', from: null, to: '1' }, (o) => outcomes.push(o));
    c.runUntil(() => outcomes.length > 0, 1000);
    c.submit(follower, { op: 'kv.put', key: 'x', value: '2' }, (o) => outcomes.push(o));
    c.runUntil(() => outcomes.length > 1, 1000);
    c.runFor(100);
    expect(outcomes.map((o) => o.ok && o.result.ok)).toEqual([true, true]);
    expect(c.duplicateCommands).toBeGreaterThan(0);
    const writes = c
      .entries(c.leader()!)
      .filter((e) => e.type === 'normal' && e.data.byteLength > 0);
    expect(writes.length).toBeGreaterThan(2);
    // The simulator checks every committed copy: none took effect a second time.
    expect(c.violations).toEqual([]);
    for (const id of c.ids) {
      expect(c.raftNode(id)?.sm.query({ op: 'kv.get', key: 'x' })).toMatchObject({
        ok: true,
        value: '2',
      });
    }
  });
});

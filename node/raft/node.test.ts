// RaftNode end to end in one process: three nodes over an in-memory network that goes through the
// real codec, each with its own MemoryDisk. Restarts rebuild a node from its disk records only.

import { describe, expect, it } from 'vitest';
import { bootstrap, isRaftError, type NodeId, seededRandom } from '../../consensus/index.ts';
import { FENCE_AFTER_MS_DEFAULT } from '../placement/duty.ts';
import {
  daemonRaftTiming,
  FENCE_AFTER_HEARTBEATS_MIN,
  LEARNER_HEARTBEAT_EVERY,
  raftNodeTiming,
} from '../raft_timing.ts';
import type { Command, Query } from '../state/machine.ts';
import { decodeMessage, encodeMessage } from './codec.ts';
import { type Disk, type DiskOp, MemoryDisk, type WriteOptions } from './disk.ts';
import { mayReplicateBeforePersist, type Outcome, RaftNode, type RaftNodeOptions } from './node.ts';
import { DurableStorage } from './storage.ts';

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

class Cluster {
  readonly nodes = new Map<NodeId, RaftNode>();
  readonly disks = new Map<NodeId, MemoryDisk>();
  private inbox: { to: NodeId; bytes: Uint8Array }[] = [];
  readonly down = new Set<NodeId>();
  private incarnation = 0;

  readonly ids: NodeId[];
  readonly extra: Partial<RaftNodeOptions>;

  constructor(ids: NodeId[], extra: Partial<RaftNodeOptions> = {}) {
    this.ids = ids;
    this.extra = extra;
    for (const id of ids) {
      const mem = new DurableStorage();
      bootstrap(mem.mem, ids);
      const disk = new MemoryDisk();
      disk.write(DurableStorage.initialOps(mem.mem), () => {});
      this.disks.set(id, disk);
      this.start(id);
    }
  }

  start(id: NodeId, disk: Disk = this.disks.get(id)!): RaftNode {
    const node = new RaftNode({
      id,
      storage: DurableStorage.recover(this.disks.get(id)!.records()),
      disk,
      transport: { send: (m) => this.inbox.push({ to: m.to, bytes: encodeMessage(m) }) },
      random: seededRandom(this.ids.indexOf(id) * 7919 + this.incarnation++),
      ...this.extra,
    });
    this.nodes.set(id, node);
    this.down.delete(id);
    return node;
  }

  /** A new node with an empty disk, in no configuration yet (a joiner). */
  addEmpty(id: NodeId): RaftNode {
    this.ids.push(id);
    this.disks.set(id, new MemoryDisk());
    return this.start(id);
  }

  async change(
    id: NodeId,
    type: 'addLearner' | 'addVoter' | 'removeNode',
    nodeId: NodeId,
  ): Promise<Outcome> {
    let out: Outcome | undefined;
    this.node(id).changeMembership({ type, nodeId }, (o) => (out = o));
    for (let i = 0; i < 100 && out === undefined; i++) await this.tick();
    return out!;
  }

  crash(id: NodeId): void {
    this.nodes.get(id)!.stop();
    this.down.add(id);
  }

  node(id: NodeId): RaftNode {
    return this.nodes.get(id)!;
  }

  async settle(): Promise<void> {
    for (let i = 0; i < 10_000; i++) {
      await flush();
      if (this.inbox.length === 0) {
        await flush();
        if (this.inbox.length === 0) return;
      }
      const batch = this.inbox;
      this.inbox = [];
      for (const { to, bytes } of batch) {
        if (this.down.has(to)) continue;
        const m = decodeMessage(bytes);
        if ('error' in m) throw new Error(m.error);
        this.nodes.get(to)?.receive(m);
      }
    }
    throw new Error('the cluster does not settle');
  }

  async tick(n = 1): Promise<void> {
    for (let i = 0; i < n; i++) {
      for (const [id, node] of this.nodes) if (!this.down.has(id)) node.tick();
      await this.settle();
    }
  }

  leader(): NodeId | undefined {
    for (const [id, n] of this.nodes)
      if (!this.down.has(id) && n.status().state === 'leader') return id;
    return undefined;
  }

  async elect(): Promise<NodeId> {
    for (let i = 0; i < 100 && this.leader() === undefined; i++) await this.tick();
    const l = this.leader();
    if (l === undefined) throw new Error('no leader');
    return l;
  }

  async submit(id: NodeId, c: Command): Promise<Outcome> {
    let out: Outcome | undefined;
    this.node(id).submit(c, (o) => {
      out = o;
    });
    for (let i = 0; i < 100 && out === undefined; i++) await this.tick();
    return out!;
  }

  async read(id: NodeId, q: Query, stale = false): Promise<Outcome> {
    let out: Outcome | undefined;
    this.node(id).read(q, (o) => (out = o), { stale });
    await this.settle();
    for (let i = 0; i < 100 && out === undefined; i++) await this.tick();
    return out!;
  }
}

describe('RaftNode', () => {
  it('elects, writes through a follower, reads linearizably anywhere', async () => {
    const c = new Cluster(['a', 'b', 'c']);
    const leader = await c.elect();
    const [f1, f2] = c.ids.filter((x) => x !== leader) as [NodeId, NodeId];
    const w = await c.submit(f1, { op: 'kv.put', key: 'k', value: 'v1' });
    expect(w).toMatchObject({ ok: true, result: { ok: true } });
    const r = await c.read(f2, { op: 'kv.get', key: 'k' });
    expect(r).toMatchObject({ ok: true, result: { ok: true, value: 'v1' } });
    const cas = await c.submit(leader, { op: 'kv.cas', key: 'k', from: 'nope', to: 'v2' });
    expect(cas).toMatchObject({
      ok: true,
      result: { ok: false, code: 'casMismatch', current: 'v1' },
    });
    // Every node applied the same state.
    await c.tick(3);
    const snaps = c.ids.map((id) => Buffer.from(c.node(id).sm.snapshot()).toString('hex'));
    expect(new Set(snaps).size).toBe(1);
    // Group commit: proposals that arrive while a batch is being synced share the next batch.
    const before = c.node(leader).stats.diskBatches;
    const outs: Outcome[] = [];
    for (let i = 0; i < 20; i++)
      c.node(leader).submit({ op: 'kv.put', key: `g${i}`, value: 'x' }, (o) => outs.push(o));
    await c.tick(3);
    expect(outs.filter((o) => o.ok).length).toBe(20);
    expect(c.node(leader).stats.diskBatches - before).toBeLessThan(10);
  });

  it('leadership() says what status() says of the leader, its term and the role', async () => {
    const c = new Cluster(['a', 'b', 'c']);
    const leader = await c.elect();
    for (const id of c.ids) {
      const st = c.node(id).status();
      expect(c.node(id).leadership()).toEqual({ lead: st.lead, term: st.term, state: st.state });
      expect(c.node(id).leadership().lead).toBe(leader);
    }
  });

  it('restarts from its disk alone and replays to the same state', async () => {
    const c = new Cluster(['a', 'b', 'c']);
    const leader = await c.elect();
    for (let i = 0; i < 5; i++)
      await c.submit(leader, { op: 'kv.put', key: `k${i}`, value: `${i}` });
    const victim = c.ids.find((x) => x !== leader)!;
    await c.tick(2);
    const before = c.node(victim).sm.snapshot();
    c.crash(victim);
    const again = c.start(victim);
    // Before anything is delivered, the replay of its own committed log rebuilt the state.
    await c.settle();
    expect(again.sm.snapshot()).toEqual(before);
    await c.submit(leader, { op: 'kv.put', key: 'after', value: 'x' });
    await c.tick(2);
    expect(again.sm.query({ op: 'kv.get', key: 'after' })).toMatchObject({ ok: true, value: 'x' });
  });

  it('snapshots and compacts; a node that was down catches up by snapshot and restarts from it', async () => {
    const c = new Cluster(['a', 'b', 'c'], { snapshotEntries: 10, keepEntries: 2 });
    const leader = await c.elect();
    const victim = c.ids.find((x) => x !== leader)!;
    c.crash(victim);
    for (let i = 0; i < 30; i++)
      await c.submit(leader, { op: 'kv.put', key: `k${i % 4}`, value: `${i}` });
    expect(c.node(leader).stats.snapshotsTaken).toBeGreaterThan(0);
    expect(c.node(leader).storage.firstIndex()).toBeGreaterThan(10);
    const back = c.start(victim);
    await c.tick(5);
    expect(back.stats.snapshotsRestored).toBe(1);
    expect(back.sm.snapshot()).toEqual(c.node(leader).sm.snapshot());
    // A restart from the installed snapshot's disk records gives the same state again.
    await c.tick(2);
    c.crash(victim);
    const third = c.start(victim);
    await c.settle();
    expect(third.sm.query({ op: 'kv.get', key: 'k1' })).toEqual(
      c.node(leader).sm.query({ op: 'kv.get', key: 'k1' }),
    );
  });

  it('membership: a joiner with an empty disk is added as a learner, catches up, is promoted', async () => {
    const c = new Cluster(['a', 'b', 'c']);
    const leader = await c.elect();
    await c.submit(leader, { op: 'kv.put', key: 'before', value: '1' });
    const d = c.addEmpty('d');
    const follower = c.ids.find((x) => x !== leader && x !== 'd')!;
    // Proposed on a follower: forwarded to the leader, answered once applied here.
    expect(await c.change(follower, 'addLearner', 'd')).toMatchObject({ ok: true });
    await c.tick(5);
    expect(d.sm.query({ op: 'kv.get', key: 'before' })).toMatchObject({ ok: true, value: '1' });
    expect(d.status().config.learners).toContain('d');
    expect(await c.change(leader, 'addVoter', 'd')).toMatchObject({ ok: true });
    await c.tick(3);
    expect(c.node(leader).status().config.voters).toContain('d');
    // Two changes at once: the second is refused outright, not left hanging.
    const outs: Outcome[] = [];
    c.node(leader).changeMembership({ type: 'removeNode', nodeId: 'd' }, (o) => outs.push(o));
    c.node(leader).changeMembership({ type: 'removeNode', nodeId: 'c' }, (o) => outs.push(o));
    expect(outs).toMatchObject([{ ok: false, code: 'PROPOSAL_DROPPED', indeterminate: false }]);
    await c.tick(3);
    expect(outs[1]).toMatchObject({ ok: true });
  });

  it("with the daemon's clock a learner hears its leader every third heartbeat round, voters every round (D48)", async () => {
    const timing = daemonRaftTiming({});
    const c = new Cluster(['a', 'b', 'c'], raftNodeTiming(timing, FENCE_AFTER_MS_DEFAULT));
    const leader = await c.elect();
    const d = c.addEmpty('d');
    expect(await c.change(leader, 'addLearner', 'd')).toMatchObject({ ok: true });
    await c.tick(timing.electionTicks);
    const voter = c.ids.find((x) => x !== leader && x !== 'd')!;
    let learnerMax = 0;
    let voterMax = 0;
    for (let i = 0; i < 20 * timing.heartbeatTicks; i++) {
      await c.tick();
      learnerMax = Math.max(learnerMax, d.contact().leaderAgeTicks);
      voterMax = Math.max(voterMax, c.node(voter).contact().leaderAgeTicks);
    }
    // Read after each tick's messages arrived: the age peaks one tick short of the next round.
    expect(voterMax).toBe(timing.heartbeatTicks - 1);
    expect(learnerMax).toBe(LEARNER_HEARTBEAT_EVERY * timing.heartbeatTicks - 1);
    // What the learner's fencing needs (node/placement/duty.ts): well inside fence-after.
    expect(learnerMax * timing.tickMs * FENCE_AFTER_HEARTBEATS_MIN).toBeLessThanOrEqual(
      FENCE_AFTER_MS_DEFAULT,
    );
  });

  it('a write forwarded to a leader that died is proposed again to the next leader, and applied once', async () => {
    const c = new Cluster(['a', 'b', 'c'], { requestTimeoutTicks: 200 });
    const leader = await c.elect();
    const follower = c.ids.find((x) => x !== leader)!;
    c.crash(leader);
    let out: Outcome | undefined;
    c.node(follower).submit({ op: 'kv.cas', key: 'k', from: null, to: 'once' }, (o) => (out = o));
    await c.settle();
    expect(out).toBeUndefined(); // forwarded into the void
    for (let i = 0; i < 100 && out === undefined; i++) await c.tick();
    expect(out).toMatchObject({ ok: true, result: { ok: true } });
    expect(c.node(follower).stats.reproposals).toBeGreaterThan(0);
    // The dead leader comes back with its copy (if it appended one): still applied once.
    c.start(leader);
    await c.tick(20);
    for (const id of c.ids) {
      expect(c.node(id).sm.query({ op: 'kv.get', key: 'k' })).toMatchObject({
        ok: true,
        value: 'once',
      });
    }
  });

  it('refusals: invalid commands, no leader, and a timeout whose outcome is unknown', async () => {
    const c = new Cluster(['a', 'b', 'c'], { requestTimeoutTicks: 5 });
    const outs: Outcome[] = [];
    c.node('a').submit({ op: 'kv.put', key: '', value: 'x' } as Command, (o) => outs.push(o));
    c.node('a').submit({ op: 'kv.put', key: 'k', value: 'x' }, (o) => outs.push(o));
    c.node('a').read({ op: 'kv.get', key: 'k' }, (o) => outs.push(o));
    expect(outs).toMatchObject([
      { ok: false, code: 'INVALID', indeterminate: false },
      { ok: false, code: 'NO_LEADER', indeterminate: false },
      { ok: false, code: 'NO_LEADER', indeterminate: false },
    ]);
    const leader = await c.elect();
    const follower = c.ids.find((x) => x !== leader)!;
    // The leader dies; the follower forwards into the void and times out: indeterminate.
    c.crash(leader);
    let out: Outcome | undefined;
    c.node(follower).submit({ op: 'kv.put', key: 'k', value: 'y' }, (o) => (out = o));
    await c.tick(6);
    expect(out).toMatchObject({ ok: false, code: 'TIMEOUT', indeterminate: true });
  });

  it('a failing disk stops the node; its waiting requests end as STOPPED', async () => {
    const c = new Cluster(['a']);
    await c.elect();
    let fatal: Error | undefined;
    const broken: Disk = {
      write: (_ops: readonly DiskOp[], done) => queueMicrotask(() => done(new Error('EIO'))),
    };
    c.crash('a');
    const n = new RaftNode({
      id: 'a',
      storage: DurableStorage.recover(c.disks.get('a')!.records()),
      disk: broken,
      transport: { send: () => {} },
      random: seededRandom(1),
      onFatal: (e) => (fatal = e),
    });
    n.campaign();
    await flush();
    expect(fatal?.message).toBe('EIO');
    expect(n.isStopped).toBe(true);
    const outs: Outcome[] = [];
    n.submit({ op: 'kv.put', key: 'k', value: 'v' }, (o) => outs.push(o));
    expect(outs).toMatchObject([{ ok: false, code: 'STOPPED' }]);
  });

  it('asserts one Ready in flight: a disk that reports a write done twice is a broken invariant', async () => {
    const c = new Cluster(['a']);
    await c.elect();
    c.crash('a');
    const inner = c.disks.get('a')!;
    const thrown: unknown[] = [];
    const twice: Disk = {
      write: (ops, done) =>
        inner.write(ops, (err) => {
          done(err);
          try {
            done(err);
          } catch (e) {
            thrown.push(e);
          }
        }),
    };
    const n = new RaftNode({
      id: 'a',
      storage: DurableStorage.recover(inner.records()),
      disk: twice,
      transport: { send: () => {} },
      random: seededRandom(1),
    });
    n.campaign();
    await flush();
    expect(thrown.length).toBeGreaterThan(0);
    expect(isRaftError(thrown[0], 'INVARIANT')).toBe(true);
    expect((thrown[0] as Error).message).toMatch(
      /raft invariant violated: the disk reported a write (when none was|other than the one) in flight/,
    );
  });
});

/** A MemoryDisk whose completions can be held back (a slow fsync), recording each batch's sync. */
class HeldDisk implements Disk {
  hold = false;
  readonly held: (() => void)[] = [];
  readonly syncs: boolean[] = [];
  private readonly inner: MemoryDisk;
  constructor(inner: MemoryDisk) {
    this.inner = inner;
  }
  write(ops: readonly DiskOp[], done: (err?: Error) => void, opts?: WriteOptions): void {
    this.syncs.push(opts?.sync !== false);
    this.inner.write(ops, this.hold ? () => this.held.push(() => done()) : done);
  }
  release(): void {
    this.hold = false;
    for (const f of this.held.splice(0)) f();
  }
}

describe('the leader replicates while it writes (D34)', () => {
  it("followers store a new entry while the leader's own write is still in flight; the client is answered only after it", async () => {
    const c = new Cluster(['a', 'b', 'c']);
    const disks = new Map<NodeId, HeldDisk>();
    for (const id of c.ids) {
      c.crash(id);
      const d = new HeldDisk(c.disks.get(id)!);
      disks.set(id, d);
      c.start(id, d);
    }
    const leader = await c.elect();
    await c.submit(leader, { op: 'kv.put', key: 'warm', value: 'up' });
    const followers = c.ids.filter((x) => x !== leader);
    const before = c.node(followers[0]!).status().lastIndex;
    disks.get(leader)!.hold = true;
    let out: Outcome | undefined;
    c.node(leader).submit({ op: 'kv.put', key: 'k', value: 'v' }, (o) => {
      out = o;
    });
    await c.settle();
    for (const f of followers) expect(c.node(f).status().lastIndex).toBe(before + 1);
    expect(disks.get(leader)!.held.length).toBe(1);
    expect(out).toBeUndefined();
    disks.get(leader)!.release();
    for (let i = 0; i < 20 && out === undefined; i++) await c.tick();
    expect(out).toMatchObject({ ok: true });
    // A Ready that only moves the commit index is written without an fsync.
    expect(disks.get(followers[0]!)!.syncs).toContain(false);
  });

  it("mayReplicateBeforePersist: not with a new term or vote, nor when the commit index covers the Ready's own entries", () => {
    const hs = { term: 3, vote: 'a', commit: 10 };
    const e = (index: number) => ({
      index,
      term: 3,
      type: 'normal' as const,
      data: new Uint8Array(),
    });
    const rd = (o: object) => ({
      readStates: [],
      entries: [],
      committedEntries: [],
      messages: [],
      mustSync: false,
      ...o,
    });
    expect(mayReplicateBeforePersist(rd({}), hs)).toBe(true);
    expect(
      mayReplicateBeforePersist(rd({ entries: [e(11)], hardState: { ...hs, commit: 10 } }), hs),
    ).toBe(true);
    // A single voter commits its own new entry at once: a learner must not hear it before the disk.
    expect(
      mayReplicateBeforePersist(rd({ entries: [e(11)], hardState: { ...hs, commit: 11 } }), hs),
    ).toBe(false);
    expect(mayReplicateBeforePersist(rd({ hardState: { ...hs, term: 4 } }), hs)).toBe(false);
    expect(mayReplicateBeforePersist(rd({ hardState: { ...hs, vote: 'b' } }), hs)).toBe(false);
  });
});

// An in-process Raft group for the demo and the benchmark: RawNodes over MemoryStorage, one FIFO of
// messages delivered instantly (except to or from an isolated node), and the Ready loop that plays
// the caller's contract for every node: persist, send, apply, advance. The application is a
// StateMachine the caller provides. Deterministic like the core: no clock and no timers; time
// passes only when the caller calls tickAll(). Scenario tests use test/network.ts instead, which
// records every delivered message and can cut links, drop and rewrite messages.

import { assert } from './assert.ts';
import type { Config } from './raft.ts';
import { seededRandom } from './rand.ts';
import { RawNode } from './rawnode.ts';
import { MemoryStorage } from './storage.ts';
import type { ConfState, Entry, Message, NodeId, ReadState } from './types.ts';

/** The application that committed entries are applied to; one instance per node. */
export interface StateMachine {
  /** Applies one committed 'normal' entry with a payload (the leaders' empty no-ops are skipped). */
  apply(entry: Entry): void;
  /** An image of the state as applied so far, stored in a snapshot. */
  snapshot(): Uint8Array;
  /** Replaces the state by a snapshot's image (a follower that fell behind the compacted log). */
  restore(data: Uint8Array): void;
}

export interface ClusterNode<S extends StateMachine> {
  readonly id: NodeId;
  readonly rn: RawNode;
  readonly storage: MemoryStorage;
  readonly sm: S;
  confState: ConfState;
  /** Index of the last entry applied (no-ops and conf changes included). */
  applied: number;
  /** Reads that are linearizable now: their ReadState came back and its index is applied here. */
  readonly reads: ReadState[];
  /** ReadStates received whose index is not applied here yet. */
  readonly pendingReads: ReadState[];
}

/** When a node snapshots its state machine and drops the log before it, as a real node would. */
export interface CompactionPolicy {
  /** Compact once the stable log holds this many entries beyond keepEntries. */
  readonly everyEntries: number;
  /** Entries kept below the applied index, so that a briefly lagging follower needs no snapshot. */
  readonly keepEntries: number;
}

export interface ClusterOptions<S extends StateMachine> {
  /** Node IDs; all are voters of the initial configuration. */
  readonly ids: readonly NodeId[];
  readonly newStateMachine: (id: NodeId) => S;
  /** Seeds each node's election timeouts (seed * 1000 + position). */
  readonly seed?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  /** Adjusts each node's config (limits, pre-vote, check-quorum...). */
  readonly configure?: (c: Config) => Config;
  readonly compaction?: CompactionPolicy;
  /** Sees every message as it is delivered (or dropped because of isolation). */
  readonly trace?: (m: Message, delivered: boolean) => void;
}

/** queuedMessagesMax: more messages queued in one round than this is a runaway, not a workload. */
export const QUEUED_MESSAGES_MAX = 1 << 20;
/** stabilizeRoundsMax: rounds stabilize() runs before it concludes that the group never quiets. */
export const STABILIZE_ROUNDS_MAX = 10_000;

export class Cluster<S extends StateMachine> {
  /** In the order of options.ids; every round handles them in this order. */
  readonly nodes: readonly ClusterNode<S>[];
  private readonly byId = new Map<NodeId, ClusterNode<S>>();
  private queue: Message[] = [];
  private readonly isolated = new Set<NodeId>();
  private readonly compaction: CompactionPolicy | undefined;
  private readonly trace: ((m: Message, delivered: boolean) => void) | undefined;
  /** Rounds run so far: one Ready per node that had one, then one delivery of the queue. */
  rounds = 0;

  constructor(opts: ClusterOptions<S>) {
    const seed = opts.seed ?? 1;
    const confState: ConfState = { voters: [...opts.ids], learners: [] };
    if (opts.compaction !== undefined) {
      // everyEntries >= 1 keeps each new snapshot strictly after the previous one.
      const { everyEntries, keepEntries } = opts.compaction;
      if (!(Number.isSafeInteger(everyEntries) && everyEntries >= 1)) {
        throw new RangeError('compaction.everyEntries must be an integer >= 1');
      }
      if (!(Number.isSafeInteger(keepEntries) && keepEntries >= 0)) {
        throw new RangeError('compaction.keepEntries must be an integer >= 0');
      }
    }
    this.compaction = opts.compaction;
    this.trace = opts.trace;
    this.nodes = opts.ids.map((id, i) => {
      const storage = new MemoryStorage(confState);
      let config: Config = {
        id,
        electionTicks: opts.electionTicks ?? 10,
        heartbeatTicks: opts.heartbeatTicks ?? 1,
        storage,
        random: seededRandom(seed * 1000 + i),
      };
      if (opts.configure !== undefined) config = opts.configure(config);
      const node: ClusterNode<S> = {
        id,
        rn: new RawNode(config),
        storage,
        sm: opts.newStateMachine(id),
        confState,
        applied: 0,
        reads: [],
        pendingReads: [],
      };
      this.byId.set(id, node);
      return node;
    });
  }

  node(id: NodeId): ClusterNode<S> {
    const n = this.byId.get(id);
    if (n === undefined) throw new Error(`no node ${id} in the cluster`);
    return n;
  }

  /** Drops every message to or from `id` until it rejoins. */
  isolate(id: NodeId): void {
    this.isolated.add(this.node(id).id);
  }

  rejoin(id: NodeId): void {
    this.isolated.delete(id);
  }

  isIsolated(id: NodeId): boolean {
    return this.isolated.has(id);
  }

  /** The leader of the highest term among nodes that believe they lead (a stale one may linger). */
  leader(): ClusterNode<S> | undefined {
    let best: ClusterNode<S> | undefined;
    for (const n of this.nodes) {
      if (n.rn.raft.state !== 'leader') continue;
      if (best === undefined || n.rn.raft.term > best.rn.raft.term) best = n;
    }
    return best;
  }

  /** Runs one Ready cycle of `n`, if it has one, in the order of the caller's contract. */
  handleReady(n: ClusterNode<S>): boolean {
    if (!n.rn.hasReady()) return false;
    const rd = n.rn.ready();
    // 1. Persist: snapshot, entries, hard state (MemoryStorage: nothing to fsync).
    if (rd.snapshot !== undefined) n.storage.applySnapshot(rd.snapshot);
    n.storage.append(rd.entries);
    if (rd.hardState !== undefined) n.storage.setHardState(rd.hardState);
    // 2. Send: queued now, delivered at the end of the round.
    for (const m of rd.messages) this.queue.push(m);
    assert(this.queue.length <= QUEUED_MESSAGES_MAX, `more than ${QUEUED_MESSAGES_MAX} queued`);
    // 3. Apply: the snapshot, then committed entries in order; then answer reads.
    if (rd.snapshot !== undefined) {
      n.sm.restore(rd.snapshot.data);
      n.confState = rd.snapshot.metadata.confState;
      n.applied = rd.snapshot.metadata.index;
    }
    for (const e of rd.committedEntries) {
      assert(e.index === n.applied + 1, `${n.id} applies ${e.index} after ${n.applied}`);
      if (e.type === 'confChange') {
        n.confState = n.rn.applyConfChangeEntry(e).confState;
        n.storage.setConfState(n.confState);
      } else if (e.data.byteLength > 0) {
        n.sm.apply(e);
      }
      n.applied = e.index;
    }
    for (const rs of rd.readStates) n.pendingReads.push(rs);
    while (n.pendingReads.length > 0 && n.pendingReads[0]!.index <= n.applied) {
      n.reads.push(n.pendingReads.shift()!);
    }
    // 4. Advance.
    n.rn.advance();
    if (this.compaction !== undefined) this.maybeCompact(n, this.compaction);
    return true;
  }

  private maybeCompact(n: ClusterNode<S>, policy: CompactionPolicy): void {
    const compactTo = n.applied - policy.keepEntries;
    if (compactTo - (n.storage.firstIndex() - 1) < policy.everyEntries) return;
    // The snapshot is of the state machine as applied; the log is kept from compactTo + 1 on.
    n.storage.createSnapshot(n.applied, n.confState, n.sm.snapshot());
    n.storage.compact(compactTo);
  }

  /**
   * One round: every node handles one Ready (if it has one), then every queued message is
   * delivered. Returns whether anything happened.
   */
  round(): boolean {
    let busy = false;
    for (const n of this.nodes) if (this.handleReady(n)) busy = true;
    const queue = this.queue;
    this.queue = [];
    for (const m of queue) {
      const to = this.byId.get(m.to);
      const deliver = to !== undefined && !this.isolated.has(m.from) && !this.isolated.has(m.to);
      this.trace?.(m, deliver);
      if (deliver) to.rn.step(m);
    }
    this.rounds++;
    return busy || queue.length > 0;
  }

  /** Runs rounds until no node has anything to do and no message is in flight. */
  stabilize(): void {
    for (let i = 0; i < STABILIZE_ROUNDS_MAX; i++) if (!this.round()) return;
    throw new Error(`the group did not quiet down within ${STABILIZE_ROUNDS_MAX} rounds`);
  }

  /** One tick of every node's logical clock (heartbeats, election timeouts). */
  tickAll(): void {
    for (const n of this.nodes) n.rn.tick();
  }
}

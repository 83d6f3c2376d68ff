// RaftNode: the node's consensus loop, with every effect behind an interface. It owns the core
// (RawNode), the durable storage and the state machine, and plays the caller's contract of
// consensus/README.md: persist a Ready (one atomic disk batch), then send its messages, apply its
// committed entries, serve reads, and advance. Time comes in as tick() calls, messages as
// receive() calls, and disk completions as callbacks, so the daemon (setInterval, libp2p, level)
// and the simulator (virtual time, simulated network and disk) run this same code.
//
// Client requests: submit() proposes a command and answers after the entry is applied on this
// node (with the state machine's result); read() answers a linearizable read through ReadIndex
// (or a stale local read on request). A request the core refuses outright (no leader, too many
// uncommitted entries) fails at once and definitely; one that was proposed and not seen applied
// within requestTimeoutTicks fails as TIMEOUT, whose outcome is unknown (it may still commit).

import { assert } from '../../consensus/assert.ts';
import {
  type ConfChange,
  type Config,
  type ConfState,
  type Entry,
  type HardState,
  isRaftError,
  type Message,
  type NodeId,
  type RandomSource,
  RawNode,
  type Ready,
  type StateType,
  type Status,
} from '../../consensus/index.ts';
import {
  type Command,
  commandProblem,
  decodeEnvelope,
  encodeEnvelope,
  type Query,
  queryProblem,
  type Result,
  StateMachine,
} from '../state/machine.ts';
import type { Disk } from './disk.ts';
import type { DurableStorage } from './storage.ts';

/** Peers whose last message contact() remembers at most. */
export const HEARD_PEERS_MAX = 4096;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

export interface Transport {
  /** Sends a message to its `to`, best effort (Raft tolerates loss, duplication and reordering). */
  send(m: Message): void;
}

export type NodeErrorCode =
  /** No leader is known: an election is in progress or this node is cut off. Retry. */
  | 'NO_LEADER'
  /** The leader refused the proposal (uncommitted limit, transfer in progress). Retry. */
  | 'PROPOSAL_DROPPED'
  /** Not seen applied in time: the outcome is unknown. */
  | 'TIMEOUT'
  /** The node stopped before the request finished: the outcome is unknown. */
  | 'STOPPED'
  /** The command or query is malformed or out of bounds. */
  | 'INVALID';

export type Outcome =
  | { readonly ok: true; readonly result: Result; readonly index: number }
  | {
      readonly ok: false;
      readonly code: NodeErrorCode;
      readonly message: string;
      /** True when the request may still take effect (a write that timed out or was cut short). */
      readonly indeterminate: boolean;
    };

export interface RaftNodeOptions {
  readonly id: NodeId;
  /** Recovered from the node's disk (DurableStorage.recover); empty for a new node. */
  readonly storage: DurableStorage;
  readonly disk: Disk;
  readonly transport: Transport;
  /** Elections and request IDs. Seeded in the simulator, from crypto in the daemon. */
  readonly random: RandomSource;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  /** A proposed write or a read not answered within this many ticks fails as TIMEOUT. */
  readonly requestTimeoutTicks?: number;
  /** Take a snapshot of the state machine after this many applied entries. */
  readonly snapshotEntries?: number;
  /** Entries kept behind a snapshot, so that slightly slow followers need no snapshot. */
  readonly keepEntries?: number;
  /** Further options of the core (pre-vote, check-quorum, flow control). */
  readonly raft?: Partial<Omit<Config, 'id' | 'storage' | 'random' | 'applied'>>;
  /** Called for every applied entry, with its command's result (observers: simulator, metrics). */
  readonly onApply?: (entry: Entry, result: Result | undefined) => void;
  /** The disk failed: the node has stopped. */
  readonly onFatal?: (err: Error) => void;
}

export const NODE_DEFAULTS = {
  electionTicks: 10,
  heartbeatTicks: 1,
  requestTimeoutTicks: 50,
  snapshotEntries: 10_000,
  keepEntries: 1_000,
  /** Requests waiting for an answer on one node; more are refused (PROPOSAL_DROPPED). */
  maxPendingRequests: 10_000,
} as const;

interface Pending {
  readonly cb: (o: Outcome) => void;
  readonly deadline: number;
  readonly write: boolean;
  /** A submitted command's entry payload, proposed again when the leader changes. */
  readonly data?: Uint8Array;
}

interface PendingRead extends Pending {
  readonly query: Query;
  /** Read index once the leader confirmed it; the read runs when applied reaches it. */
  index?: number;
}

export interface NodeStats {
  readyBatches: number;
  diskBatches: number;
  applied: number;
  proposals: number;
  reads: number;
  timeouts: number;
  snapshotsTaken: number;
  snapshotsRestored: number;
  /** Unanswered writes proposed again after a leader change. */
  reproposals: number;
}

export class RaftNode {
  readonly id: NodeId;
  readonly rn: RawNode;
  readonly sm = new StateMachine();
  readonly storage: DurableStorage;
  readonly stats: NodeStats = {
    readyBatches: 0,
    diskBatches: 0,
    applied: 0,
    proposals: 0,
    reads: 0,
    timeouts: 0,
    snapshotsTaken: 0,
    snapshotsRestored: 0,
    reproposals: 0,
  };
  private readonly opts: RaftNodeOptions;
  private readonly requestTimeoutTicks: number;
  private readonly snapshotEntries: number;
  private readonly keepEntries: number;
  private confState: ConfState;
  private ticks = 0;
  private seq = 0;
  private readonly idPrefix: string;
  private readonly writes = new Map<string, Pending>();
  private readonly reads = new Map<string, PendingRead>();
  /** The Ready whose batch the disk is writing: at most one at a time (group commit). */
  private inFlight: Ready | undefined;
  /** The leader last seen in a Ready's soft state ('' for none). */
  private knownLeader = '';
  private stopped = false;
  /** The tick of the last message from each peer (contact()). */
  private readonly heard = new Map<NodeId, number>();
  /** The tick of the last message from the leader this node followed then (contact()). */
  private leaderHeardTick: number | undefined;

  constructor(opts: RaftNodeOptions) {
    this.opts = opts;
    this.id = opts.id;
    this.storage = opts.storage;
    this.requestTimeoutTicks = opts.requestTimeoutTicks ?? NODE_DEFAULTS.requestTimeoutTicks;
    this.snapshotEntries = opts.snapshotEntries ?? NODE_DEFAULTS.snapshotEntries;
    this.keepEntries = opts.keepEntries ?? NODE_DEFAULTS.keepEntries;
    const snap = this.storage.snapshot();
    if (snap.metadata.index > 0) this.restoreSnapshotImage(snap.data, snap.metadata.index);
    this.confState = this.storage.initialState().confState;
    this.idPrefix = `${opts.id}/${opts.random.intn(0x1_0000_0000).toString(16)}`;
    this.rn = new RawNode({
      ...opts.raft,
      id: opts.id,
      storage: this.storage,
      random: opts.random,
      electionTicks: opts.electionTicks ?? NODE_DEFAULTS.electionTicks,
      heartbeatTicks: opts.heartbeatTicks ?? NODE_DEFAULTS.heartbeatTicks,
      applied: snap.metadata.index,
    });
    // Replay the committed log after the snapshot now, so a restarted node serves its state at once.
    this.pump();
  }

  // ---------------------------------------------------------------------------------------------
  // Inputs.

  tick(): void {
    if (this.stopped) return;
    this.ticks++;
    this.rn.tick();
    this.expire();
    this.pump();
  }

  /**
   * The leader this node knows ("" if none), its term and this node's role: what the daemon's
   * 300 ms loop asks several times a round, without the copy of the whole status().
   */
  leadership(): { readonly lead: NodeId; readonly term: number; readonly state: StateType } {
    const r = this.rn.raft;
    return { lead: r.lead, term: r.term, state: r.state };
  }

  /**
   * Ticks since a message from each peer, and since the last message from a leader (0 on the
   * leader itself; Infinity if none was ever heard). An election in progress does not reset the
   * second: a node that knows no leader for a moment has still heard one that long ago (counting
   * from the election instead made every node fence, and stop every VM, whenever a leader died:
   * found by the simulator). The leader's lifecycle marks silent nodes down from the first; a node
   * fences itself from the second (docs/scheduling.md).
   */
  contact(): {
    readonly ticks: number;
    readonly heard: ReadonlyMap<NodeId, number>;
    leaderAgeTicks: number;
  } {
    const raft = this.rn.raft;
    let leaderAgeTicks = Number.POSITIVE_INFINITY;
    if (raft.state === 'leader') leaderAgeTicks = 0;
    else if (this.leaderHeardTick !== undefined) leaderAgeTicks = this.ticks - this.leaderHeardTick;
    return { ticks: this.ticks, heard: this.heard, leaderAgeTicks };
  }

  receive(m: Message): void {
    if (this.stopped) return;
    if (m.from !== this.id) {
      // Only members hold the cluster secret, so the senders are few; a flood of forged IDs
      // from a member would only reset what the leader's lifecycle knows.
      if (this.heard.size >= HEARD_PEERS_MAX && !this.heard.has(m.from)) this.heard.clear();
      this.heard.set(m.from, this.ticks);
    }
    // Bad messages are dropped and counted by the core (status().stats.dropped); a RaftError
    // here would be a refused forwarded proposal, also counted by the core. A broken invariant
    // (RaftError INVARIANT) is a bug, not bad input: it must not be swallowed.
    try {
      this.rn.step(m);
    } catch (e) {
      if (!isRaftError(e) || e.code === 'INVARIANT') throw e;
    }
    if (m.from !== this.id && this.rn.raft.lead === m.from) this.leaderHeardTick = this.ticks;
    this.pump();
  }

  reportUnreachable(id: NodeId): void {
    if (this.stopped) return;
    this.rn.reportUnreachable(id);
    this.pump();
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    if (this.stopped) return;
    this.rn.reportSnapshot(id, ok);
    this.pump();
  }

  /**
   * Hands a request to the core; a refusal (no leader, limits) answers cb at once, definitely.
   * Returns whether the core took it.
   */
  private offer(cb: (o: Outcome) => void, hand: () => void): boolean {
    try {
      hand();
      return true;
    } catch (e) {
      if (!isRaftError(e)) throw e;
      cb(refused(e.code === 'NO_LEADER' ? 'NO_LEADER' : 'PROPOSAL_DROPPED', e.message));
      return false;
    }
  }

  /** Proposes a command; cb runs once with its result after this node applied it, or an error. */
  submit(command: Command, cb: (o: Outcome) => void): void {
    if (this.refuse(cb, commandProblem(command))) return;
    const requestId = this.nextRequestId();
    this.stats.proposals++;
    const data = encodeEnvelope({ requestId, command });
    if (!this.offer(cb, () => this.rn.propose(data))) return;
    this.writes.set(requestId, {
      cb,
      deadline: this.ticks + this.requestTimeoutTicks,
      write: true,
      data,
    });
    this.pump();
  }

  /** A linearizable read (ReadIndex), or a local read of possibly stale state with `stale`. */
  read(query: Query, cb: (o: Outcome) => void, opts: { stale?: boolean } = {}): void {
    if (this.refuse(cb, queryProblem(query))) return;
    this.stats.reads++;
    if (opts.stale === true) {
      cb({ ok: true, result: this.sm.query(query), index: this.sm.applied });
      return;
    }
    const ctx = this.nextRequestId();
    if (!this.offer(cb, () => this.rn.readIndex(ctx))) return;
    this.reads.set(ctx, {
      cb,
      deadline: this.ticks + this.requestTimeoutTicks,
      write: false,
      query,
    });
    this.pump();
  }

  /**
   * Proposes a membership change (one at a time, consensus/README.md); cb runs once this node
   * applied it. The request ID travels in the change's context.
   */
  changeMembership(
    cc: { type: ConfChange['type']; nodeId: NodeId },
    cb: (o: Outcome) => void,
  ): void {
    if (this.refuse(cb, undefined)) return;
    const requestId = this.nextRequestId();
    const context = textEncoder.encode(requestId);
    if (!this.offer(cb, () => this.rn.proposeConfChange({ ...cc, context }))) return;
    this.writes.set(requestId, {
      cb,
      deadline: this.ticks + this.requestTimeoutTicks,
      write: true,
    });
    this.pump();
  }

  campaign(): void {
    if (this.stopped) return;
    this.rn.campaign();
    this.pump();
  }

  transferLeader(to: NodeId): void {
    if (this.stopped) return;
    this.rn.transferLeader(to);
    this.pump();
  }

  /** Stops the node: nothing runs any more; unanswered requests fail as STOPPED. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    const all = [...this.writes.values(), ...this.reads.values()];
    this.writes.clear();
    this.reads.clear();
    for (const p of all)
      p.cb({ ok: false, code: 'STOPPED', message: 'the node stopped', indeterminate: p.write });
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  status(): Status & { applied: number; pending: number } {
    return {
      ...this.rn.status(),
      applied: this.sm.applied,
      pending: this.writes.size + this.reads.size,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // The caller's contract.

  private pump(): void {
    while (this.inFlight === undefined && !this.stopped && this.rn.hasReady()) {
      const rd = this.rn.ready();
      this.stats.readyBatches++;
      const ops = this.storage.stage(rd);
      if (ops.length === 0) {
        this.afterPersist(rd, false);
        continue;
      }
      // D34: the leader replicates while it writes (Raft thesis 10.2.1, as etcd does).
      const sentEarly = mayReplicateBeforePersist(rd, this.storage.hardState);
      if (sentEarly) for (const m of rd.messages) if (isReplication(m)) this.opts.transport.send(m);
      this.inFlight = rd;
      this.stats.diskBatches++;
      const done = (err?: Error): void => {
        if (this.stopped) return;
        // One Ready in flight: the disk reports the batch it was given, once.
        assert(this.inFlight !== undefined, 'the disk reported a write when none was in flight');
        assert(this.inFlight === rd, 'the disk reported a write other than the one in flight');
        this.inFlight = undefined;
        if (err !== undefined) return this.fatal(err);
        this.afterPersist(rd, sentEarly);
        this.pump();
      };
      // A Ready that promises nothing new (no entries, snapshot, term or vote: only the commit
      // index moved) need not wait for an fsync; the next synced batch makes it durable (D34).
      this.opts.disk.write(ops, done, { sync: rd.mustSync });
    }
  }

  /** `sentEarly`: the Ready's replication messages went out before its write. */
  private afterPersist(rd: Ready, sentEarly: boolean): void {
    assert(this.inFlight === undefined, 'a Ready is handled while another is being written');
    this.storage.commit(rd);
    if (rd.softState !== undefined && rd.softState.lead !== this.knownLeader) {
      this.knownLeader = rd.softState.lead;
      if (this.knownLeader !== '') this.reproposePending();
    }
    for (const m of rd.messages) if (!sentEarly || !isReplication(m)) this.opts.transport.send(m);
    if (rd.snapshot !== undefined) {
      this.restoreSnapshotImage(rd.snapshot.data, rd.snapshot.metadata.index);
      this.confState = rd.snapshot.metadata.confState;
      this.stats.snapshotsRestored++;
    }
    for (const e of rd.committedEntries) this.applyEntry(e);
    const committed = this.storage.hardState.commit;
    assert(
      this.sm.applied <= committed,
      `applied ${this.sm.applied} is beyond committed ${committed}`,
    );
    for (const rs of rd.readStates) {
      const p = this.reads.get(rs.context);
      if (p !== undefined) p.index = rs.index;
    }
    this.serveReads();
    this.rn.advance();
    this.maybeSnapshot();
  }

  private applyEntry(e: Entry): void {
    if (e.index <= this.sm.applied) return; // covered by a snapshot restored in this Ready
    assert(
      e.index === this.sm.applied + 1,
      `entry ${e.index} is applied after ${this.sm.applied}: committed entries have a gap`,
    );
    this.stats.applied++;
    if (e.type === 'confChange') {
      const { change, confState } = this.rn.applyConfChangeEntry(e);
      this.confState = confState;
      this.storage.setConfState(this.confState);
      this.sm.skip(e.index);
      this.opts.onApply?.(e, undefined);
      const requestId = change?.context !== undefined ? textDecoder.decode(change.context) : '';
      const p = this.writes.get(requestId);
      if (p !== undefined) {
        this.writes.delete(requestId);
        p.cb({ ok: true, result: { ok: true, revision: e.index }, index: e.index });
      }
      return;
    }
    if (e.data.byteLength === 0) {
      this.sm.skip(e.index); // a new leader's no-op
      this.opts.onApply?.(e, undefined);
      return;
    }
    const env = decodeEnvelope(e.data);
    if (typeof env === 'string') {
      // Cannot happen for entries proposed through submit(); applied as a no-op everywhere alike.
      const result: Result = { ok: false, code: 'invalid', message: env };
      this.sm.skip(e.index);
      this.opts.onApply?.(e, result);
      return;
    }
    const result = this.sm.applyRequest(e.index, env.requestId, env.command);
    this.opts.onApply?.(e, result);
    const p = this.writes.get(env.requestId);
    if (p !== undefined) {
      this.writes.delete(env.requestId);
      p.cb({ ok: true, result, index: e.index });
    }
  }

  private serveReads(): void {
    for (const [ctx, p] of this.reads) {
      if (p.index === undefined || p.index > this.sm.applied) continue;
      this.reads.delete(ctx);
      p.cb({ ok: true, result: this.sm.query(p.query), index: p.index });
    }
  }

  /**
   * A new leader: proposals forwarded to the old one may be lost with it. Propose every unanswered
   * write again, with its request ID: client sessions apply a request at most once (D10), so a copy
   * that the old leader did commit is a no-op, and the client is answered as soon as the new leader
   * commits instead of after a timeout.
   */
  private reproposePending(): void {
    for (const p of this.writes.values()) {
      if (p.data === undefined) continue;
      try {
        this.rn.propose(p.data);
        this.stats.reproposals++;
      } catch (e) {
        if (!isRaftError(e)) throw e;
        return; // no leader after all, or the leader's limits: the deadline still applies
      }
    }
  }

  private maybeSnapshot(): void {
    const snapIndex = this.storage.snapshot().metadata.index;
    const applied = this.sm.applied;
    if (applied - snapIndex < this.snapshotEntries) return;
    const compactTo = Math.max(0, applied - this.keepEntries);
    const ops = this.storage.snapshotAndCompact(
      applied,
      this.confState,
      this.sm.snapshot(),
      compactTo,
    );
    this.stats.snapshotsTaken++;
    this.stats.diskBatches++;
    this.opts.disk.write(ops, (err) => {
      if (err !== undefined && !this.stopped) this.fatal(err);
    });
  }

  private restoreSnapshotImage(data: Uint8Array, index: number): void {
    assert(
      index > this.sm.applied,
      `snapshot at ${index} would move the state machine back from ${this.sm.applied}`,
    );
    this.sm.restore(data);
    assert(
      this.sm.applied === index,
      `snapshot at ${index} holds a state machine applied to ${this.sm.applied}`,
    );
  }

  private expire(): void {
    for (const table of [this.writes, this.reads] as Map<string, Pending>[]) {
      for (const [id, p] of table) {
        if (p.deadline > this.ticks) continue;
        table.delete(id);
        this.stats.timeouts++;
        p.cb({
          ok: false,
          code: 'TIMEOUT',
          message: p.write
            ? 'not applied in time: the write may or may not take effect'
            : 'read not answered in time',
          indeterminate: p.write,
        });
      }
    }
  }

  private refuse(cb: (o: Outcome) => void, problem: string | undefined): boolean {
    if (this.stopped) {
      cb({ ok: false, code: 'STOPPED', message: 'the node stopped', indeterminate: false });
      return true;
    }
    if (problem !== undefined) {
      cb({ ok: false, code: 'INVALID', message: problem, indeterminate: false });
      return true;
    }
    if (this.writes.size + this.reads.size >= NODE_DEFAULTS.maxPendingRequests) {
      cb(
        refused(
          'PROPOSAL_DROPPED',
          `more than maxPendingRequests (${NODE_DEFAULTS.maxPendingRequests}) requests waiting`,
        ),
      );
      return true;
    }
    return false;
  }

  private nextRequestId(): string {
    return `${this.idPrefix}.${(this.seq++).toString(36)}`;
  }

  private fatal(err: Error): void {
    this.stop();
    this.opts.onFatal?.(err);
  }
}

function refused(code: NodeErrorCode, message: string): Outcome {
  return { ok: false, code, message, indeterminate: false };
}

/**
 * D34 (Raft thesis 10.2.1): a leader's appends, heartbeats and snapshots may go out while its own
 * write of the same Ready is in flight. They promise nothing about this node's disk: a follower
 * acknowledges what it wrote itself, and the commit index they carry counts this node's new
 * entries only in a later Ready, which is not taken before this write completes (one Ready in
 * flight). Two exceptions keep them waiting:
 * - the Ready's commit index covers entries of the same Ready: a single voter commits its own
 *   entries at once, and a learner told so could apply an entry the leader then loses in a crash
 *   (found by the simulator's durability check, `not-durable`);
 * - the Ready holds a new term or vote: a message of a term the disk does not hold yet could be
 *   repeated after a crash by a second leader of the same term.
 */
export function mayReplicateBeforePersist(rd: Ready, persisted: HardState): boolean {
  if (rd.hardState === undefined) return true;
  if (rd.hardState.term !== persisted.term || rd.hardState.vote !== persisted.vote) return false;
  return rd.entries.length === 0 || rd.hardState.commit < rd.entries[0]!.index;
}

/** The messages a leader sends to replicate (see mayReplicateBeforePersist). */
export function isReplication(m: Message): boolean {
  return (
    PLANTED_EARLY_SEND.all ||
    m.type === 'MsgApp' ||
    m.type === 'MsgHeartbeat' ||
    m.type === 'MsgSnap'
  );
}

/**
 * The simulator's teeth only (sim/teeth.test.ts): when `all` is true, every message of a Ready
 * goes out before its write, a follower's acknowledgements included, which breaks durability.
 * The product never sets it.
 */
export const PLANTED_EARLY_SEND = { all: false };

// A simulated cluster: N real RaftNodes (node/raft/node.ts, with the real DurableStorage, the real
// StateMachine and the real message codec) over simulated time, network and disks. Everything
// runs on one event queue in virtual time; nothing reads a clock or Math.random, so one seed
// replays a run exactly.
//
// The cluster owns the processes: it starts every initial voter from a bootstrapped log on its
// simulated disk (the other nodes start later, empty, when launched, and join; a node that stops by
// itself, exit(), stays down through heals), ticks each node on its own (drifting) clock, delivers messages, crashes a node (its
// unsynced disk batches are lost, its callbacks never reach the next incarnation), restarts it
// from what its disk synced, pauses and resumes it (SIGSTOP: no ticks, no deliveries, no disk
// completions; messages and completions wait for it), and cuts and heals links. It also checks,
// as the run goes, what must hold across nodes: every node applies the same entry at each index,
// a node's commit index never goes back within an incarnation, one leader per term. A violation
// is recorded, never thrown.
//
// Requests (submit, read) go straight to a node at the current virtual time; callbacks run inside
// virtual time, the returned promises settle when the caller's await resumes (after runFor).
// Clients with network latency and a history are in workload.ts; whole runs in run.ts.

import {
  bootstrap,
  type Config,
  type Entry,
  isRaftError,
  MemoryStorage,
  type Message,
  type StateType,
} from '../consensus/index.ts';
import { decodeMessage } from '../node/raft/codec.ts';
import { type NodeStats, type Outcome, RaftNode } from '../node/raft/node.ts';
import { DurableStorage } from '../node/raft/storage.ts';
import { LEARNER_HEARTBEAT_EVERY } from '../node/raft_timing.ts';
import { type Command, decodeEnvelope, type Query, type Result } from '../node/state/machine.ts';
import { DISK_LATENCY_DEFAULT, type DiskLatency, SimDisk } from './disk.ts';
import { type Arrival, NETWORK_DEFAULTS, type NetworkOptions, SimNetwork } from './network.ts';
import { EventQueue, msToUs, usToMs } from './queue.ts';
import { SimRandom } from './random.ts';
import { type Groups, Topology } from './topology.ts';

export interface ClusterOptions {
  readonly seed: number;
  /** Number of nodes, named n1..nN. */
  readonly nodes?: number;
  /** Virtual length of a tick at drift 1. */
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  readonly requestTimeoutTicks?: number;
  /** A node snapshots its state machine every this many applied entries... */
  readonly snapshotEntries?: number;
  /** ...and keeps this many entries behind the snapshot. */
  readonly keepEntries?: number;
  /** Initial clock drift: each node's tick interval is scaled by a factor in [1 - d, 1 + d]. */
  readonly driftMax?: number;
  readonly network?: Partial<NetworkOptions>;
  readonly disk?: DiskLatency;
  /** Messages and requests queued for a paused node (its socket buffers); more are dropped. */
  readonly pausedInboxMax?: number;
  /** Report a partitioned link to the sender (reportUnreachable) at most this often. */
  readonly unreachableReportMs?: number;
  /**
   * Further options of the consensus core. Pre-vote and check-quorum are on by default, and
   * learners get every LEARNER_HEARTBEAT_EVERY-th heartbeat round, as the daemon runs them (D48).
   */
  readonly raft?: Partial<Omit<Config, 'id' | 'storage' | 'random' | 'applied'>>;
  /**
   * The voters the group is bootstrapped with (default: every node). The others start with an
   * empty disk and no process: they are started later (launch) and join through a seed, as
   * `pcr node start --seed` does (docs/membership.md).
   */
  readonly bootstrap?: readonly string[];
}

export const CLUSTER_DEFAULTS = {
  nodes: 5,
  tickMs: 10,
  electionTicks: 10,
  heartbeatTicks: 1,
  requestTimeoutTicks: 50,
  snapshotEntries: 100,
  keepEntries: 20,
  driftMax: 0.1,
  pausedInboxMax: 10_000,
  unreachableReportMs: 100,
} as const;

/** Drift factors outside this range are refused (a clock 10x off is not drift). */
export const DRIFT_MIN = 0.1;
export const DRIFT_MAX = 10;

export type ProcessState = 'up' | 'paused' | 'down';

export type ViolationKind =
  /** Two nodes applied different entries at the same index. */
  | 'state-machine-safety'
  /** A node's commit index went back within one incarnation. */
  | 'commit-regression'
  /** Two nodes were leaders of the same term. */
  | 'election-safety'
  /** An entry was applied while fewer than a quorum of voters held it on disk (D34). */
  | 'not-durable'
  /** A node threw (an invariant assertion of the core, or any other error): the process died. */
  | 'node-failure'
  /** A restarted node could not read its disk back. */
  | 'recovery'
  /** One client request took effect twice (committed twice and not deduplicated). */
  | 'applied-twice'
  // Membership runs (sim/membership.ts, docs/sim.md):
  /** A node's configuration held more than maxVoters voters. */
  | 'max-voters'
  /** A configuration change changed more than one member, or two were pending at once. */
  | 'config-change'
  /** A promotion left the new voter set without a caught-up quorum. */
  | 'promotion-quorum'
  /** A removed node was in a configuration again (it rejoined under its identity). */
  | 'removed-rejoined'
  /** A removed node was still running at the end of the run: it never learned of its removal. */
  | 'removed-not-stopped'
  // Placement runs (sim/placement.ts, docs/sim.md), observed by the simulated VMMs:
  /** Two VMM processes of one instance ran at once on two nodes (no planned move allowed it). */
  | 'two-copies'
  /** What ran on a node needed more than the capacity it registered. */
  | 'over-capacity'
  /** A committed vm.place put an instance on a node that was down, draining or ineligible. */
  | 'placed-on-unready'
  // Rollout runs (sim/rollout-run.ts, docs/sim.md):
  /** After a committed deploy.step, more instances of the target were in flight than maxParallel. */
  | 'rollout-parallel'
  /** At the end, members held different deployments, or a broken version was left running. */
  | 'rollout-state';

export interface SafetyViolation {
  readonly kind: ViolationKind;
  readonly timeMs: number;
  readonly node: string;
  readonly message: string;
}

/** What the cluster did to its processes and links, in order: the nemesis part of a history. */
export interface FaultRecord {
  readonly timeMs: number;
  readonly f: string;
  readonly value: unknown;
}

export interface NodeInfo {
  readonly id: string;
  readonly process: ProcessState;
  /** 1 for the first process, +1 per restart. */
  readonly incarnation: number;
  /** Tick interval factor (1 = nominal). */
  readonly drift: number;
  /** The rest is undefined while the node is down. */
  readonly role: StateType | undefined;
  readonly term: number | undefined;
  readonly leader: string | undefined;
  readonly commit: number | undefined;
  readonly applied: number | undefined;
  readonly firstIndex: number | undefined;
  readonly lastIndex: number | undefined;
  readonly snapshotIndex: number | undefined;
  /** Counters of the current incarnation. */
  readonly stats: NodeStats | undefined;
  readonly diskPendingBatches: number;
}

interface Deferred {
  readonly run: () => void;
  /** Called instead of run when the process dies before it resumes. */
  readonly drop?: () => void;
  readonly message: boolean;
}

interface Slot {
  readonly id: string;
  readonly index: number;
  readonly disk: SimDisk;
  process: ProcessState;
  incarnation: number;
  node: RaftNode | undefined;
  drift: number;
  /** The drift the node started with (resetDrift goes back to it). */
  readonly nominalDrift: number;
  /** The phase of each process's first tick. */
  readonly tickRandom: SimRandom;
  /** Invalidates scheduled ticks (bumped on pause, crash, restart). */
  tickGen: number;
  /** Commit index last seen in this incarnation. */
  lastCommit: number;
  /** The voters as of this incarnation's last applied entry (or its start). */
  voters: readonly string[];
  /** The voters before the last configuration change this incarnation applied, if any. */
  previousVoters: readonly string[] | undefined;
  /** Work waiting for a paused process, in arrival order. */
  deferred: Deferred[];
  deferredMessages: number;
  /** Totals over all incarnations. */
  totals: { snapshotsRestored: number; snapshotsTaken: number; applied: number; timeouts: number };
  /**
   * Down and not to be restarted by a heal or a generic restart: never started yet (a node that
   * joins later), or exited by itself (a removed node). launch() or restart(id) starts it.
   */
  retired: boolean;
}

interface AppliedEntry {
  readonly term: number;
  readonly data: Uint8Array;
  readonly node: string;
}

/** Stored violations at most (all are counted). */
const VIOLATIONS_KEPT_MAX = 100;

export class SimCluster {
  readonly seed: number;
  readonly ids: readonly string[];
  readonly queue = new EventQueue();
  readonly topology: Topology;
  readonly network: SimNetwork;
  readonly violations: SafetyViolation[] = [];
  violationCount = 0;
  /**
   * Committed entries carrying a request already committed at another index (a duplicated
   * forwarded proposal, docs/sim.md, Findings). The state machine's client sessions make the
   * second copy a no-op; one that took effect again is an 'applied-twice' violation.
   */
  duplicateCommands = 0;
  /** Every fault applied (partition, heal, crash, restart, pause, resume, drift), in order. */
  readonly faults: FaultRecord[] = [];
  private readonly slots: Slot[];
  private readonly byId = new Map<string, Slot>();
  private readonly opts: Required<Omit<ClusterOptions, 'network' | 'disk' | 'raft' | 'bootstrap'>>;
  private readonly raftOptions: ClusterOptions['raft'];
  private readonly appliedByIndex = new Map<number, AppliedEntry>();
  private readonly leaderOfTerm = new Map<number, string>();
  /** Request ID -> the index it was first committed at. */
  private readonly indexOfRequest = new Map<string, number>();
  private readonly lastUnreachableUs: Float64Array;
  /** Listeners of applied entries and of faults (tests, observers, the history). */
  private readonly applyListeners: ((node: string, e: Entry) => void)[] = [];
  private readonly faultListeners: ((f: FaultRecord) => void)[] = [];
  private readonly stepListeners: ((id: string, node: RaftNode) => void)[] = [];

  constructor(options: ClusterOptions) {
    this.seed = options.seed;
    this.opts = {
      seed: options.seed,
      nodes: options.nodes ?? CLUSTER_DEFAULTS.nodes,
      tickMs: options.tickMs ?? CLUSTER_DEFAULTS.tickMs,
      electionTicks: options.electionTicks ?? CLUSTER_DEFAULTS.electionTicks,
      heartbeatTicks: options.heartbeatTicks ?? CLUSTER_DEFAULTS.heartbeatTicks,
      requestTimeoutTicks: options.requestTimeoutTicks ?? CLUSTER_DEFAULTS.requestTimeoutTicks,
      snapshotEntries: options.snapshotEntries ?? CLUSTER_DEFAULTS.snapshotEntries,
      keepEntries: options.keepEntries ?? CLUSTER_DEFAULTS.keepEntries,
      driftMax: options.driftMax ?? CLUSTER_DEFAULTS.driftMax,
      pausedInboxMax: options.pausedInboxMax ?? CLUSTER_DEFAULTS.pausedInboxMax,
      unreachableReportMs: options.unreachableReportMs ?? CLUSTER_DEFAULTS.unreachableReportMs,
    };
    if (!(Number.isSafeInteger(this.opts.nodes) && this.opts.nodes >= 1)) {
      throw new RangeError(`nodes must be a positive integer, got ${this.opts.nodes}`);
    }
    if (!(this.opts.tickMs > 0)) throw new RangeError('tickMs must be > 0');
    if (!(this.opts.driftMax >= 0 && this.opts.driftMax < 1)) {
      throw new RangeError('driftMax must be in [0, 1)');
    }
    this.raftOptions = options.raft;
    const n = this.opts.nodes;
    this.ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);
    this.topology = new Topology(this.ids);
    this.lastUnreachableUs = new Float64Array(n * n).fill(Number.NEGATIVE_INFINITY);
    this.network = new SimNetwork(
      this.queue,
      SimRandom.fork(this.seed, 'network'),
      this.topology,
      { ...NETWORK_DEFAULTS, ...options.network },
      {
        arrive: (a) => this.arrive(a),
        dropped: (a, reason) => this.dropped(a, reason),
      },
    );
    const driftRandom = SimRandom.fork(this.seed, 'drift');
    const diskLatency = options.disk ?? DISK_LATENCY_DEFAULT;
    const voters = options.bootstrap ?? this.ids;
    for (const id of voters) {
      if (!this.ids.includes(id)) throw new RangeError(`bootstrap: no node ${JSON.stringify(id)}`);
    }
    if (voters.length === 0) throw new RangeError('bootstrap needs at least one voter');
    this.slots = this.ids.map((id, index) => {
      const drift = 1 + driftRandom.between(-this.opts.driftMax, this.opts.driftMax);
      // Disk completions go to the slot's process (held while it is paused).
      let self: Slot | undefined;
      const disk = new SimDisk(
        this.queue,
        SimRandom.fork(this.seed, `disk/${id}`),
        diskLatency,
        (callback) => this.onProcess(self!, callback, false),
      );
      const slot: Slot = {
        id,
        index,
        disk,
        process: 'down',
        incarnation: 0,
        node: undefined,
        drift,
        nominalDrift: drift,
        tickRandom: SimRandom.fork(this.seed, `ticks/${id}`),
        tickGen: 0,
        lastCommit: 0,
        voters: [],
        previousVoters: undefined,
        deferred: [],
        deferredMessages: 0,
        totals: { snapshotsRestored: 0, snapshotsTaken: 0, applied: 0, timeouts: 0 },
        retired: false,
      };
      self = slot;
      // A new group: the membership is written into the log (bootstrap) and that log is on every
      // initial voter's disk, synced, before any process starts. A node that joins later starts
      // from an empty disk, like a fresh data dir.
      if (voters.includes(id)) {
        const mem = new MemoryStorage();
        bootstrap(mem, voters);
        slot.disk.preload(DurableStorage.initialOps(mem));
      } else slot.retired = true;
      this.byId.set(id, slot);
      return slot;
    });
    for (const slot of this.slots) if (!slot.retired) this.start(slot);
  }

  /** Virtual length of a tick at drift 1, and the election timeout in ticks. */
  get tickMs(): number {
    return this.opts.tickMs;
  }

  get electionTicks(): number {
    return this.opts.electionTicks;
  }

  // ---------------------------------------------------------------------------------------------
  // Time.

  /** Virtual time, in milliseconds. */
  get nowMs(): number {
    return usToMs(this.queue.now);
  }

  /** Runs every event due in the next `ms` of virtual time; the clock ends exactly there. */
  runFor(ms: number): void {
    const until = this.queue.now + msToUs(ms);
    while (this.queue.step(until)) {
      // run
    }
    this.queue.now = Math.max(this.queue.now, until);
  }

  /** Runs until pred() holds (checked after every event) or maxMs passed; whether it holds. */
  runUntil(pred: () => boolean, maxMs: number): boolean {
    if (pred()) return true;
    const until = this.queue.now + msToUs(maxMs);
    while (this.queue.step(until)) {
      if (pred()) return true;
    }
    this.queue.now = Math.max(this.queue.now, until);
    return pred();
  }

  /** Runs `action` at a virtual time from now (an event of the run, like any other). */
  schedule(delayMs: number, action: () => void): void {
    this.queue.after(msToUs(delayMs), action);
  }

  // ---------------------------------------------------------------------------------------------
  // Faults.

  /** Cuts every link except within groups (a node in no group is isolated). */
  partition(groups: Groups): void {
    this.topology.partition(groups);
    this.record(
      'partition',
      groups.map((g) => [...g]),
    );
  }

  heal(): void {
    this.topology.heal();
    this.record('heal', null);
  }

  /** Kills the process: unsynced disk batches are lost, queued work is dropped. */
  crash(id: string): void {
    const slot = this.slot(id);
    if (slot.process === 'down') return;
    this.kill(slot);
    this.record('crash', id);
    this.tellPeersGone(slot);
  }

  /** Starts a new process from what the node's disk synced (also a retired node: see launch). */
  restart(id: string): void {
    const slot = this.slot(id);
    if (slot.process !== 'down') return;
    slot.retired = false;
    this.record('restart', id);
    this.start(slot);
  }

  /** Starts a node that never ran (not bootstrapped: its disk is empty, it joins through a seed). */
  launch(id: string): void {
    const slot = this.slot(id);
    if (slot.process !== 'down' || slot.incarnation > 0) return;
    slot.retired = false;
    this.record('launch', id);
    this.start(slot);
  }

  /**
   * The process ends by itself (a removed node stops, docs/membership.md): like a crash to its
   * disk and requests, but a heal or a generic restart leaves it down.
   */
  exit(id: string, why: string): void {
    const slot = this.slot(id);
    if (slot.process === 'down') return;
    this.kill(slot);
    slot.retired = true;
    this.record('exit', { node: id, why });
    this.tellPeersGone(slot);
  }

  /**
   * A dead process's kernel closes its connections: each peer it can reach learns it after one
   * network latency, as the daemon's transport does from libp2p (reportUnreachable on the last
   * connection's close). Across a partition nothing arrives.
   */
  private tellPeersGone(gone: Slot): void {
    for (const peer of this.slots) {
      if (peer === gone || !this.topology.connected(gone.index, peer.index)) continue;
      const incarnation = peer.incarnation;
      this.queue.after(this.network.latencyUs(), () => {
        if (peer.incarnation !== incarnation || peer.process === 'down') return;
        this.onProcess(peer, () => peer.node!.reportUnreachable(gone.id), false);
      });
    }
  }

  /** 0 before the first start, +1 per start. */
  incarnationOf(id: string): number {
    return this.slot(id).incarnation;
  }

  /** Down and left down by heals and generic restarts (never started, or exited). */
  isRetired(id: string): boolean {
    return this.slot(id).retired;
  }

  /** SIGSTOP: no ticks, no deliveries, no disk completions until resume(). */
  pause(id: string): void {
    const slot = this.slot(id);
    if (slot.process !== 'up') return;
    slot.process = 'paused';
    slot.tickGen++;
    this.record('pause', id);
  }

  /** SIGCONT: runs what queued up while paused, in order, then ticks again. */
  resume(id: string): void {
    const slot = this.slot(id);
    if (slot.process !== 'paused') return;
    slot.process = 'up';
    this.record('resume', id);
    const incarnation = slot.incarnation;
    const work = slot.deferred;
    slot.deferred = [];
    slot.deferredMessages = 0;
    for (let i = 0; i < work.length; i++) {
      if (slot.process !== 'up' || slot.incarnation !== incarnation) {
        for (const w of work.slice(i)) w.drop?.();
        return;
      }
      work[i]!.run();
    }
    this.scheduleTick(slot, this.tickUs(slot));
  }

  /** Scales a node's tick interval (1 = nominal; 1.1 = a clock 10% slow). */
  setDrift(id: string, factor: number): void {
    if (!(factor >= DRIFT_MIN && factor <= DRIFT_MAX)) {
      throw new RangeError(`drift factor must be in [${DRIFT_MIN}, ${DRIFT_MAX}], got ${factor}`);
    }
    const slot = this.slot(id);
    slot.drift = factor;
    this.record('drift', { node: id, factor: round6(factor) });
  }

  /** Puts a node's clock back to the drift it started with. */
  resetDrift(id: string): void {
    const slot = this.slot(id);
    if (slot.drift === slot.nominalDrift) return;
    slot.drift = slot.nominalDrift;
    this.record('drift', { node: id, factor: round6(slot.drift) });
  }

  // ---------------------------------------------------------------------------------------------
  // Requests.

  /** Proposes a command on node `id`; the outcome comes once it is applied there, or an error. */
  submit(id: string, command: Command, cb?: (o: Outcome) => void): Promise<Outcome> {
    return this.request(id, true, (node, done) => node.submit(command, done), cb);
  }

  /** A linearizable read (ReadIndex) on node `id`, or a local one with { stale: true }. */
  read(
    id: string,
    query: Query,
    cb?: (o: Outcome) => void,
    opts: { stale?: boolean } = {},
  ): Promise<Outcome> {
    return this.request(id, false, (node, done) => node.read(query, done, opts), cb);
  }

  private request(
    id: string,
    write: boolean,
    issue: (node: RaftNode, done: (o: Outcome) => void) => void,
    cb: ((o: Outcome) => void) | undefined,
  ): Promise<Outcome> {
    let resolve!: (o: Outcome) => void;
    const promise = new Promise<Outcome>((r) => {
      resolve = r;
    });
    let answered = false;
    const done = (o: Outcome): void => {
      if (answered) return;
      answered = true;
      cb?.(o);
      resolve(o);
    };
    const slot = this.slot(id);
    if (slot.process === 'down') {
      done({ ok: false, code: 'STOPPED', message: `${id} is down`, indeterminate: false });
      return promise;
    }
    this.onProcess(
      slot,
      () => issue(slot.node!, done),
      false,
      () =>
        done({
          ok: false,
          code: 'STOPPED',
          message: `${id} crashed before it read the request`,
          indeterminate: write,
        }),
    );
    return promise;
  }

  // ---------------------------------------------------------------------------------------------
  // Inspection.

  node(id: string): NodeInfo {
    const slot = this.slot(id);
    const n = slot.node;
    const raft = n?.rn.raft;
    return {
      id,
      process: slot.process,
      incarnation: slot.incarnation,
      drift: slot.drift,
      role: raft?.state,
      term: raft?.term,
      leader: raft === undefined ? undefined : raft.lead === '' ? undefined : raft.lead,
      commit: raft?.raftLog.committed,
      applied: n?.sm.applied,
      firstIndex: raft?.raftLog.firstIndex(),
      lastIndex: raft?.raftLog.lastIndex(),
      snapshotIndex: n?.storage.snapshot().metadata.index,
      stats: n === undefined ? undefined : { ...n.stats },
      diskPendingBatches: slot.disk.pendingBatches,
    };
  }

  /** Whether `id`'s process is up, paused or down (cheaper than node()). */
  processOf(id: string): ProcessState {
    return this.slot(id).process;
  }

  nodes(): NodeInfo[] {
    return this.ids.map((id) => this.node(id));
  }

  /** The entries of node `id`'s log still held (after its snapshot), unstable ones included. */
  entries(id: string): Entry[] {
    const raft = this.slot(id).node?.rn.raft;
    return raft === undefined ? [] : raft.raftLog.allEntries();
  }

  /** The running RaftNode of `id` (undefined while down), for tests that need more. */
  raftNode(id: string): RaftNode | undefined {
    return this.slot(id).node;
  }

  /** The synced records of `id`'s disk: what a restart would read. */
  diskRecords(id: string): Map<string, Uint8Array> {
    return this.slot(id).disk.records();
  }

  disk(id: string): SimDisk {
    return this.slot(id).disk;
  }

  /** The leader: a running node in state leader, of the highest such term. */
  leader(): string | undefined {
    let best: string | undefined;
    let bestTerm = -1;
    for (const slot of this.slots) {
      const raft = slot.process === 'up' ? slot.node?.rn.raft : undefined;
      if (raft !== undefined && raft.state === 'leader' && raft.term > bestTerm) {
        best = slot.id;
        bestTerm = raft.term;
      }
    }
    return best;
  }

  /** Totals over every incarnation of each node. */
  totals(): {
    snapshotsRestored: number;
    snapshotsTaken: number;
    applied: number;
    timeouts: number;
  } {
    const t = { snapshotsRestored: 0, snapshotsTaken: 0, applied: 0, timeouts: 0 };
    for (const slot of this.slots) {
      const live = slot.node?.stats;
      t.snapshotsRestored += slot.totals.snapshotsRestored + (live?.snapshotsRestored ?? 0);
      t.snapshotsTaken += slot.totals.snapshotsTaken + (live?.snapshotsTaken ?? 0);
      t.applied += slot.totals.applied + (live?.applied ?? 0);
      t.timeouts += slot.totals.timeouts + (live?.timeouts ?? 0);
    }
    return t;
  }

  /** Calls `listener` for every entry any node applies. */
  onApply(listener: (node: string, e: Entry) => void): void {
    this.applyListeners.push(listener);
  }

  /** Calls `listener` for every fault as it is applied. */
  onFault(listener: (f: FaultRecord) => void): void {
    this.faultListeners.push(listener);
  }

  /** Calls `listener` after every step of a running node (and when a process starts). */
  onStep(listener: (id: string, node: RaftNode) => void): void {
    this.stepListeners.push(listener);
  }

  /**
   * Runs `work` in node `id`'s process: now if it is up, on resume if it is paused; otherwise (down,
   * or dead before it resumes) `drop` runs instead. Errors thrown by `work` kill the process.
   */
  inProcess(id: string, work: () => void, drop?: () => void): void {
    this.onProcess(this.slot(id), work, false, drop);
  }

  /** Adds an action of the run to the fault records (and so to the history): membership steps. */
  note(f: string, value: unknown): void {
    this.record(f, value);
  }

  /** Records a finding of an observer (membership checks); never throws. */
  reportViolation(kind: ViolationKind, node: string, message: string): void {
    this.violation(kind, this.slot(node), message);
  }

  // ---------------------------------------------------------------------------------------------
  // Processes.

  private slot(id: string): Slot {
    const s = this.byId.get(id);
    if (s === undefined)
      throw new Error(`no node ${JSON.stringify(id)} (nodes: ${this.ids.join(', ')})`);
    return s;
  }

  private start(slot: Slot): void {
    let storage: DurableStorage;
    try {
      storage = DurableStorage.recover(slot.disk.records());
    } catch (e) {
      this.violation('recovery', slot, `cannot recover from disk: ${(e as Error).message}`);
      return;
    }
    slot.incarnation++;
    const incarnation = slot.incarnation;
    slot.process = 'up';
    slot.lastCommit = storage.hardState.commit;
    let node: RaftNode;
    try {
      node = new RaftNode({
        id: slot.id,
        storage,
        disk: slot.disk,
        transport: { send: (m: Message) => this.network.send(slot.index, incarnation, m) },
        random: SimRandom.fork(this.seed, `raft/${slot.id}/${incarnation}`),
        electionTicks: this.opts.electionTicks,
        heartbeatTicks: this.opts.heartbeatTicks,
        requestTimeoutTicks: this.opts.requestTimeoutTicks,
        snapshotEntries: this.opts.snapshotEntries,
        keepEntries: this.opts.keepEntries,
        raft: {
          preVote: true,
          checkQuorum: true,
          learnerHeartbeatEvery: LEARNER_HEARTBEAT_EVERY,
          ...this.raftOptions,
        },
        onApply: (e, r) => this.applied(slot, e, r),
      });
    } catch (e) {
      slot.process = 'down';
      slot.disk.crash(); // what the dying process wrote and did not sync is lost
      this.violation('recovery', slot, `cannot start: ${(e as Error).message}`);
      return;
    }
    slot.node = node;
    slot.voters = [...node.rn.raft.trk.voters];
    slot.previousVoters = undefined;
    slot.tickGen++;
    for (const l of this.stepListeners) l(slot.id, node);
    // A random phase, so that the nodes' clocks do not tick in lockstep.
    this.scheduleTick(slot, 1 + slot.tickRandom.intn(this.tickUs(slot)));
  }

  private kill(slot: Slot): void {
    const node = slot.node;
    slot.process = 'down';
    slot.tickGen++;
    slot.node = undefined;
    slot.disk.crash();
    const work = slot.deferred;
    slot.deferred = [];
    slot.deferredMessages = 0;
    if (node !== undefined) {
      const s = node.stats;
      slot.totals.snapshotsRestored += s.snapshotsRestored;
      slot.totals.snapshotsTaken += s.snapshotsTaken;
      slot.totals.applied += s.applied;
      slot.totals.timeouts += s.timeouts;
      node.stop(); // requests it held fail as STOPPED (indeterminate for writes)
    }
    for (const w of work) w.drop?.();
  }

  private tickUs(slot: Slot): number {
    return Math.max(1, Math.round(msToUs(this.opts.tickMs) * slot.drift));
  }

  private scheduleTick(slot: Slot, delayUs: number): void {
    const gen = slot.tickGen;
    this.queue.after(delayUs, () => {
      if (slot.tickGen !== gen || slot.process !== 'up') return;
      const node = slot.node!;
      this.guard(slot, () => node.tick());
      if (slot.tickGen === gen && slot.process === 'up') this.scheduleTick(slot, this.tickUs(slot));
    });
  }

  /**
   * Runs `work` in the process of `slot` now if it is running, later (on resume) if it is paused;
   * drops it (calling `drop`) if the process is down or dies first.
   */
  private onProcess(slot: Slot, work: () => void, message: boolean, drop?: () => void): void {
    if (slot.process === 'up') {
      this.guard(slot, work);
      return;
    }
    if (slot.process === 'down') {
      drop?.();
      return;
    }
    if (message && slot.deferredMessages >= this.opts.pausedInboxMax) {
      this.network.stats.dropped.inboxFull++;
      drop?.();
      return;
    }
    if (message) slot.deferredMessages++;
    const incarnation = slot.incarnation;
    slot.deferred.push({
      run: () => {
        if (slot.incarnation === incarnation) this.guard(slot, work);
        else drop?.();
      },
      ...(drop === undefined ? {} : { drop }),
      message,
    });
  }

  /**
   * Runs work of a node's process; an exception kills the process and is a finding. Then checks
   * what must hold after any step of a node.
   */
  private guard(slot: Slot, work: () => void): void {
    const incarnation = slot.incarnation;
    try {
      work();
    } catch (e) {
      this.died(slot, incarnation, e);
      return;
    }
    this.checkStep(slot, incarnation);
  }

  /** A message for a running process: guard() without a closure (the hottest path). */
  private receiveNow(slot: Slot, m: Message, a: Arrival): void {
    const incarnation = slot.incarnation;
    try {
      slot.node!.receive(m);
    } catch (e) {
      this.died(slot, incarnation, e);
      return;
    } finally {
      // Delivered, whatever the receiver then did with it.
      if (a.isSnapshot) this.reportSnapshot(a, true);
    }
    this.checkStep(slot, incarnation);
  }

  /** A node threw: the process dies, and that is a finding. */
  private died(slot: Slot, incarnation: number, e: unknown): void {
    const err = e as Error;
    const what = isRaftError(e, 'INVARIANT') ? err.message : `${err.name}: ${err.message}`;
    this.violation('node-failure', slot, `the process died: ${what}`);
    if (slot.incarnation === incarnation && slot.process !== 'down') {
      this.kill(slot);
      this.record('crash', slot.id, 'failure');
    }
  }

  /** What must hold after any step of a node. */
  private checkStep(slot: Slot, incarnation: number): void {
    const raft = slot.node?.rn.raft;
    if (raft === undefined || slot.incarnation !== incarnation) return;
    const commit = raft.raftLog.committed;
    if (commit < slot.lastCommit) {
      this.violation(
        'commit-regression',
        slot,
        `commit index went back from ${slot.lastCommit} to ${commit}`,
      );
    }
    slot.lastCommit = commit;
    if (this.stepListeners.length > 0) {
      for (const l of this.stepListeners) l(slot.id, slot.node!);
    }
    if (raft.state === 'leader') {
      const other = this.leaderOfTerm.get(raft.term);
      if (other === undefined) this.leaderOfTerm.set(raft.term, slot.id);
      else if (other !== slot.id) {
        this.violation(
          'election-safety',
          slot,
          `${slot.id} and ${other} were both leaders of term ${raft.term}`,
        );
      }
    }
  }

  /**
   * The first time any node applies an entry, a quorum of voters must hold it on disk (synced),
   * whatever ran early (D34: the leader replicates before its own write completes). Voters as
   * the applying node knew them, or as before its last configuration change: changes go one
   * member at a time, and an entry may be committed by the old quorum just before it.
   */
  private checkDurable(slot: Slot, e: Entry): void {
    const quorumHolds = (voters: readonly string[]): boolean => {
      let held = 0;
      for (const id of voters) if (this.byId.get(id)?.disk.holdsEntry(e.index, e.term)) held++;
      return held > voters.length / 2;
    };
    // Replays during a process's start (the bootstrapped configuration) come before it knows its
    // voters; those entries were written as already synced.
    if (slot.voters.length === 0 || quorumHolds(slot.voters)) return;
    if (slot.previousVoters !== undefined && quorumHolds(slot.previousVoters)) return;
    this.violation(
      'not-durable',
      slot,
      `entry ${e.index} (term ${e.term}) was applied while a quorum of ${slot.voters.join(', ')} did not hold it on disk`,
    );
  }

  private applied(slot: Slot, e: Entry, result: Result | undefined): void {
    const seen = this.appliedByIndex.get(e.index);
    if (seen === undefined) this.checkDurable(slot, e);
    const voters = [...(slot.node?.rn.raft.trk.voters ?? [])];
    if (e.type === 'confChange') slot.previousVoters = slot.voters;
    slot.voters = voters;
    if (seen === undefined) {
      // A copy: the entry may be a view into a whole received message, which it would keep alive.
      this.appliedByIndex.set(e.index, { term: e.term, data: e.data.slice(), node: slot.id });
      if (e.type === 'normal' && e.data.byteLength > 0) {
        const env = decodeEnvelope(e.data);
        if (typeof env !== 'string') {
          const first = this.indexOfRequest.get(env.requestId);
          if (first === undefined) this.indexOfRequest.set(env.requestId, e.index);
          else if (first !== e.index) {
            this.duplicateCommands++;
            if (result?.ok !== false || result.code !== 'duplicate') {
              this.violation(
                'applied-twice',
                slot,
                `request ${env.requestId} took effect at ${first} and again at ${e.index}`,
              );
            }
          }
        }
      }
    } else if (seen.term !== e.term || !bytesEqual(seen.data, e.data)) {
      this.violation(
        'state-machine-safety',
        slot,
        `${slot.id} applied entry ${e.index} of term ${e.term} (${e.data.byteLength} bytes), ` +
          `${seen.node} applied entry ${e.index} of term ${seen.term} (${seen.data.byteLength} bytes)`,
      );
    }
    for (const l of this.applyListeners) l(slot.id, e);
  }

  // ---------------------------------------------------------------------------------------------
  // Messages.

  private arrive(a: Arrival): void {
    const slot = this.slots[a.to]!;
    if (slot.process === 'down') {
      this.network.stats.dropped.down++;
      if (a.isSnapshot) this.reportSnapshot(a, false);
      return;
    }
    const m = decodeMessage(a.bytes);
    if ('error' in m) {
      this.network.stats.dropped.undecodable++;
      return;
    }
    if (slot.process === 'up') {
      this.receiveNow(slot, m, a);
      return;
    }
    this.onProcess(
      slot,
      () => this.receiveNow(slot, m, a),
      true,
      a.isSnapshot ? () => this.reportSnapshot(a, false) : undefined,
    );
  }

  private dropped(a: Arrival, reason: 'loss' | 'partition'): void {
    if (a.isSnapshot) this.reportSnapshot(a, false);
    if (reason !== 'partition') return;
    // The sender's transport notices that it cannot reach the peer (rate-limited per link).
    const link = a.from * this.ids.length + a.to;
    const now = this.queue.now;
    if (now - this.lastUnreachableUs[link]! < msToUs(this.opts.unreachableReportMs)) return;
    this.lastUnreachableUs[link] = now;
    const sender = this.slots[a.from]!;
    const to = this.ids[a.to]!;
    if (sender.incarnation !== a.fromIncarnation) return;
    this.onProcess(sender, () => sender.node!.reportUnreachable(to), false);
  }

  /** Tells the sender's incarnation whether its snapshot got through. */
  private reportSnapshot(a: Arrival, ok: boolean): void {
    const sender = this.slots[a.from]!;
    if (sender.incarnation !== a.fromIncarnation || sender.process === 'down') return;
    const to = this.ids[a.to]!;
    this.onProcess(sender, () => sender.node!.reportSnapshot(to, ok), false);
  }

  // ---------------------------------------------------------------------------------------------
  // Findings and records.

  private violation(kind: ViolationKind, slot: Slot, message: string): void {
    this.violationCount++;
    if (this.violations.length < VIOLATIONS_KEPT_MAX) {
      this.violations.push({ kind, timeMs: this.nowMs, node: slot.id, message });
    }
  }

  private record(f: string, value: unknown, cause?: string): void {
    const r: FaultRecord = {
      timeMs: this.nowMs,
      f,
      value: cause === undefined ? value : { node: value, cause },
    };
    this.faults.push(r);
    for (const l of this.faultListeners) l(r);
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

// An in-test network of RawNodes with in-memory storage, for scenario, property and transcript
// tests. It plays the caller's contract exactly (persist, send, apply, advance) and keeps every
// node's applied entries so tests can compare state machines. Delivery is synchronous and
// deterministic; drops, cuts and isolation are explicit.

import { bootstrap } from '../../consensus/bootstrap.ts';
import type { Config } from '../../consensus/raft.ts';
import { seededRandom } from '../../consensus/rand.ts';
import { RawNode } from '../../consensus/rawnode.ts';
import { MemoryStorage } from '../../consensus/storage.ts';
import type { ConfState, Entry, Message, NodeId, ReadState, Ready } from '../../consensus/types.ts';

export interface TestNode {
  readonly id: NodeId;
  rn: RawNode;
  storage: MemoryStorage;
  /** Entries applied, in order (normal and conf change). */
  applied: Entry[];
  readStates: ReadState[];
  confState: ConfState;
}

export interface NetworkOptions {
  electionTicks?: number;
  heartbeatTicks?: number;
  seed?: number;
  /** Adjusts each node's config (pre-vote, check-quorum, limits...). */
  configure?: (c: Config) => Config;
  /**
   * Fills a node's storage before its RawNode is built, as if it had persisted this state before a
   * restart (a log of earlier terms, a hard state). Called for every node `add` creates.
   */
  prepareStorage?: (id: NodeId, storage: MemoryStorage) => void;
  /**
   * Start the group with its membership written into the log (bootstrap.ts) instead of a
   * ConfState in storage: nodes added later can then join by replaying the log. Voters only.
   */
  bootstrap?: boolean;
  /** Node IDs in the initial configuration; defaults to all of `ids`. */
  voters?: readonly NodeId[];
  learners?: readonly NodeId[];
}

export class Network {
  readonly nodes = new Map<NodeId, TestNode>();
  /** Messages dropped on the way, by "from->to" link. */
  private readonly cutLinks = new Set<string>();
  private readonly isolated = new Set<NodeId>();
  /** Extra filter: return false to drop a message. */
  filter: ((m: Message) => boolean) | undefined;
  /**
   * Changes a message in transit, after `filter` let it through; e.g. a MsgApp that loses the tail
   * of its entries, which is what a leader with a smaller message size bound would have sent.
   */
  rewrite: ((m: Message) => Message) | undefined;
  /** Sees each Ready as handleReady takes it, before it is persisted (transcripts print it). */
  onReady: ((id: NodeId, rd: Ready) => void) | undefined;
  readonly opts: Required<Pick<NetworkOptions, 'electionTicks' | 'heartbeatTicks' | 'seed'>> &
    NetworkOptions;
  /** Every message that was delivered, for assertions. */
  readonly delivered: Message[] = [];

  constructor(ids: readonly NodeId[], opts: NetworkOptions = {}) {
    this.opts = { electionTicks: 10, heartbeatTicks: 1, seed: 1, ...opts };
    const voters = opts.voters ?? ids;
    const learners = opts.learners ?? [];
    let seq = 0;
    for (const id of ids) {
      const cs: ConfState =
        voters.includes(id) || learners.includes(id)
          ? { voters, learners }
          : { voters: [], learners: [] };
      const member = voters.includes(id) || learners.includes(id);
      if (opts.bootstrap && member) {
        this.add(id, { voters: [], learners: [] }, this.opts.seed * 1000 + seq++, voters);
      } else {
        this.add(id, cs, this.opts.seed * 1000 + seq++);
      }
    }
  }

  /** Adds a node with a fresh storage holding `confState` (empty for a node that joins later). */
  add(
    id: NodeId,
    confState: ConfState = { voters: [], learners: [] },
    seed?: number,
    bootstrapVoters?: readonly NodeId[],
  ): TestNode {
    const storage = new MemoryStorage(bootstrapVoters === undefined ? confState : undefined);
    if (bootstrapVoters !== undefined) bootstrap(storage, bootstrapVoters);
    this.opts.prepareStorage?.(id, storage);
    const node: TestNode = {
      id,
      rn: this.makeRawNode(id, storage, 0, seed ?? this.opts.seed * 1000 + this.nodes.size),
      storage,
      applied: [],
      readStates: [],
      confState: storage.initialState().confState,
    };
    this.nodes.set(id, node);
    return node;
  }

  private makeRawNode(id: NodeId, storage: MemoryStorage, applied: number, seed: number): RawNode {
    let c: Config = {
      id,
      electionTicks: this.opts.electionTicks,
      heartbeatTicks: this.opts.heartbeatTicks,
      storage,
      random: seededRandom(seed),
      applied,
    };
    if (this.opts.configure) c = this.opts.configure(c);
    return new RawNode(c);
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  /** Simulates a crash and restart: volatile state is lost, storage (persisted state) is kept. */
  restart(id: NodeId, seed = 7): void {
    const n = this.node(id);
    // Drop anything handed out but not yet advanced; the storage holds what was persisted.
    const appliedIndex = n.applied.length > 0 ? n.applied[n.applied.length - 1]!.index : 0;
    const snapIndex = n.storage.snapshot().metadata.index;
    n.rn = this.makeRawNode(id, n.storage, Math.max(appliedIndex, snapIndex), seed);
  }

  cut(a: NodeId, b: NodeId): void {
    this.cutLinks.add(`${a}->${b}`);
    this.cutLinks.add(`${b}->${a}`);
  }

  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  /** Partitions into groups: links between different groups are cut. */
  partition(...groups: NodeId[][]): void {
    for (let i = 0; i < groups.length; i++) {
      for (let j = i + 1; j < groups.length; j++) {
        for (const a of groups[i]!) for (const b of groups[j]!) this.cut(a, b);
      }
    }
  }

  heal(): void {
    this.cutLinks.clear();
    this.isolated.clear();
  }

  canDeliver(m: Message): boolean {
    if (!this.nodes.has(m.to)) return false;
    if (this.isolated.has(m.from) || this.isolated.has(m.to)) return false;
    if (this.cutLinks.has(`${m.from}->${m.to}`)) return false;
    return this.filter === undefined || this.filter(m);
  }

  /**
   * Runs one Ready cycle on a node, playing the caller's contract, and returns its messages
   * (not delivered).
   */
  handleReady(id: NodeId): Message[] {
    const n = this.node(id);
    if (!n.rn.hasReady()) return [];
    const rd: Ready = n.rn.ready();
    this.onReady?.(id, rd);
    // 1. persist
    if (rd.snapshot !== undefined) n.storage.applySnapshot(rd.snapshot);
    n.storage.append(rd.entries);
    if (rd.hardState !== undefined) n.storage.setHardState(rd.hardState);
    // 3. apply (sending is left to the caller of handleReady)
    if (rd.snapshot !== undefined) {
      n.confState = rd.snapshot.metadata.confState;
      // The state machine is replaced by the snapshot's: keep entries up to it as a stand-in.
      n.applied = n.applied.filter((e) => e.index <= rd.snapshot!.metadata.index);
      n.applied.push(...snapshotEntries(rd.snapshot.data));
      n.applied = dedupeByIndex(n.applied);
    }
    for (const e of rd.committedEntries) {
      if (e.type === 'confChange') {
        n.confState = n.rn.applyConfChangeEntry(e).confState;
        n.storage.setConfState(n.confState);
      }
      n.applied.push(e);
    }
    n.readStates.push(...rd.readStates);
    n.rn.advance();
    return [...rd.messages];
  }

  /** Delivers messages, processing Readys, until no node has anything left to do. */
  deliver(msgs: Message[] = [], maxRounds = 10_000): void {
    let queue = msgs;
    for (let round = 0; round < maxRounds; round++) {
      for (const id of this.nodes.keys()) queue.push(...this.handleReady(id));
      if (queue.length === 0) return;
      const next: Message[] = [];
      for (const m of queue) {
        if (!this.canDeliver(m)) continue;
        const out = this.rewrite === undefined ? m : this.rewrite(m);
        this.delivered.push(out);
        this.node(out.to).rn.step(out);
      }
      queue = next;
    }
    throw new Error('network did not quiesce');
  }

  /** Alias of deliver() with nothing queued: run until quiet. */
  stabilize(): void {
    this.deliver([]);
  }

  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) this.node(id).rn.tick();
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const node of this.nodes.values()) node.rn.tick();
      this.stabilize();
    }
  }

  campaign(id: NodeId): void {
    this.node(id).rn.campaign();
    this.stabilize();
  }

  propose(id: NodeId, data: string): void {
    this.node(id).rn.propose(new TextEncoder().encode(data));
    this.stabilize();
  }

  leader(): NodeId | undefined {
    for (const n of this.nodes.values()) if (n.rn.raft.state === 'leader') return n.id;
    return undefined;
  }

  /** Payloads of the normal, non-empty entries a node applied, as strings. */
  appliedData(id: NodeId): string[] {
    return this.node(id)
      .applied.filter((e) => e.type === 'normal' && e.data.byteLength > 0)
      .map((e) => new TextDecoder().decode(e.data));
  }

  /** Makes a snapshot of `id` at its applied index and compacts its log up to there. */
  compact(id: NodeId, index?: number): void {
    const n = this.node(id);
    const at = index ?? n.rn.raft.raftLog.applied;
    const data = encodeSnapshotEntries(n.applied.filter((e) => e.index <= at));
    n.storage.createSnapshot(at, n.confState, data);
    n.storage.compact(at);
  }
}

// A snapshot's data, for these tests: the applied entries themselves, so the state machine after a
// snapshot restore can still be compared entry by entry.
export function encodeSnapshotEntries(ents: readonly Entry[]): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify(
      ents.map((e) => ({
        t: e.term,
        i: e.index,
        y: e.type,
        d: Buffer.from(e.data).toString('base64'),
      })),
    ),
  );
}

export function snapshotEntries(data: Uint8Array): Entry[] {
  if (data.byteLength === 0) return [];
  const raw = JSON.parse(new TextDecoder().decode(data)) as {
    t: number;
    i: number;
    y: Entry['type'];
    d: string;
  }[];
  return raw.map((r) => ({
    term: r.t,
    index: r.i,
    type: r.y,
    data: new Uint8Array(Buffer.from(r.d, 'base64')),
  }));
}

function dedupeByIndex(ents: Entry[]): Entry[] {
  const seen = new Map<number, Entry>();
  for (const e of ents) seen.set(e.index, e);
  return [...seen.values()].sort((a, b) => a.index - b.index);
}

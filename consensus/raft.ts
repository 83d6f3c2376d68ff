// The Raft state machine: one node's view of the protocol, stepped by messages and ticks.
// Follows etcd's raft.go closely (same roles, same message handling, same progress tracking), with
// these differences: one membership change at a time instead of joint consensus, node IDs are
// strings, and bad input from the network is validated, dropped and counted instead of panicking.
// The caller drives it through RawNode (rawnode.ts); nothing here does I/O or reads a clock.

import { assert, assertSafeIndex } from './assert.ts';
import { decodeConfChange, validateNodeId } from './confchange.ts';
import { RaftError } from './errors.ts';
import { RaftLog } from './log.ts';
import { isPlanted } from './planted.ts';
import type { Progress } from './progress.ts';
import { voteResult } from './quorum.ts';
import type { RandomSource } from './rand.ts';
import { ReadOnly, type ReadOnlyOption } from './read_only.ts';
import type { Storage } from './storage.ts';
import { ProgressTracker } from './tracker.ts';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  isEmptySnapshot,
  type Message,
  type MessageType,
  msg,
  NONE,
  type NodeId,
  payloadSizeBytes,
  type ReadState,
  type Snapshot,
  type SoftState,
  type StateType,
} from './types.ts';
import { DROP_REASONS, type DropReason, messageError } from './validate.ts';

/** Context of MsgVote sent after MsgTimeoutNow: lets the campaign through a live leader's lease. */
export const CAMPAIGN_TRANSFER = 'transfer';

export interface Config {
  /** This node's ID; must be non-empty. */
  readonly id: NodeId;
  /** T: a follower that hears nothing for a random [T, 2T) ticks campaigns. */
  readonly electionTicks: number;
  /** A leader sends heartbeats every heartbeatTicks; must be < electionTicks. */
  readonly heartbeatTicks: number;
  /**
   * A follower told that its leader is unreachable (`reportUnreachable`, e.g. its connection
   * closed) gives up its lease and campaigns soon instead of waiting out the election timeout:
   * the voters take turns by ID, this many ticks apart (the first at the next tick). It should
   * exceed an election's round trips. Default: electionTicks.
   */
  readonly leaderLostTicks?: number;
  readonly storage: Storage;
  /** The only source of randomness (election timeouts). Seed it for reproducible runs. */
  readonly random: RandomSource;
  /** The last index the application applied before a restart; 0 for a fresh node. */
  readonly applied?: number;
  /** maxSizePerMsgBytes: bound on the entry bytes of one MsgApp (at least one entry is sent). */
  readonly maxSizePerMsgBytes?: number;
  /** maxCommittedSizePerReadyBytes: bound on the committed entry bytes handed out in one Ready. */
  readonly maxCommittedSizePerReadyBytes?: number;
  /** maxUncommittedEntriesBytes: a leader refuses proposals beyond this many uncommitted bytes. */
  readonly maxUncommittedEntriesBytes?: number;
  /** inflightMessagesMax: MsgApps in flight to one follower in replicate state. */
  readonly maxInflightMessages?: number;
  /** inflightBytesMax: entry bytes in flight to one follower (0 = only the message count bounds). */
  readonly maxInflightBytes?: number;
  /** pendingReadsMax: ReadIndex requests a leader holds unanswered at once. */
  readonly maxPendingReads?: number;
  /**
   * A leader's periodic heartbeat round reaches learners only every this many rounds (the first
   * round of a term reaches everyone). Learners do not vote, so no quorum, lease or ReadIndex
   * waits for their answers; what still needs them is the application's own use of the leader's
   * word (a learner's fencing, the leader's down detection), which sets how far apart they may
   * be. ReadIndex rounds and appends are not thinned. Default 1: every round, as etcd.
   */
  readonly learnerHeartbeatEvery?: number;
  /** A leader steps down if a quorum was not heard from in an election timeout. Default on. */
  readonly checkQuorum?: boolean;
  /** Pre-vote (§9.6): a partitioned node cannot disrupt the cluster on rejoining. Default on. */
  readonly preVote?: boolean;
  /** 'safe' (ReadIndex with a heartbeat round, default) or 'leaseBased' (needs checkQuorum). */
  readonly readOnlyOption?: ReadOnlyOption;
  /** Followers refuse proposals (NOT_LEADER) instead of forwarding them. Default off. */
  readonly disableProposalForwarding?: boolean;
  /** A leader that applies its own removal or demotion steps down. Default on. */
  readonly stepDownOnRemoval?: boolean;
}

export const DEFAULTS = {
  maxSizePerMsgBytes: 1024 * 1024,
  maxCommittedSizePerReadyBytes: 64 * 1024 * 1024,
  maxUncommittedEntriesBytes: 64 * 1024 * 1024,
  maxInflightMessages: 256,
  maxInflightBytes: 0,
  maxPendingReads: 4096,
} as const;

/** learnerHeartbeatEvery above this is refused: a learner's leader would look gone for too long. */
export const LEARNER_HEARTBEAT_EVERY_MAX = 16;

/** What a node counts about itself: dropped input by reason, and protocol events. */
export interface RaftStats {
  readonly dropped: Record<DropReason, number>;
  elections: number;
  preElections: number;
  becameLeader: number;
  snapshotsSent: number;
  snapshotsRestored: number;
  proposalsDropped: number;
}

function newStats(): RaftStats {
  const dropped = {} as Record<DropReason, number>;
  for (const r of DROP_REASONS) dropped[r] = 0;
  return {
    dropped,
    elections: 0,
    preElections: 0,
    becameLeader: 0,
    snapshotsSent: 0,
    snapshotsRestored: 0,
    proposalsDropped: 0,
  };
}

type CampaignType = 'preElection' | 'election' | 'transfer';

function voteRespType(t: MessageType): MessageType {
  return t === 'MsgVote' ? 'MsgVoteResp' : 'MsgPreVoteResp';
}

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  state: StateType = 'follower';
  readonly raftLog: RaftLog;
  readonly trk: ProgressTracker;
  readStates: ReadState[] = [];
  msgs: Message[] = [];
  readonly stats: RaftStats = newStats();

  /** Target of a leadership transfer in progress, or NONE. */
  leadTransferee: NodeId = NONE;
  /** Index of the last conf change appended by this leader; none may be proposed until applied. */
  pendingConfIndex = 0;
  /** Payload bytes appended by this leader and not yet applied. */
  uncommittedSize = 0;
  readOnly: ReadOnly;
  /** ReadIndex requests held until this leader commits an entry of its term. */
  pendingReadIndexMessages: Message[] = [];

  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  readonly electionTimeout: number;
  readonly heartbeatTimeout: number;
  readonly leaderLostTimeout: number;
  readonly learnerHeartbeatEvery: number;
  /** Periodic heartbeat rounds of this term as leader (learners get every learnerHeartbeatEvery-th). */
  private heartbeatRounds = 0;
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  readonly disableProposalForwarding: boolean;
  readonly stepDownOnRemoval: boolean;
  readonly maxMsgSize: number;
  readonly maxUncommittedSize: number;
  readonly maxPendingReads: number;
  private readonly random: RandomSource;
  /** For the "one leader per term" assertion: the leader this node knew in its current term. */
  private leaderOfTerm: { term: number; lead: NodeId } = { term: 0, lead: NONE };

  constructor(c: Config) {
    const idError = validateNodeId(c.id);
    if (idError !== undefined) throw new RaftError('INVALID_CONFIG', `config.id: ${idError}`);
    if (!(Number.isSafeInteger(c.heartbeatTicks) && c.heartbeatTicks > 0)) {
      throw new RaftError('INVALID_CONFIG', 'config.heartbeatTicks must be a positive integer');
    }
    if (!(Number.isSafeInteger(c.electionTicks) && c.electionTicks > c.heartbeatTicks)) {
      throw new RaftError(
        'INVALID_CONFIG',
        'config.electionTicks must be an integer > heartbeatTicks',
      );
    }
    const readOnlyOption = c.readOnlyOption ?? 'safe';
    const checkQuorum = c.checkQuorum ?? true;
    if (readOnlyOption === 'leaseBased' && !checkQuorum) {
      throw new RaftError(
        'INVALID_CONFIG',
        'config.readOnlyOption leaseBased requires checkQuorum',
      );
    }
    const inflight = c.maxInflightMessages ?? DEFAULTS.maxInflightMessages;
    if (!(Number.isSafeInteger(inflight) && inflight > 0)) {
      throw new RaftError(
        'INVALID_CONFIG',
        'config.maxInflightMessages must be a positive integer',
      );
    }
    const leaderLostTicks = c.leaderLostTicks ?? c.electionTicks;
    if (!(Number.isSafeInteger(leaderLostTicks) && leaderLostTicks > 0)) {
      throw new RaftError('INVALID_CONFIG', 'config.leaderLostTicks must be a positive integer');
    }
    const learnerHeartbeatEvery = c.learnerHeartbeatEvery ?? 1;
    if (
      !(
        Number.isSafeInteger(learnerHeartbeatEvery) &&
        learnerHeartbeatEvery >= 1 &&
        learnerHeartbeatEvery <= LEARNER_HEARTBEAT_EVERY_MAX
      )
    ) {
      throw new RaftError(
        'INVALID_CONFIG',
        `config.learnerHeartbeatEvery must be an integer in 1..${LEARNER_HEARTBEAT_EVERY_MAX} (LEARNER_HEARTBEAT_EVERY_MAX)`,
      );
    }
    this.id = c.id;
    this.random = c.random;
    this.learnerHeartbeatEvery = learnerHeartbeatEvery;
    this.electionTimeout = c.electionTicks;
    this.heartbeatTimeout = c.heartbeatTicks;
    this.leaderLostTimeout = leaderLostTicks;
    this.checkQuorum = checkQuorum;
    this.preVote = c.preVote ?? true;
    this.disableProposalForwarding = c.disableProposalForwarding ?? false;
    this.stepDownOnRemoval = c.stepDownOnRemoval ?? true;
    this.maxMsgSize = c.maxSizePerMsgBytes ?? DEFAULTS.maxSizePerMsgBytes;
    this.maxUncommittedSize = c.maxUncommittedEntriesBytes ?? DEFAULTS.maxUncommittedEntriesBytes;
    this.maxPendingReads = c.maxPendingReads ?? DEFAULTS.maxPendingReads;
    this.readOnly = new ReadOnly(readOnlyOption);
    this.raftLog = new RaftLog(
      c.storage,
      c.maxCommittedSizePerReadyBytes ?? DEFAULTS.maxCommittedSizePerReadyBytes,
    );
    this.trk = new ProgressTracker(inflight, c.maxInflightBytes ?? DEFAULTS.maxInflightBytes);

    const { hardState, confState } = c.storage.initialState();
    this.trk.restore(confState, this.raftLog.lastIndex() + 1);
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) {
      this.loadState(hardState);
    }
    if (c.applied !== undefined && c.applied > 0) this.raftLog.appliedTo(c.applied);
    this.becomeFollower(this.term, NONE);
  }

  private loadState(hs: HardState): void {
    if (hs.commit < this.raftLog.committed || hs.commit > this.raftLog.lastIndex()) {
      throw new RaftError(
        'INVALID_CONFIG',
        `hard state commit ${hs.commit} is out of range [${this.raftLog.committed}, ${this.raftLog.lastIndex()}]`,
      );
    }
    this.raftLog.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  // ---------------------------------------------------------------------------------------------
  // State snapshots for the caller.

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed };
  }

  softState(): SoftState {
    return { lead: this.lead, state: this.state };
  }

  /** Can this node campaign: a voter of its own configuration, with no snapshot to apply first. */
  promotable(): boolean {
    const pr = this.trk.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && this.raftLog.unstable.snapshot === undefined;
  }

  committedEntryInCurrentTerm(): boolean {
    return this.raftLog.term(this.raftLog.committed) === this.term;
  }

  // ---------------------------------------------------------------------------------------------
  // Sending.

  private send(m: Message): void {
    let out = m.from === NONE ? { ...m, from: this.id } : m;
    if (
      out.type === 'MsgVote' ||
      out.type === 'MsgVoteResp' ||
      out.type === 'MsgPreVote' ||
      out.type === 'MsgPreVoteResp'
    ) {
      // Vote messages carry an explicit term: a pre-vote's is the term the candidate would have.
      assert(out.term !== 0, `${out.type} must carry a term`);
    } else {
      assert(m.term === 0, `${m.type} gets its term from the sender`);
      // Proposals and reads forwarded to the leader are treated as local messages there.
      if (out.type !== 'MsgProp' && out.type !== 'MsgReadIndex') out = { ...out, term: this.term };
    }
    assert(out.to !== this.id, `sending ${out.type} to self`);
    this.msgs.push(out);
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /**
   * Sends entries (or a snapshot, when the follower needs compacted ones) to `to`, unless its
   * progress is paused. With sendIfEmpty false, sends nothing when there is nothing new.
   */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.raftLog.term(prevIndex);
    let ents: Entry[] | undefined = [];
    if (pr.state !== 'replicate' || !pr.inflights.full()) {
      ents = this.raftLog.entries(pr.next, this.maxMsgSize);
    }
    if (ents !== undefined && ents.length === 0 && !sendIfEmpty) return false;
    if (
      prevTerm === undefined ||
      ents === undefined ||
      this.needsInitialMembership(to, prevIndex)
    ) {
      return this.maybeSendSnapshot(to, pr);
    }
    let bytes = 0;
    for (const e of ents) bytes += payloadSizeBytes(e);
    this.send(
      msg({
        type: 'MsgApp',
        to,
        index: prevIndex,
        logTerm: prevTerm,
        entries: ents,
        commit: this.raftLog.committed,
      }),
    );
    pr.sentEntries(ents.length, bytes);
    return true;
  }

  /**
   * A group started from a ConfState in storage (membership "at index 0", see bootstrap.ts) has
   * its initial membership in no entry. A node outside that membership replaying from index 1
   * would build a wrong membership (without the leader, or with itself as the only voter): it must
   * start from a snapshot instead.
   */
  private needsInitialMembership(to: NodeId, prevIndex: number): boolean {
    if (prevIndex !== 0) return false;
    const initial = this.raftLog.storage.snapshot().metadata;
    if (initial.index !== 0) return false;
    const cs = initial.confState;
    if (cs.voters.length === 0 && cs.learners.length === 0) return false;
    return !cs.voters.includes(to) && !cs.learners.includes(to);
  }

  private maybeSendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false; // not while it may be down: snapshots are expensive
    let snapshot: Snapshot;
    try {
      snapshot = this.raftLog.snapshot();
    } catch (e) {
      if (e instanceof RaftError && e.code === 'SNAPSHOT_TEMPORARILY_UNAVAILABLE') return false;
      throw e;
    }
    // No snapshot yet (only the initial membership at index 0): wait until the application makes one.
    if (isEmptySnapshot(snapshot)) return false;
    pr.becomeSnapshot(snapshot.metadata.index);
    this.stats.snapshotsSent++;
    this.send(msg({ type: 'MsgSnap', to, snapshot }));
    return true;
  }

  private sendHeartbeat(to: NodeId, context: string): void {
    const pr = this.trk.progress.get(to);
    if (pr === undefined) return;
    // A follower may not have the leader's committed entries yet: never tell it to commit beyond
    // what it is known to match.
    const commit = Math.min(pr.match, this.raftLog.committed);
    this.send(msg({ type: 'MsgHeartbeat', to, commit, context }));
  }

  private bcastAppend(): void {
    for (const id of this.trk.progress.keys()) {
      if (id !== this.id) this.sendAppend(id);
    }
  }

  /** The periodic round: every voter, and the learners every learnerHeartbeatEvery-th round. */
  private bcastHeartbeat(): void {
    const learnersToo = this.heartbeatRounds % this.learnerHeartbeatEvery === 0;
    this.heartbeatRounds++;
    this.bcastHeartbeatWithContext(this.readOnly.lastPendingRequestContext(), learnersToo);
  }

  // ---------------------------------------------------------------------------------------------
  // Role transitions.

  private reset(term: number): void {
    if (this.term !== term) {
      assert(term > this.term, `term goes back from ${this.term} to ${term}`);
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.heartbeatRounds = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.trk.resetVotes();
    const last = this.raftLog.lastIndex();
    for (const [id, pr] of this.trk.progress) {
      pr.match = id === this.id ? last : 0;
      pr.next = last + 1;
      pr.state = 'probe';
      pr.pendingSnapshot = 0;
      pr.msgAppFlowPaused = false;
      pr.recentActive = false;
      pr.inflights.reset();
    }
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.readOnly = new ReadOnly(this.readOnly.option);
    this.pendingReadIndexMessages = [];
  }

  resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout + this.random.intn(this.electionTimeout);
  }

  private setLead(lead: NodeId): void {
    if (lead !== NONE) {
      // Election safety as this node sees it: one leader per term.
      if (this.leaderOfTerm.term === this.term) {
        assert(
          this.leaderOfTerm.lead === NONE || this.leaderOfTerm.lead === lead,
          `two leaders in term ${this.term}: ${this.leaderOfTerm.lead} and ${lead}`,
        );
      }
      this.leaderOfTerm = { term: this.term, lead };
    }
    this.lead = lead;
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.state = 'follower';
    this.setLead(lead);
  }

  becomeCandidate(): void {
    assert(this.state !== 'leader', 'leader cannot become candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.state = 'candidate';
    this.stats.elections++;
  }

  becomePreCandidate(): void {
    assert(this.state !== 'leader', 'leader cannot become pre-candidate');
    // A pre-candidate changes neither term nor vote: it only asks whether it could win.
    this.trk.resetVotes();
    this.lead = NONE;
    this.state = 'preCandidate';
    this.stats.preElections++;
  }

  becomeLeader(): void {
    assert(this.state === 'candidate', `becoming leader from ${this.state}`);
    assert(this.vote === this.id, 'a leader must have voted for itself in its term');
    this.reset(this.term);
    this.state = 'leader';
    this.setLead(this.id);
    this.stats.becameLeader++;
    const pr = this.trk.progress.get(this.id);
    if (pr !== undefined) {
      pr.becomeReplicate();
      pr.recentActive = true;
    }
    // No conf change may be proposed before everything up to here is applied, and (see
    // proposeConfChange) before this leader has committed an entry of its own term.
    this.pendingConfIndex = this.raftLog.lastIndex();
    // §5.4.2 / §8: an empty entry of the new term lets the leader commit its predecessors' entries
    // and learn the commit index for ReadIndex.
    const ok = this.appendEntries([{ term: 0, index: 0, type: 'normal', data: new Uint8Array(0) }]);
    assert(ok, 'appending the empty entry of a new leader cannot fail');
  }

  // ---------------------------------------------------------------------------------------------
  // Ticks.

  tick(): void {
    if (this.state === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup('auto');
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.stepLocal(msg({ type: 'MsgCheckQuorum', from: this.id }));
      // A transfer that did not complete within an election timeout is abandoned.
      if (this.state === 'leader' && this.leadTransferee !== NONE) this.abortLeaderTransfer();
    }
    if (this.state !== 'leader') return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.stepLocal(msg({ type: 'MsgBeat', from: this.id }));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Elections.

  /** Starts an election if this node may. 'auto' picks pre-vote or not from the config. */
  hup(kind: 'auto' | 'transfer'): void {
    if (this.state === 'leader') return;
    if (!this.promotable()) return;
    if (this.hasUnappliedConfChanges()) return; // apply the pending membership first
    const t: CampaignType =
      kind === 'transfer' ? 'transfer' : this.preVote ? 'preElection' : 'election';
    this.campaign(t);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.raftLog.applied >= this.raftLog.committed) return false;
    const lo = Math.max(this.raftLog.applied + 1, this.raftLog.firstIndex());
    const ents = this.raftLog.sliceOrUndefined(
      lo,
      this.raftLog.committed + 1,
      Number.POSITIVE_INFINITY,
    );
    return ents?.some((e) => e.type === 'confChange') ?? false;
  }

  private campaign(t: CampaignType): void {
    let term: number;
    let voteMsg: MessageType;
    if (t === 'preElection') {
      this.becomePreCandidate();
      voteMsg = 'MsgPreVote';
      term = this.term + 1; // the term it would campaign in; not adopted yet
    } else {
      this.becomeCandidate();
      voteMsg = 'MsgVote';
      term = this.term;
    }
    // Our own vote first: a group of one wins at once.
    this.trk.recordVote(this.id, true);
    const { result } = this.trk.tallyVotes();
    if (result === 'won') {
      if (t === 'preElection') this.campaign('election');
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.raftLog.lastIndex();
    const lastTerm = this.raftLog.lastTerm();
    const ctx = t === 'transfer' ? CAMPAIGN_TRANSFER : '';
    for (const id of [...this.trk.voters].sort()) {
      if (id === this.id) continue;
      this.send(
        msg({ type: voteMsg, to: id, term, index: lastIndex, logTerm: lastTerm, context: ctx }),
      );
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Stepping.

  /**
   * Steps a message that came from the network. Bad input is dropped and counted in stats.dropped;
   * this never throws except on a broken internal invariant.
   */
  step(m: Message): void {
    const err = messageError(m);
    if (err !== undefined) return this.drop(err.reason);
    if (m.to !== this.id) return this.drop('wrongRecipient');
    if (m.from === this.id) return this.drop('malformed');
    if (!this.acceptsSender(m)) return this.drop('unknownSender');
    try {
      this.stepInternal(m);
    } catch (e) {
      // A forwarded proposal or read the leader cannot take: the proposer will time out and retry.
      if (e instanceof RaftError && e.code !== 'INVARIANT') {
        this.stats.proposalsDropped++;
        return this.drop('proposalDropped');
      }
      throw e;
    }
  }

  /** Steps a message generated locally (by the caller's API or by ticks). May throw RaftError. */
  stepLocal(m: Message): void {
    this.stepInternal(m);
  }

  /**
   * A message this role does not handle. Responses meant for a role we no longer hold (vote
   * answers arriving after the election was decided, acks reaching a deposed leader) are normal
   * and not counted; anything else is.
   */
  private dropUnexpected(m: Message): void {
    switch (m.type) {
      case 'MsgVoteResp':
      case 'MsgPreVoteResp':
      case 'MsgAppResp':
      case 'MsgHeartbeatResp':
        return;
      default:
        this.drop('unexpected');
    }
  }

  private drop(reason: DropReason): void {
    this.stats.dropped[reason]++;
  }

  /**
   * Messages are accepted from members of our configuration. A node that is not (yet) in its own
   * configuration, such as one just added and waiting for its first snapshot, accepts the leader's
   * replication messages so that it can learn the configuration.
   */
  private acceptsSender(m: Message): boolean {
    if (this.trk.has(m.from)) return true;
    if (!this.trk.has(this.id)) {
      return m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap';
    }
    // A leader hears responses from a member it just removed: harmless, but not for it to act on.
    return false;
  }

  private stepInternal(m: Message): void {
    // Terms first (§5.1): newer terms make us follow, older ones are stale.
    if (m.term === 0) {
      // local message, or a proposal/read forwarded to us
    } else if (m.term > this.term) {
      if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
        const force = m.context === CAMPAIGN_TRANSFER;
        const inLease =
          this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTimeout;
        if (!force && inLease) {
          // We heard from a live leader within the minimum election timeout: a vote now would
          // only disrupt it (§6 of the dissertation, "disruptive servers").
          return this.drop('inLease');
        }
      }
      if (m.type === 'MsgPreVote') {
        // Never change term because of a pre-vote.
      } else if (m.type === 'MsgPreVoteResp' && !m.reject) {
        // Granted pre-votes carry the future term; the term changes only on winning.
      } else if (m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if (
        (this.checkQuorum || this.preVote) &&
        (m.type === 'MsgHeartbeat' || m.type === 'MsgApp')
      ) {
        // A stale leader (for example after a partition healed) would never learn of the new term
        // if we ignored it, since with pre-vote or check-quorum nobody bumps terms to reach it.
        this.send(msg({ type: 'MsgAppResp', to: m.from }));
      } else if (m.type === 'MsgPreVote') {
        // Tell a pre-candidate of our higher term, or it could be stuck pre-voting forever.
        this.send(this.voteRejection('MsgPreVote', m.from, this.term));
      }
      return this.drop('staleTerm');
    }

    switch (m.type) {
      case 'MsgHup':
        this.hup('auto');
        return;
      case 'MsgVote':
      case 'MsgPreVote': {
        // §5.2, §5.4.1: one vote per term, only for a log at least as up to date as ours.
        const canVote =
          this.vote === m.from ||
          (this.vote === NONE && this.lead === NONE) ||
          (m.type === 'MsgPreVote' && m.term > this.term);
        const upToDate =
          isPlanted('voteWithoutLogCheck') || this.raftLog.isUpToDate(m.index, m.logTerm);
        if (canVote && upToDate) {
          this.send(msg({ type: voteRespType(m.type), to: m.from, term: m.term }));
          if (m.type === 'MsgVote') {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          this.send(this.voteRejection(m.type, m.from, this.term));
        }
        return;
      }
      case 'MsgVoteResp':
      case 'MsgPreVoteResp':
        if (m.reject) this.learnCommitHint(m);
        break;
      default:
        break;
    }
    switch (this.state) {
      case 'leader':
        return this.stepLeader(m);
      case 'candidate':
      case 'preCandidate':
        return this.stepCandidate(m);
      case 'follower':
        return this.stepFollower(m);
    }
  }

  /**
   * A refused vote carries the voter's commit index and that entry's term. A committed prefix is a
   * fact any node may pass on: a candidate holding the same (index, term) holds the same prefix
   * (log matching), so it may commit it. Without this, a group can stall for good after a leader
   * removes itself: the leader applies its removal and steps down, the remaining voters never
   * heard that the removal committed, and the old leader, whose log is longer, refuses them its
   * vote forever (found by the property tests).
   */
  private voteRejection(request: 'MsgVote' | 'MsgPreVote', to: NodeId, term: number): Message {
    const commit = this.raftLog.committed;
    return msg({
      type: voteRespType(request),
      to,
      term,
      reject: true,
      commit,
      logTerm: this.raftLog.term(commit) ?? 0,
    });
  }

  private learnCommitHint(m: Message): void {
    if (m.commit <= this.raftLog.committed || !this.raftLog.matchTerm(m.commit, m.logTerm)) return;
    this.raftLog.commitTo(m.commit);
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case 'MsgBeat':
        this.bcastHeartbeat();
        return;
      case 'MsgCheckQuorum':
        if (!this.trk.quorumActive(this.id)) {
          this.becomeFollower(this.term, NONE);
        }
        for (const [id, pr] of this.trk.progress) {
          if (id !== this.id) pr.recentActive = false;
        }
        return;
      case 'MsgProp':
        return this.leaderPropose(m);
      case 'MsgReadIndex':
        return this.leaderReadIndex(m);
      default:
        break;
    }

    const pr = this.trk.progress.get(m.from);
    if (pr === undefined) return this.drop('unknownSender');
    switch (m.type) {
      case 'MsgAppResp':
        return this.handleAppendResponse(m, pr);
      case 'MsgHeartbeatResp': {
        pr.recentActive = true;
        pr.msgAppFlowPaused = false;
        if (pr.match < this.raftLog.lastIndex() || pr.state === 'probe') this.sendAppend(m.from);
        if (this.readOnly.option !== 'safe' || m.context === '') return;
        const acks = this.readOnly.recvAck(m.from, m.context);
        if (voteResult(this.trk.voters, acks) !== 'won') return;
        for (const rs of this.readOnly.advance(m.context)) {
          this.respondToReadIndex(rs.req, rs.index);
        }
        return;
      }
      case 'MsgSnapStatus':
        if (pr.state !== 'snapshot') return;
        if (m.reject) pr.pendingSnapshot = 0;
        pr.becomeProbe();
        // Wait for the follower's MsgAppResp (or the next heartbeat) before sending more.
        pr.msgAppFlowPaused = true;
        return;
      case 'MsgUnreachable':
        // The follower is probably down: stop streaming optimistically and probe instead.
        if (pr.state === 'replicate') pr.becomeProbe();
        return;
      case 'MsgTransferLeader': {
        if (pr.isLearner) return this.drop('unexpected');
        const transferee = m.from;
        if (this.leadTransferee !== NONE) {
          if (this.leadTransferee === transferee) return; // already in progress
          this.abortLeaderTransfer();
        }
        if (transferee === this.id) return; // already leader
        this.electionElapsed = 0; // the transfer must finish within an election timeout
        this.leadTransferee = transferee;
        if (pr.match === this.raftLog.lastIndex()) this.sendTimeoutNow(transferee);
        else this.sendAppend(transferee); // catch it up first
        return;
      }
      default:
        return this.dropUnexpected(m);
    }
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject) {
      // The follower does not have (m.index, term) in its log. Its hint (rejectHint, logTerm)
      // names the last entry that might match; skip every index that cannot (fast back-tracking).
      let nextProbeIdx = m.rejectHint;
      if (m.logTerm > 0)
        nextProbeIdx = this.raftLog.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbeIdx)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    if (m.index > this.raftLog.lastIndex()) return this.drop('outOfRange');
    const oldPaused = pr.isPaused();
    if (pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === 'probe')) {
      if (pr.state === 'probe') {
        pr.becomeReplicate();
      } else if (pr.state === 'snapshot' && pr.match + 1 >= this.raftLog.firstIndex()) {
        // The follower caught up past the compacted part of the log: back to normal replication.
        pr.becomeProbe();
        pr.becomeReplicate();
      } else if (pr.state === 'replicate') {
        pr.inflights.freeLE(m.index);
      }
      if (this.maybeCommit()) {
        this.releasePendingReadIndexMessages();
        this.bcastAppend();
      } else if (oldPaused) {
        this.sendAppend(m.from);
      }
      // The window may have opened: send as many size-limited MsgApps as it allows.
      while (this.maybeSendAppend(m.from, false)) {
        // keep sending
      }
      if (m.from === this.leadTransferee && pr.match === this.raftLog.lastIndex()) {
        this.sendTimeoutNow(m.from);
      }
    }
  }

  private leaderPropose(m: Message): void {
    if (!this.trk.has(this.id)) {
      throw new RaftError('PROPOSAL_DROPPED', 'this node was removed from the group');
    }
    if (this.leadTransferee !== NONE) {
      throw new RaftError(
        'PROPOSAL_DROPPED',
        `leadership is being transferred to ${this.leadTransferee}: retry there`,
        this.leadTransferee,
      );
    }
    const ents: Entry[] = m.entries.slice();
    for (let i = 0; i < ents.length; i++) {
      const e = ents[i]!;
      if (e.type !== 'confChange') continue;
      const refusal = this.confChangeRefusal(e);
      if (refusal !== undefined) {
        if (m.from === this.id) throw refusal;
        // A forwarded change that cannot go in now: keep the batch, replace it with a no-op, as etcd
        // does; its proposer times out and retries.
        ents[i] = { term: 0, index: 0, type: 'normal', data: new Uint8Array(0) };
      } else {
        this.pendingConfIndex = this.raftLog.lastIndex() + i + 1;
      }
    }
    if (!this.appendEntries(ents)) {
      throw new RaftError(
        'UNCOMMITTED_LIMIT',
        `more than ${this.maxUncommittedSize} bytes are uncommitted: retry when commits catch up`,
      );
    }
    this.bcastAppend();
  }

  /** Why a conf change entry cannot be proposed now, if it cannot. */
  private confChangeRefusal(e: Entry): RaftError | undefined {
    const cc = decodeConfChange(e.data);
    if (typeof cc === 'string') return new RaftError('INVALID_CONF_CHANGE', cc);
    if (this.pendingConfIndex > this.raftLog.applied) {
      return new RaftError(
        'CONF_CHANGE_PENDING',
        `membership change at index ${this.pendingConfIndex} is not applied yet: one change at a time`,
      );
    }
    if (!this.committedEntryInCurrentTerm()) {
      // The safety rule for one-at-a-time changes (Ongaro, raft-dev 2015): a new leader first
      // commits an entry of its own term.
      return new RaftError(
        'CONF_CHANGE_PENDING',
        'the new leader has not committed an entry of its term yet',
      );
    }
    const invalid = confChangeProblem(this.trk, cc);
    if (invalid !== undefined) return new RaftError('INVALID_CONF_CHANGE', invalid);
    return undefined;
  }

  private leaderReadIndex(m: Message): void {
    if (this.trk.isSingleton() && this.trk.isVoter(this.id)) {
      // Nobody else could have been elected: the commit index is current.
      this.respondToReadIndex(m, this.raftLog.committed);
      return;
    }
    if (this.pendingReadIndexMessages.length + this.readOnly.size >= this.maxPendingReads) {
      throw new RaftError(
        'PROPOSAL_DROPPED',
        `more than ${this.maxPendingReads} reads pending: retry later`,
      );
    }
    if (!this.committedEntryInCurrentTerm()) {
      // §6.4: a new leader does not know the commit index until it commits an entry of its term.
      this.pendingReadIndexMessages.push(m);
      return;
    }
    this.sendReadIndexResponse(m);
  }

  private sendReadIndexResponse(m: Message): void {
    if (this.readOnly.option === 'safe') {
      this.readOnly.addRequest(this.raftLog.committed, m);
      this.readOnly.recvAck(this.id, m.context);
      this.bcastHeartbeatWithContext(m.context);
    } else {
      this.respondToReadIndex(m, this.raftLog.committed);
    }
  }

  private bcastHeartbeatWithContext(ctx: string, learnersToo = true): void {
    for (const [id, pr] of this.trk.progress) {
      if (id !== this.id && (learnersToo || !pr.isLearner)) this.sendHeartbeat(id, ctx);
    }
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0) return;
    if (!this.committedEntryInCurrentTerm()) return;
    const msgs = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of msgs) this.sendReadIndexResponse(m);
  }

  private respondToReadIndex(req: Message, index: number): void {
    if (req.from === NONE || req.from === this.id) {
      this.readStates.push({ index, context: req.context });
      return;
    }
    this.send(msg({ type: 'MsgReadIndexResp', to: req.from, index, context: req.context }));
  }

  private stepCandidate(m: Message): void {
    const myVoteResp: MessageType =
      this.state === 'preCandidate' ? 'MsgPreVoteResp' : 'MsgVoteResp';
    switch (m.type) {
      case 'MsgProp':
        throw new RaftError('NO_LEADER', 'no leader: an election is in progress, retry shortly');
      case 'MsgReadIndex':
        throw new RaftError('NO_LEADER', 'no leader: an election is in progress, retry shortly');
      case 'MsgApp':
        // A leader of our term (or newer) exists: follow it.
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return;
      case 'MsgHeartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case 'MsgSnap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case 'MsgTimeoutNow':
        return this.drop('unexpected');
      default:
        break;
    }
    if (m.type !== myVoteResp) return this.dropUnexpected(m);
    this.trk.recordVote(m.from, !m.reject);
    const { result } = this.trk.tallyVotes();
    if (result === 'won') {
      if (this.state === 'preCandidate') {
        this.campaign('election');
      } else {
        this.becomeLeader();
        this.bcastAppend();
      }
    } else if (result === 'lost') {
      // A pre-candidate that lost stays in its term; a candidate stays in its new term.
      this.becomeFollower(this.term, NONE);
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'MsgProp':
        if (this.lead === NONE) {
          throw new RaftError('NO_LEADER', 'no leader is known yet: retry after the election');
        }
        if (this.disableProposalForwarding) {
          throw new RaftError('NOT_LEADER', `not the leader: propose to ${this.lead}`, this.lead);
        }
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case 'MsgApp':
        this.electionElapsed = 0;
        if (!this.followLeader(m.from)) return;
        this.handleAppendEntries(m);
        return;
      case 'MsgHeartbeat':
        this.electionElapsed = 0;
        if (!this.followLeader(m.from)) return;
        this.handleHeartbeat(m);
        return;
      case 'MsgSnap':
        this.electionElapsed = 0;
        if (!this.followLeader(m.from)) return;
        this.handleSnapshot(m);
        return;
      case 'MsgTransferLeader':
        if (this.lead === NONE) {
          throw new RaftError('NO_LEADER', 'no leader to transfer leadership from: retry later');
        }
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case 'MsgTimeoutNow':
        // The leader asks us to campaign now, skipping pre-vote (leadership transfer).
        if (this.lead !== NONE && m.from !== this.lead) return this.drop('unexpected');
        this.hup('transfer');
        return;
      case 'MsgReadIndex':
        if (this.lead === NONE) {
          throw new RaftError('NO_LEADER', 'no leader is known yet: retry after the election');
        }
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case 'MsgReadIndexResp':
        if (m.from !== this.lead) return this.drop('unexpected');
        this.readStates.push({ index: m.index, context: m.context });
        return;
      case 'MsgUnreachable':
        if (m.from === this.lead) this.leaderLost();
        return;
      default:
        return this.dropUnexpected(m);
    }
  }

  /**
   * The transport says the leader is gone (its connection closed: the process most likely died).
   * Waiting out the election timeout since its last message would only delay the election, so
   * the lease ends now (this node grants votes to the others, who lost the same leader) and this
   * node campaigns soon. All the followers hear of it at about the same moment, and two that
   * campaign together split the vote (then the election timeout decides), so they take turns:
   * ranked by ID among the voters other than the lost leader, the r-th campaigns at tick
   * 1 + r * leaderLostTimeout, and the first one's campaign has normally won before the next one's
   * turn. Only timing changes: a campaign is safe at any time, and with pre-vote a report about a
   * leader that is in fact alive costs no term (the members still in its lease refuse), and its
   * next message makes this node its follower again.
   */
  private leaderLost(): void {
    // Out of the lease already (an earlier report, or silence): the timer set then stands, so that
    // reports repeated by the transport's redials do not keep pushing the campaign back.
    if (this.electionElapsed >= this.electionTimeout) return;
    const others = [...this.trk.voters].filter((id) => id !== this.lead).sort();
    const rank = Math.max(0, others.indexOf(this.id));
    this.electionElapsed = this.electionTimeout;
    this.randomizedElectionTimeout = this.electionTimeout + 1 + rank * this.leaderLostTimeout;
  }

  /** Records `from` as leader of the current term; refuses a second leader for the same term. */
  private followLeader(from: NodeId): boolean {
    if (this.lead !== NONE && this.lead !== from) {
      this.drop('conflictingLeader');
      return false;
    }
    this.setLead(from);
    return true;
  }

  private handleAppendEntries(m: Message): void {
    if (m.index < this.raftLog.committed) {
      // Everything up to our commit index is settled: tell the leader where we are.
      this.send(msg({ type: 'MsgAppResp', to: m.from, index: this.raftLog.committed }));
      return;
    }
    const lastNew = this.raftLog.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send(msg({ type: 'MsgAppResp', to: m.from, index: lastNew }));
      return;
    }
    // Reject with a hint: the last index at or before m.index whose term is <= m.logTerm. Entries
    // after it cannot match the leader's, so the leader can skip them (Figure 7 repair in few trips).
    const hintIndex = Math.min(m.index, this.raftLog.lastIndex());
    const hint = this.raftLog.findConflictByTerm(hintIndex, m.logTerm);
    this.send(
      msg({
        type: 'MsgAppResp',
        to: m.from,
        index: m.index,
        reject: true,
        rejectHint: hint.index,
        logTerm: hint.term,
      }),
    );
  }

  private handleHeartbeat(m: Message): void {
    if (m.commit > this.raftLog.lastIndex()) {
      // The leader only ever sends min(match, commit): this is not a heartbeat we could have got.
      this.drop('outOfRange');
      return;
    }
    this.raftLog.commitTo(m.commit);
    this.send(msg({ type: 'MsgHeartbeatResp', to: m.from, context: m.context }));
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot!;
    if (this.restore(s)) {
      this.stats.snapshotsRestored++;
      this.send(msg({ type: 'MsgAppResp', to: m.from, index: this.raftLog.lastIndex() }));
    } else {
      this.send(msg({ type: 'MsgAppResp', to: m.from, index: this.raftLog.committed }));
    }
  }

  /** Installs a snapshot from the leader. Returns false if it is not newer than what we have. */
  private restore(s: Snapshot): boolean {
    if (s.metadata.index <= this.raftLog.committed) return false;
    assert(this.state === 'follower', `restoring a snapshot as ${this.state}`);
    if (this.raftLog.matchTerm(s.metadata.index, s.metadata.term)) {
      // We already have the entry: just fast-forward the commit index, keep the log.
      this.raftLog.commitTo(s.metadata.index);
      return false;
    }
    this.raftLog.restore(s);
    this.trk.restore(s.metadata.confState, this.raftLog.lastIndex() + 1);
    const pr = this.trk.progress.get(this.id);
    if (pr !== undefined) pr.maybeUpdate(pr.next - 1);
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // Log.

  /** Appends entries of the current term on the leader. False if over the uncommitted bound. */
  private appendEntries(es: readonly Entry[]): boolean {
    const li = this.raftLog.lastIndex();
    const ents: Entry[] = new Array(es.length);
    let size = 0;
    for (let i = 0; i < es.length; i++) {
      const e = es[i]!;
      ents[i] = { term: this.term, index: li + 1 + i, type: e.type, data: e.data };
      size += payloadSizeBytes(e);
    }
    // Always accept a proposal when nothing is uncommitted, however large, so progress is possible.
    if (
      this.uncommittedSize > 0 &&
      size > 0 &&
      this.uncommittedSize + size > this.maxUncommittedSize
    ) {
      return false;
    }
    this.uncommittedSize += size;
    const newLast = this.raftLog.append(ents);
    this.trk.progress.get(this.id)?.maybeUpdate(newLast);
    this.maybeCommit();
    return true;
  }

  /** §5.3/§5.4.2: advance the commit index to what a majority matches, if it is of this term. */
  private maybeCommit(): boolean {
    return this.raftLog.maybeCommit(this.trk.committed(), this.term);
  }

  /** Called by the caller (through RawNode.advance) once entries up to `index` are applied. */
  appliedTo(index: number, appliedPayloadBytes: number): void {
    const newApplied = Math.max(index, this.raftLog.applied);
    this.raftLog.appliedTo(newApplied);
    this.uncommittedSize = Math.max(0, this.uncommittedSize - appliedPayloadBytes);
  }

  // ---------------------------------------------------------------------------------------------
  // Membership.

  /**
   * Applies a committed conf change (the caller calls this when it applies the entry). Every node
   * applies the same changes in log order, so validation here gives the same result everywhere.
   */
  applyConfChange(cc: ConfChange): ConfState {
    const problem = confChangeProblem(this.trk, cc);
    if (problem === undefined) {
      const next = this.raftLog.lastIndex() + 1;
      switch (cc.type) {
        case 'addVoter':
          this.trk.addVoter(cc.nodeId, next);
          break;
        case 'addLearner':
          this.trk.addLearner(cc.nodeId, next);
          break;
        case 'removeNode':
          this.trk.remove(cc.nodeId);
          break;
      }
    }
    this.switchedConfig();
    return this.trk.confState();
  }

  private switchedConfig(): void {
    const pr = this.trk.progress.get(this.id);
    if ((pr === undefined || pr.isLearner) && this.state === 'leader') {
      // Removed or demoted: tell followers the latest commit index, then step down if configured.
      this.bcastAppend();
      if (this.stepDownOnRemoval) this.becomeFollower(this.term, NONE);
      return;
    }
    if (this.state !== 'leader' || this.trk.voters.size === 0) return;
    // The quorum changed: maybe more is committed now, and new members need entries.
    if (this.maybeCommit()) {
      this.bcastAppend();
    } else {
      for (const id of this.trk.progress.keys()) {
        if (id !== this.id) this.maybeSendAppend(id, false);
      }
    }
    if (this.leadTransferee !== NONE && !this.trk.isVoter(this.leadTransferee)) {
      this.abortLeaderTransfer();
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send(msg({ type: 'MsgTimeoutNow', to }));
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  /** Internal consistency checks, for tests and the simulator (cheap enough to run per step). */
  checkInvariants(): void {
    const l = this.raftLog;
    assertSafeIndex(l.committed, 'committed');
    assert(l.applied <= l.committed, `applied ${l.applied} > committed ${l.committed}`);
    assert(l.committed <= l.lastIndex(), `committed ${l.committed} > last index ${l.lastIndex()}`);
    assert(l.firstIndex() - 1 <= l.committed, 'compacted beyond the commit index');
    if (this.state === 'leader') {
      assert(this.lead === this.id, 'a leader knows itself as leader');
      assert(this.vote === this.id, 'a leader voted for itself');
    }
  }
}

/** Why a conf change makes no sense for the membership in `trk`, if it does not. */
export function confChangeProblem(trk: ProgressTracker, cc: ConfChange): string | undefined {
  switch (cc.type) {
    case 'addVoter':
      if (trk.isVoter(cc.nodeId)) return `${cc.nodeId} is already a voter`;
      return undefined;
    case 'addLearner':
      if (trk.learners.has(cc.nodeId)) return `${cc.nodeId} is already a learner`;
      if (trk.isVoter(cc.nodeId) && trk.voters.size === 1) return 'cannot demote the last voter';
      return undefined;
    case 'removeNode':
      if (!trk.has(cc.nodeId)) return `${cc.nodeId} is not a member`;
      if (trk.isVoter(cc.nodeId) && trk.voters.size === 1) return 'cannot remove the last voter';
      return undefined;
  }
}

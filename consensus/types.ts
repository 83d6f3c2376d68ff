// Data types of the consensus core: entries, messages, persistent state, snapshots and the Ready batch.
// Plain objects only, so that every layer above (libp2p frames, the simulator, transcripts) can
// encode them without adapters. Nothing here does I/O.

/** A member of the group. In the product this is a libp2p peer ID; any non-empty string works. */
export type NodeId = string;

/** "No node": no vote cast, no leader known. */
export const NONE: NodeId = '';

export type EntryType = 'normal' | 'confChange';

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** Application payload; for 'confChange' entries, an encoded ConfChange. Empty for the no-op. */
  readonly data: Uint8Array;
}

/** What must survive a crash besides the log: §5.1 currentTerm and votedFor, plus the commit index. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: NONE, commit: 0 });

export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** The membership in force: voters count towards quorums, learners only replicate. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export interface SnapshotMetadata {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  /** The application's state machine image at metadata.index. Opaque to the core. */
  readonly data: Uint8Array;
}

export const EMPTY_SNAPSHOT: Snapshot = Object.freeze({
  metadata: Object.freeze({
    index: 0,
    term: 0,
    confState: Object.freeze({ voters: [], learners: [] }),
  }),
  data: new Uint8Array(0),
});

export function isEmptySnapshot(s: Snapshot | undefined): boolean {
  return s === undefined || s.metadata.index === 0;
}

/** One membership change at a time (see consensus/README.md for the safety rule). */
export type ConfChangeType = 'addVoter' | 'addLearner' | 'removeNode';

export interface ConfChange {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
  /** Opaque to the core; the product carries the new member's addresses here. */
  readonly context?: Uint8Array;
}

export type StateType = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export type MessageType =
  // Local messages: only ever stepped by the caller of this node, never sent over the wire.
  | 'MsgHup' // start an election
  | 'MsgBeat' // leader: send heartbeats now
  | 'MsgCheckQuorum' // leader: check that a quorum was active
  | 'MsgUnreachable' // the transport could not deliver to `from`
  | 'MsgSnapStatus' // the transport finished (or failed) sending a snapshot to `from`
  // Wire messages.
  | 'MsgProp'
  | 'MsgApp'
  | 'MsgAppResp'
  | 'MsgVote'
  | 'MsgVoteResp'
  | 'MsgPreVote'
  | 'MsgPreVoteResp'
  | 'MsgSnap'
  | 'MsgHeartbeat'
  | 'MsgHeartbeatResp'
  | 'MsgTransferLeader'
  | 'MsgTimeoutNow'
  | 'MsgReadIndex'
  | 'MsgReadIndexResp';

export const LOCAL_MESSAGE_TYPES: ReadonlySet<MessageType> = new Set<MessageType>([
  'MsgHup',
  'MsgBeat',
  'MsgCheckQuorum',
  'MsgUnreachable',
  'MsgSnapStatus',
]);

export const WIRE_MESSAGE_TYPES: ReadonlySet<MessageType> = new Set<MessageType>([
  'MsgProp',
  'MsgApp',
  'MsgAppResp',
  'MsgVote',
  'MsgVoteResp',
  'MsgPreVote',
  'MsgPreVoteResp',
  'MsgSnap',
  'MsgHeartbeat',
  'MsgHeartbeatResp',
  'MsgTransferLeader',
  'MsgTimeoutNow',
  'MsgReadIndex',
  'MsgReadIndexResp',
]);

/**
 * One message. Fields are used per type as in etcd's raft:
 * - MsgApp: index/logTerm of the entry preceding `entries`, commit = leader's commit.
 * - MsgAppResp: index = last index the follower now matches (or, with reject, the rejected index);
 *   rejectHint/logTerm = the follower's hint for fast back-tracking.
 * - MsgVote/MsgPreVote: index/logTerm = the candidate's last entry; context 'transfer' marks a
 *   campaign started by leadership transfer (allowed to disrupt a live leader).
 * - MsgHeartbeat: commit = min(follower's match, leader's commit); context echoes a ReadIndex round.
 * - MsgReadIndex/MsgReadIndexResp: context identifies the read request; index = read index.
 */
export interface Message {
  readonly type: MessageType;
  readonly to: NodeId;
  readonly from: NodeId;
  readonly term: number;
  readonly logTerm: number;
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly snapshot?: Snapshot;
  readonly reject: boolean;
  readonly rejectHint: number;
  readonly context: string;
}

/** Builds a message with every field present (missing ones zero), which keeps shapes monomorphic. */
export function msg(m: Partial<Message> & Pick<Message, 'type'>): Message {
  return {
    type: m.type,
    to: m.to ?? NONE,
    from: m.from ?? NONE,
    term: m.term ?? 0,
    logTerm: m.logTerm ?? 0,
    index: m.index ?? 0,
    entries: m.entries ?? [],
    commit: m.commit ?? 0,
    ...(m.snapshot !== undefined ? { snapshot: m.snapshot } : {}),
    reject: m.reject ?? false,
    rejectHint: m.rejectHint ?? 0,
    context: m.context ?? '',
  };
}

/** Volatile state worth telling the caller about when it changes. */
export interface SoftState {
  readonly lead: NodeId;
  readonly state: StateType;
}

/** The answer to a ReadIndex request: once applied >= index, a read with this context is linearizable. */
export interface ReadState {
  readonly index: number;
  readonly context: string;
}

/**
 * Everything the caller must do, in this order (see consensus/README.md, "The caller's contract"):
 * 1. persist snapshot, entries and hardState (fsync when mustSync);
 * 2. send messages;
 * 3. apply snapshot, then committedEntries (calling applyConfChange for confChange entries);
 * 4. call advance().
 */
export interface Ready {
  readonly softState?: SoftState;
  readonly hardState?: HardState;
  readonly readStates: readonly ReadState[];
  readonly entries: readonly Entry[];
  readonly snapshot?: Snapshot;
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly mustSync: boolean;
}

export function entrySizeBytes(e: Entry): number {
  // A fixed overhead for term/index/type plus the payload: stable across encodings.
  return 24 + e.data.byteLength;
}

export function payloadSizeBytes(e: Entry): number {
  return e.data.byteLength;
}

// Typed errors of the consensus core. Each has a stable code a caller can branch on and a message
// a person can act on. Thrown only for the caller's own requests (propose, conf change, storage
// look-ups), never for bad input from the network: that is dropped and counted (see stats.ts).

export type RaftErrorCode =
  | 'NO_LEADER' // no leader is known yet: retry after an election
  | 'NOT_LEADER' // this node is not the leader and forwarding is disabled: ask `leader`
  | 'PROPOSAL_DROPPED' // the proposal cannot be taken now (transfer in progress, removed node)
  | 'UNCOMMITTED_LIMIT' // too many uncommitted bytes: back off until commits catch up
  | 'CONF_CHANGE_PENDING' // a membership change is still in flight: one at a time
  | 'INVALID_CONF_CHANGE' // the change makes no sense for the current membership
  | 'STEP_LOCAL_MSG' // a local-only message type arrived from the network
  | 'COMPACTED' // the requested index was compacted away
  | 'UNAVAILABLE' // the requested index is beyond the log
  | 'SNAPSHOT_OUT_OF_DATE' // a snapshot older than the current one
  | 'SNAPSHOT_TEMPORARILY_UNAVAILABLE' // the application cannot produce a snapshot right now
  | 'INVALID_CONFIG' // a Config field is out of range
  | 'INVARIANT'; // an internal invariant failed: a bug, never bad input

export class RaftError extends Error {
  readonly code: RaftErrorCode;
  /** For NOT_LEADER: the leader this node knows of. */
  readonly leader: string | undefined;

  constructor(code: RaftErrorCode, message: string, leader?: string) {
    super(message);
    this.name = 'RaftError';
    this.code = code;
    this.leader = leader;
  }
}

export function isRaftError(e: unknown, code?: RaftErrorCode): e is RaftError {
  return e instanceof RaftError && (code === undefined || e.code === code);
}

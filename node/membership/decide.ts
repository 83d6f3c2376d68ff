// Membership policy as pure functions: what this member should do next about its own place in
// the cluster (join, keep its record current, announce new addresses, find out it was removed)
// and, on the leader, which learner to promote; how a member answers a join; whom a stopping
// leader hands over to. No I/O, no clock, no randomness: the daemon's executor
// (node/membership/executor.ts) feeds it a view and carries out the one action it returns, and
// the simulator runs the very same functions (docs/membership.md has the contract).
//
// One action at a time, by construction: the executor carries out an action and asks again with
// a fresh view; Raft itself admits one configuration change at a time.

import type { NodeId, StateType } from '../../consensus/index.ts';
import type { Member } from '../state/machine.ts';

export interface MembershipPolicy {
  /** Members beyond this many stay learners. */
  readonly maxVoters: number;
  /** A learner whose match index is this close to the leader's last index is caught up. */
  readonly promoteLagEntries: number;
  /** With no leader for this long, ask the members whether they still count this node. */
  readonly probeAfterMs: number;
}

export const MEMBERSHIP_DEFAULTS: MembershipPolicy = {
  maxVoters: 5,
  promoteLagEntries: 20,
  probeAfterMs: 3000,
};

/** What a reachable member said about this node (its answer to `member.check`). */
export type PeerVerdict = 'member' | 'removed' | 'unknown';

/** Everything decide() looks at: this member's Raft status, its applied state, its addresses. */
export interface MembershipView {
  readonly self: NodeId;
  readonly state: StateType;
  /** The leader this member knows, '' when none. */
  readonly lead: NodeId;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** Leader only: each member's match index. */
  readonly match?: Readonly<Record<NodeId, number>>;
  /** The leader's last log index (only read on the leader). */
  readonly lastIndex: number;
  /** This member's record in the applied member table, if it has one. */
  readonly record: Member | undefined;
  /** The applied state names this node as removed (a tombstone of member.remove). */
  readonly removedHere: boolean;
  /** The newest answer of a member asked about this node, if any. */
  readonly peerVerdict: PeerVerdict | undefined;
  /** The addresses this process listens on now. */
  readonly addrs: readonly string[];
  /** The name this member should hold in the table (already made unique), if it has one. */
  readonly name?: string | undefined;
  /**
   * This node's log is empty: it was never part of a cluster. Only such a node joins; a node in
   * no configuration with entries was a member, so it was removed (the leader sends nothing to a
   * node before adding it) and must find out, not join again (docs/sim.md, Findings: a member
   * accepts a join until the tombstone is committed). The daemon reads the log's last index; the
   * simulator still reads the applied index (its sweeps have not hit the difference; to align).
   */
  readonly fresh: boolean;
  /** How long this member has known no leader (0 while it knows one). */
  readonly leaderlessMs: number;
}

export type MembershipAction =
  /** Not in any configuration and no leader: ask a seed (or a known member) to add us. */
  | { readonly kind: 'join' }
  /** No leader, and our record shows old addresses: tell a reachable member the new ones. */
  | { readonly kind: 'announce'; readonly addrs: readonly string[] }
  /** Our record in the member table is missing or stale: commit this one. */
  | { readonly kind: 'record'; readonly member: Member }
  /** Leader: promote this caught-up learner to voter. */
  | { readonly kind: 'promote'; readonly id: NodeId }
  /** No leader for long: ask the members whether they still count us (member.check). */
  | { readonly kind: 'probe' }
  /** The cluster removed this node: stop taking part, say why. */
  | { readonly kind: 'removed'; readonly why: string };

function sameAddrs(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The one thing this member should do next about membership, or undefined for nothing. */
export function decide(v: MembershipView, p: MembershipPolicy): MembershipAction | undefined {
  if (v.removedHere) {
    return { kind: 'removed', why: 'the applied member table records this node as removed' };
  }
  if (v.peerVerdict === 'removed') {
    return { kind: 'removed', why: 'a member answered that this node was removed' };
  }
  const inConfig = v.voters.includes(v.self) || v.learners.includes(v.self);
  if (v.lead === '') return leaderless(v, p, inConfig);
  const role = v.voters.includes(v.self) ? 'voter' : 'learner';
  const r = v.record;
  if (r === undefined || r.role !== role || !sameAddrs(r.addrs, v.addrs) || r.name !== v.name) {
    const member: Member = {
      id: v.self,
      addrs: [...v.addrs],
      role,
      ...(v.name !== undefined ? { name: v.name } : {}),
    };
    return { kind: 'record', member };
  }
  if (v.state === 'leader') return promotion(v, p);
  return undefined;
}

function leaderless(
  v: MembershipView,
  p: MembershipPolicy,
  inConfig: boolean,
): MembershipAction | undefined {
  if (!inConfig) {
    if (v.fresh) return { kind: 'join' };
    // A former member: it asks the members whether it was removed instead of joining again.
    return v.leaderlessMs >= p.probeAfterMs ? { kind: 'probe' } : undefined;
  }
  // Restarted on new addresses: the members dial the old ones, so we hear from no leader.
  if (v.record !== undefined && !sameAddrs(v.record.addrs, v.addrs)) {
    return { kind: 'announce', addrs: [...v.addrs] };
  }
  if (v.leaderlessMs >= p.probeAfterMs) return { kind: 'probe' };
  return undefined;
}

/**
 * Leader: the first caught-up learner (in ID order: it acknowledged entries, and is within
 * promoteLagEntries of the log's end), while there are fewer than maxVoters.
 */
function promotion(v: MembershipView, p: MembershipPolicy): MembershipAction | undefined {
  if (v.voters.length >= p.maxVoters) return undefined;
  for (const id of [...v.learners].sort()) {
    const m = v.match?.[id];
    // Nothing acknowledged yet (match 0) is never caught up, however short the log: a voter with
    // an empty log adds nothing to a quorum, and, stopped before its first entry and removed
    // meanwhile, it restarts as a node that never joined and has nobody to ask (a stress-run
    // finding, node/removal_cluster.test.ts).
    if (m === undefined || m === 0 || m + p.promoteLagEntries < v.lastIndex) continue;
    return { kind: 'promote', id };
  }
  return undefined;
}

/** What the cluster records about a node that asks to join. */
export interface JoinView {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** The asker's record in the applied member table, if any. */
  readonly record: Member | undefined;
  /** The asker is in the tombstones of member.remove. */
  readonly removed: boolean;
}

export type JoinDecision =
  /** A removed node does not come back under the same identity (docs/membership.md). */
  | { readonly kind: 'refuse-removed' }
  /**
   * An announce (new addresses of a member) from a node the configuration does not hold: it was
   * removed, or the removal is not applied here yet. Adding it would bring it back.
   */
  | { readonly kind: 'refuse-not-member' }
  /** A member with the same addresses: nothing to do. */
  | { readonly kind: 'already' }
  /** A member announcing new addresses: commit its record with its current role. */
  | { readonly kind: 'update-addrs'; readonly member: Member }
  /** A new node: commit its record (so the leader can reach it), then add it as a learner. */
  | { readonly kind: 'add-learner'; readonly member: Member };

/** `announce`: the asker says it is a member with new addresses, not a new node. */
export function decideJoin(
  id: NodeId,
  addrs: readonly string[],
  v: JoinView,
  announce = false,
): JoinDecision {
  if (v.removed) return { kind: 'refuse-removed' };
  const role = v.voters.includes(id) ? 'voter' : v.learners.includes(id) ? 'learner' : undefined;
  if (role === undefined) {
    if (announce) return { kind: 'refuse-not-member' };
    return { kind: 'add-learner', member: { id, addrs: [...addrs], role: 'learner' } };
  }
  if (v.record !== undefined && sameAddrs(v.record.addrs, addrs)) return { kind: 'already' };
  return { kind: 'update-addrs', member: { id, addrs: [...addrs], role } };
}

/** A member's answer to `member.check` about `id`, from its applied state. */
export function verdictOf(
  id: NodeId,
  v: { voters: readonly NodeId[]; learners: readonly NodeId[]; removed: boolean },
): PeerVerdict {
  if (v.removed) return 'removed';
  return v.voters.includes(id) || v.learners.includes(id) ? 'member' : 'unknown';
}

/** The voter a stopping leader hands over to: the most caught-up other voter (ties: lowest ID). */
export function transferee(
  self: NodeId,
  voters: readonly NodeId[],
  match: Readonly<Record<NodeId, number>> | undefined,
): NodeId | undefined {
  let best: NodeId | undefined;
  let bestMatch = -1;
  for (const id of [...voters].sort()) {
    if (id === self) continue;
    const m = match?.[id] ?? -1;
    if (m > bestMatch) {
      best = id;
      bestMatch = m;
    }
  }
  return best;
}

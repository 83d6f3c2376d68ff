// What must hold about membership in a simulated run, checked as the run goes and recorded as
// violations of the cluster (never thrown). docs/sim.md ("Membership runs") states each precisely:
//
//   max-voters           after every step of every node, its configuration has at most maxVoters
//                        voters;
//   config-change        a committed configuration differs from the one before it by one member
//                        (added, promoted or removed), and a leader appends a configuration change
//                        only when the previous one in its log is committed (the pending rule);
//   promotion-quorum     when the leader that proposed a promotion applies it, a quorum of the new
//                        voter set holds the log up to the commit index at the proposal, less
//                        promoteLagEntries (the catch-up allowance of the policy);
//   removed-rejoined     a node removed by a committed removeNode is never added to a configuration
//                        again;
//   removed-not-stopped  (at the end, checked by finish()) every removed node has stopped.
//
// The observer reads the nodes' Raft state (read only) through the cluster's step and apply hooks.

import {
  type ConfChange,
  type ConfState,
  decodeConfChange,
  type Entry,
} from '../consensus/index.ts';
import type { RaftNode } from '../node/raft/node.ts';
import type { SimCluster } from './cluster.ts';

/** A promotion the executor proposed, checked when its leader applies it. */
export interface PromotionRecord {
  readonly leader: string;
  readonly term: number;
  readonly id: string;
  /** The leader's commit index when it proposed the promotion. */
  readonly commitAtProposal: number;
}

interface LeaderScan {
  readonly term: number;
  /** Entries up to here were scanned for configuration changes. */
  scannedTo: number;
  /** The index of the newest configuration change in this leader's log (0: none held). */
  lastChange: number;
}

export class MembershipChecks {
  /** Nodes removed by a committed removeNode, with the index of the removal. */
  readonly removed = new Map<string, number>();
  /** Promotions whose proposing leader applied them and was checked. */
  promotionsChecked = 0;
  private readonly cluster: SimCluster;
  private readonly maxVoters: number;
  private readonly lagEntries: number;
  /** The committed configuration as of `configIndex` (from the first node to apply each change). */
  private config: ConfState = { voters: [], learners: [] };
  private configIndex = 0;
  /** The committed configuration after each change (by the index of the change). */
  private readonly history = new Map<number, ConfState>();
  /** The highest commit index any node reached: everything up to it is committed. */
  private globalCommit = 0;
  private readonly scans = new Map<string, LeaderScan>();
  /** Nodes whose voter count is over the limit now (reported once until it comes back). */
  private readonly overLimit = new Set<string>();
  private readonly promotions: PromotionRecord[] = [];

  constructor(cluster: SimCluster, maxVoters: number, lagEntries: number) {
    this.cluster = cluster;
    this.maxVoters = maxVoters;
    this.lagEntries = lagEntries;
    // The nodes running already applied their bootstrap entries: start from their configuration.
    for (const id of cluster.ids) {
      const raft = cluster.raftNode(id)?.rn.raft;
      if (raft !== undefined && raft.raftLog.applied > this.configIndex) {
        this.config = raft.trk.confState();
        this.configIndex = raft.raftLog.applied;
      }
    }
    cluster.onStep((id, node) => this.step(id, node));
    cluster.onApply((id, e) => {
      if (e.type === 'confChange') this.appliedChange(id, e);
    });
  }

  /** The executor proposed a promotion on a leader. */
  promotionProposed(p: PromotionRecord): void {
    this.forgetStalePromotions();
    // A retry by the same leader in the same term replaces the earlier attempt.
    const i = this.promotions.findIndex(
      (q) => q.leader === p.leader && q.id === p.id && q.term === p.term,
    );
    if (i >= 0) this.promotions.splice(i, 1);
    this.promotions.push(p);
  }

  /** The committed configuration (as far as any node applied it). */
  committedConfig(): ConfState {
    return this.config;
  }

  private step(id: string, node: RaftNode): void {
    const raft = node.rn.raft;
    if (raft.raftLog.committed > this.globalCommit) this.globalCommit = raft.raftLog.committed;
    const voters = raft.trk.voters.size;
    if (voters > this.maxVoters) {
      if (!this.overLimit.has(id)) {
        this.overLimit.add(id);
        this.cluster.reportViolation(
          'max-voters',
          id,
          `${id}'s configuration has ${voters} voters (${[...raft.trk.voters].sort().join(', ')}), ` +
            `more than maxVoters ${this.maxVoters}`,
        );
      }
    } else this.overLimit.delete(id);
    if (raft.state === 'leader') this.scanLeader(id, node);
    else this.scans.delete(id);
  }

  /** The pending rule: a leader appends a change only when the previous one is committed. */
  private scanLeader(id: string, node: RaftNode): void {
    const log = node.rn.raft.raftLog;
    const term = node.rn.raft.term;
    let scan = this.scans.get(id);
    if (scan === undefined || scan.term !== term) {
      // A new leadership: the newest change already in the log (before firstIndex all is committed).
      scan = { term, scannedTo: log.lastIndex(), lastChange: 0 };
      for (const e of log.slice(log.firstIndex(), log.lastIndex() + 1, Number.POSITIVE_INFINITY)) {
        if (e.type === 'confChange') scan.lastChange = e.index;
      }
      this.scans.set(id, scan);
      return;
    }
    const last = log.lastIndex();
    if (last <= scan.scannedTo) return;
    const lo = Math.max(scan.scannedTo + 1, log.firstIndex());
    for (const e of log.slice(lo, last + 1, Number.POSITIVE_INFINITY)) {
      if (e.type !== 'confChange') continue;
      if (scan.lastChange > this.globalCommit) {
        this.cluster.reportViolation(
          'config-change',
          id,
          `leader ${id} (term ${term}) appended a configuration change at ${e.index} while the ` +
            `change at ${scan.lastChange} was not committed (commit ${this.globalCommit})`,
        );
      }
      scan.lastChange = e.index;
    }
    scan.scannedTo = last;
  }

  private appliedChange(id: string, e: Entry): void {
    // Called also while a starting RaftNode replays its log (before the cluster holds it).
    const node = this.cluster.raftNode(id);
    if (node !== undefined) this.checkPromotion(id, node, e);
    const cc = decodeConfChange(e.data);
    // Every node applies the same entries in order, so the first applications of the indexes
    // happen in increasing order: they make the committed sequence of configurations.
    if (e.index > this.configIndex) {
      const next = typeof cc === 'string' ? this.config : applyChange(this.config, cc);
      if (typeof cc !== 'string') this.checkRejoin(id, e.index, cc);
      this.history.set(e.index, next);
      this.config = next;
      this.configIndex = e.index;
    }
    // Each node's configuration after the change is the committed one at that index.
    const expected = this.history.get(e.index);
    if (node !== undefined && expected !== undefined) {
      const actual = node.rn.raft.trk.confState();
      const changed = diffMembers(expected, actual);
      if (changed.length > 0) {
        this.cluster.reportViolation(
          'config-change',
          id,
          `after the change at ${e.index}, ${id}'s configuration differs from the committed one ` +
            `in ${changed.join(', ')}`,
        );
      }
    }
  }

  private checkRejoin(id: string, index: number, cc: ConfChange): void {
    const was = this.config.voters.includes(cc.nodeId) || this.config.learners.includes(cc.nodeId);
    if (cc.type === 'removeNode') {
      if (was) this.removed.set(cc.nodeId, index);
      return;
    }
    const at = this.removed.get(cc.nodeId);
    if (at !== undefined) {
      this.cluster.reportViolation(
        'removed-rejoined',
        id,
        `${cc.nodeId}, removed at ${at}, was added again (${cc.type}) at ${index}`,
      );
    }
  }

  /** A promotion applied by the leader that proposed it, in the same term. */
  private checkPromotion(id: string, node: RaftNode, e: Entry): void {
    if (this.promotions.length === 0) return;
    const raft = node.rn.raft;
    const cc = decodeConfChange(e.data);
    if (typeof cc === 'string' || cc.type !== 'addVoter') return;
    const i = this.promotions.findIndex(
      (p) => p.leader === id && p.id === cc.nodeId && p.term === raft.term,
    );
    if (i < 0) return;
    const p = this.promotions[i]!;
    this.promotions.splice(i, 1);
    if (raft.state !== 'leader') return;
    this.promotionsChecked++;
    const floor = p.commitAtProposal - this.lagEntries;
    const voters = [...raft.trk.voters].sort();
    const holding = voters.filter((v) => (raft.trk.progress.get(v)?.match ?? 0) >= floor);
    const quorum = Math.floor(voters.length / 2) + 1;
    if (holding.length < quorum) {
      const matches = voters.map((v) => `${v} ${raft.trk.progress.get(v)?.match ?? 0}`);
      this.cluster.reportViolation(
        'promotion-quorum',
        id,
        `promoting ${p.id} left ${holding.length} of ${voters.length} voters at or past index ` +
          `${floor} (commit ${p.commitAtProposal} at the proposal, less ${this.lagEntries}); a ` +
          `quorum is ${quorum} (match: ${matches.join(', ')})`,
      );
    }
  }

  /** Drops promotion records of leaders that lost their term (nothing left to check). */
  private forgetStalePromotions(): void {
    for (let i = this.promotions.length - 1; i >= 0; i--) {
      const p = this.promotions[i]!;
      const raft = this.cluster.raftNode(p.leader)?.rn.raft;
      if (raft === undefined || raft.term !== p.term || raft.state !== 'leader') {
        this.promotions.splice(i, 1);
      }
    }
  }
}

/** The members whose role differs between two configurations (added, removed, role changed). */
export function diffMembers(a: ConfState, b: ConfState): string[] {
  const role = (c: ConfState, id: string): string =>
    c.voters.includes(id) ? 'voter' : c.learners.includes(id) ? 'learner' : 'none';
  const ids = new Set([...a.voters, ...a.learners, ...b.voters, ...b.learners]);
  return [...ids].filter((id) => role(a, id) !== role(b, id)).sort();
}

/**
 * A configuration after one change, by the core's rules (consensus/raft.ts confChangeProblem): a
 * change that makes no sense (adding a voter twice, removing a non-member or the last voter,
 * demoting the last voter) changes nothing, on every node alike.
 */
export function applyChange(c: ConfState, cc: ConfChange): ConfState {
  const id = cc.nodeId;
  const isVoter = c.voters.includes(id);
  const voters = c.voters.filter((v) => v !== id);
  const learners = c.learners.filter((l) => l !== id);
  switch (cc.type) {
    case 'addVoter':
      if (isVoter) return c;
      return { voters: [...voters, id].sort(), learners };
    case 'addLearner':
      if (c.learners.includes(id) || (isVoter && c.voters.length === 1)) return c;
      return { voters, learners: [...learners, id].sort() };
    case 'removeNode':
      if (!(isVoter || c.learners.includes(id)) || (isVoter && c.voters.length === 1)) return c;
      return { voters, learners };
  }
}

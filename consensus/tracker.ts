// The membership as the core tracks it: which nodes vote, which learn, each one's replication
// progress (used only while leader), and the votes of the election in progress.

import { Progress } from './progress.ts';
import { committedIndex, type VoteResult, voteResult } from './quorum.ts';
import type { ConfState, NodeId } from './types.ts';

export class ProgressTracker {
  readonly voters = new Set<NodeId>();
  readonly learners = new Set<NodeId>();
  readonly progress = new Map<NodeId, Progress>();
  readonly votes = new Map<NodeId, boolean>();
  readonly inflightMessagesMax: number;
  readonly inflightBytesMax: number;

  constructor(inflightMessagesMax: number, inflightBytesMax: number) {
    this.inflightMessagesMax = inflightMessagesMax;
    this.inflightBytesMax = inflightBytesMax;
  }

  /** Resets to the membership of a ConfState, every progress at `next`. */
  restore(cs: ConfState, next: number): void {
    this.voters.clear();
    this.learners.clear();
    this.progress.clear();
    for (const id of cs.voters) this.addVoter(id, next);
    for (const id of cs.learners) this.addLearner(id, next);
  }

  addVoter(id: NodeId, next: number): void {
    this.learners.delete(id);
    this.voters.add(id);
    const pr = this.progress.get(id);
    if (pr !== undefined) {
      pr.isLearner = false;
    } else {
      this.progress.set(id, this.newProgress(next, false));
    }
  }

  addLearner(id: NodeId, next: number): void {
    this.voters.delete(id);
    this.learners.add(id);
    const pr = this.progress.get(id);
    if (pr !== undefined) {
      pr.isLearner = true;
    } else {
      this.progress.set(id, this.newProgress(next, true));
    }
  }

  remove(id: NodeId): void {
    this.voters.delete(id);
    this.learners.delete(id);
    this.progress.delete(id);
  }

  private newProgress(next: number, isLearner: boolean): Progress {
    const pr = new Progress(next, this.inflightMessagesMax, this.inflightBytesMax, isLearner);
    // A new member counts as active so that the leader may send it a snapshot at once.
    pr.recentActive = true;
    return pr;
  }

  has(id: NodeId): boolean {
    return this.progress.has(id);
  }

  isVoter(id: NodeId): boolean {
    return this.voters.has(id);
  }

  isSingleton(): boolean {
    return this.voters.size === 1;
  }

  confState(): ConfState {
    return { voters: [...this.voters].sort(), learners: [...this.learners].sort() };
  }

  /** The largest index a majority of voters match. */
  committed(): number {
    return committedIndex(this.voters, (id) => this.progress.get(id)?.match ?? 0);
  }

  /** Check-quorum: did a majority of voters (counting `self`) show signs of life? */
  quorumActive(self: NodeId): boolean {
    const votes = new Map<NodeId, boolean>();
    for (const id of this.voters) {
      const pr = this.progress.get(id);
      votes.set(id, id === self || (pr?.recentActive ?? false));
    }
    return voteResult(this.voters, votes) === 'won';
  }

  resetVotes(): void {
    this.votes.clear();
  }

  /** Records a vote; the first answer of a node in an election is the one that counts. */
  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes.get(id);
      if (v === undefined) continue;
      if (v) granted++;
      else rejected++;
    }
    return { granted, rejected, result: voteResult(this.voters, this.votes) };
  }
}

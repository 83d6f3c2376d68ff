// Per-follower replication state kept by the leader (etcd's tracker/progress.go and inflights.go).
//
// - probe: the leader does not know where the follower's log matches; it sends one MsgApp per
//   heartbeat interval and waits for the answer (paused until then).
// - replicate: the follower is known to match up to `match`; the leader streams MsgApps
//   optimistically (next advanced on send), bounded by the inflight window.
// - snapshot: the follower needs a snapshot; nothing else is sent until it is reported.

import { assert } from './assert.ts';

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** A bounded FIFO of the last index of each MsgApp in flight to one follower. */
export class Inflights {
  /** inflightMessagesMax: how many MsgApps may be unacknowledged at once. */
  readonly size: number;
  /** inflightBytesMax: how many payload bytes may be unacknowledged at once (0 = no limit). */
  readonly maxBytes: number;
  private readonly indexes: number[];
  private readonly bytes: number[];
  private start = 0;
  count = 0;
  totalBytes = 0;

  constructor(size: number, maxBytes: number) {
    assert(size > 0, 'inflights size must be positive');
    this.size = size;
    this.maxBytes = maxBytes;
    this.indexes = new Array<number>(size).fill(0);
    this.bytes = new Array<number>(size).fill(0);
  }

  add(index: number, bytes: number): void {
    assert(!this.full(), 'inflights.add on a full window');
    const next = (this.start + this.count) % this.size;
    if (this.count > 0) {
      const lastSlot = (next + this.size - 1) % this.size;
      assert(index > this.indexes[lastSlot]!, `inflight index ${index} not increasing`);
    }
    this.indexes[next] = index;
    this.bytes[next] = bytes;
    this.count++;
    this.totalBytes += bytes;
  }

  /** Frees every inflight message whose last index is <= to. */
  freeLE(to: number): void {
    while (this.count > 0 && this.indexes[this.start]! <= to) {
      this.totalBytes -= this.bytes[this.start]!;
      this.start = (this.start + 1) % this.size;
      this.count--;
    }
    if (this.count === 0) this.start = 0;
  }

  full(): boolean {
    return this.count === this.size || (this.maxBytes !== 0 && this.totalBytes >= this.maxBytes);
  }

  reset(): void {
    this.count = 0;
    this.start = 0;
    this.totalBytes = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** In probe state: a MsgApp was sent and not answered yet. */
  msgAppFlowPaused = false;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(
    next: number,
    inflightMessagesMax: number,
    inflightBytesMax: number,
    isLearner: boolean,
  ) {
    this.next = next;
    this.inflights = new Inflights(inflightMessagesMax, inflightBytesMax);
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      // Resume right after the snapshot (or after match, if it went further meanwhile).
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** A MsgApp carrying entries up to lastIndex was sent. */
  sentEntries(count: number, bytes: number): void {
    if (this.state === 'replicate') {
      if (count > 0) {
        this.next += count;
        this.inflights.add(this.next - 1, bytes);
      }
      this.msgAppFlowPaused = this.inflights.full();
    } else if (this.state === 'probe') {
      if (count > 0) this.msgAppFlowPaused = true;
    } else {
      assert(false, `sending entries in state ${this.state}`);
    }
  }

  /** A positive MsgAppResp for index n. Returns false if it is stale (n <= match). */
  maybeUpdate(n: number): boolean {
    if (n <= this.match) return false;
    this.match = n;
    this.next = Math.max(this.next, n + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /**
   * A rejection of the MsgApp at `rejected`, with the follower's hint `matchHint` (an index at which
   * the logs may match). Returns false if the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      // Stale unless it rejects the entry right after match.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // Probe: stale unless it rejects the last probe.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /** Whether the leader should hold MsgApps to this follower for now. */
  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.msgAppFlowPaused;
      case 'replicate':
        // Set by sentEntries when the window fills, cleared by a heartbeat response: the leader
        // then sends one (empty) MsgApp, whose ack or rejection frees the window even when every
        // MsgApp that filled it was lost (etcd's MsgAppFlowPaused).
        return this.msgAppFlowPaused;
      case 'snapshot':
        return true;
    }
  }

  describe(): string {
    return `${this.state} match=${this.match} next=${this.next}${this.isLearner ? ' learner' : ''}${
      this.state === 'snapshot' ? ` pendingSnap=${this.pendingSnapshot}` : ''
    }${this.isPaused() ? ' paused' : ''} inflight=${this.inflights.count}`;
  }
}

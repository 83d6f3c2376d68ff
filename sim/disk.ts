// A simulated disk for one node, implementing node/raft/disk.ts's Disk like the daemon's level
// store: atomic batches that become durable in the order they were written, each after a virtual
// fsync latency. Until its fsync completes a batch is only in the page cache: a crash loses it,
// and every batch queued after it. What a restart reads (records()) is exactly the synced batches.
// A batch written with `sync: false` completes without an fsync (after the batches before it, as
// LevelDB's queue does) and stays in the page cache until a later synced batch makes it durable;
// the crash here is a power cut, the worst case, so it loses such batches too.
//
// A batch is made durable by an event of the run's queue; its `done` callback is then handed to
// the process through `deliver`, which the cluster uses to hold completions while the process is
// paused (the kernel finished the fsync; a stopped process only learns of it when it resumes).
// A crash bumps the disk's epoch: completions of batches written before it are dropped, so a
// callback of a crashed incarnation can never reach the next one.
//
// Not simulated: write errors, corruption, torn batches, fsync that lies (see docs/sim.md).

import type { Disk, DiskOp, WriteOptions } from '../node/raft/disk.ts';
import { recordsHoldEntry, snapshotRecordIndex } from '../node/raft/storage.ts';
import { type EventQueue, msToUs } from './queue.ts';
import type { SimRandom } from './random.ts';

export interface DiskLatency {
  /** fsync latency of one batch is uniform in [minMs, maxMs). */
  readonly minMs: number;
  readonly maxMs: number;
}

export const DISK_LATENCY_DEFAULT: DiskLatency = { minMs: 0.5, maxMs: 2 };

export interface DiskStats {
  /** Batches written. */
  written: number;
  /** Batches that became durable. */
  synced: number;
  /** Batches lost in crashes (written, never synced). */
  lost: number;
  /** Batches written with sync: false (they become durable with the next synced one). */
  unsyncedWrites: number;
}

interface Batch {
  readonly ops: readonly DiskOp[];
  readonly done: (err?: Error) => void;
  readonly epoch: number;
  readonly sync: boolean;
}

/** How long a write without fsync takes (into the page cache). */
const UNSYNCED_WRITE_US = 5;

export class SimDisk implements Disk {
  readonly stats: DiskStats = { written: 0, synced: 0, lost: 0, unsyncedWrites: 0 };
  private readonly durable = new Map<string, Uint8Array>();
  /** Written and not yet synced, in order. */
  private unsynced: Batch[] = [];
  private epoch = 0;
  /** Decoded snapshot indexes by record (a snapshot record holds the whole state). */
  private readonly snapshotIndexes = new WeakMap<Uint8Array, number>();
  /** When the last queued batch will be synced (fsyncs are serial). */
  private lastSyncUs = 0;

  private readonly queue: EventQueue;
  private readonly random: SimRandom;
  private readonly latency: DiskLatency;
  private readonly deliver: (callback: () => void) => void;

  /** `deliver` hands a completion to the process (default: at once). */
  constructor(
    queue: EventQueue,
    random: SimRandom,
    latency: DiskLatency = DISK_LATENCY_DEFAULT,
    deliver: (callback: () => void) => void = (callback) => callback(),
  ) {
    this.queue = queue;
    this.random = random;
    this.latency = latency;
    this.deliver = deliver;
  }

  write(ops: readonly DiskOp[], done: (err?: Error) => void, opts?: WriteOptions): void {
    const sync = opts?.sync !== false;
    const batch: Batch = { ops, done, epoch: this.epoch, sync };
    this.stats.written++;
    if (!sync) this.stats.unsyncedWrites++;
    this.unsynced.push(batch);
    const costUs = sync
      ? Math.max(1, msToUs(this.random.between(this.latency.minMs, this.latency.maxMs)))
      : UNSYNCED_WRITE_US;
    this.lastSyncUs = Math.max(this.queue.now, this.lastSyncUs) + costUs;
    this.queue.at(this.lastSyncUs, () => this.complete(batch));
  }

  /** Writes records as already synced (a new node's bootstrapped log, before it starts). */
  preload(ops: readonly DiskOp[]): void {
    apply(this.durable, ops);
  }

  /**
   * The process died: every batch not yet synced is lost, and no completion of a batch written
   * before now will ever be delivered. Returns how many batches were lost.
   */
  crash(): number {
    const lost = this.unsynced.length;
    this.stats.lost += lost;
    this.unsynced = [];
    this.epoch++;
    this.lastSyncUs = this.queue.now;
    return lost;
  }

  /** Whether the synced records keep entry `index` of `term` (or a snapshot covering it). */
  holdsEntry(index: number, term: number): boolean {
    return recordsHoldEntry(this.durable, index, term, (record) => {
      let at = this.snapshotIndexes.get(record);
      if (at === undefined) {
        at = snapshotRecordIndex(record);
        this.snapshotIndexes.set(record, at);
      }
      return at;
    });
  }

  /** The synced records: what a restart reads back. */
  records(): Map<string, Uint8Array> {
    return new Map(this.durable);
  }

  /** Batches written and not yet synced. */
  get pendingBatches(): number {
    return this.unsynced.length;
  }

  /**
   * A batch's write finished. A synced one makes it and every batch before it durable (they
   * reached the disk in order); an unsynced one stays in the page cache. Completions run in write
   * order: their times are increasing per disk and ties run in write order.
   */
  private complete(batch: Batch): void {
    if (batch.epoch !== this.epoch) return; // lost in a crash
    if (batch.sync) {
      const at = this.unsynced.indexOf(batch);
      if (at < 0) throw new Error('simulated disk: a synced batch is not pending');
      for (const b of this.unsynced.splice(0, at + 1)) {
        apply(this.durable, b.ops);
        this.stats.synced++;
      }
    }
    this.deliver(batch.done as () => void);
  }
}

function apply(records: Map<string, Uint8Array>, ops: readonly DiskOp[]): void {
  for (const op of ops) {
    if (op.type === 'put') records.set(op.key, op.value);
    else records.delete(op.key);
  }
}

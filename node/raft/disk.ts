// What the node needs from a disk: ordered, atomic, durable batches of key-value writes, and a
// way to read everything back after a restart. The node wires LevelDB (`level`, one fsync'd batch
// per Ready: a group commit); the simulator wires a simulated disk that loses unsynced batches on
// a crash. Both run the same DurableStorage code above this interface.

export type DiskOp =
  | { readonly type: 'put'; readonly key: string; readonly value: Uint8Array }
  | { readonly type: 'del'; readonly key: string };

export interface WriteOptions {
  /**
   * false: `done` may run once the batch is written, before it is synced. Such a batch is lost by
   * a power cut (or the simulator's crash) unless a later synced batch completed: batches reach
   * the disk in order, so a sync makes every batch before it durable too. Default true.
   */
  readonly sync?: boolean;
}

export interface Disk {
  /**
   * Queues an atomic batch. Batches become durable in the order they were queued; `done` runs
   * once this one is synced (or only written, with `sync: false`), or with an error if it never
   * will be (the node must then stop: its memory is ahead of its disk). `done` is never called
   * synchronously from write(), and runs in the order the batches were queued.
   */
  write(ops: readonly DiskOp[], done: (err?: Error) => void, opts?: WriteOptions): void;
}

/** A disk whose every batch is durable immediately (tests); `records()` is what a restart reads. */
export class MemoryDisk implements Disk {
  private readonly data = new Map<string, Uint8Array>();

  write(ops: readonly DiskOp[], done: (err?: Error) => void): void {
    for (const op of ops) {
      if (op.type === 'put') this.data.set(op.key, op.value);
      else this.data.delete(op.key);
    }
    queueMicrotask(() => done());
  }

  records(): Map<string, Uint8Array> {
    return new Map(this.data);
  }
}

// What the node needs from a disk: ordered, atomic, durable batches of key-value writes, and a
// way to read everything back after a restart. The node wires LevelDB (`level`, one fsync'd batch
// per Ready: a group commit); the simulator wires a simulated disk that loses unsynced batches on
// a crash. Both run the same DurableStorage code above this interface.

export type DiskOp =
  | { readonly type: 'put'; readonly key: string; readonly value: Uint8Array }
  | { readonly type: 'del'; readonly key: string };

export interface Disk {
  /**
   * Queues an atomic batch. Batches become durable in the order they were queued; `done` runs
   * once this one is synced, or with an error if it never will be (the node must then stop: its
   * memory is ahead of its disk). `done` is never called synchronously from write().
   */
  write(ops: readonly DiskOp[], done: (err?: Error) => void): void;
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

// The node's Disk: LevelDB (`level`, classic-level) in the data dir. Batches are written in the
// order queued, with sync: true unless the caller says the batch need not be durable yet (a
// Ready that only moves the commit index, D34: LevelDB's log is sequential, so the next synced
// batch makes it durable too); RaftNode has at most one Ready batch in flight, so everything
// that arrived while a batch was syncing goes into the next one (group commit). LevelDB's LOCK
// file makes a second process on the same data dir fail to open it: reported as DataDirLockedError.

import { Level } from 'level';
import type { Disk, DiskOp, WriteOptions } from './disk.ts';

export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';
}

type Db = Level<string, Uint8Array>;

export class LevelDisk implements Disk {
  private readonly db: Db;
  private tail: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(db: Db) {
    this.db = db;
  }

  /** Opens (creating if needed) the Raft database at `path` and reads every record back. */
  static async open(path: string): Promise<{ disk: LevelDisk; records: Map<string, Uint8Array> }> {
    const db: Db = new Level<string, Uint8Array>(path, { valueEncoding: 'view' });
    try {
      await db.open();
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED' || /lock/i.test(cause?.message ?? '')) {
        throw new DataDirLockedError(
          `the data dir ${path} is in use by another process (LevelDB lock held): stop that node first, or use another --data-dir`,
          { cause: e },
        );
      }
      throw e;
    }
    const records = new Map<string, Uint8Array>();
    for await (const [k, v] of db.iterator()) {
      records.set(k, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    }
    return { disk: new LevelDisk(db), records };
  }

  write(ops: readonly DiskOp[], done: (err?: Error) => void, opts?: WriteOptions): void {
    if (this.closed) {
      queueMicrotask(() => done(new Error('disk closed')));
      return;
    }
    const batch = ops.map((op) =>
      op.type === 'put'
        ? { type: 'put' as const, key: op.key, value: op.value }
        : { type: 'del' as const, key: op.key },
    );
    this.tail = this.tail.then(
      () =>
        this.db.batch(batch, { sync: opts?.sync !== false }).then(
          () => {
            done();
          },
          (e: Error) => done(e),
        ),
      // An earlier failure already stopped the node; later batches fail alike.
      (e: Error) => done(e),
    );
  }

  /** Waits for queued batches, then closes the database (and releases the lock). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail.catch(() => {});
    await this.db.close();
  }
}

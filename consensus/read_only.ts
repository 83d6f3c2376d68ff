// ReadIndex bookkeeping on the leader (§6.4 of the Raft dissertation, etcd's read_only.go).
// A read request is recorded with the commit index at the time it arrived; it is answered once a
// quorum acknowledged a heartbeat carrying its context, which proves that no newer leader exists.

import type { Message, NodeId } from './types.ts';

export type ReadOnlyOption = 'safe' | 'leaseBased';

interface ReadIndexStatus {
  readonly req: Message;
  readonly index: number;
  readonly acks: Map<NodeId, boolean>;
}

export class ReadOnly {
  readonly option: ReadOnlyOption;
  private readonly pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];

  constructor(option: ReadOnlyOption) {
    this.option = option;
  }

  get size(): number {
    return this.queue.length;
  }

  addRequest(index: number, m: Message): void {
    if (this.pending.has(m.context)) return;
    this.pending.set(m.context, { req: m, index, acks: new Map() });
    this.queue.push(m.context);
  }

  /** Records an acknowledgement of the heartbeat round `context`; returns the acks so far. */
  recvAck(id: NodeId, context: string): ReadonlyMap<NodeId, boolean> {
    const rs = this.pending.get(context);
    if (rs === undefined) return new Map();
    rs.acks.set(id, true);
    return rs.acks;
  }

  /**
   * Dequeues every request up to and including `context` (a quorum acknowledging a later round
   * also confirms the earlier ones) and returns them in arrival order.
   */
  advance(context: string): ReadIndexStatus[] {
    const i = this.queue.indexOf(context);
    if (i < 0) return [];
    const done = this.queue.slice(0, i + 1);
    this.queue = this.queue.slice(i + 1);
    const out: ReadIndexStatus[] = [];
    for (const ctx of done) {
      const rs = this.pending.get(ctx);
      this.pending.delete(ctx);
      if (rs !== undefined) out.push(rs);
    }
    return out;
  }

  lastPendingRequestContext(): string {
    return this.queue.length === 0 ? '' : this.queue[this.queue.length - 1]!;
  }
}

// Raft over libp2p (/pcr/raft/1.0.0, docs/protocols.md): one long-lived outbound stream per peer
// carrying length-prefixed frames of node/raft/codec.ts; inbound streams are read, checked and
// handed to the core. Snapshots travel on their own stream, in chunks with a window
// (snapshot_stream.ts). Implements RaftNode's Transport.

import type { PeerId, Stream } from '@libp2p/interface';
import { type LengthPrefixedStream, lpStream } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Message, NodeId } from '../../consensus/index.ts';
import { decodeMessage, encodeMessage, MESSAGE_BYTES_MAX } from '../raft/codec.ts';
import type { Transport } from '../raft/node.ts';
import type { Host } from './host.ts';
import { varintLength } from './length_prefix.ts';
import {
  receiveSnapshot,
  SNAPSHOT_MESSAGE_BYTES_MAX,
  SNAPSHOT_PROTOCOL,
  sendSnapshot,
} from './snapshot_stream.ts';

export const RAFT_PROTOCOL = '/pcr/raft/1.0.0';
/** Frames queued for one peer; beyond this the oldest are dropped (Raft retransmits). */
export const OUTBOX_FRAMES_MAX = 4096;
/** Bytes of queued frames that one write carries at most (one frame alone may be larger). */
export const WRITE_BATCH_BYTES_MAX = 1024 * 1024;
export const REDIAL_BACKOFF_MIN_MS = 100;
export const REDIAL_BACKOFF_MAX_MS = 2000;
/** A dial that takes longer than this counts as a failure. */
export const DIAL_TIMEOUT_MS = 3000;

export interface RaftTransportOptions {
  readonly host: Host;
  /** Where a member can be dialed (from the replicated member table, or a join request). */
  readonly addrsOf: (id: NodeId) => readonly Multiaddr[];
  readonly deliver: (m: Message) => void;
  readonly reportUnreachable: (id: NodeId) => void;
  readonly reportSnapshot: (id: NodeId, ok: boolean) => void;
  readonly warn?: (msg: string, fields?: Record<string, unknown>) => void;
}

export interface RaftTransportStats {
  framesSent: number;
  framesReceived: number;
  framesDropped: number;
  badFrames: number;
  dials: number;
  dialFailures: number;
  /** The last connection to a peer closed (reported to the core as unreachable). */
  disconnects: number;
  snapshotsSent: number;
  snapshotChunksSent: number;
  snapshotsReceived: number;
  snapshotsRefused: number;
}

interface Outbox {
  readonly frames: Uint8Array[];
  lp: LengthPrefixedStream<Stream> | undefined;
  pumping: boolean;
  backoffMs: number;
}

export class RaftTransport implements Transport {
  readonly stats: RaftTransportStats = {
    framesSent: 0,
    framesReceived: 0,
    framesDropped: 0,
    badFrames: 0,
    dials: 0,
    dialFailures: 0,
    disconnects: 0,
    snapshotsSent: 0,
    snapshotChunksSent: 0,
    snapshotsReceived: 0,
    snapshotsRefused: 0,
  };
  private readonly o: RaftTransportOptions;
  private readonly outboxes = new Map<NodeId, Outbox>();
  private closed = false;

  constructor(o: RaftTransportOptions) {
    this.o = o;
  }

  async start(): Promise<void> {
    this.o.host.addEventListener('peer:disconnect', this.onDisconnect);
    await this.o.host.handle(
      RAFT_PROTOCOL,
      (stream, conn) => this.readLoop(stream, conn.remotePeer),
      {
        maxInboundStreams: 8,
      },
    );
    await this.o.host.handle(
      SNAPSHOT_PROTOCOL,
      (stream, conn) => void this.receiveSnapshot(stream, conn.remotePeer),
      { maxInboundStreams: 2 },
    );
  }

  /**
   * The last connection to a peer closed: when a process dies its kernel closes its sockets, so
   * this is how a follower learns at once that its leader is gone (the core then campaigns soon,
   * instead of waiting out the election timeout; a partition or a lost machine closes nothing and
   * still waits it out). The outbound stream died with the connection: the next send redials.
   */
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    if (this.closed) return;
    const peer = evt.detail.toString();
    const box = this.outboxes.get(peer);
    if (box !== undefined && !box.pumping) box.lp = undefined;
    this.stats.disconnects++;
    this.o.reportUnreachable(peer);
  };

  send(m: Message): void {
    if (this.closed) return;
    if (m.type === 'MsgSnap') {
      void this.sendSnapshot(m);
      return;
    }
    let box = this.outboxes.get(m.to);
    if (box === undefined) {
      box = { frames: [], lp: undefined, pumping: false, backoffMs: REDIAL_BACKOFF_MIN_MS };
      this.outboxes.set(m.to, box);
    }
    box.frames.push(encodeMessage(m));
    while (box.frames.length > OUTBOX_FRAMES_MAX) {
      box.frames.shift();
      this.stats.framesDropped++;
    }
    if (!box.pumping) void this.pump(m.to, box);
  }

  private async pump(to: NodeId, box: Outbox): Promise<void> {
    box.pumping = true;
    try {
      while (!this.closed && box.frames.length > 0) {
        if (box.lp === undefined) {
          box.lp = await this.dial(to);
          if (box.lp === undefined) {
            // Unreachable: drop what is queued (Raft resends), tell the core, wait before retrying.
            this.stats.framesDropped += box.frames.splice(0).length;
            this.o.reportUnreachable(to);
            await sleep(box.backoffMs);
            box.backoffMs = Math.min(box.backoffMs * 2, REDIAL_BACKOFF_MAX_MS);
            continue;
          }
          box.backoffMs = REDIAL_BACKOFF_MIN_MS;
        }
        // Frames queued meanwhile leave in one write (one muxer frame, one encrypted frame, one
        // syscall) up to a byte bound.
        const batch = takeBatch(box.frames);
        try {
          await box.lp.writeV(batch);
          this.stats.framesSent += batch.length;
        } catch (e) {
          this.o.warn?.('raft stream to peer failed', { peer: to, err: (e as Error).message });
          box.lp.unwrap().abort(e as Error);
          box.lp = undefined;
          this.stats.framesDropped += batch.length;
          this.o.reportUnreachable(to);
        }
      }
    } finally {
      box.pumping = false;
    }
  }

  private async dial(to: NodeId): Promise<LengthPrefixedStream<Stream> | undefined> {
    const addrs = this.o.addrsOf(to);
    if (addrs.length === 0) return undefined;
    this.stats.dials++;
    try {
      const stream = await this.o.host.dialProtocol([...addrs], RAFT_PROTOCOL, {
        signal: AbortSignal.timeout(DIAL_TIMEOUT_MS),
      });
      return lpStream(stream, { maxDataLength: MESSAGE_BYTES_MAX, lengthDecoder: varintLength });
    } catch (e) {
      this.stats.dialFailures++;
      this.o.warn?.('cannot dial raft peer', { peer: to, err: (e as Error).message });
      return undefined;
    }
  }

  /** One snapshot on its own stream; the core learns the outcome (reportSnapshot) either way. */
  private async sendSnapshot(m: Message): Promise<void> {
    let ok = false;
    try {
      const addrs = this.o.addrsOf(m.to);
      if (addrs.length === 0) throw new Error('no address');
      const stream = await this.o.host.dialProtocol([...addrs], SNAPSHOT_PROTOCOL, {
        signal: AbortSignal.timeout(DIAL_TIMEOUT_MS),
      });
      const { chunks } = await sendSnapshot(stream, encodeMessage(m));
      this.stats.snapshotsSent++;
      this.stats.snapshotChunksSent += chunks;
      ok = true;
    } catch (e) {
      this.o.warn?.('snapshot to peer failed', { peer: m.to, err: (e as Error).message });
    } finally {
      if (!this.closed) this.o.reportSnapshot(m.to, ok);
    }
  }

  private async receiveSnapshot(stream: Stream, remote: PeerId): Promise<void> {
    const peer = remote.toString();
    try {
      await receiveSnapshot(stream, (bytes) => {
        const m = decodeMessage(bytes, SNAPSHOT_MESSAGE_BYTES_MAX);
        if ('error' in m) return m.error;
        if (m.type !== 'MsgSnap') return `a ${m.type} on the snapshot protocol`;
        if (m.from !== peer) return `message from ${m.from} sent by ${peer}`;
        this.stats.snapshotsReceived++;
        if (!this.closed) this.o.deliver(m);
        return undefined;
      });
    } catch (e) {
      this.stats.snapshotsRefused++;
      this.o.warn?.('refused a snapshot stream', { peer, err: (e as Error).message });
    }
  }

  private async readLoop(stream: Stream, remote: PeerId): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MESSAGE_BYTES_MAX, lengthDecoder: varintLength });
    const peer = remote.toString();
    for (;;) {
      let frame: Uint8Array;
      try {
        frame = (await lp.read()).subarray();
      } catch (e) {
        const name = (e as Error).name;
        if (
          name !== 'UnexpectedEOFError' &&
          name !== 'StreamResetError' &&
          name !== 'StreamClosedError'
        ) {
          // Oversized or malformed length prefix: the peer is broken or hostile.
          this.refuse(stream, peer, (e as Error).message);
        }
        return;
      }
      const m = decodeMessage(frame);
      if ('error' in m) return this.refuse(stream, peer, m.error);
      if (m.from !== peer)
        return this.refuse(stream, peer, `message from ${m.from} sent by ${peer}`);
      this.stats.framesReceived++;
      if (!this.closed) this.o.deliver(m);
    }
  }

  private refuse(stream: Stream, peer: string, why: string): void {
    this.stats.badFrames++;
    this.o.warn?.('refused a raft frame; resetting the stream', { peer, why });
    stream.abort(new Error(`bad raft frame: ${why}`));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.o.host.removeEventListener('peer:disconnect', this.onDisconnect);
    for (const [, box] of this.outboxes) {
      if (box.lp !== undefined)
        await box.lp
          .unwrap()
          .close()
          .catch(() => {});
    }
    this.outboxes.clear();
    await this.o.host.unhandle(RAFT_PROTOCOL).catch(() => {});
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Takes the frames of the next write: at least one, then more up to WRITE_BATCH_BYTES_MAX. */
function takeBatch(frames: Uint8Array[]): Uint8Array[] {
  let n = 0;
  let bytes = 0;
  while (n < frames.length) {
    bytes += frames[n]!.byteLength;
    if (n > 0 && bytes > WRITE_BATCH_BYTES_MAX) break;
    n++;
  }
  return frames.splice(0, n);
}

// Bulk NAR transfers outside the libp2p multiplexer (docs/store.md "Bulk transfers", D41).
//
// A `bulk` request over /pcr/store/1.0.0 gets a one-use ticket, a fresh AES-256-GCM key and a TCP
// port of the server's bulk listener. The client connects there, sends the ticket, and reads
// sealed frames: `u32 length` (big-endian, the associated data), the ciphertext, a 16-byte tag;
// nonce = 4 zero bytes and a 64-bit frame counter, so frames are authenticated in order. A frame's
// plaintext is a type byte (HEAD, DATA, END) and its payload. Flow control is TCP's: the reader
// reads only while it has room, and the writer waits for 'drain'.
//
// This module owns the wire (Sealer, Opener), the listener with its tickets (BulkServer) and the
// client's socket (dialBulk, BulkReader). What goes in the frames is protocol.ts's.

import { createCipheriv, createDecipheriv, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { StoreError } from './errors.ts';

/** An unclaimed ticket is forgotten after this. */
export const BULK_TICKET_MS = 10_000;
/**
 * Bulk transfers a node has at once, unclaimed tickets and running transfers together; the next
 * request is refused BUSY (the client uses `nars`).
 */
export const BULK_TICKETS_MAX = 64;
/** A socket must send its ticket within this, or it is closed. */
export const BULK_HELLO_TIMEOUT_MS = 5_000;
/** Sockets of the bulk listener waiting for their ticket; more are closed at once. */
export const BULK_SOCKETS_MAX = 64;
/** A client that cannot connect within this uses the `nars` stream instead. */
export const BULK_DIAL_TIMEOUT_MS = 2_000;
/** A DATA frame's NAR bytes as a server sends them. */
export const BULK_CHUNK_BYTES = 1024 * 1024;
/** A HEAD frame's payload (a msgpack map with a path and its size, or an error). */
export const BULK_HEAD_BYTES_MAX = 64 * 1024;
/** A sealed frame (type byte, payload, tag): anything longer is refused before it is read. */
export const BULK_FRAME_BYTES_MAX = 1 + BULK_CHUNK_BYTES + 16;
/** Without a frame for this long, a transfer has stalled (as NAR_STALL_TIMEOUT_MS). */
export const BULK_STALL_TIMEOUT_MS = 30_000;

export const BULK_TICKET_BYTES = 16;
export const BULK_KEY_BYTES = 32;
const TAG_BYTES = 16;

export const FRAME_HEAD = 1;
export const FRAME_DATA = 2;
export const FRAME_END = 3;
export type FrameType = typeof FRAME_HEAD | typeof FRAME_DATA | typeof FRAME_END;

function nonce(counter: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32BE(Math.floor(counter / 2 ** 32), 4);
  n.writeUInt32BE(counter >>> 0, 8);
  return n;
}

function bulkError(message: string): StoreError {
  return new StoreError('PROTOCOL', `bulk transfer: ${message}`);
}

/** Seals frames in order under one key: each call returns the buffers to write. */
export class Sealer {
  private readonly key: Uint8Array;
  private counter = 0;
  constructor(key: Uint8Array) {
    if (key.length !== BULK_KEY_BYTES) throw new Error('Sealer: a 32-byte key');
    this.key = key;
  }

  seal(type: FrameType, payload: Uint8Array = new Uint8Array(0)): Buffer[] {
    const sealedLength = 1 + payload.length + TAG_BYTES;
    if (sealedLength > BULK_FRAME_BYTES_MAX) throw new Error('Sealer: frame over the maximum');
    const head = Buffer.alloc(4);
    head.writeUInt32BE(sealedLength, 0);
    const c = createCipheriv('aes-256-gcm', this.key, nonce(this.counter++));
    c.setAAD(head);
    const t = c.update(Buffer.of(type));
    const body = c.update(payload);
    c.final();
    return [head, t, body, c.getAuthTag()];
  }
}

export interface OpenedFrame {
  readonly type: FrameType;
  /** The payload as deciphered, piece by piece (as the socket delivered the frame). */
  readonly parts: readonly Buffer[];
  /** Its length in bytes. */
  readonly length: number;
}

/** A frame's payload as one buffer (headers: small). */
export function payloadOf(f: OpenedFrame): Buffer {
  return f.parts.length === 1 ? f.parts[0]! : Buffer.concat(f.parts as Buffer[], f.length);
}

/**
 * Opens the frames of one socket in order. `push` takes bytes as they arrive; `next` returns a
 * whole frame once its tag checked out (never plaintext that was not authenticated), or
 * undefined until enough bytes came. A bad length, a bad tag or an unknown type throws. The
 * ciphertext is deciphered piece by piece as it was received: no copy to join it.
 */
export class Opener {
  private readonly key: Uint8Array;
  private counter = 0;
  private pieces: Buffer[] = [];
  private buffered = 0;
  constructor(key: Uint8Array) {
    if (key.length !== BULK_KEY_BYTES) throw new Error('Opener: a 32-byte key');
    this.key = key;
  }

  get pending(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.pieces.push(chunk);
    this.buffered += chunk.length;
  }

  next(): OpenedFrame | undefined {
    if (this.buffered < 4) return undefined;
    const head = this.take(4, true);
    const n = head.readUInt32BE(0);
    if (n < 1 + TAG_BYTES || n > BULK_FRAME_BYTES_MAX) {
      throw bulkError(`a frame of ${n} bytes (at most ${BULK_FRAME_BYTES_MAX})`);
    }
    if (this.buffered < 4 + n) return undefined;
    this.take(4, false);
    const d = createDecipheriv('aes-256-gcm', this.key, nonce(this.counter++));
    d.setAAD(head);
    const parts: Buffer[] = [];
    for (let left = n - TAG_BYTES; left > 0; ) {
      const p = this.pieces[0]!;
      const k = Math.min(p.length, left);
      const out = d.update(k === p.length ? p : p.subarray(0, k));
      if (out.length > 0) parts.push(out);
      this.drop(k);
      left -= k;
    }
    d.setAuthTag(this.take(TAG_BYTES, false));
    try {
      d.final();
    } catch {
      throw bulkError('a frame failed authentication (damaged, reordered or not from the peer)');
    }
    const type = parts[0]![0];
    if (type !== FRAME_HEAD && type !== FRAME_DATA && type !== FRAME_END) {
      throw bulkError(`a frame of unknown type ${String(type)}`);
    }
    parts[0] = parts[0]!.subarray(1);
    if (parts[0].length === 0) parts.shift();
    return { type, parts, length: n - TAG_BYTES - 1 };
  }

  /** The first `n` buffered bytes as one buffer; consumed unless `peek`. */
  private take(n: number, peek: boolean): Buffer {
    const first = this.pieces[0]!;
    let out: Buffer;
    if (first.length >= n) out = first.subarray(0, n);
    else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      for (const p of this.pieces) {
        const k = Math.min(p.length, n - off);
        p.copy(out, off, 0, k);
        off += k;
        if (off === n) break;
      }
    }
    if (!peek) this.drop(n);
    return out;
  }

  /** Forgets the first `n` buffered bytes. */
  private drop(n: number): void {
    let left = n;
    while (left > 0) {
      const p = this.pieces[0]!;
      if (p.length <= left) {
        this.pieces.shift();
        left -= p.length;
      } else {
        this.pieces[0] = p.subarray(left);
        left = 0;
      }
    }
    this.buffered -= n;
  }
}

/** What a client needs to claim a transfer (sent over the authenticated libp2p stream). */
export interface BulkTicket {
  readonly port: number;
  readonly ticket: Uint8Array;
  readonly key: Uint8Array;
}

/** A writer joins frames into one socket write up to this many bytes (small paths). */
export const BULK_BATCH_BYTES = 64 * 1024;

/**
 * Writes sealed frames to a socket: small frames are joined (the socket stays corked until
 * BULK_BATCH_BYTES are queued, or `flush`), and a full kernel buffer is waited out ('drain').
 */
export class BulkWriter {
  private readonly sealer: Sealer;
  private readonly socket: Socket;
  private corked = false;
  private batched = 0;
  constructor(socket: Socket, key: Uint8Array) {
    this.socket = socket;
    this.sealer = new Sealer(key);
  }

  async write(type: FrameType, payload?: Uint8Array): Promise<void> {
    const s = this.socket;
    if (s.destroyed) throw bulkError('the client went away');
    if (!this.corked) {
      s.cork();
      this.corked = true;
    }
    for (const b of this.sealer.seal(type, payload)) {
      s.write(b);
      this.batched += b.length;
    }
    if (this.batched >= BULK_BATCH_BYTES) await this.flush();
  }

  /** Sends what is batched; waits while the kernel's buffer is full. */
  async flush(): Promise<void> {
    const s = this.socket;
    if (this.corked) {
      this.corked = false;
      s.uncork();
    }
    this.batched = 0;
    if (s.writableNeedDrain) await waitDrain(s);
  }

  /** END, then the socket is ended once the kernel took everything. */
  async end(): Promise<void> {
    await this.write(FRAME_END);
    await this.flush();
    // 'close' too: a client that hangs up first never lets 'finish' come.
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end(resolve);
    });
  }
}

function waitDrain(s: Socket): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (e?: Error) => {
      s.off('drain', onDrain);
      s.off('close', onClose);
      s.off('error', done);
      if (e !== undefined) reject(e);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(bulkError('the client went away'));
    s.on('drain', onDrain);
    s.on('close', onClose);
    s.on('error', done);
  });
}

interface Pending {
  readonly ticket: Buffer;
  readonly key: Buffer;
  readonly paths: readonly string[];
  readonly timer: NodeJS.Timeout;
}

export interface BulkServerOptions {
  /** The address to bind (the host of the node's first TCP listen address). */
  readonly host: string;
  /** Streams `paths` as frames through `out` (protocol.ts); throws to cut the transfer. */
  readonly serve: (paths: readonly string[], out: BulkWriter) => Promise<void>;
  readonly warn?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** The bulk listener: tickets issued over libp2p, claimed here by their socket. */
export class BulkServer {
  private readonly o: BulkServerOptions;
  private readonly server: Server;
  private readonly tickets = new Map<string, Pending>();
  private readonly sockets = new Set<Socket>();
  /** Sockets waiting for their ticket now (at most BULK_SOCKETS_MAX). */
  waiting = 0;
  port = 0;
  /** Sockets closed for a missing, unknown, expired or reused ticket (tests and stats). */
  refused = 0;
  /** Claimed transfers still sending. */
  running = 0;

  private constructor(o: BulkServerOptions) {
    this.o = o;
    this.server = createServer((s) => this.accept(s));
  }

  static async listen(o: BulkServerOptions): Promise<BulkServer> {
    const b = new BulkServer(o);
    await new Promise<void>((resolve, reject) => {
      b.server.once('error', reject);
      b.server.listen({ host: o.host, port: 0 }, () => {
        b.server.off('error', reject);
        resolve();
      });
    });
    const a = b.server.address();
    b.port = typeof a === 'object' && a !== null ? a.port : 0;
    return b;
  }

  get outstanding(): number {
    return this.tickets.size;
  }

  /** A ticket for `paths`; BUSY at BULK_TICKETS_MAX outstanding. */
  issue(paths: readonly string[]): BulkTicket {
    if (this.tickets.size + this.running >= BULK_TICKETS_MAX) {
      throw new StoreError(
        'BUSY',
        `${BULK_TICKETS_MAX} bulk transfers wait or run (BULK_TICKETS_MAX)`,
      );
    }
    const ticket = randomBytes(BULK_TICKET_BYTES);
    const key = randomBytes(BULK_KEY_BYTES);
    const id = ticket.toString('hex');
    const timer = setTimeout(() => this.tickets.delete(id), BULK_TICKET_MS);
    timer.unref();
    this.tickets.set(id, { ticket, key, paths, timer });
    return { port: this.port, ticket, key };
  }

  async close(): Promise<void> {
    for (const t of this.tickets.values()) clearTimeout(t.timer);
    this.tickets.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(s: Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => {});
    if (this.waiting >= BULK_SOCKETS_MAX) {
      this.refuse(s, 'too many sockets wait for their ticket (BULK_SOCKETS_MAX)');
      return;
    }
    this.waiting++;
    let got = Buffer.alloc(0);
    let waited = true;
    const stopWaiting = () => {
      if (waited) this.waiting--;
      waited = false;
      clearTimeout(timer);
      s.off('data', onData);
    };
    const timer = setTimeout(() => {
      stopWaiting();
      this.refuse(s, 'no ticket in time (BULK_HELLO_TIMEOUT_MS)');
    }, BULK_HELLO_TIMEOUT_MS);
    timer.unref();
    s.on('close', stopWaiting);
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length < BULK_TICKET_BYTES) return;
      stopWaiting();
      s.pause();
      if (got.length > BULK_TICKET_BYTES) {
        this.refuse(s, 'bytes after the ticket');
        return;
      }
      const p = this.claim(got);
      if (p === undefined) {
        this.refuse(s, 'an unknown, expired or used ticket');
        return;
      }
      void this.run(s, p);
    };
    s.on('data', onData);
  }

  private claim(ticket: Buffer): Pending | undefined {
    const id = ticket.toString('hex');
    const p = this.tickets.get(id);
    if (p === undefined || !timingSafeEqual(p.ticket, ticket)) return undefined;
    this.tickets.delete(id);
    clearTimeout(p.timer);
    return p;
  }

  private refuse(s: Socket, why: string): void {
    this.refused++;
    this.o.warn?.(`bulk listener: closed a socket: ${why}`, { from: s.remoteAddress });
    s.destroy();
  }

  private async run(s: Socket, p: Pending): Promise<void> {
    const out = new BulkWriter(s, p.key);
    this.running++;
    try {
      await this.o.serve(p.paths, out);
      await out.end();
    } catch (e) {
      this.o.warn?.('bulk transfer cut', { err: (e as Error).message });
      s.destroy();
    } finally {
      this.running--;
    }
  }
}

/** Connects to a bulk listener and claims `t`; rejects after BULK_DIAL_TIMEOUT_MS. */
export function dialBulk(host: string, t: BulkTicket): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const s = tcpConnect({ host, port: t.port, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(bulkError(`no connection to ${host}:${t.port} within ${BULK_DIAL_TIMEOUT_MS} ms`));
    }, BULK_DIAL_TIMEOUT_MS);
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(bulkError(`cannot connect to ${host}:${t.port}: ${e.message}`));
    });
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      // Errors from here on reach the reader (its iterator ends or throws); an 'error' event
      // with no listener would take the whole node down.
      s.on('error', () => {});
      s.write(Buffer.from(t.ticket));
      resolve(s);
    });
  });
}

/**
 * Reads the frames of a claimed transfer. Reading is pull-based: the socket is read only while
 * the caller asks for frames, so a caller that waits for room holds the sender back (TCP).
 */
export class BulkReader {
  private readonly opener: Opener;
  private readonly it: AsyncIterator<Buffer>;
  private readonly socket: Socket;
  private ended = false;
  constructor(socket: Socket, key: Uint8Array) {
    this.socket = socket;
    this.opener = new Opener(key);
    this.it = (socket as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** The next frame; a stall, a cut before END or a bad frame throws. */
  async next(): Promise<OpenedFrame> {
    for (;;) {
      const f = this.opener.next();
      if (f !== undefined) {
        if (f.type === FRAME_END) this.ended = true;
        return f;
      }
      if (this.ended) throw bulkError('a frame after END');
      let timer: NodeJS.Timeout | undefined;
      const stall = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(bulkError(`no data for ${BULK_STALL_TIMEOUT_MS} ms`)),
          BULK_STALL_TIMEOUT_MS,
        );
      });
      try {
        const r = await Promise.race([this.it.next(), stall]);
        if (r.done === true) throw bulkError('the connection ended before the transfer did');
        this.opener.push(r.value);
      } finally {
        clearTimeout(timer);
      }
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * Where a node's bulk listener binds: the host of its first TCP listen multiaddr
 * (`/ip4/H/tcp/P` or `/ip6/H/tcp/P`); undefined for anything else (no bulk listener).
 */
export function bulkHostOf(listen: readonly string[]): string | undefined {
  const m = /^\/ip([46])\/([^/]+)\/tcp\/\d+/.exec(listen[0] ?? '');
  return m !== null ? m[2] : undefined;
}

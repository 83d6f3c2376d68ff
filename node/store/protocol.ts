// /pcr/store/1.0.0 (docs/store.md): store queries and NAR streaming between nodes. One request
// per stream; length-prefixed frames; control frames are msgpack maps, NAR data frames raw bytes.
// lpStream has no back-pressure (a reader 4 MiB behind gets its stream reset), so NAR data flows
// under a byte credit the receiver grants: the server never has more than `window` bytes unacked.

import type { PeerId, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { type LengthPrefixedStream, lpStream } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import { Packr } from 'msgpackr';
import type { Host } from '../p2p/host.ts';
import { varintLength } from '../p2p/length_prefix.ts';
import {
  BULK_CHUNK_BYTES,
  BULK_HEAD_BYTES_MAX,
  BULK_KEY_BYTES,
  BULK_TICKET_BYTES,
  BulkReader,
  BulkServer,
  type BulkWriter,
  dialBulk,
  FRAME_DATA,
  FRAME_END,
  FRAME_HEAD,
  payloadOf,
} from './bulk.ts';
import { isStoreError, StoreError, type StoreErrorCode } from './errors.ts';
import { formatPublicKey, type SecretKey, withSignature } from './keys.ts';
import { closureOf, newCounters, type PathInfo, type Store, type StoreCounters } from './store.ts';
import { isHashPart, parseStorePath } from './store_path.ts';
import { openVerifiedNar } from './verify.ts';

export const STORE_PROTOCOL = '/pcr/store/1.0.0';
/** A request frame (paths and hash parts: 10,000 paths is about 700 KB). */
export const REQUEST_BYTES_MAX = 4 * 1024 * 1024;
/** An answer or control frame (a closure's infos). */
export const CONTROL_FRAME_BYTES_MAX = 64 * 1024 * 1024;
export const HAVE_QUERY_MAX = 10_000;
export const NARS_PER_REQUEST_MAX = 1_000;
/** A NAR data frame as a server sends it. */
export const NAR_CHUNK_BYTES = 256 * 1024;
/** The largest NAR data frame a client accepts (a bigger one is a protocol error). */
export const NAR_FRAME_BYTES_MAX = 1024 * 1024;
/** Credit a client grants by default, and the most a server honours. */
export const NAR_WINDOW_BYTES = 4 * 1024 * 1024;
export const NAR_WINDOW_BYTES_MAX = 8 * 1024 * 1024;
/**
 * A NAR stream's read buffer holds the window plus what credit does not count: the per-path
 * header frames (at most NARS_PER_REQUEST_MAX of about 300 bytes) and the length prefixes.
 */
export const NAR_READ_SLACK_BYTES = 1024 * 1024;
/**
 * Received NAR bytes a client holds per stream ahead of its sinks (write-behind). Credit goes back
 * when a frame is queued, not when it is on disk, so the network and the disk work at once; while
 * the queue is full the client reads nothing more and grants no credit, so a slow disk holds the
 * sender back. A stream's client thus holds at most window + slack + this many bytes.
 */
export const INGEST_QUEUE_BYTES_MAX = 1024 * 1024;
/** NARs of one stream whose sinks are still at work (each may hold an open staging file). */
export const INGEST_PATHS_PENDING_MAX = 32;
/** A server joins frames into one write up to this many bytes (small paths: few muxer frames). */
export const SEND_BATCH_BYTES = 64 * 1024;
/** Streams of this protocol one connection may carry at once. */
export const STORE_STREAMS_MAX = 64;
export const STORE_DIAL_TIMEOUT_MS = 5_000;
/** A query answer must arrive within this. NAR streams have no total timeout, only a stall one. */
export const STORE_QUERY_TIMEOUT_MS = 30_000;
export const NAR_STALL_TIMEOUT_MS = 30_000;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

type Request =
  | { op: 'key' }
  | { op: 'have'; hashParts: string[] }
  | { op: 'closure'; paths: string[] }
  | { op: 'nars'; paths: string[]; window: number }
  | { op: 'bulk'; paths: string[] };

interface WireError {
  error: { code: StoreErrorCode; message: string };
}

function protocolError(message: string): StoreError {
  return new StoreError('PROTOCOL', message);
}

// --- validation of what arrives ---------------------------------------------------------------

function stringArray(v: unknown, max: number, what: string): string[] {
  if (!Array.isArray(v) || v.length > max || !v.every((s) => typeof s === 'string')) {
    throw protocolError(`${what} must be an array of at most ${max} strings`);
  }
  return v as string[];
}

function parseRequest(v: unknown): Request {
  if (typeof v !== 'object' || v === null) throw protocolError('request is not a map');
  const r = v as Record<string, unknown>;
  switch (r.op) {
    case 'key':
      return { op: 'key' };
    case 'have':
      return { op: 'have', hashParts: stringArray(r.hashParts, HAVE_QUERY_MAX, 'hashParts') };
    case 'closure':
      return { op: 'closure', paths: stringArray(r.paths, NARS_PER_REQUEST_MAX, 'paths') };
    case 'nars': {
      const w = r.window;
      if (typeof w !== 'number' || !Number.isSafeInteger(w) || w < NAR_CHUNK_BYTES) {
        throw protocolError(`window must be an integer >= ${NAR_CHUNK_BYTES}`);
      }
      return {
        op: 'nars',
        paths: stringArray(r.paths, NARS_PER_REQUEST_MAX, 'paths'),
        window: Math.min(w, NAR_WINDOW_BYTES_MAX),
      };
    }
    case 'bulk':
      return { op: 'bulk', paths: stringArray(r.paths, NARS_PER_REQUEST_MAX, 'paths') };
    default:
      throw protocolError(`unknown op ${JSON.stringify(r.op)}`);
  }
}

/** Checks an info that came from a peer: every field typed, every path well-formed. */
export function parseWireInfo(v: unknown): PathInfo {
  if (typeof v !== 'object' || v === null) throw protocolError('path info is not a map');
  const r = v as Record<string, unknown>;
  const path = parseStorePath(String(r.path)).path;
  if (typeof r.narHash !== 'string' || !/^sha256:[0-9a-z]{52}$/.test(r.narHash)) {
    throw protocolError(`${path}: bad narHash`);
  }
  if (typeof r.narSize !== 'number' || !Number.isSafeInteger(r.narSize) || r.narSize < 0) {
    throw protocolError(`${path}: bad narSize`);
  }
  const info: PathInfo = {
    path,
    narHash: r.narHash,
    narSize: r.narSize,
    references: stringArray(r.references, 10_000, 'references').map((p) => parseStorePath(p).path),
    sigs: stringArray(r.sigs, 16, 'sigs'),
  };
  if (typeof r.deriver === 'string') info.deriver = parseStorePath(r.deriver).path;
  if (typeof r.ca === 'string') info.ca = r.ca;
  return info;
}

function errorOf(e: unknown, path?: string): Record<string, unknown> {
  const se =
    e instanceof StoreError ? e : new StoreError('PROTOCOL', (e as Error).message ?? String(e));
  const error = { code: se.code, message: se.message };
  return path !== undefined ? { path, error } : ({ error } satisfies WireError);
}

function errorFrame(e: unknown, path?: string): Uint8Array {
  return packr.pack(errorOf(e, path));
}

// --- server ---------------------------------------------------------------------------------

export interface StoreServerOptions {
  readonly host: Host;
  readonly store: Store;
  /** The node's store key: every info served carries its signature. */
  readonly key: SecretKey;
  readonly counters?: StoreCounters;
  /** What peers did wrong (bad frames, cut transfers): frequent under a hostile peer, so quiet. */
  readonly warn?: (msg: string, fields?: Record<string, unknown>) => void;
  /** What the operator should act on, once (the bulk listener could not bind); else `warn`. */
  readonly alert?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Where the bulk listener binds (bulk.ts); undefined: no bulk transfers (`bulk` is refused). */
  readonly bulkHost?: string;
}

/** What a server sends for a NAR request, in order: per path a header, then its data. */
type NarEvent = { head: Record<string, unknown> } | { data: Uint8Array };

export class StoreServer {
  private readonly o: StoreServerOptions;
  private readonly counters: StoreCounters;
  /** Our signature per path@narHash, so a busy node signs each path once. */
  private readonly signed = new Map<string, PathInfo>();
  static readonly SIGNED_CACHE_MAX = 100_000;

  constructor(o: StoreServerOptions) {
    this.o = o;
    this.counters = o.counters ?? newCounters();
  }

  /** The bulk listener, when this server has one. */
  bulk: BulkServer | undefined;

  async start(): Promise<void> {
    if (this.o.bulkHost !== undefined) {
      // Without a bulk listener members still get every NAR, over `nars` streams: a listener
      // that cannot bind is worth a warning, not a node that does not start.
      this.bulk = await BulkServer.listen({
        host: this.o.bulkHost,
        serve: (paths, out) => this.serveBulk(paths, out),
        ...(this.o.warn !== undefined ? { warn: this.o.warn } : {}),
      }).catch((e: unknown) => {
        (this.o.alert ?? this.o.warn)?.(
          'no bulk listener: NARs are served over nars streams only',
          {
            host: this.o.bulkHost,
            err: (e as Error).message,
          },
        );
        return undefined;
      });
    }
    await this.o.host.handle(STORE_PROTOCOL, (stream) => this.serve(stream), {
      maxInboundStreams: STORE_STREAMS_MAX,
    });
  }

  async close(): Promise<void> {
    await this.o.host.unhandle(STORE_PROTOCOL).catch(() => {});
    await this.bulk?.close();
  }

  /** `info` with this node's signature added (cached). */
  sign(info: PathInfo): PathInfo {
    const k = `${info.path}@${info.narHash}`;
    const hit = this.signed.get(k);
    if (hit !== undefined) return hit;
    const s = withSignature(this.o.key, info);
    if (this.signed.size >= StoreServer.SIGNED_CACHE_MAX) this.signed.clear();
    this.signed.set(k, s);
    return s;
  }

  private async serve(stream: Stream): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: REQUEST_BYTES_MAX, lengthDecoder: varintLength });
    try {
      let req: Request;
      try {
        req = parseRequest(packr.unpack((await lp.read()).subarray()));
      } catch (e) {
        await lp.write(
          errorFrame(
            e instanceof StoreError
              ? e
              : protocolError(`bad request frame: ${(e as Error).message}`),
          ),
        );
        await stream.close();
        return;
      }
      if (req.op === 'nars') return await this.serveNars(stream, lp, req.paths, req.window);
      let answer: unknown;
      try {
        answer = await this.answer(req);
      } catch (e) {
        await lp.write(errorFrame(e));
        await stream.close();
        return;
      }
      await lp.write(packr.pack(answer));
      await stream.close();
    } catch (e) {
      stream.abort(e as Error);
    }
  }

  private async answer(req: Exclude<Request, { op: 'nars' }>): Promise<unknown> {
    switch (req.op) {
      case 'key':
        return { key: formatPublicKey(this.o.key.publicKey) };
      case 'have': {
        const found = await this.o.store.byHashParts(req.hashParts.filter(isHashPart));
        const paths = [...found.values()];
        this.counters.hits += paths.length;
        this.counters.misses += req.hashParts.length - paths.length;
        return { paths };
      }
      case 'closure': {
        const infos = await closureOf(
          this.o.store,
          req.paths.map((p) => parseStorePath(p).path),
        );
        return { infos: infos.map((i) => this.sign(i)) };
      }
      case 'bulk': {
        if (this.bulk === undefined) {
          throw new StoreError('UNSUPPORTED', 'this node takes no bulk transfers');
        }
        const t = this.bulk.issue(req.paths);
        return { port: t.port, ticket: t.ticket, key: t.key };
      }
    }
  }

  /**
   * The NARs of `paths` as events, in the order asked: a path this node lacks or finds damaged
   * gets an error header; a path served gets `{ path, narSize }` and then exactly narSize bytes
   * in pieces of at most `chunkBytes`.
   */
  private async *narEvents(paths: readonly string[], chunkBytes: number): AsyncGenerator<NarEvent> {
    const infos = await this.o.store.info(paths.filter(validPath));
    for (const path of paths) {
      const info = infos.get(path);
      if (info === undefined) {
        this.counters.misses++;
        yield { head: { path, error: { code: 'NOT_FOUND', message: `${path} is not here` } } };
        continue;
      }
      // Opened before the header: a NAR found damaged at open is an error for this path alone.
      const nar = await openVerifiedNar(this.o.store, info).catch((e: unknown) => e as Error);
      if (nar instanceof Error) {
        yield { head: errorOf(nar, path) };
        continue;
      }
      this.counters.hits++;
      yield { head: { path, narSize: info.narSize } };
      let sent = 0;
      for await (const chunk of nar) {
        for (let off = 0; off < chunk.length; off += chunkBytes) {
          const piece = chunk.subarray(off, off + chunkBytes);
          yield { data: piece };
          sent += piece.length;
        }
      }
      if (sent !== info.narSize) {
        // The store changed under us (evicted, or a broken disk): the client must not wait.
        throw new StoreError('SIZE_MISMATCH', `${path}: served ${sent} bytes of ${info.narSize}`);
      }
      this.counters.pathsServed++;
      this.counters.bytesServed += sent;
    }
  }

  /** A claimed bulk transfer (bulk.ts): the same events, sealed; TCP holds the pace. */
  private async serveBulk(paths: readonly string[], out: BulkWriter): Promise<void> {
    for await (const ev of this.narEvents(paths, BULK_CHUNK_BYTES)) {
      if ('head' in ev) await out.write(FRAME_HEAD, packr.pack(ev.head));
      else await out.write(FRAME_DATA, ev.data);
    }
  }

  private async serveNars(
    stream: Stream,
    lp: LengthPrefixedStream<Stream>,
    paths: string[],
    window: number,
  ): Promise<void> {
    // Credit arrives on the same stream while we write; a waiter wakes the writer.
    let credit = window;
    let wake: (() => void) | undefined;
    let readerDone = false;
    void (async () => {
      try {
        for (;;) {
          const m = packr.unpack((await lp.read()).subarray()) as { credit?: unknown };
          if (typeof m.credit !== 'number' || !Number.isSafeInteger(m.credit) || m.credit <= 0) {
            throw protocolError('bad credit frame');
          }
          credit = Math.min(credit + m.credit, window);
          wake?.();
        }
      } catch {
        readerDone = true;
        wake?.();
      }
    })();
    // Frames go out in batches of up to SEND_BATCH_BYTES: small paths' header and data frames
    // share one muxer frame (fewer muxer frames, cipher calls and window updates on both sides).
    // The batch is flushed before waiting for credit, so the client always has what it is owed.
    const batch: Uint8Array[] = [];
    let batchBytes = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      const frames = batch.splice(0);
      batchBytes = 0;
      await lp.writeV(frames);
    };
    const send = async (frame: Uint8Array) => {
      batch.push(frame);
      batchBytes += frame.length;
      if (batchBytes >= SEND_BATCH_BYTES) await flush();
    };
    for await (const ev of this.narEvents(paths, NAR_CHUNK_BYTES)) {
      if ('head' in ev) {
        await send(packr.pack(ev.head));
        continue;
      }
      const piece = ev.data;
      while (credit < piece.length) {
        await flush();
        if (readerDone) throw protocolError('client went away');
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = undefined;
      }
      credit -= piece.length;
      await send(piece);
    }
    await flush();
    await stream.close();
  }
}

function validPath(p: string): boolean {
  try {
    parseStorePath(p);
    return true;
  } catch {
    return false;
  }
}

// --- client ---------------------------------------------------------------------------------

/**
 * Receives one NAR: `write` each chunk, then `finish`; `abort` discards it. The client calls one
 * sink's methods one at a time, in order, but does not wait for them before it reads on: sinks
 * of successive paths may be at work at once (write-behind, bounded by INGEST_QUEUE_BYTES_MAX and
 * INGEST_PATHS_PENDING_MAX). A sink may keep the chunks it is given (the client does not reuse
 * them).
 */
export interface NarSinkAsync {
  write(chunk: Uint8Array): Promise<void>;
  /** A chunk in pieces, as it arrived (saves joining them); `write` of the joined bytes if absent. */
  writev?(chunks: readonly Uint8Array[]): Promise<void>;
  finish(): Promise<void>;
  abort(why: unknown): Promise<void>;
}

/**
 * The write-behind of one NAR stream: per path, its sink's calls chained in order; across paths,
 * at most INGEST_PATHS_PENDING_MAX sinks at work and INGEST_QUEUE_BYTES_MAX bytes queued. One
 * reader (the stream's loop) waits for room; the sinks' completions wake it.
 */
export class WriteBehind {
  readonly bytesMax: number;
  readonly pathsMax: number;
  /** Bytes handed to sinks and not yet written by them. */
  bytes = 0;
  /** The most `bytes` ever was (tests check the bound). */
  bytesPeak = 0;
  private readonly jobs = new Set<SinkJob>();
  private wake: (() => void) | undefined;

  constructor(bytesMax = INGEST_QUEUE_BYTES_MAX, pathsMax = INGEST_PATHS_PENDING_MAX) {
    this.bytesMax = bytesMax;
    this.pathsMax = pathsMax;
  }

  get pending(): number {
    return this.jobs.size;
  }

  /** Waits until `n` more bytes fit (a frame larger than the bound fits an empty queue). */
  async roomFor(n: number): Promise<void> {
    while (this.bytes > 0 && this.bytes + n > this.bytesMax) await this.wait();
  }

  /** Waits until another sink may start. */
  async roomForPath(): Promise<void> {
    while (this.jobs.size >= this.pathsMax) await this.wait();
  }

  /** Starts a path's sink (after roomForPath). */
  start(info: PathInfo, open: (info: PathInfo) => Promise<NarSinkAsync>): SinkJob {
    const job = new SinkJob(this, info, open);
    this.jobs.add(job);
    return job;
  }

  /** Every sink not yet finishing fails with `why` (the stream broke). */
  abortAll(why: unknown): void {
    for (const j of this.jobs) j.abort(why);
  }

  /** Waits for every sink started so far to be done. */
  async settled(): Promise<void> {
    while (this.jobs.size > 0) await Promise.all([...this.jobs].map((j) => j.done));
  }

  add(n: number): void {
    this.bytes += n;
    if (this.bytes > this.bytesPeak) this.bytesPeak = this.bytes;
  }

  release(n: number): void {
    this.bytes -= n;
    this.notify();
  }

  ended(job: SinkJob): void {
    this.jobs.delete(job);
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private wait(): Promise<void> {
    return new Promise<void>((r) => {
      this.wake = r;
    });
  }
}

/** A frame as lpStream reads it: pieces of received buffers (a Uint8ArrayList). */
interface Frame extends Iterable<Uint8Array> {
  readonly byteLength: number;
  subarray(): Uint8Array;
}

/** One path's sink behind a WriteBehind: its calls run in order; the first failure sticks. */
export class SinkJob {
  readonly info: PathInfo;
  /** Why the path failed (start, a write or finish threw, or the stream broke before its end). */
  error: unknown;
  /** True once finish ran and succeeded. */
  ok = false;
  /** Settles (never rejects) when the sink is done: finished, or failed and aborted. */
  done: Promise<void>;
  private readonly q: WriteBehind;
  private sink: NarSinkAsync | undefined;
  private tail: Promise<void>;
  private ending = false;
  private endDone: (() => void) | undefined;

  constructor(q: WriteBehind, info: PathInfo, open: (info: PathInfo) => Promise<NarSinkAsync>) {
    this.q = q;
    this.info = info;
    this.done = new Promise<void>((r) => {
      this.endDone = r;
    });
    this.tail = open(info).then(
      (s) => {
        this.sink = s;
      },
      (e: unknown) => {
        this.error ??= e;
      },
    );
  }

  private chain(bytes: number, op: (s: NarSinkAsync) => Promise<void>): void {
    this.q.add(bytes);
    this.tail = this.tail.then(async () => {
      try {
        if (this.error === undefined) await op(this.sink!);
      } catch (e) {
        this.error ??= e;
      } finally {
        this.q.release(bytes);
      }
    });
  }

  /** Queues a chunk (the caller waited for room). A failed sink drops it. */
  write(chunk: Frame): void {
    this.chain(chunk.byteLength, (s) =>
      s.writev !== undefined ? s.writev([...chunk]) : s.write(chunk.subarray()),
    );
  }

  /** Queues finish; the job ends after it. */
  finish(): void {
    if (this.ending) return;
    this.chain(0, async (s) => {
      await s.finish();
      this.ok = this.error === undefined;
    });
    this.end();
  }

  /** Fails the path unless its finish is already queued. */
  abort(why: unknown): void {
    if (this.ending) return;
    this.error ??= why;
    this.end();
  }

  private end(): void {
    this.ending = true;
    this.tail = this.tail.then(async () => {
      if (this.error !== undefined) await this.sink?.abort(this.error).catch(() => {});
      this.q.ended(this);
      this.endDone?.();
    });
  }
}

export interface StoreClientOptions {
  readonly host: Host;
  /** Where to dial a peer; when absent or empty, libp2p dials the peer id (known addresses). */
  readonly addrsOf?: (peer: string) => readonly Multiaddr[];
  readonly window?: number;
  /** Ask peers for bulk transfers first (default true); false: `nars` streams only. */
  readonly bulk?: boolean;
  /** Counts bulk transfers and fallbacks. */
  readonly counters?: StoreCounters;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** After a peer offered no bulk transfer (or its port did not answer), `nars` for this long. */
export const BULK_RETRY_MS = 60_000;
/** After a peer's bulk listener was busy (BULK_TICKETS_MAX transfers), `nars` for this long. */
export const BULK_BUSY_RETRY_MS = 1_000;

/** How long to use `nars` streams after a bulk request failed with `e`: busy is soon over. */
export function bulkRetryAfterMs(e: unknown): number {
  return isStoreError(e, 'BUSY') ? BULK_BUSY_RETRY_MS : BULK_RETRY_MS;
}

export class StoreClient {
  private readonly o: StoreClientOptions;
  private readonly keys = new Map<string, string>();
  /** Peers that had no bulk transfer to offer, until when they are not asked again. */
  private readonly noBulkUntil = new Map<string, number>();

  constructor(o: StoreClientOptions) {
    this.o = o;
  }

  private async open(peer: string): Promise<Stream> {
    const addrs = this.o.addrsOf?.(peer) ?? [];
    const target: PeerId | Multiaddr[] = addrs.length > 0 ? [...addrs] : peerIdFromString(peer);
    return this.o.host.dialProtocol(target, STORE_PROTOCOL, {
      signal: AbortSignal.timeout(STORE_DIAL_TIMEOUT_MS),
      maxOutboundStreams: STORE_STREAMS_MAX,
    });
  }

  private async query(peer: string, req: Request): Promise<Record<string, unknown>> {
    const stream = await this.open(peer);
    const lp = lpStream(stream, {
      maxDataLength: CONTROL_FRAME_BYTES_MAX,
      lengthDecoder: varintLength,
    });
    const signal = AbortSignal.timeout(STORE_QUERY_TIMEOUT_MS);
    try {
      await lp.write(packr.pack(req), { signal });
      const answer = packr.unpack((await lp.read({ signal })).subarray()) as Record<
        string,
        unknown
      >;
      await stream.close().catch(() => {});
      throwIfError(answer, peer);
      return answer;
    } catch (e) {
      stream.abort(e as Error);
      throw e;
    }
  }

  /** The peer's store public key (`name:base64`), cached per peer. */
  async key(peer: string): Promise<string> {
    const k = this.keys.get(peer);
    if (k !== undefined) return k;
    const a = await this.query(peer, { op: 'key' });
    if (typeof a.key !== 'string') throw protocolError(`${peer} sent no key`);
    this.keys.set(peer, a.key);
    return a.key;
  }

  /** Full store paths of those hash parts the peer holds. */
  async have(peer: string, hashParts: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < hashParts.length; i += HAVE_QUERY_MAX) {
      const a = await this.query(peer, {
        op: 'have',
        hashParts: hashParts.slice(i, i + HAVE_QUERY_MAX),
      });
      for (const p of stringArray(a.paths, HAVE_QUERY_MAX, 'paths'))
        out.push(parseStorePath(p).path);
    }
    return out;
  }

  /** The infos of the closure of `paths` as the peer holds it (signatures not yet checked). */
  async closure(peer: string, paths: readonly string[]): Promise<PathInfo[]> {
    const a = await this.query(peer, { op: 'closure', paths: [...paths] });
    if (!Array.isArray(a.infos)) throw protocolError(`${peer} sent no infos`);
    return a.infos.map(parseWireInfo);
  }

  /**
   * Streams the NARs of `infos` from `peer`, each into the sink `start` opens: over a bulk
   * connection when the peer offers one (bulk.ts), else over a `nars` stream. Returns the paths
   * that failed, with why (the peer lacks it, its sink refused it, the transfer broke: all paths
   * not yet received fail then). Never throws for a per-path failure.
   */
  async nars(
    peer: string,
    infos: readonly PathInfo[],
    start: (info: PathInfo) => Promise<NarSinkAsync>,
    queue: WriteBehind = new WriteBehind(),
  ): Promise<Map<string, unknown>> {
    if (this.o.bulk !== false && (this.noBulkUntil.get(peer) ?? 0) <= Date.now()) {
      const src = await this.openBulk(peer, infos).catch((e: unknown) => {
        // A node without bulk asks again after a while (it may restart with it); a failed
        // connection too (a firewall): meanwhile its batches go over `nars` without the wait.
        // A busy one is asked again soon.
        this.noBulkUntil.set(peer, Date.now() + bulkRetryAfterMs(e));
        this.o.log?.('bulk transfer unavailable, using the nars stream', {
          peer,
          err: (e as Error).message,
        });
        return undefined;
      });
      if (src !== undefined) {
        if (this.o.counters !== undefined) this.o.counters.bulkTransfers++;
        return this.receive(peer, infos, start, queue, src);
      }
    }
    if (this.o.counters !== undefined) this.o.counters.streamTransfers++;
    const failed = new Map<string, unknown>();
    let src: NarSource;
    try {
      src = await this.openNars(peer, infos);
    } catch (e) {
      for (const i of infos) failed.set(i.path, e);
      return failed;
    }
    return this.receive(peer, infos, start, queue, src);
  }

  /** A `nars` stream under credit, its request sent. */
  private async openNars(peer: string, infos: readonly PathInfo[]): Promise<NarSource> {
    const window = Math.min(this.o.window ?? NAR_WINDOW_BYTES, NAR_WINDOW_BYTES_MAX);
    const stream = await this.open(peer);
    const lp = lpStream(stream, {
      maxDataLength: Math.max(CONTROL_FRAME_BYTES_MAX, NAR_FRAME_BYTES_MAX),
      maxBufferSize: window + NAR_READ_SLACK_BYTES,
      lengthDecoder: varintLength,
    });
    try {
      await lp.write(packr.pack({ op: 'nars', paths: infos.map((i) => i.path), window }));
    } catch (e) {
      stream.abort(e as Error);
      throw e;
    }
    let owed = 0;
    return {
      head: async () => packr.unpack((await readStalled(lp)).subarray()) as Record<string, unknown>,
      data: async () => {
        const frame = await readStalled(lp);
        if (frame.byteLength > NAR_FRAME_BYTES_MAX) {
          throw protocolError(`${peer} sent a data frame of ${frame.byteLength} bytes`);
        }
        return frame;
      },
      queued: async (n) => {
        owed += n;
        // Grant credit in batches: a frame per data frame would double the frame rate.
        if (owed >= window / 4) {
          await lp.write(packr.pack({ credit: owed }));
          owed = 0;
        }
      },
      finish: async () => {
        await stream.close().catch(() => {});
      },
      abort: (e) => stream.abort(e as Error),
    };
  }

  /** A claimed bulk transfer: a ticket asked over libp2p, then its own TCP connection. */
  private async openBulk(peer: string, infos: readonly PathInfo[]): Promise<NarSource> {
    const a = await this.query(peer, { op: 'bulk', paths: infos.map((i) => i.path) });
    const port = a.port;
    const ticket = a.ticket;
    const key = a.key;
    if (
      typeof port !== 'number' ||
      !Number.isInteger(port) ||
      port < 1 ||
      port > 65535 ||
      !(ticket instanceof Uint8Array) ||
      ticket.length !== BULK_TICKET_BYTES ||
      !(key instanceof Uint8Array) ||
      key.length !== BULK_KEY_BYTES
    ) {
      throw protocolError(`${peer} sent a bad bulk ticket`);
    }
    const ip = this.peerIp(peer);
    if (ip === undefined) throw protocolError(`no open connection to ${peer} to take its address`);
    const reader = new BulkReader(await dialBulk(ip, { port, ticket, key }), key);
    const expect = async (type: number, what: string) => {
      const f = await reader.next();
      if (f.type !== type)
        throw protocolError(`${peer}: a bulk frame of type ${f.type}, not ${what}`);
      return f;
    };
    return {
      head: async () => {
        const f = await expect(FRAME_HEAD, 'a header');
        if (f.length > BULK_HEAD_BYTES_MAX)
          throw protocolError(`${peer}: a header of ${f.length} bytes`);
        return packr.unpack(payloadOf(f)) as Record<string, unknown>;
      },
      data: async () => {
        const f = await expect(FRAME_DATA, 'data');
        return {
          byteLength: f.length,
          subarray: () => payloadOf(f),
          [Symbol.iterator]: () => f.parts[Symbol.iterator](),
        };
      },
      queued: async () => {},
      finish: async () => {
        await expect(FRAME_END, 'the end');
        reader.close();
      },
      abort: () => reader.close(),
    };
  }

  /** The IP this node's libp2p connection to `peer` dialed or came from. */
  private peerIp(peer: string): string | undefined {
    for (const c of this.o.host.getConnections(peerIdFromString(peer))) {
      if (c.status !== 'open') continue;
      for (const part of c.remoteAddr.getComponents()) {
        if (part.name === 'ip4' || part.name === 'ip6') return part.value;
      }
    }
    return undefined;
  }

  /** Reads the NARs of `infos` from `src` into their sinks (write-behind), in order. */
  private async receive(
    peer: string,
    infos: readonly PathInfo[],
    start: (info: PathInfo) => Promise<NarSinkAsync>,
    queue: WriteBehind,
    src: NarSource,
  ): Promise<Map<string, unknown>> {
    const failed = new Map<string, unknown>();
    const jobs: SinkJob[] = [];
    let k = 0;
    try {
      for (; k < infos.length; k++) {
        const info = infos[k]!;
        const head = await src.head();
        if (head.path !== info.path)
          throw protocolError(`${peer} answered for ${String(head.path)}, not ${info.path}`);
        if (head.error !== undefined) {
          failed.set(info.path, wireError(head, peer));
          continue;
        }
        if (head.narSize !== info.narSize) {
          throw new StoreError(
            'SIZE_MISMATCH',
            `${peer} offers ${info.path} with ${String(head.narSize)} bytes, the signed NarSize is ${info.narSize}`,
          );
        }
        await queue.roomForPath();
        const job = queue.start(info, start);
        jobs.push(job);
        let got = 0;
        while (got < info.narSize) {
          const frame = await src.data();
          const n = frame.byteLength;
          if (n > info.narSize - got) {
            throw new StoreError(
              'SIZE_MISMATCH',
              `${peer} sent more than NarSize for ${info.path}`,
            );
          }
          // Credit (or the next read) for this frame only once it is queued: wait for room
          // first, so a slow sink holds the server back instead of growing the queue.
          await queue.roomFor(n);
          job.write(frame);
          got += n;
          await src.queued(n);
        }
        job.finish();
      }
      await src.finish();
      await queue.settled();
    } catch (e) {
      src.abort(e);
      queue.abortAll(e);
      await queue.settled();
      for (; k < infos.length; k++) if (!failed.has(infos[k]!.path)) failed.set(infos[k]!.path, e);
    }
    for (const j of jobs)
      if (!j.ok) failed.set(j.info.path, j.error ?? protocolError('not finished'));
    return failed;
  }
}

/** Where a client reads one request's NARs from: a `nars` stream or a bulk connection. */
interface NarSource {
  head(): Promise<Record<string, unknown>>;
  data(): Promise<Frame>;
  /** `n` bytes of data were queued to a sink (a `nars` stream grants credit). */
  queued(n: number): Promise<void>;
  /** After the last path: the transfer's end (a bulk connection's END frame). */
  finish(): Promise<void>;
  abort(why: unknown): void;
}

async function readStalled(lp: LengthPrefixedStream<Stream>) {
  return lp.read({ signal: AbortSignal.timeout(NAR_STALL_TIMEOUT_MS) });
}

function wireError(a: Record<string, unknown>, peer: string): StoreError {
  const e = a.error as { code?: unknown; message?: unknown };
  return new StoreError(
    (typeof e.code === 'string' ? e.code : 'PROTOCOL') as StoreErrorCode,
    `${peer}: ${typeof e.message === 'string' ? e.message : 'error'}`,
  );
}

function throwIfError(a: Record<string, unknown>, peer: string): void {
  if (typeof a !== 'object' || a === null) throw protocolError(`${peer} sent a non-map answer`);
  if (a.error !== undefined) throw wireError(a, peer);
}

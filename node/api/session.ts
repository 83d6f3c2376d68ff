// /pcr/api-session/1.0.0 (docs/protocols.md): many API requests pipelined on one long-lived stream.
// A stream per request (/pcr/api/1.0.0) costs a yamux open and close, a protocol negotiation and
// several encrypted frames and socket writes each; under load that was most of a member's CPU.
// Here the client writes `[id, request]` frames and the member answers `[id, answer]` frames in
// whatever order the answers complete. Frames queued in the same turn of the event loop leave in
// one write (writeV) on both sides.

import type { Stream } from '@libp2p/interface';
import { type LengthPrefixedStream, lpStream } from '@libp2p/utils';
import { varintLength } from '../p2p/length_prefix.ts';
import {
  API_REQUEST_BYTES_MAX,
  API_RESPONSE_BYTES_MAX,
  type ApiRequest,
  type ApiResponse,
  apiError,
  declaredSize,
  isFrameTooLarge,
  packr,
  requestTooLarge,
} from './wire.ts';

export const API_SESSION_PROTOCOL = '/pcr/api-session/1.0.0';
/**
 * Requests a member runs at once for one session; it stops reading the stream while this many
 * are in flight (the muxer's window then holds the client back).
 */
export const API_SESSION_INFLIGHT_MAX = 1024;
/** Frames one write carries at most (a bound on one writeV's size, with the frame bounds). */
export const API_SESSION_FRAMES_PER_WRITE_MAX = 256;

type Frame = [number, unknown];

function isFrame(x: unknown): x is Frame {
  return Array.isArray(x) && x.length === 2 && Number.isSafeInteger(x[0]) && (x[0] as number) >= 0;
}

/** Batches frames queued in one turn of the event loop into one write; stops at the first error. */
class FrameWriter {
  private readonly queue: Uint8Array[] = [];
  private flushing = false;
  failed: Error | undefined;

  private readonly lp: LengthPrefixedStream<Stream>;
  private readonly onError: (e: Error) => void;

  constructor(lp: LengthPrefixedStream<Stream>, onError: (e: Error) => void) {
    this.lp = lp;
    this.onError = onError;
  }

  /** Resolves once everything pushed so far was written (or the writer failed). */
  async drained(): Promise<void> {
    while (this.flushing || this.queue.length > 0) {
      if (this.failed !== undefined) return;
      await new Promise((r) => setImmediate(r));
    }
  }

  push(bytes: Uint8Array): void {
    if (this.failed !== undefined) return;
    this.queue.push(bytes);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => void this.flush());
    }
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0 && this.failed === undefined) {
        await this.lp.writeV(this.queue.splice(0, API_SESSION_FRAMES_PER_WRITE_MAX));
      }
    } catch (e) {
      this.failed = e as Error;
      this.queue.length = 0;
      this.onError(e as Error);
    } finally {
      this.flushing = false;
    }
  }
}

/**
 * The member's side: reads request frames until the stream ends, answers each. A frame that does
 * not decode, or is not `[id, request]`, ends the session (the client's requests then fail and
 * it opens a new one); nothing reaches `handle`.
 */
export async function serveSession(
  stream: Stream,
  handle: (req: unknown) => Promise<ApiResponse>,
): Promise<void> {
  const lp = lpStream(stream, {
    maxDataLength: API_REQUEST_BYTES_MAX,
    lengthDecoder: varintLength,
  });
  const writer = new FrameWriter(lp, (e) => stream.abort(e));
  let inflight = 0;
  let slot: (() => void) | undefined;
  for (;;) {
    if (inflight >= API_SESSION_INFLIGHT_MAX) {
      await new Promise<void>((r) => {
        slot = r;
      });
    }
    let frame: unknown;
    try {
      frame = packr.unpack((await lp.read()).subarray());
    } catch (e) {
      if ((e as { name?: string }).name !== 'UnexpectedEOFError') {
        // Too long: its id is in the payload, which is not read. Say why on frame 0 (never a
        // request's), so the client fails its requests with the bound's name, then end.
        if (isFrameTooLarge(e)) {
          await writer.drained();
          await lp.write(packr.pack([0, requestTooLarge(declaredSize(e))])).catch(() => {});
        }
        // A bad frame or a broken stream: answers still in flight are dropped with it.
        stream.abort(e as Error);
        return;
      }
      // The client closed its side: answer what is in flight, then close ours.
      while (inflight > 0) {
        await new Promise<void>((r) => {
          slot = r;
        });
      }
      await writer.drained();
      await stream.close().catch((err: Error) => stream.abort(err));
      return;
    }
    if (!isFrame(frame)) {
      // Say why (frame id 0 is never a request's), then end the session.
      await writer.drained();
      await lp
        .write(packr.pack([0, apiError('INVALID', 'a session frame is [id, request]')]))
        .catch(() => {});
      stream.abort(new Error('bad session frame'));
      return;
    }
    const [id, req] = frame;
    inflight++;
    handle(req)
      .catch((e: Error) => apiError('UNAVAILABLE', `request failed: ${e.message}`))
      .then((resp) => {
        writer.push(packr.pack([id, resp]));
        inflight--;
        const s = slot;
        slot = undefined;
        s?.();
      });
  }
}

interface Pending {
  readonly resolve: (r: ApiResponse) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * The client's side of one session: request() pipelines; answers resolve by id. When the stream
 * fails, every pending request is rejected with that error and the session is dead (`closed`).
 */
export class ApiSession {
  private readonly lp: LengthPrefixedStream<Stream>;
  private readonly writer: FrameWriter;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  closed: Error | undefined;

  private readonly stream: Stream;

  constructor(stream: Stream) {
    this.stream = stream;
    this.lp = lpStream(stream, {
      maxDataLength: API_RESPONSE_BYTES_MAX,
      lengthDecoder: varintLength,
    });
    this.writer = new FrameWriter(this.lp, (e) => this.fail(e));
    void this.readLoop();
  }

  request(req: ApiRequest, timeoutMs: number): Promise<ApiResponse> {
    if (this.closed !== undefined) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise<ApiResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const frame = packr.pack([id, req]);
      if (frame.length > API_REQUEST_BYTES_MAX) {
        // Refused here, before it is sent: the member would end the session on it.
        clearTimeout(timer);
        resolve(requestTooLarge(frame.length));
        return;
      }
      this.pending.set(id, { resolve, reject, timer });
      this.writer.push(frame);
    });
  }

  get inflight(): number {
    return this.pending.size;
  }

  close(): void {
    this.fail(new Error('session closed'));
    void this.stream.close().catch(() => this.stream.abort(new Error('session closed')));
  }

  private async readLoop(): Promise<void> {
    try {
      for (;;) {
        const frame: unknown = packr.unpack((await this.lp.read()).subarray());
        if (!isFrame(frame)) throw new Error('the member sent a malformed session frame');
        if (frame[0] === 0) {
          // The member ends the session and says why (a frame it refused).
          const why =
            (frame[1] as ApiResponse).ok === false
              ? (frame[1] as { error: { message: string } }).error.message
              : 'session ended by the member';
          throw new Error(why);
        }
        const p = this.pending.get(frame[0]);
        if (p === undefined) continue; // timed out already
        this.pending.delete(frame[0]);
        clearTimeout(p.timer);
        p.resolve(frame[1] as ApiResponse);
      }
    } catch (e) {
      this.fail(e as Error);
      this.stream.abort(e as Error);
    }
  }

  private fail(e: Error): void {
    if (this.closed !== undefined) return;
    this.closed = e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.pending.clear();
  }
}

// /pcr/raft-snapshot/1.0.0 (docs/protocols.md): one Raft snapshot message per stream, cut into
// chunks with a window. A snapshot in one frame on the Raft stream would hold heartbeats behind it,
// and lpStream has no back-pressure (a reader's buffer that overflows resets the stream), so the
// sender keeps at most SNAPSHOT_WINDOW_CHUNKS unacknowledged chunks in flight.
//
// Sender: `{ size, chunks }` header, then `chunks` raw frames of at most SNAPSHOT_CHUNK_BYTES
// adding up to `size`. Receiver: `{ got: n }` after each chunk, then `{ done: true }` once the
// whole message was received and accepted, or `{ error }` if not.

import type { Stream } from '@libp2p/interface';
import { type LengthPrefixedStream, lpStream } from '@libp2p/utils';
import { Packr } from 'msgpackr';
import { varintLength } from './length_prefix.ts';

export const SNAPSHOT_PROTOCOL = '/pcr/raft-snapshot/1.0.0';
/** Bytes of one chunk. */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
/** Chunks sent and not yet acknowledged (2 MiB: below the reader's 4 MiB stream buffer). */
export const SNAPSHOT_WINDOW_CHUNKS = 2;
/** Largest encoded snapshot message accepted. */
export const SNAPSHOT_MESSAGE_BYTES_MAX = 1024 * 1024 * 1024;
/** The sender gives up when the receiver acknowledges nothing for this long. */
export const SNAPSHOT_ACK_TIMEOUT_MS = 15_000;
/** Control frames (header, acks) are small. */
const CONTROL_BYTES_MAX = 256;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

export class SnapshotStreamError extends Error {
  override readonly name = 'SnapshotStreamError';
}

async function readControl(
  lp: LengthPrefixedStream<Stream>,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  const frame = await lp.read({ signal });
  if (frame.byteLength > CONTROL_BYTES_MAX) throw new SnapshotStreamError('control frame too big');
  const v: unknown = packr.unpack(frame.subarray());
  if (typeof v !== 'object' || v === null) throw new SnapshotStreamError('bad control frame');
  return v as Record<string, unknown>;
}

/** Sends one encoded snapshot message on a fresh stream; resolves once the receiver took it. */
export async function sendSnapshot(stream: Stream, bytes: Uint8Array): Promise<{ chunks: number }> {
  if (bytes.byteLength > SNAPSHOT_MESSAGE_BYTES_MAX) {
    throw new SnapshotStreamError(
      `snapshot of ${bytes.byteLength} bytes is above SNAPSHOT_MESSAGE_BYTES_MAX`,
    );
  }
  const lp = lpStream(stream, { maxDataLength: SNAPSHOT_CHUNK_BYTES, lengthDecoder: varintLength });
  const chunks = Math.max(1, Math.ceil(bytes.byteLength / SNAPSHOT_CHUNK_BYTES));
  try {
    await lp.write(packr.pack({ size: bytes.byteLength, chunks }));
    let acked = 0;
    for (let i = 0; i < chunks; i++) {
      while (i - acked >= SNAPSHOT_WINDOW_CHUNKS) {
        acked = await readAck(lp, acked);
      }
      await lp.write(bytes.subarray(i * SNAPSHOT_CHUNK_BYTES, (i + 1) * SNAPSHOT_CHUNK_BYTES));
    }
    while (acked < chunks) acked = await readAck(lp, acked);
    const end = await readControl(lp, AbortSignal.timeout(SNAPSHOT_ACK_TIMEOUT_MS));
    if (end.done !== true) {
      throw new SnapshotStreamError(`receiver refused the snapshot: ${String(end.error)}`);
    }
    await stream.close().catch(() => {});
    return { chunks };
  } catch (e) {
    stream.abort(e as Error);
    throw e;
  }
}

async function readAck(lp: LengthPrefixedStream<Stream>, acked: number): Promise<number> {
  const a = await readControl(lp, AbortSignal.timeout(SNAPSHOT_ACK_TIMEOUT_MS));
  if (typeof a.error === 'string') throw new SnapshotStreamError(`receiver refused: ${a.error}`);
  if (typeof a.got !== 'number' || a.got !== acked + 1) {
    throw new SnapshotStreamError('receiver acknowledged out of order');
  }
  return a.got;
}

/**
 * Receives one snapshot message; `accept` checks and delivers the assembled bytes and returns an
 * error string to refuse them. Bad headers, chunk overruns and truncated streams are refused
 * before anything is delivered.
 */
export async function receiveSnapshot(
  stream: Stream,
  accept: (bytes: Uint8Array) => string | undefined,
): Promise<void> {
  const lp = lpStream(stream, { maxDataLength: SNAPSHOT_CHUNK_BYTES, lengthDecoder: varintLength });
  const refuse = async (why: string): Promise<never> => {
    await lp.write(packr.pack({ error: why })).catch(() => {});
    stream.abort(new SnapshotStreamError(why));
    throw new SnapshotStreamError(why);
  };
  const signal = AbortSignal.timeout(SNAPSHOT_ACK_TIMEOUT_MS);
  const h = await readControl(lp, signal);
  const size = h.size;
  const chunks = h.chunks;
  if (
    typeof size !== 'number' ||
    !Number.isSafeInteger(size) ||
    size < 0 ||
    size > SNAPSHOT_MESSAGE_BYTES_MAX
  ) {
    return refuse(`snapshot size ${String(size)} is not within 0..${SNAPSHOT_MESSAGE_BYTES_MAX}`);
  }
  if (chunks !== Math.max(1, Math.ceil(size / SNAPSHOT_CHUNK_BYTES))) {
    return refuse(`${String(chunks)} chunks do not fit a snapshot of ${size} bytes`);
  }
  const parts: Uint8Array[] = [];
  let received = 0;
  for (let i = 0; i < chunks; i++) {
    // Each chunk has its own deadline: a slow but moving transfer is fine.
    const part = (
      await lp.read({ signal: AbortSignal.timeout(SNAPSHOT_ACK_TIMEOUT_MS) })
    ).subarray();
    received += part.byteLength;
    if (received > size) return refuse(`more than the ${size} bytes announced`);
    parts.push(part);
    await lp.write(packr.pack({ got: i + 1 }));
  }
  if (received !== size) return refuse(`${received} bytes received of ${size} announced`);
  const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
  const why = accept(bytes);
  if (why !== undefined) return refuse(why);
  await lp.write(packr.pack({ done: true }));
  await stream.close().catch(() => {});
}

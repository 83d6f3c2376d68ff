// Length prefixes read without building an exception for every message. The libp2p helpers learn
// that a length prefix is not complete yet by catching a RangeError: lpStream (@libp2p/utils)
// reads a varint one byte at a time and tries to decode it after each byte, and the decoder
// noise frames go through (LengthPrefixedDecoder, with noise's 2-byte length) is asked once more
// each time it has emptied its buffer. Each of those is `new RangeError`, and V8 builds a stack
// trace for every Error it constructs, walking optimized frames: in a CPU profile of a leader
// under one client's sequential writes that was 9.5% of its samples (docs/operations.md,
// "Performance"). Here the signal is one RangeError made once and thrown again (throwing an
// existing object builds no trace); what the catching code checks, `instanceof RangeError`, holds.
//
// `varintLength` is the decoder our own lpStream readers pass (Raft, the API, the store protocol).
// `installQuietLengthPrefixes` gives every LengthPrefixedDecoder (the class has no option for it)
// a decoder that throws the shared signal while its buffer is shorter than the prefix; the test
// (length_prefix.test.ts) counts RangeErrors built on a real pair of hosts, so a library update
// that renames what this relies on fails there, not silently.

import { LengthPrefixedDecoder } from '@libp2p/utils';

/** Thrown, never built again, while a length prefix is still incomplete. Carries no useful stack. */
export const INCOMPLETE_LENGTH_PREFIX: RangeError = new RangeError(
  'length prefix not complete yet (a signal between decoder and reader, not a failure)',
);

/**
 * The longest varint length prefix read: 8 bytes carry 56 bits, more than any length a reader
 * accepts (every reader also has its own data bound, e.g. MESSAGE_BYTES_MAX). A longer prefix is
 * malformed: refused at once instead of read byte by byte.
 */
export const LENGTH_PREFIX_BYTES_MAX = 8;

/** A length prefix that can never decode (longer than LENGTH_PREFIX_BYTES_MAX). */
export class InvalidLengthPrefixError extends Error {
  override readonly name = 'InvalidLengthPrefixError';
}

/** What lpStream hands a length decoder: a Uint8ArrayList (or plain bytes). */
export interface PrefixBytes {
  readonly byteLength: number;
  get(index: number): number;
}

/**
 * An unsigned varint (the libp2p length prefix) at the start of `buf`, for lpStream's
 * `lengthDecoder`: throws INCOMPLETE_LENGTH_PREFIX while the last byte read still says "more", and
 * InvalidLengthPrefixError past LENGTH_PREFIX_BYTES_MAX bytes.
 */
export function varintLength(buf: PrefixBytes | Uint8Array): number {
  const plain = buf instanceof Uint8Array;
  const n = Math.min(buf.byteLength, LENGTH_PREFIX_BYTES_MAX);
  let value = 0;
  let scale = 1;
  for (let i = 0; i < n; i++) {
    const b = plain ? buf[i]! : buf.get(i);
    value += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) return value;
    scale *= 128;
  }
  if (buf.byteLength >= LENGTH_PREFIX_BYTES_MAX) {
    throw new InvalidLengthPrefixError(
      `length prefix longer than LENGTH_PREFIX_BYTES_MAX (${LENGTH_PREFIX_BYTES_MAX} bytes)`,
    );
  }
  throw INCOMPLETE_LENGTH_PREFIX;
}

type LengthDecoder = ((data: PrefixBytes) => number) & { bytes?: number };

const QUIET = Symbol.for('pcr.quietLengthPrefix');

/** `d`, except that a buffer shorter than its prefix throws the shared signal without calling it. */
function quiet(d: LengthDecoder): LengthDecoder {
  // A fixed-size prefix says its size (noise's uint16BE decoder: `bytes = 2`); a varint needs one.
  const need = typeof d.bytes === 'number' && d.bytes > 0 ? d.bytes : 1;
  const q: LengthDecoder = (data) => {
    if (data.byteLength < need) throw INCOMPLETE_LENGTH_PREFIX;
    return d(data);
  };
  (q as unknown as Record<symbol, boolean>)[QUIET] = true;
  return q;
}

const INSTALLED = Symbol.for('pcr.quietLengthPrefixes');

/** Installs the quiet decoder in LengthPrefixedDecoder once per process; later calls do nothing. */
export function installQuietLengthPrefixes(): void {
  const proto = LengthPrefixedDecoder.prototype as unknown as Record<PropertyKey, unknown> & {
    decode: (this: { lengthDecoder: LengthDecoder }, buf: unknown) => Iterable<unknown>;
  };
  if (proto[INSTALLED] === true) return;
  const original = proto.decode;
  if (typeof original !== 'function') {
    throw new Error('@libp2p/utils: LengthPrefixedDecoder.decode is gone');
  }
  proto.decode = function decode(this: { lengthDecoder: LengthDecoder }, buf: unknown) {
    const d = this.lengthDecoder;
    if (typeof d !== 'function') {
      throw new Error('@libp2p/utils: LengthPrefixedDecoder.lengthDecoder is gone');
    }
    if ((d as unknown as Record<symbol, boolean>)[QUIET] !== true) this.lengthDecoder = quiet(d);
    return original.call(this, buf);
  };
  proto[INSTALLED] = true;
}

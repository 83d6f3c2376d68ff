// Nix's base32: not RFC 4648. The bytes are read as one little-endian number and printed most
// significant 5-bit digit first, over the alphabet below (no e, o, u, t).

import { StoreError } from './errors.ts';

export const NIX32_ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz';
const DIGIT = new Map([...NIX32_ALPHABET].map((c, i) => [c, i]));

export function nix32Length(bytes: number): number {
  return Math.ceil((bytes * 8) / 5);
}

export function encodeNix32(bytes: Uint8Array): string {
  const len = nix32Length(bytes.length);
  let out = '';
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    const c = (bytes[i]! >> j) | (i + 1 < bytes.length ? bytes[i + 1]! << (8 - j) : 0);
    out += NIX32_ALPHABET[c & 0x1f];
  }
  return out;
}

/** Decodes `s` into exactly `size` bytes; refuses bad digits, wrong lengths and stray high bits. */
export function decodeNix32(s: string, size: number): Uint8Array {
  if (s.length !== nix32Length(size)) {
    throw new StoreError(
      'BAD_HASH',
      `nix32 string of ${s.length} characters where ${nix32Length(size)} were expected: ${JSON.stringify(s.slice(0, 80))}`,
    );
  }
  const out = new Uint8Array(size);
  for (let n = 0; n < s.length; n++) {
    const digit = DIGIT.get(s[s.length - n - 1]!);
    if (digit === undefined) {
      throw new StoreError('BAD_HASH', `invalid nix32 character in ${JSON.stringify(s)}`);
    }
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    out[i]! |= (digit << j) & 0xff;
    const carry = digit >> (8 - j);
    if (i + 1 < size) out[i + 1]! |= carry;
    else if (carry !== 0) {
      throw new StoreError('BAD_HASH', `nix32 string ${JSON.stringify(s)} overflows ${size} bytes`);
    }
  }
  return out;
}

export function isNix32(s: string): boolean {
  for (const c of s) if (!DIGIT.has(c)) return false;
  return true;
}

// SHA-256 hashes as Nix writes them: `sha256:<nix32>` (narinfo, fingerprints), also accepted as
// base16, base64 or SRI (`sha256-<base64>`, what `nix path-info --json` prints). Other algorithms
// are refused: NarHash is always sha256 in Nix, and we only produce Compression: none.

import { createHash, type Hash } from 'node:crypto';
import { decodeNix32, encodeNix32, nix32Length } from './base32.ts';
import { StoreError } from './errors.ts';

export const SHA256_BYTES = 32;

/** Parses any of Nix's spellings of a sha256 hash; returns the raw digest. */
export function parseSha256(s: string): Uint8Array {
  let body: string;
  let sri = false;
  if (s.startsWith('sha256:')) body = s.slice(7);
  else if (s.startsWith('sha256-')) {
    body = s.slice(7);
    sri = true;
  } else {
    throw new StoreError(
      'BAD_HASH',
      `unsupported hash ${JSON.stringify(s.slice(0, 80))}: expected sha256:<nix32|base16|base64> or sha256-<base64>`,
    );
  }
  if (!sri && body.length === nix32Length(SHA256_BYTES)) return decodeNix32(body, SHA256_BYTES);
  if (!sri && body.length === 64 && /^[0-9a-f]+$/.test(body)) return Buffer.from(body, 'hex');
  if (body.length === 44 && /^[A-Za-z0-9+/]{43}=$/.test(body)) {
    const bytes = Buffer.from(body, 'base64');
    if (bytes.length === SHA256_BYTES) return bytes;
  }
  throw new StoreError('BAD_HASH', `malformed sha256 hash ${JSON.stringify(s.slice(0, 80))}`);
}

export function formatSha256(digest: Uint8Array): string {
  return `sha256:${encodeNix32(digest)}`;
}

/** The canonical form (`sha256:<nix32>`) of any accepted spelling. */
export function normaliseSha256(s: string): string {
  return formatSha256(parseSha256(s));
}

/** Hashes a stream of chunks, counting bytes. */
export class Sha256Sink {
  private readonly h: Hash = createHash('sha256');
  private done: string | undefined;
  bytes = 0;
  update(chunk: Uint8Array): void {
    if (this.done !== undefined) throw new Error('Sha256Sink: update after digest');
    this.h.update(chunk);
    this.bytes += chunk.length;
  }
  /** `sha256:<nix32>`; the same string on every call (a node:crypto Hash digests only once). */
  digest(): string {
    this.done ??= formatSha256(this.h.digest());
    return this.done;
  }
}

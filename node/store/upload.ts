// Uploads from Nix's own client: `nix copy --to http://node:PORT PATH` (and a post-build-hook doing
// the same) first PUTs `/nar/<fileHash>.nar[.xz|.zst]`, then `/<hashPart>.narinfo`, references
// before referrers. This module owns both halves:
//
// - a NAR upload is received into the store's staging dir: the body is hashed as it arrives (the
//   name's file hash), decompressed by the `xz` or `zstd` CLI, and the NAR hashed, counted and
//   parsed (grammar) as it is written; it then waits, named by its URL, for its narinfo;
// - a narinfo upload is parsed strictly, matched to the waiting NAR (NarHash, NarSize, FileHash,
//   FileSize), its signature checked against the node's trust policy and its references against
//   the store, and the path committed through `Store.commit` (atomic: the whole path or nothing).
//
// Every refusal is a StoreError whose code becomes an HTTP status (httpStatusOf) with the message
// as the body, which Nix prints. Nothing of a refused upload stays on disk. Credentials are not
// checked here (cache_auth.ts, by the HTTP cache before the body is read).

import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { which } from '../which.ts';
import { StoreError, type StoreErrorCode } from './errors.ts';
import { Sha256Sink } from './hash.ts';
import { checkSignatures, type TrustPolicy } from './keys.ts';
import { NarParser } from './nar.ts';
import { NARINFO_BYTES_MAX, type NarInfo, parseNarInfo, pathInfoOfNarInfo } from './narinfo.ts';
import type { PathInfo, Store, StoreCounters } from './store.ts';
import { isHashPart, parseStorePath } from './store_path.ts';
import { ProgramFailed, throughProgram } from './through_program.ts';

/** Largest uncompressed NAR one upload may carry (a store with a lower limit refuses earlier). */
export const UPLOAD_NAR_BYTES_MAX_DEFAULT = 64 * 1024 ** 3;
/**
 * What a compressed body may add over its NAR: xz and zstd grow incompressible data by well
 * under 1%; a body larger than the NAR limit plus this is refused before it is read.
 */
export const UPLOAD_COMPRESSION_SLACK_BYTES = 16 * 1024 ** 2;
/** NARs received and waiting for their narinfo (Nix sends the narinfo right after its NAR). */
export const UPLOAD_PENDING_MAX = 1024;
/** A received NAR whose narinfo does not come within this long is deleted. */
export const UPLOAD_PENDING_MS = 10 * 60_000;
/**
 * Upload URLs remembered (in memory, the newest) with the path each carried: the uploader's Nix
 * keeps the narinfo it uploaded, naming that URL, for 30 days (narinfo-cache-positive-ttl), and
 * asks for it when it copies the path back.
 */
export const UPLOADED_URLS_MAX = 100_000;
/** The NAR is written in batches of this many bytes (one writev each, not one write per chunk). */
export const UPLOAD_WRITE_BATCH_BYTES = 1024 * 1024;

/** The narinfo body bound (a larger body is refused before it is parsed). */
export const UPLOAD_NARINFO_BYTES_MAX = NARINFO_BYTES_MAX;

export type UploadCompression = 'none' | 'xz' | 'zstd';

/** The CLI that decompresses each compression (none: the body is the NAR). */
const DECOMPRESSOR: Record<Exclude<UploadCompression, 'none'>, string> = { xz: 'xz', zstd: 'zstd' };

/** A NAR upload's name: `nar/<file hash, nix32>.nar` plus `.xz` or `.zst`. */
export function parseNarUploadName(
  url: string,
): { fileHash: string; compression: UploadCompression } | undefined {
  const m = /^\/nar\/([0-9a-df-np-sv-z]{52})\.nar(\.xz|\.zst)?$/.exec(url);
  if (m === null) return undefined;
  const compression = m[2] === '.xz' ? 'xz' : m[2] === '.zst' ? 'zstd' : 'none';
  return { fileHash: `sha256:${m[1]}`, compression };
}

/** A narinfo upload's name: `/<hash part>.narinfo`. */
export function parseNarInfoUploadName(url: string): string | undefined {
  const m = /^\/([0-9a-z]{32})\.narinfo$/.exec(url);
  return m !== null && isHashPart(m[1]!) ? m[1] : undefined;
}

/** The HTTP status Nix shows for a refused upload (the message is the body). */
export function httpStatusOf(code: StoreErrorCode | undefined): number {
  switch (code) {
    case 'BAD_NARINFO':
    case 'BAD_NAR':
    case 'BAD_STORE_PATH':
    case 'BAD_HASH':
    case 'HASH_MISMATCH':
    case 'SIZE_MISMATCH':
      return 400;
    case 'UNTRUSTED':
    case 'BAD_SIGNATURE':
      return 403;
    case 'NOT_FOUND':
      return 409;
    case 'TOO_LARGE':
      return 413;
    case 'UNSUPPORTED':
      return 415;
    case 'STORE_FULL':
      return 507;
    default:
      return 500;
  }
}

/** A NAR received, verified as a NAR, waiting for its narinfo. */
interface PendingNar {
  readonly file: string;
  readonly fileHash: string;
  readonly fileSize: number;
  readonly compression: UploadCompression;
  readonly narHash: string;
  readonly narSize: number;
  readonly synced: boolean;
  readonly timer: NodeJS.Timeout;
}

export interface UploadOptions {
  readonly store: Store;
  /** Configured keys and the members' store keys: an upload must be signed by one of them. */
  readonly trust: TrustPolicy;
  readonly counters: StoreCounters;
  /** Uncompressed NAR bound; default UPLOAD_NAR_BYTES_MAX_DEFAULT (and the store's own limit). */
  readonly narBytesMax?: number;
  /** Where the decompressors are looked up (tests hide one to see the refusal). */
  readonly findTool?: (name: string) => string | undefined;
  /** Upload URLs remembered (default UPLOADED_URLS_MAX; tests use a small one). */
  readonly uploadedUrlsMax?: number;
}

export class Uploads {
  private readonly o: UploadOptions;
  /** By URL as the narinfo names it: `nar/<fileHash>.nar.xz`. */
  private readonly pending = new Map<string, PendingNar>();
  private limit: Promise<number> | undefined;
  /** URL as uploaded (`nar/<fileHash>.nar.xz`) -> the path it carried, oldest first. */
  private readonly accepted = new Map<string, string>();

  constructor(o: UploadOptions) {
    this.o = o;
  }

  /**
   * The bound on one NAR: the option, the default, and the store's size limit when it has one
   * (asked once: a store's limit is fixed when it opens, and a Nix store's summary reads its dir).
   */
  narBytesMax(): Promise<number> {
    this.limit ??= this.o.store.summary().then(
      (s) => {
        const own = this.o.narBytesMax ?? UPLOAD_NAR_BYTES_MAX_DEFAULT;
        return s.maxBytes === undefined ? own : Math.min(own, s.maxBytes);
      },
      (e: unknown) => {
        this.limit = undefined; // asked again next time
        throw e;
      },
    );
    return this.limit;
  }

  /** Refusals known from the headers alone (before a byte of the body is read). */
  async precheckNar(url: string, contentLength: number | undefined): Promise<void> {
    const name = parseNarUploadName(url);
    if (name === undefined) throw badName(url);
    if (name.compression !== 'none') this.decompressor(name.compression);
    const max = (await this.narBytesMax()) + slack(name.compression);
    if (contentLength !== undefined && contentLength > max) {
      throw new StoreError(
        'TOO_LARGE',
        `${url}: ${contentLength} bytes is over this node's upload limit of ${max} bytes (the store's size limit or UPLOAD_NAR_BYTES_MAX)`,
      );
    }
    if (this.pending.size >= UPLOAD_PENDING_MAX) {
      throw new StoreError(
        'TOO_LARGE',
        `${UPLOAD_PENDING_MAX} uploaded NARs are waiting for their narinfo (UPLOAD_PENDING_MAX); try again shortly`,
      );
    }
  }

  /** The narinfo's refusals known from the headers alone. */
  precheckNarInfo(url: string, contentLength: number | undefined): void {
    if (parseNarInfoUploadName(url) === undefined) throw badName(url);
    if (contentLength !== undefined && contentLength > UPLOAD_NARINFO_BYTES_MAX) {
      throw new StoreError(
        'TOO_LARGE',
        `a narinfo is at most ${UPLOAD_NARINFO_BYTES_MAX} bytes (NARINFO_BYTES_MAX)`,
      );
    }
  }

  /** `PUT /nar/...`: receives, decompresses and checks the NAR; it then waits for its narinfo. */
  async putNar(url: string, body: Readable, contentLength?: number): Promise<void> {
    await this.precheckNar(url, contentLength);
    const name = parseNarUploadName(url)!;
    const narMax = await this.narBytesMax();
    const file = join(this.o.store.stagingDir(), `upload-${randomBytes(8).toString('hex')}.nar`);
    const sink = await NarSink.open(file, narMax, url);
    const fileHash = new Sha256Sink();
    const fileMax = narMax + slack(name.compression);
    const counted = countAndHash(body, fileHash, fileMax, url);
    try {
      if (name.compression === 'none') for await (const c of counted) await sink.write(c);
      else await decompress(this.decompressor(name.compression), counted, sink);
      const got = fileHash.digest();
      if (got !== name.fileHash) {
        throw new StoreError(
          'HASH_MISMATCH',
          `${url}: the body's sha256 is ${got}, not the one its name gives (a damaged upload)`,
        );
      }
      const nar = await sink.finish(this.o.store.stagingFsync === true);
      this.o.counters.uploadBytesReceived += fileHash.bytes;
      this.keep(url.slice(1), {
        file,
        fileHash: name.fileHash,
        fileSize: fileHash.bytes,
        compression: name.compression,
        ...nar,
      });
    } catch (e) {
      await sink.abort();
      throw e;
    }
  }

  private keep(key: string, p: Omit<PendingNar, 'timer'>): void {
    this.drop(key);
    const timer = setTimeout(() => this.drop(key), UPLOAD_PENDING_MS);
    timer.unref();
    this.pending.set(key, { ...p, timer });
  }

  private drop(key: string): void {
    const p = this.pending.get(key);
    if (p === undefined) return;
    clearTimeout(p.timer);
    this.pending.delete(key);
    void rm(p.file, { force: true });
  }

  /** `PUT /<hashPart>.narinfo`: checks it against its NAR, the trust policy and the store; commits. */
  async putNarInfo(url: string, body: Uint8Array): Promise<string> {
    const hashPart = parseNarInfoUploadName(url);
    if (hashPart === undefined) throw badName(url);
    const ni = parseNarInfo(body);
    if (parseStorePath(ni.path).hashPart !== hashPart) {
      throw new StoreError('BAD_NARINFO', `${url} carries the narinfo of ${ni.path}`);
    }
    const p = this.pending.get(ni.url);
    if (p === undefined) {
      throw new StoreError(
        'NOT_FOUND',
        `${ni.path}: its NAR ${ni.url} was not uploaded to this node (or waited more than ${UPLOAD_PENDING_MS / 1000} s for this narinfo); upload the NAR first`,
      );
    }
    // Claimed: whatever happens next, this NAR is used once or deleted.
    clearTimeout(p.timer);
    this.pending.delete(ni.url);
    try {
      matchNar(ni, p);
      const info = pathInfoOfNarInfo(ni);
      if ((await this.o.store.has([info.path])).has(info.path)) {
        await rm(p.file, { force: true });
        return info.path;
      }
      checkSignatures(info, this.o.trust);
      await this.checkReferences(info);
      await this.o.store.commit([{ info, file: p.file, synced: p.synced }]);
      this.remember(ni.url, info.path);
      return info.path;
    } catch (e) {
      await rm(p.file, { force: true });
      throw e;
    }
  }

  private remember(url: string, path: string): void {
    this.accepted.delete(url);
    this.accepted.set(url, path);
    if (this.accepted.size > (this.o.uploadedUrlsMax ?? UPLOADED_URLS_MAX)) {
      this.accepted.delete(this.accepted.keys().next().value!);
    }
  }

  /** The path an accepted upload's NAR URL (`nar/<fileHash>.nar[.xz|.zst]`) carried, if known. */
  uploadedPath(url: string): string | undefined {
    return this.accepted.get(url);
  }

  private async checkReferences(info: PathInfo): Promise<void> {
    const refs = info.references.filter((r) => r !== info.path);
    const have = await this.o.store.has(refs);
    const missing = refs.filter((r) => !have.has(r));
    if (missing.length === 0) return;
    throw new StoreError(
      'NOT_FOUND',
      `${info.path}: ${missing.length} of its references are not in this cache (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', ...' : ''}); upload its closure (nix copy --to uploads references first)`,
    );
  }

  private decompressor(c: Exclude<UploadCompression, 'none'>): string {
    const tool = (this.o.findTool ?? which)(DECOMPRESSOR[c]);
    if (tool === undefined) {
      throw new StoreError(
        'UNSUPPORTED',
        `this node cannot decompress ${c} uploads: the ${DECOMPRESSOR[c]} program is not installed here (install it, or upload with ?compression=none or ?compression=xz in the cache URL)`,
      );
    }
    return tool;
  }

  /** NARs waiting for their narinfo (for tests and stats). */
  get waiting(): number {
    return this.pending.size;
  }

  /** Deletes every waiting NAR (the cache closes). */
  close(): void {
    for (const key of [...this.pending.keys()]) this.drop(key);
  }
}

function slack(c: UploadCompression): number {
  return c === 'none' ? 0 : UPLOAD_COMPRESSION_SLACK_BYTES;
}

function badName(url: string): StoreError {
  return new StoreError(
    'BAD_STORE_PATH',
    `${JSON.stringify(url.slice(0, 120))} is not an upload name this cache takes: /nar/<sha256 nix32>.nar[.xz|.zst] or /<hash part>.narinfo`,
  );
}

/** The narinfo must describe exactly the NAR that was received. */
function matchNar(ni: NarInfo, p: PendingNar): void {
  const differs = (what: string, said: unknown, got: unknown): never => {
    throw new StoreError(
      what === 'NarSize' || what === 'FileSize' ? 'SIZE_MISMATCH' : 'HASH_MISMATCH',
      `${ni.path}: the narinfo's ${what} is ${String(said)}, the uploaded NAR's is ${String(got)}`,
    );
  };
  if (ni.compression !== p.compression) differs('Compression', ni.compression, p.compression);
  if (ni.narSize !== p.narSize) differs('NarSize', ni.narSize, p.narSize);
  if (ni.narHash !== p.narHash) differs('NarHash', ni.narHash, p.narHash);
  if (ni.fileHash !== undefined && ni.fileHash !== p.fileHash)
    differs('FileHash', ni.fileHash, p.fileHash);
  if (ni.fileSize !== undefined && ni.fileSize !== p.fileSize)
    differs('FileSize', ni.fileSize, p.fileSize);
}

/** The body, each chunk hashed and counted against `max` as it passes. */
async function* countAndHash(
  body: AsyncIterable<Uint8Array>,
  hash: Sha256Sink,
  max: number,
  url: string,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    if (hash.bytes + chunk.length > max) {
      throw new StoreError(
        'TOO_LARGE',
        `${url}: the body is over this node's limit of ${max} bytes`,
      );
    }
    hash.update(chunk);
    yield chunk;
  }
}

/** The uncompressed NAR on its way to the staging file: hashed, counted and parsed. */
class NarSink {
  private readonly hash = new Sha256Sink();
  private readonly parser: NarParser;
  private fh: FileHandle | undefined;
  /** Checked chunks not written yet (at most UPLOAD_WRITE_BATCH_BYTES). */
  private batch: Uint8Array[] = [];
  private batchBytes = 0;
  readonly file: string;
  private readonly maxBytes: number;
  private readonly url: string;
  private constructor(file: string, maxBytes: number, url: string, fh: FileHandle) {
    this.file = file;
    this.maxBytes = maxBytes;
    this.url = url;
    this.parser = new NarParser({}, maxBytes);
    this.fh = fh;
  }

  static async open(file: string, maxBytes: number, url: string): Promise<NarSink> {
    return new NarSink(file, maxBytes, url, await open(file, 'wx', 0o644));
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.hash.bytes + chunk.length > this.maxBytes) {
      throw new StoreError(
        'TOO_LARGE',
        `${this.url}: the NAR is over this node's upload limit of ${this.maxBytes} bytes (the store's size limit or UPLOAD_NAR_BYTES_MAX)`,
      );
    }
    this.hash.update(chunk);
    this.parser.push(chunk);
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    if (this.batchBytes >= UPLOAD_WRITE_BATCH_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    const chunks = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    if (chunks.length > 0) await this.fh!.writev(chunks);
  }

  async finish(fsync: boolean): Promise<{ narHash: string; narSize: number; synced: boolean }> {
    this.parser.end();
    await this.flush();
    if (fsync) await this.fh!.sync();
    await this.fh!.close();
    this.fh = undefined;
    return { narHash: this.hash.digest(), narSize: this.hash.bytes, synced: fsync };
  }

  async abort(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => {});
    await rm(this.file, { force: true });
  }
}

/** Pipes `input` through `tool -dc` into `sink`; a corrupt stream or a failed sink fails it. */
async function decompress(
  tool: string,
  input: AsyncIterable<Uint8Array>,
  sink: NarSink,
): Promise<void> {
  try {
    for await (const c of throughProgram(tool, ['-dc'], input)) await sink.write(c);
  } catch (e) {
    if (!(e instanceof ProgramFailed)) throw e;
    throw new StoreError('BAD_NAR', `the upload does not decompress (${e.message})`);
  }
}

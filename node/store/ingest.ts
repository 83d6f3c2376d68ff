// Receiving one NAR into the staging dir: every chunk is hashed, counted against the declared
// NarSize and fed to the NAR parser as it is written, so a bad NAR is refused as early as its
// first bad byte and nothing of it survives (the staging file is deleted on any failure); and
// addPath, one whole path in one call (signature check, ingest, commit).

import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreError } from './errors.ts';
import { Sha256Sink } from './hash.ts';
import { checkSignatures, type TrustPolicy } from './keys.ts';
import { NarParser } from './nar.ts';
import type { PathInfo, StagedPath, Store } from './store.ts';
import { parseStorePath } from './store_path.ts';

export interface NarIngestOptions {
  /** The staging dir (on the store's filesystem). */
  readonly dir: string;
  /** fsync the file before it is handed over (the store renames it; a crash must not tear it). */
  readonly fsync?: boolean;
}

/** Push-style ingest, for the network side: `write` chunks, then `finish` (or `abort`). */
export class NarIngest {
  readonly info: PathInfo;
  readonly file: string;
  private readonly hash = new Sha256Sink();
  private readonly parser: NarParser;
  private fh: FileHandle | undefined;
  private readonly o: NarIngestOptions;
  private failed: unknown;

  private constructor(info: PathInfo, file: string, o: NarIngestOptions) {
    this.info = info;
    this.file = file;
    this.o = o;
    this.parser = new NarParser({}, info.narSize);
  }

  static async start(info: PathInfo, o: NarIngestOptions): Promise<NarIngest> {
    const sp = parseStorePath(info.path);
    const file = join(o.dir, `${sp.hashPart}.${randomBytes(6).toString('hex')}.nar`);
    const ing = new NarIngest(info, file, o);
    ing.fh = await open(file, 'wx', 0o644);
    return ing;
  }

  get bytes(): number {
    return this.hash.bytes;
  }

  /** Checks and writes one chunk. Throws (and cleans up) on the first bad byte. */
  async write(chunk: Uint8Array): Promise<void> {
    return this.writev([chunk]);
  }

  /** Checks and writes chunks in one call (no copy into one buffer). */
  async writev(chunks: readonly Uint8Array[]): Promise<void> {
    if (this.failed !== undefined) throw this.failed;
    try {
      let n = 0;
      for (const c of chunks) n += c.length;
      if (this.hash.bytes + n > this.info.narSize) {
        throw new StoreError(
          'SIZE_MISMATCH',
          `${this.info.path}: NAR is longer than its declared NarSize ${this.info.narSize}`,
        );
      }
      for (const c of chunks) {
        this.hash.update(c);
        this.parser.push(c);
      }
      if (chunks.length === 1) await this.fh!.write(chunks[0]!);
      else await this.fh!.writev(chunks as Uint8Array[]);
    } catch (e) {
      await this.abort(e);
      throw e;
    }
  }

  /** Verifies size and hash; returns the staged path. On failure the file is gone. */
  async finish(): Promise<StagedPath> {
    if (this.failed !== undefined) throw this.failed;
    try {
      if (this.hash.bytes !== this.info.narSize) {
        throw new StoreError(
          'SIZE_MISMATCH',
          `${this.info.path}: NAR has ${this.hash.bytes} bytes, NarSize says ${this.info.narSize}`,
        );
      }
      this.parser.end();
      const got = this.hash.digest();
      if (got !== this.info.narHash) {
        throw new StoreError(
          'HASH_MISMATCH',
          `${this.info.path}: NAR hash is ${got}, the signed NarHash is ${this.info.narHash} (corrupt or forged; try another holder)`,
        );
      }
      const synced = this.o.fsync === true;
      if (synced) await this.fh!.sync();
      await this.fh!.close();
      this.fh = undefined;
      return { info: this.info, file: this.file, synced };
    } catch (e) {
      await this.abort(e);
      throw e;
    }
  }

  async abort(why: unknown = new Error('aborted')): Promise<void> {
    if (this.failed === undefined) this.failed = why;
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => {});
    await rm(this.file, { force: true });
  }
}

/** Pull-style ingest of a whole NAR from an iterable. */
export async function ingestNar(
  info: PathInfo,
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  o: NarIngestOptions,
): Promise<StagedPath> {
  const ing = await NarIngest.start(info, o);
  try {
    for await (const c of chunks) await ing.write(c);
  } catch (e) {
    await ing.abort(e);
    throw e;
  }
  return ing.finish();
}

/**
 * One path in one call: checks the signature against `trust` (when given), receives the NAR into
 * staging (hash, size, grammar) and commits it. Its references must already be valid.
 */
export async function addPath(
  store: Store,
  info: PathInfo,
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  trust?: TrustPolicy,
  o: Partial<NarIngestOptions> = {},
): Promise<void> {
  if (trust !== undefined) checkSignatures(info, trust);
  const staged = await ingestNar(info, chunks, {
    dir: store.stagingDir(),
    fsync: store.stagingFsync === true,
    ...o,
  });
  await store.commit([staged]);
}

// The node-local store, for machines without Nix: each path is an uncompressed NAR
// (`nar/<hashPart>.nar`) and a narinfo (`info/<hashPart>.narinfo`, with its signatures) under the
// store dir. The narinfo's rename is the commit point: a path without one does not exist, and
// open() deletes whatever a crash left behind. A size limit is kept by evicting least-recently-used
// paths, never one a pin needs (pins are closure roots; their whole closure is kept) and never one
// another present path references (the store stays closed under references). Every NAR served is
// checked (verify.ts): one whose size on disk is wrong is refused before its first byte, one whose
// hash is wrong is caught at its last; either is quarantined: its narinfo and NAR move to
// `quarantine/` with a `.reason` file, and the path is no longer in the store (a quarantined path
// still counts as present for its referrers, which stay; repair commits it again).

import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  utimes,
} from 'node:fs/promises';
import { join } from 'node:path';
import { syncPath, writeFileSynced } from '../atomic_file.ts';
import { StoreError } from './errors.ts';
import { formatNarInfo, parseNarInfo, uncompressedNarInfo } from './narinfo.ts';
import {
  type GcOptions,
  type GcReport,
  newCounters,
  type PathInfo,
  type StagedPath,
  type Store,
  type StoreCounters,
  type StoreSummary,
} from './store.ts';
import { parseStorePath } from './store_path.ts';
import type { QuarantinedPath } from './verify.ts';

/** Last-use times are written back to the narinfo's mtime at most this often per path. */
export const TOUCH_INTERVAL_MS = 60_000;
export const NAR_READ_CHUNK_BYTES = 1 << 20;
/** File operations a commit runs at once (fsyncs of many files batch in the journal). */
export const COMMIT_IO_PARALLEL = 16;

export interface LocalStoreOptions {
  /** The store dir (the daemon passes `<dataDir>/store`). */
  readonly dir: string;
  /** Sum of NAR sizes kept; beyond it least-recently-used unpinned paths are evicted. */
  readonly maxBytes: number;
  /** Closure roots that must stay (VMs running or about to run). Read at every eviction. */
  readonly pins?: () => Iterable<string>;
  readonly counters?: StoreCounters;
  /** fsync NARs and narinfos before they become visible (default true; tests may turn it off). */
  readonly fsync?: boolean;
  /** Told of each path quarantined (the daemon logs it). */
  readonly onQuarantine?: (q: QuarantinedPath) => void;
}

interface Entry {
  info: PathInfo;
  lastUseMs: number;
  touchedMs: number;
}

export class LocalStore implements Store {
  readonly kind = 'local' as const;
  private readonly o: LocalStoreOptions;
  private readonly counters: StoreCounters;
  private readonly entries = new Map<string, Entry>();
  /** Present paths referencing each path (self-references excluded). */
  private readonly referrers = new Map<string, number>();
  private bytes = 0;
  private clock = 0;
  /** Quarantined paths by hash part (their files are under quarantine/). */
  private readonly held = new Map<string, QuarantinedPath>();

  private constructor(o: LocalStoreOptions) {
    this.o = o;
    this.counters = o.counters ?? newCounters();
  }

  static async open(o: LocalStoreOptions): Promise<LocalStore> {
    const s = new LocalStore(o);
    for (const d of ['nar', 'info', 'tmp', 'quarantine'])
      await mkdir(join(o.dir, d), { recursive: true });
    await s.recover();
    return s;
  }

  /**
   * Drops what a crash left half-done: anything in tmp/, NARs without narinfo, torn pairs, and
   * paths whose references are not present.
   */
  private async recover(): Promise<void> {
    await rm(join(this.o.dir, 'tmp'), { recursive: true, force: true });
    await mkdir(join(this.o.dir, 'tmp'));
    await this.loadQuarantine();
    const loaded: { info: PathInfo; mtimeMs: number }[] = [];
    for (const f of await readdir(join(this.o.dir, 'info'))) {
      const l = await this.loadPath(f);
      if (l !== undefined) loaded.push(l);
    }
    // Closed under references, whatever the disk kept: a path whose reference is gone goes too
    // (commit order makes this a no-op after a crash; it guards against a lost or removed file).
    // A quarantined reference is not gone: it is damaged and waits for repair.
    const present = new Set(loaded.map((l) => l.info.path));
    for (const q of this.held.values()) present.add(q.path);
    for (let dropped = true; dropped; ) {
      dropped = false;
      for (const l of loaded) {
        if (!present.has(l.info.path)) continue;
        if (l.info.references.every((r) => r === l.info.path || present.has(r))) continue;
        present.delete(l.info.path);
        dropped = true;
        const hp = parseStorePath(l.info.path).hashPart;
        await rm(join(this.o.dir, 'info', `${hp}.narinfo`), { force: true });
      }
    }
    const kept = loaded.filter((l) => present.has(l.info.path));
    kept.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const l of kept) this.insert(l.info, l.mtimeMs);
    // A crash between a repair's commit and its cleanup leaves both: the present copy wins.
    for (const hp of [...this.held.keys()]) if (this.entries.has(hp)) this.release(hp);
    for (const f of await readdir(join(this.o.dir, 'nar'))) {
      if (!this.entries.has(f.replace(/\.nar$/, ''))) await rm(join(this.o.dir, 'nar', f));
    }
  }

  /**
   * One narinfo of info/ at open: its info and mtime, or undefined when it is dropped (it does not
   * parse: a torn write) or quarantined (its NAR is missing or of the wrong size: the commit order
   * makes a visible narinfo's NAR complete, so that is damage, not a crash's leftover).
   */
  private async loadPath(f: string): Promise<{ info: PathInfo; mtimeMs: number } | undefined> {
    const file = join(this.o.dir, 'info', f);
    const hp = f.replace(/\.narinfo$/, '');
    let info: PathInfo;
    try {
      info = parseNarInfo(await readFile(file));
      if (parseStorePath(info.path).hashPart !== hp) throw new Error('misnamed');
    } catch {
      await rm(file, { force: true });
      return undefined;
    }
    const size = await stat(join(this.o.dir, 'nar', `${hp}.nar`)).then(
      (st) => st.size,
      () => undefined,
    );
    if (size !== info.narSize) {
      const reason =
        size === undefined
          ? 'NAR file is missing (found at open)'
          : `NAR has ${size} bytes on disk, its NarSize is ${info.narSize} (found at open)`;
      this.moveAside(hp, info.path, reason);
      return undefined;
    }
    return { info: stripCacheFields(info), mtimeMs: (await stat(file)).mtimeMs };
  }

  private async loadQuarantine(): Promise<void> {
    for (const f of await readdir(join(this.o.dir, 'quarantine'))) {
      if (!f.endsWith('.reason')) continue;
      try {
        const q = JSON.parse(await readFile(join(this.o.dir, 'quarantine', f), 'utf8'));
        const hp = parseStorePath(String(q.path)).hashPart;
        this.held.set(hp, { path: String(q.path), reason: String(q.reason), atMs: Number(q.atMs) });
      } catch {
        // A torn reason file: the files beside it stay for inspection; nothing refers to them.
      }
    }
  }

  private insert(info: PathInfo, lastUseMs: number): void {
    const hp = parseStorePath(info.path).hashPart;
    this.entries.set(hp, { info, lastUseMs, touchedMs: lastUseMs });
    this.bytes += info.narSize;
    for (const r of info.references) {
      if (r !== info.path) this.referrers.set(r, (this.referrers.get(r) ?? 0) + 1);
    }
  }

  private entry(path: string): Entry | undefined {
    const sp = tryParse(path);
    if (sp === undefined) return undefined;
    const e = this.entries.get(sp);
    return e?.info.path === path ? e : undefined;
  }

  private now(): number {
    // Monotone even if two uses share a millisecond, so LRU order is exact.
    this.clock = Math.max(this.clock + 1e-3, Date.now());
    return this.clock;
  }

  private use(e: Entry): void {
    e.lastUseMs = this.now();
    if (e.lastUseMs - e.touchedMs > TOUCH_INTERVAL_MS) {
      e.touchedMs = e.lastUseMs;
      const hp = parseStorePath(e.info.path).hashPart;
      const t = new Date(e.lastUseMs);
      void utimes(join(this.o.dir, 'info', `${hp}.narinfo`), t, t).catch(() => {});
    }
  }

  async has(paths: readonly string[]): Promise<Set<string>> {
    return new Set(paths.filter((p) => this.entry(p) !== undefined));
  }

  async info(paths: readonly string[]): Promise<Map<string, PathInfo>> {
    const out = new Map<string, PathInfo>();
    for (const p of paths) {
      const e = this.entry(p);
      if (e !== undefined) out.set(p, e.info);
    }
    return out;
  }

  async byHashParts(hashParts: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const h of hashParts) {
      const e = this.entries.get(h);
      if (e !== undefined) out.set(h, e.info.path);
    }
    return out;
  }

  async *nar(path: string, o: { readonly use?: boolean } = {}): AsyncIterable<Uint8Array> {
    const e = this.entry(path);
    if (e === undefined) throw new StoreError('NOT_FOUND', `${path} is not in the local store`);
    if (o.use !== false) this.use(e);
    const hp = parseStorePath(path).hashPart;
    const fh = await open(join(this.o.dir, 'nar', `${hp}.nar`), 'r').catch(async (err: unknown) => {
      // Gone while still listed (not evicted meanwhile): damage too.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || this.entry(path) !== e) throw err;
      await this.quarantine(path, 'NAR file is missing');
      throw damaged(path, 'its NAR file is missing');
    });
    try {
      // A NAR whose length changed is damaged: refused before its first byte (the hash of one of
      // the right length is checked by whoever reads it to the end: verify.ts).
      const size = (await fh.stat()).size;
      if (size !== e.info.narSize) {
        await this.quarantine(
          path,
          `NAR has ${size} bytes on disk, its NarSize is ${e.info.narSize}`,
        );
        throw damaged(path, `${size} bytes on disk, NarSize ${e.info.narSize}`);
      }
      yield* readChunks(fh, size);
    } finally {
      await fh.close();
    }
  }

  async list(): Promise<PathInfo[]> {
    return [...this.entries.values()].map((e) => e.info);
  }

  async quarantined(): Promise<QuarantinedPath[]> {
    return [...this.held.values()];
  }

  async quarantine(path: string, reason: string): Promise<void> {
    const e = this.entry(path);
    if (e === undefined) return;
    // Out of the index first, synchronously: from here on nobody is served or told it is held.
    this.drop(e);
    this.counters.quarantined++;
    const q = this.moveAside(parseStorePath(path).hashPart, path, reason);
    this.o.onQuarantine?.(q);
  }

  /**
   * Moves a path's files to quarantine/: the reason file first (it names the path, for repair),
   * then the narinfo (the path's end in the store), then the NAR (a crash before leaves an orphan
   * NAR, which open deletes). Synchronous on purpose (rare, three small file operations): no
   * commit of the same path (a repair) can interleave and have its new files moved aside.
   */
  private moveAside(hp: string, path: string, reason: string): QuarantinedPath {
    const q: QuarantinedPath = { path, reason, atMs: Date.now() };
    const qdir = join(this.o.dir, 'quarantine');
    const fd = openSync(join(qdir, `${hp}.reason`), 'w', 0o644);
    try {
      writeFileSync(fd, `${JSON.stringify(q)}\n`);
      if (this.o.fsync ?? true) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.held.set(hp, q);
    const move = (from: string, to: string) => {
      try {
        renameSync(from, to);
      } catch {
        // Already gone (the damage may be a missing file).
      }
    };
    move(join(this.o.dir, 'info', `${hp}.narinfo`), join(qdir, `${hp}.narinfo`));
    move(join(this.o.dir, 'nar', `${hp}.nar`), join(qdir, `${hp}.nar`));
    return q;
  }

  stagingDir(): string {
    return join(this.o.dir, 'tmp');
  }

  get stagingFsync(): boolean {
    return this.o.fsync ?? true;
  }

  async commit(items: readonly StagedPath[]): Promise<void> {
    const fresh = items.filter((i) => this.entry(i.info.path) === undefined);
    try {
      const batch = new Set(fresh.map((i) => i.info.path));
      const earlier = new Set<string>();
      for (const { info } of fresh) {
        for (const r of info.references) {
          if (r !== info.path && !earlier.has(r) && this.entry(r) === undefined) {
            throw new StoreError(
              'NOT_FOUND',
              `cannot add ${info.path}: its reference ${r} is not in the store${batch.has(r) ? ' yet (commit references first)' : ''}`,
            );
          }
        }
        earlier.add(info.path);
      }
      const need = fresh.reduce((n, i) => n + i.info.narSize, 0);
      const keep = new Set<string>();
      for (const { info } of fresh) for (const r of info.references) keep.add(r);
      await this.makeRoom(need, keep);
    } catch (e) {
      for (const i of items) await rm(i.file, { force: true });
      throw e;
    }
    for (const i of items) if (!fresh.includes(i)) await rm(i.file, { force: true });
    await this.commitBatch(fresh);
  }

  /**
   * Durability with few fsyncs on the commit's path: each NAR is durable (synced at ingest, else
   * here) and moved into nar/, and each narinfo is written and synced under tmp/, all in parallel
   * (the journal batches concurrent fsyncs); nar/ is synced once. Only then are the narinfos
   * renamed into info/, one after the other in the given order (references first): each rename
   * is a path's commit point, and renames reach the journal in order, so a crash leaves a prefix
   * of the batch visible, closed under references, every visible narinfo and NAR complete.
   * info/ is synced once at the end.
   */
  private async commitBatch(items: readonly StagedPath[]): Promise<void> {
    if (items.length === 0) return;
    const fsync = this.o.fsync ?? true;
    const tmpInfo = (hp: string) => join(this.o.dir, 'tmp', `${hp}.narinfo`);
    await forEachLimit(items, COMMIT_IO_PARALLEL, async ({ info, file, synced }) => {
      const hp = parseStorePath(info.path).hashPart;
      if (fsync && synced !== true) await syncPath(file);
      await rename(file, join(this.o.dir, 'nar', `${hp}.nar`));
      await writeFileSynced(
        tmpInfo(hp),
        formatNarInfo(uncompressedNarInfo(info, `nar/${hp}.nar`)),
        {
          mode: 0o644,
          fsync,
        },
      );
    });
    if (fsync) await syncPath(join(this.o.dir, 'nar'));
    for (const { info } of items) {
      const hp = parseStorePath(info.path).hashPart;
      await rename(tmpInfo(hp), join(this.o.dir, 'info', `${hp}.narinfo`));
      this.insert(info, this.now());
    }
    if (fsync) await syncPath(join(this.o.dir, 'info'));
    for (const { info } of items) this.release(parseStorePath(info.path).hashPart);
  }

  /** A quarantined path committed again (repaired): its damaged files go (synchronously, too). */
  private release(hp: string): void {
    if (!this.held.delete(hp)) return;
    const qdir = join(this.o.dir, 'quarantine');
    for (const ext of ['reason', 'narinfo', 'nar'])
      rmSync(join(qdir, `${hp}.${ext}`), { force: true });
  }

  /** The closure (within this store) of the pinned roots and of `extra`. */
  private protectedPaths(extra: Iterable<string>): Set<string> {
    const out = new Set<string>();
    const stack = [...(this.o.pins?.() ?? []), ...extra];
    while (stack.length > 0) {
      const p = stack.pop()!;
      if (out.has(p)) continue;
      out.add(p);
      const e = this.entry(p);
      if (e !== undefined) for (const r of e.info.references) stack.push(r);
    }
    return out;
  }

  /**
   * Paths that may go, least recently used first, a referrer always before what it refers to
   * (the store stays closed under references), never one in `prot`, until `enough(freedBytes)`.
   */
  private plan(prot: Set<string>, enough: (freedBytes: number) => boolean): Entry[] {
    const refs = new Map(this.referrers);
    const byAge = [...this.entries.values()].sort((a, b) => a.lastUseMs - b.lastUseMs);
    const victims: Entry[] = [];
    const chosen = new Set<string>();
    let freed = 0;
    for (let progress = true; progress && !enough(freed); ) {
      progress = false;
      for (const e of byAge) {
        if (enough(freed)) break;
        const p = e.info.path;
        if (chosen.has(p) || prot.has(p) || (refs.get(p) ?? 0) > 0) continue;
        chosen.add(p);
        victims.push(e);
        freed += e.info.narSize;
        for (const r of e.info.references) if (r !== p) refs.set(r, (refs.get(r) ?? 0) - 1);
        progress = true;
      }
    }
    return victims;
  }

  /**
   * `pcr store gc`: removes what no pinned closure (a VM's) needs, least recently used first,
   * referrers before references, until at least `maxFreedBytes` are freed (default: all of it).
   * With `dryRun` only says what it would remove.
   */
  async gc(o: GcOptions = {}): Promise<GcReport> {
    const max = o.maxFreedBytes ?? Number.POSITIVE_INFINITY;
    const victims = this.plan(this.protectedPaths([]), (freed) => freed >= max);
    if (o.dryRun !== true) for (const v of victims) await this.evict(v);
    return {
      paths: victims.map((v) => v.info.path),
      bytes: victims.reduce((n, v) => n + v.info.narSize, 0),
      dryRun: o.dryRun === true,
    };
  }

  /** Evicts LRU unprotected leaves until `need` more bytes fit, or throws STORE_FULL (no change). */
  private async makeRoom(need: number, keep: Iterable<string>): Promise<void> {
    if (this.bytes + need <= this.o.maxBytes) return;
    const prot = this.protectedPaths(keep);
    // Plan first, evict after: a commit that cannot fit must not have evicted anything.
    const victims = this.plan(prot, (freed) => this.bytes - freed + need <= this.o.maxBytes);
    const bytes = this.bytes - victims.reduce((n, v) => n + v.info.narSize, 0);
    if (bytes + need > this.o.maxBytes) {
      throw new StoreError(
        'STORE_FULL',
        `local store limit ${this.o.maxBytes} bytes: ${need} more bytes do not fit even after evicting every unpinned path (raise the limit or unpin VMs)`,
      );
    }
    for (const v of victims) await this.evict(v);
  }

  /** Removes a path from the index (not from disk). */
  private drop(e: Entry): void {
    this.entries.delete(parseStorePath(e.info.path).hashPart);
    this.bytes -= e.info.narSize;
    for (const r of e.info.references) {
      if (r === e.info.path) continue;
      const n = (this.referrers.get(r) ?? 1) - 1;
      if (n <= 0) this.referrers.delete(r);
      else this.referrers.set(r, n);
    }
  }

  private async evict(e: Entry): Promise<void> {
    const hp = parseStorePath(e.info.path).hashPart;
    this.drop(e);
    this.counters.evictions++;
    // The narinfo goes first: once it is gone the path does not exist, even if the NAR stays (a
    // crash in between leaves an orphan NAR, which open() deletes).
    await rm(join(this.o.dir, 'info', `${hp}.narinfo`), { force: true });
    await rm(join(this.o.dir, 'nar', `${hp}.nar`), { force: true });
  }

  async summary(): Promise<StoreSummary> {
    return {
      kind: 'local',
      paths: this.entries.size,
      bytes: this.bytes,
      maxBytes: this.o.maxBytes,
      pinned: [...this.protectedPaths([])].filter((p) => this.entry(p) !== undefined).length,
      inQuarantine: this.held.size,
    };
  }
}

function damaged(path: string, why: string): StoreError {
  return new StoreError(
    'DAMAGED',
    `${path}: this node's copy is damaged (${why}) and now quarantined; try another holder, or pcr store verify --repair here`,
  );
}

/** The file's bytes in chunks of NAR_READ_CHUNK_BYTES, `size` of them (what fstat said). */
async function* readChunks(fh: FileHandle, size: number): AsyncIterable<Uint8Array> {
  for (let off = 0; off < size; ) {
    const buf = Buffer.allocUnsafe(Math.min(NAR_READ_CHUNK_BYTES, size - off));
    const { bytesRead } = await fh.read(buf, 0, buf.length, off);
    if (bytesRead === 0) break; // shrank under us: the hash check at the end catches it
    off += bytesRead;
    yield buf.subarray(0, bytesRead);
  }
}

function tryParse(path: string): string | undefined {
  try {
    return parseStorePath(path).hashPart;
  } catch {
    return undefined;
  }
}

function stripCacheFields(i: PathInfo): PathInfo {
  const out: PathInfo = {
    path: i.path,
    narHash: i.narHash,
    narSize: i.narSize,
    references: i.references,
    sigs: i.sigs,
  };
  if (i.deriver !== undefined) out.deriver = i.deriver;
  if (i.ca !== undefined) out.ca = i.ca;
  return out;
}

/** Runs `f` over `items`, at most `limit` at once; the first error is thrown once all settled. */
async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  f: (t: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: { e: unknown } | undefined;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (failed === undefined && next < items.length) {
        try {
          await f(items[next++]!);
        } catch (e) {
          failed ??= { e };
        }
      }
    }),
  );
  if (failed !== undefined) throw failed.e;
}

// The machine's real Nix store, through the `nix` CLI (single-user, the daemon runs as a user Nix
// trusts). Reads use `nix-store --check-validity` and `nix path-info --json`; NARs come from our
// own writer over the store directory (byte-identical to `nix-store --dump`, without a process per
// path). Writes stage the verified NARs as a `file://` binary cache and import them with one
// `nix copy --no-recursive --no-check-sigs`: Nix's own atomic import, keeping our `Sig` lines.
// `root` selects a chroot store (`--store /tmp/x`, the store dir is then `/tmp/x/nix/store`).
// A path whose files no longer match its NarHash (verify.ts) is quarantined here: Nix still calls
// it valid, but this store stops serving and announcing it (a list kept under `quarantineDir`)
// until the files match again: Nix repairs them (`nix-store --repair-path`), not us.

import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreError } from './errors.ts';
import { normaliseSha256, Sha256Sink } from './hash.ts';
import { dumpNar } from './nar_fs.ts';
import { formatNarInfo, nixCacheInfo, uncompressedNarInfo } from './narinfo.ts';
import { nixPathInfoEntries } from './nix_json.ts';
import {
  CLOSURE_PATHS_MAX,
  closureTooLarge,
  newCounters,
  notInStore,
  type PathInfo,
  type StagedPath,
  type Store,
  type StoreCounters,
  type StoreSummary,
  topoSort,
} from './store.ts';
import { isHashPart, parseStorePath, STORE_DIR } from './store_path.ts';
import { narDamage, type QuarantinedPath } from './verify.ts';

/** Paths per `nix` invocation (argv stays far below ARG_MAX). */
export const NIX_ARGS_PATHS_MAX = 2000;
/**
 * How long a summary (paths, bytes) is reused: it costs a `nix path-info --all`, and `pcr top`
 * asks every second. Our own imports and quarantines drop it at once; what Nix itself adds or
 * collects shows within this time.
 */
export const NIX_SUMMARY_TTL_MS = 5_000;
/**
 * What Nix said of a path is reused for at most this long, and only while the path's top entry
 * on disk is the one it was read with (docs/store.md "Nix store").
 */
export const NIX_INFO_CACHE_MS = 30_000;
/** Path infos kept at most; the oldest go first. */
export const NIX_INFO_CACHE_PATHS_MAX = 16_384;
/**
 * An entry (a store path, or the store directory for its listing) changed less than this before
 * it was read is not remembered: a change in the same clock tick would not change its times.
 */
export const NIX_RACY_MS = 1_000;
/** Paths checked on disk between two turns of the event loop. */
const LSTATS_PER_TURN = 1_000;

export interface NixStoreOptions {
  /** A chroot store dir; undefined is the machine's /nix/store. */
  readonly root?: string;
  /** Staging dir for ingest and imports (the daemon passes `<dataDir>/nix-staging`). */
  readonly stagingDir: string;
  /** Environment for nix (tests pass nixEnv()). */
  readonly env?: NodeJS.ProcessEnv;
  /** Where the quarantine list is kept (the daemon passes `<dataDir>/nix-quarantine`); else in memory. */
  readonly quarantineDir?: string;
  readonly counters?: StoreCounters;
  readonly onQuarantine?: (q: QuarantinedPath) => void;
}

/**
 * The valid paths' infos in `nix path-info --json` output, either of Nix's shapes (nix_json.ts);
 * paths Nix calls invalid are left out.
 */
export function pathInfosOfNixJson(json: string): PathInfo[] {
  const out: PathInfo[] = [];
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  const strs = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
  for (const j of nixPathInfoEntries(json)) {
    const narHash = str(j.narHash);
    if (j.valid === false || narHash === undefined) continue;
    const info: PathInfo = {
      path: j.path,
      narHash: normaliseSha256(narHash),
      narSize: typeof j.narSize === 'number' ? j.narSize : 0,
      references: strs(j.references).sort(),
      sigs: strs(j.signatures),
    };
    // Nix 2.19 on prints an absent deriver or ca as null.
    const deriver = str(j.deriver);
    const ca = str(j.ca);
    if (deriver !== undefined) info.deriver = deriver;
    if (ca !== undefined) info.ca = ca;
    out.push(info);
  }
  return out;
}

export class NixStore implements Store {
  readonly kind = 'nix' as const;
  private readonly o: NixStoreOptions;
  private readonly realStoreDir: string;
  private readonly counters: StoreCounters;
  /** Quarantined paths (full path -> why). */
  private readonly held = new Map<string, QuarantinedPath>();
  /** The last summary's figures and when they were taken (see NIX_SUMMARY_TTL_MS). */
  private counted?: { readonly atMs: number; readonly paths: number; readonly bytes: number };
  /** Bumped by each change of ours: a count taken across one is not kept. */
  private changes = 0;
  /** What Nix said of paths, with the identity of their entry on disk (NIX_INFO_CACHE_MS). */
  private readonly known = new Map<string, KnownInfo>();
  /** The store directory's entries, sorted, with its mtime when they were read. */
  private listing?: { readonly names: readonly string[]; readonly mtimeMs: number };
  /** `nix` and `nix-store` processes run (tests and benchmarks). */
  nixProcesses = 0;

  constructor(o: NixStoreOptions) {
    this.o = o;
    this.realStoreDir = o.root === undefined ? STORE_DIR : join(o.root, STORE_DIR);
    this.counters = o.counters ?? newCounters();
  }

  static async open(o: NixStoreOptions): Promise<NixStore> {
    await rm(o.stagingDir, { recursive: true, force: true });
    await mkdir(o.stagingDir, { recursive: true });
    const s = new NixStore(o);
    if (o.quarantineDir !== undefined) {
      await mkdir(o.quarantineDir, { recursive: true });
      for (const f of await readdir(o.quarantineDir)) {
        if (!f.endsWith('.reason')) continue;
        try {
          const q = JSON.parse(await readFile(join(o.quarantineDir, f), 'utf8'));
          const path = parseStorePath(String(q.path)).path;
          s.held.set(path, { path, reason: String(q.reason), atMs: Number(q.atMs) });
        } catch {
          // A torn record: the path is checked again when next served.
        }
      }
    }
    return s;
  }

  private storeArgs(): string[] {
    return this.o.root === undefined ? [] : ['--store', this.o.root];
  }

  private async nix(cmd: string, args: string[]): Promise<string> {
    // Loaded at the first call: execa is some 70 modules, off the daemon's start.
    const { execa } = await import('execa');
    this.nixProcesses++;
    const r = await execa(cmd, args, { env: this.o.env, reject: false, maxBuffer: 1 << 30 });
    if (r.exitCode !== 0) {
      throw new StoreError(
        'NIX_FAILED',
        `${cmd} ${args.slice(0, 4).join(' ')}… failed (exit ${r.exitCode}): ${String(r.stderr).trim().slice(-500)}`,
      );
    }
    return String(r.stdout);
  }

  async has(paths: readonly string[]): Promise<Set<string>> {
    const valid = await this.validInNix(paths);
    for (const p of this.held.keys()) valid.delete(p);
    return valid;
  }

  /**
   * What Nix calls valid (quarantined paths included): paths with a known info count as valid,
   * unless `fresh` asks Nix about every one.
   */
  private async validInNix(paths: readonly string[], fresh = false): Promise<Set<string>> {
    const { known, ask } = await this.sortKnown(paths, fresh);
    const out = new Set(known.keys());
    for (const chunk of chunksOf(ask)) {
      const invalid = new Set(
        (
          await this.nix('nix-store', [
            ...this.storeArgs(),
            '--check-validity',
            '--print-invalid',
            ...chunk,
          ])
        )
          .split('\n')
          .filter((l) => l !== ''),
      );
      for (const p of chunk) if (!invalid.has(p)) out.add(p);
    }
    return out;
  }

  async info(paths: readonly string[]): Promise<Map<string, PathInfo>> {
    return this.infoInNix(paths.filter((p) => !this.held.has(p)));
  }

  /** Nix's infos of `paths` (quarantined included): known ones unless `fresh`, the rest asked. */
  private async infoInNix(paths: readonly string[], fresh = false): Promise<Map<string, PathInfo>> {
    const { known: out, ask } = await this.sortKnown(paths, fresh);
    for (const chunk of chunksOf(ask)) {
      for (const info of await this.askInfos(['--json', ...chunk])) out.set(info.path, info);
    }
    return out;
  }

  /**
   * Store paths among `paths` (others are dropped) sorted into those whose info is known (unless
   * `fresh`) and those to ask Nix about.
   */
  private async sortKnown(
    paths: readonly string[],
    fresh: boolean,
  ): Promise<{ known: Map<string, PathInfo>; ask: string[] }> {
    const known = new Map<string, PathInfo>();
    const ask: string[] = [];
    const nowMs = Date.now();
    let n = 0;
    for (const p of paths) {
      if (++n % LSTATS_PER_TURN === 0) await turn();
      if (!valid(p)) continue;
      const k = fresh ? undefined : this.knownInfo(p, nowMs);
      if (k !== undefined) known.set(p, k);
      else ask.push(p);
    }
    return { known, ask };
  }

  /** `nix path-info ARGS`: the valid paths' infos, remembered (NIX_INFO_CACHE_MS). */
  private async askInfos(args: readonly string[]): Promise<PathInfo[]> {
    const askedAtMs = Date.now();
    const infos = pathInfosOfNixJson(
      await this.nix('nix', ['path-info', ...this.storeArgs(), ...args]),
    );
    let n = 0;
    for (const info of infos) {
      if (++n % LSTATS_PER_TURN === 0) await turn();
      this.remember(info, askedAtMs);
    }
    return infos;
  }

  /**
   * The closure of `roots` (closureOf's contract) from known infos when every path is known,
   * else from one `nix path-info --recursive` (not one query per level).
   */
  async closure(roots: readonly string[]): Promise<PathInfo[]> {
    const rs = [...new Set(roots)];
    let all = this.knownClosure(rs);
    if (all === undefined) {
      all = new Map();
      for (const chunk of chunksOf(rs)) {
        const infos = await this.askInfos(['--json', '--recursive', ...chunk]).catch(
          async (e: unknown) => {
            // Nix refuses a closure of a path it does not hold: say which, as the walk would.
            const top = await this.infoInNix(chunk, true);
            for (const r of chunk) if (!top.has(r)) throw notInStore(r);
            throw e;
          },
        );
        for (const info of infos) all.set(info.path, info);
      }
    }
    if (all.size > CLOSURE_PATHS_MAX) throw closureTooLarge(rs);
    for (const r of rs) if (!all.has(r)) throw notInStore(r);
    for (const info of all.values()) {
      if (this.held.has(info.path)) throw notInStore(info.path);
      for (const r of info.references) if (!all.has(r)) throw notInStore(r);
    }
    return topoSort([...all.values()]);
  }

  /** The closure of `roots` from known infos alone; undefined at the first path not known. */
  private knownClosure(roots: readonly string[]): Map<string, PathInfo> | undefined {
    const nowMs = Date.now();
    const seen = new Map<string, PathInfo>();
    const stack = [...roots];
    while (stack.length > 0) {
      const p = stack.pop()!;
      if (seen.has(p)) continue;
      const k = valid(p) ? this.knownInfo(p, nowMs) : undefined;
      if (k === undefined || seen.size >= CLOSURE_PATHS_MAX) return undefined;
      seen.set(p, k);
      for (const r of k.references) if (!seen.has(r)) stack.push(r);
    }
    return seen;
  }

  /** The known info of `path` if it still holds: young enough, and the same entry on disk. */
  private knownInfo(path: string, nowMs: number): PathInfo | undefined {
    const k = this.known.get(path);
    if (k === undefined) return undefined;
    const e = nowMs - k.atMs < NIX_INFO_CACHE_MS ? this.entryOf(path) : undefined;
    if (e !== undefined && e.ino === k.ino && e.ctimeMs === k.ctimeMs) return k.info;
    this.known.delete(path);
    return undefined;
  }

  /** Keeps what Nix said of a path asked at `askedAtMs`, unless its entry changed since just before. */
  private remember(info: PathInfo, askedAtMs: number): void {
    const e = this.entryOf(info.path);
    if (e === undefined || e.ctimeMs >= askedAtMs - NIX_RACY_MS) return;
    this.known.delete(info.path);
    this.known.set(info.path, { info, ino: e.ino, ctimeMs: e.ctimeMs, atMs: askedAtMs });
    if (this.known.size > NIX_INFO_CACHE_PATHS_MAX) {
      this.known.delete(this.known.keys().next().value as string);
    }
  }

  /** The identity of a path's top entry on disk; undefined when it is not there. */
  private entryOf(path: string): { readonly ino: number; readonly ctimeMs: number } | undefined {
    try {
      const st = lstatSync(join(this.realStoreDir, path.slice(STORE_DIR.length + 1)), {
        throwIfNoEntry: false,
      });
      return st === undefined ? undefined : { ino: st.ino, ctimeMs: st.ctimeMs };
    } catch {
      return undefined;
    }
  }

  async list(): Promise<PathInfo[]> {
    // Not remembered: every path, for a summary or a verify run, would crowd out a fetch's.
    const all = pathInfosOfNixJson(
      await this.nix('nix', ['path-info', ...this.storeArgs(), '--json', '--all']),
    );
    return all.filter((i) => !this.held.has(i.path));
  }

  async quarantined(): Promise<QuarantinedPath[]> {
    return [...this.held.values()];
  }

  async quarantine(path: string, reason: string): Promise<void> {
    if (this.held.has(path) || !(await this.validInNix([path], true)).has(path)) return;
    const q: QuarantinedPath = { path, reason, atMs: Date.now() };
    this.held.set(path, q);
    this.changed();
    this.counters.quarantined++;
    const dir = this.o.quarantineDir;
    if (dir !== undefined) {
      await writeFile(
        join(dir, `${parseStorePath(path).hashPart}.reason`),
        `${JSON.stringify(q)}\n`,
      );
    }
    this.o.onQuarantine?.(q);
  }

  /**
   * Checks the quarantined paths again and releases those whose files match their NarHash now
   * (repaired by Nix, e.g. `nix-store --repair-path`). Returns the released paths.
   */
  async recheck(): Promise<string[]> {
    const released: string[] = [];
    const infos = await this.infoInNix([...this.held.keys()], true);
    for (const [path, info] of infos) {
      if (!(await this.filesMatch(info))) continue;
      this.held.delete(path);
      this.changed();
      if (this.o.quarantineDir !== undefined) {
        await rm(join(this.o.quarantineDir, `${parseStorePath(path).hashPart}.reason`), {
          force: true,
        });
      }
      released.push(path);
    }
    return released;
  }

  async byHashParts(hashParts: readonly string[]): Promise<Map<string, string>> {
    const want = [...new Set(hashParts.filter(isHashPart))];
    const out = new Map<string, string>();
    if (want.length === 0) return out;
    // Nix has no CLI for queryPathFromHashPart: the store directory's listing (kept while the
    // directory is unchanged), then one validity check for the candidates.
    const names = await this.storeEntries();
    const candidates: string[] = [];
    for (const hp of want) {
      // Every entry under the hash part (a leftover beside the path is refused by `has`).
      for (let i = lowerBound(names, hp); names[i]?.startsWith(`${hp}-`) === true; i++) {
        const p = `${STORE_DIR}/${names[i]}`;
        if (valid(p)) candidates.push(p);
      }
    }
    for (const p of await this.has(candidates))
      out.set(p.slice(STORE_DIR.length + 1, STORE_DIR.length + 33), p);
    return out;
  }

  /**
   * The store directory's entries (store path names, no lock files), sorted: read again when the
   * directory's mtime changed, or was within NIX_RACY_MS of the last reading.
   */
  private async storeEntries(): Promise<readonly string[]> {
    const mtimeMs = (await stat(this.realStoreDir)).mtimeMs;
    const l = this.listing;
    if (l !== undefined && l.mtimeMs === mtimeMs) return l.names;
    const readAtMs = Date.now();
    const names = (await readdir(this.realStoreDir))
      .filter((n) => n[32] === '-' && !n.endsWith('.lock'))
      .sort();
    this.listing = mtimeMs < readAtMs - NIX_RACY_MS ? { names, mtimeMs } : undefined;
    return names;
  }

  private async filesMatch(info: PathInfo): Promise<boolean> {
    const sink = new Sha256Sink();
    try {
      for await (const c of this.nar(info.path)) sink.update(c);
    } catch {
      return false;
    }
    return narDamage(info, { hash: sink.digest(), bytes: sink.bytes }) === undefined;
  }

  async *nar(path: string): AsyncIterable<Uint8Array> {
    // Validity is the caller's check (info() first, as the server and the cache do): a process
    // per NAR would dominate small paths. A path that is not there at all is still NOT_FOUND.
    const fsPath = join(this.realStoreDir, parseStorePath(path).baseName);
    const nar = dumpNar(fsPath);
    // The first chunk needs the top lstat: a path that is not there fails here, before any byte.
    let first: IteratorResult<Uint8Array>;
    try {
      first = await nar.next();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new StoreError('NOT_FOUND', `${path} is not in the Nix store`);
      }
      throw e;
    }
    if (first.done === true) return;
    yield first.value;
    yield* nar;
  }

  stagingDir(): string {
    return this.o.stagingDir;
  }

  async commit(items: readonly StagedPath[]): Promise<void> {
    if (items.length === 0) return;
    const cache = join(this.o.stagingDir, `cache-${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(join(cache, 'nar'), { recursive: true });
      await writeFile(join(cache, 'nix-cache-info'), nixCacheInfo());
      for (const { info, file } of items) {
        const hp = parseStorePath(info.path).hashPart;
        await rename(file, join(cache, 'nar', `${hp}.nar`));
        await writeFile(
          join(cache, `${hp}.narinfo`),
          formatNarInfo(uncompressedNarInfo(info, `nar/${hp}.nar`)),
        );
      }
      for (const chunk of chunksOf(items.map((i) => i.info.path))) {
        await this.nix('nix', [
          'copy',
          '--no-recursive',
          '--no-check-sigs',
          '--from',
          `file://${cache}`,
          '--to',
          this.o.root ?? 'auto',
          ...chunk,
        ]);
      }
    } finally {
      // After the import (a count taken meanwhile is not kept), whether it finished or not.
      this.changed();
      await rm(cache, { recursive: true, force: true });
      for (const i of items) await rm(i.file, { force: true });
    }
  }

  private changed(): void {
    this.changes++;
    this.counted = undefined;
  }

  /**
   * What Nix holds as valid, less the quarantined paths (as list() and the local store count):
   * paths and the sum of their NAR sizes (Nix's own measure of a path's bytes).
   */
  async summary(): Promise<StoreSummary> {
    const nowMs = Date.now();
    let c = this.counted;
    if (c === undefined || nowMs - c.atMs >= NIX_SUMMARY_TTL_MS) {
      const before = this.changes;
      const infos = await this.list();
      c = { atMs: nowMs, paths: infos.length, bytes: infos.reduce((n, i) => n + i.narSize, 0) };
      if (this.changes === before) this.counted = c;
    }
    return {
      kind: 'nix',
      paths: c.paths,
      bytes: c.bytes,
      inQuarantine: this.held.size,
    };
  }
}

interface KnownInfo {
  readonly info: PathInfo;
  /** The path's top entry on disk when Nix was asked. */
  readonly ino: number;
  readonly ctimeMs: number;
  readonly atMs: number;
}

/** `paths` in slices of NIX_ARGS_PATHS_MAX, one `nix` invocation each. */
function* chunksOf(paths: readonly string[]): Generator<string[]> {
  for (let i = 0; i < paths.length; i += NIX_ARGS_PATHS_MAX) {
    yield paths.slice(i, i + NIX_ARGS_PATHS_MAX);
  }
}

/** Lets the event loop run between batches of synchronous work. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The first index of sorted `names` whose name is not below `key`. */
function lowerBound(names: readonly string[], key: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (names[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function valid(p: string): boolean {
  try {
    parseStorePath(p);
    return true;
  } catch {
    return false;
  }
}

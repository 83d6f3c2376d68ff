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
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreError } from './errors.ts';
import { normaliseSha256, Sha256Sink } from './hash.ts';
import { dumpNar } from './nar_fs.ts';
import { formatNarInfo, nixCacheInfo, uncompressedNarInfo } from './narinfo.ts';
import { nixPathInfoEntries } from './nix_json.ts';
import {
  newCounters,
  type PathInfo,
  type StagedPath,
  type Store,
  type StoreCounters,
  type StoreSummary,
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

  /** What Nix calls valid (quarantined paths included). */
  private async validInNix(paths: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    for (let i = 0; i < paths.length; i += NIX_ARGS_PATHS_MAX) {
      const chunk = paths.slice(i, i + NIX_ARGS_PATHS_MAX).filter(valid);
      if (chunk.length === 0) continue;
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
    const out = await this.infoInNix(paths.filter((p) => !this.held.has(p)));
    return out;
  }

  private async infoInNix(paths: readonly string[]): Promise<Map<string, PathInfo>> {
    const out = new Map<string, PathInfo>();
    for (let i = 0; i < paths.length; i += NIX_ARGS_PATHS_MAX) {
      const chunk = paths.slice(i, i + NIX_ARGS_PATHS_MAX).filter(valid);
      if (chunk.length === 0) continue;
      for (const info of pathInfosOfNixJson(
        await this.nix('nix', ['path-info', ...this.storeArgs(), '--json', ...chunk]),
      )) {
        out.set(info.path, info);
      }
    }
    return out;
  }

  async list(): Promise<PathInfo[]> {
    const all = pathInfosOfNixJson(
      await this.nix('nix', ['path-info', ...this.storeArgs(), '--json', '--all']),
    );
    return all.filter((i) => !this.held.has(i.path));
  }

  async quarantined(): Promise<QuarantinedPath[]> {
    return [...this.held.values()];
  }

  async quarantine(path: string, reason: string): Promise<void> {
    if (this.held.has(path) || !(await this.validInNix([path])).has(path)) return;
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
    const infos = await this.infoInNix([...this.held.keys()]);
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
    const want = new Set(hashParts.filter(isHashPart));
    const out = new Map<string, string>();
    if (want.size === 0) return out;
    // Nix has no CLI for queryPathFromHashPart: one directory scan per batch (O(store), no
    // process), then one validity check for the candidates.
    const candidates = (await readdir(this.realStoreDir))
      .filter((n) => n[32] === '-' && want.has(n.slice(0, 32)) && !n.endsWith('.lock'))
      .map((n) => `${STORE_DIR}/${n}`)
      .filter(valid);
    for (const p of await this.has(candidates))
      out.set(p.slice(STORE_DIR.length + 1, STORE_DIR.length + 33), p);
    return out;
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
      const paths = items.map((i) => i.info.path);
      for (let i = 0; i < paths.length; i += NIX_ARGS_PATHS_MAX) {
        await this.nix('nix', [
          'copy',
          '--no-recursive',
          '--no-check-sigs',
          '--from',
          `file://${cache}`,
          '--to',
          this.o.root ?? 'auto',
          ...paths.slice(i, i + NIX_ARGS_PATHS_MAX),
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

function valid(p: string): boolean {
  try {
    parseStorePath(p);
    return true;
  } catch {
    return false;
  }
}

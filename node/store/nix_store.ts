// The machine's real Nix store, through the `nix` CLI (single-user, the daemon runs as a user Nix
// trusts). Reads use `nix-store --check-validity` and `nix path-info --json`; NARs come from our
// own writer over the store directory (byte-identical to `nix-store --dump`, without a process per
// path). Writes stage the verified NARs as a `file://` binary cache and import them with one
// `nix copy --no-recursive --no-check-sigs`: Nix's own atomic import, keeping our `Sig` lines.
// `root` selects a chroot store (`--store /tmp/x`, the store dir is then `/tmp/x/nix/store`).

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { StoreError } from './errors.ts';
import { normaliseSha256 } from './hash.ts';
import { dumpNar } from './nar_fs.ts';
import { formatNarInfo, nixCacheInfo, uncompressedNarInfo } from './narinfo.ts';
import type { PathInfo, StagedPath, Store, StoreSummary } from './store.ts';
import { isHashPart, parseStorePath, STORE_DIR } from './store_path.ts';

/** Paths per `nix` invocation (argv stays far below ARG_MAX). */
export const NIX_ARGS_PATHS_MAX = 2000;

export interface NixStoreOptions {
  /** A chroot store dir; undefined is the machine's /nix/store. */
  readonly root?: string;
  /** Staging dir for ingest and imports (the daemon passes `<dataDir>/nix-staging`). */
  readonly stagingDir: string;
  /** Environment for nix (tests pass nixEnv()). */
  readonly env?: NodeJS.ProcessEnv;
}

interface PathInfoJson {
  path: string;
  valid?: boolean;
  narHash?: string;
  narSize?: number;
  references?: string[];
  deriver?: string;
  signatures?: string[];
  ca?: string;
}

export class NixStore implements Store {
  readonly kind = 'nix' as const;
  private readonly o: NixStoreOptions;
  private readonly realStoreDir: string;

  constructor(o: NixStoreOptions) {
    this.o = o;
    this.realStoreDir = o.root === undefined ? STORE_DIR : join(o.root, STORE_DIR);
  }

  static async open(o: NixStoreOptions): Promise<NixStore> {
    await rm(o.stagingDir, { recursive: true, force: true });
    await mkdir(o.stagingDir, { recursive: true });
    return new NixStore(o);
  }

  private storeArgs(): string[] {
    return this.o.root === undefined ? [] : ['--store', this.o.root];
  }

  private async nix(cmd: string, args: string[]): Promise<string> {
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
    const out = new Map<string, PathInfo>();
    for (let i = 0; i < paths.length; i += NIX_ARGS_PATHS_MAX) {
      const chunk = paths.slice(i, i + NIX_ARGS_PATHS_MAX).filter(valid);
      if (chunk.length === 0) continue;
      const json = JSON.parse(
        await this.nix('nix', ['path-info', ...this.storeArgs(), '--json', ...chunk]),
      ) as PathInfoJson[];
      for (const j of json) {
        if (j.valid === false || j.narHash === undefined) continue;
        const info: PathInfo = {
          path: j.path,
          narHash: normaliseSha256(j.narHash),
          narSize: j.narSize ?? 0,
          references: [...(j.references ?? [])].sort(),
          sigs: j.signatures ?? [],
        };
        if (j.deriver !== undefined) info.deriver = j.deriver;
        if (j.ca !== undefined) info.ca = j.ca;
        out.set(j.path, info);
      }
    }
    return out;
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
      await rm(cache, { recursive: true, force: true });
      for (const i of items) await rm(i.file, { force: true });
    }
  }

  async summary(): Promise<StoreSummary> {
    const names = await readdir(this.realStoreDir).catch(() => [] as string[]);
    return {
      kind: 'nix',
      paths: names.filter((n) => !n.endsWith('.lock')).length,
      bytes: 0,
      pinned: 0,
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

// A node's store, wired: the store itself (the machine's Nix store, a Nix chroot store, or the
// node-local store), the node's signing key, the /pcr/store/1.0.0 server and client, closure
// fetch from the members, and the HTTP binary cache. The daemon builds one and calls it for the
// `store.*` API ops and for the agent's closures (docs/store.md, "What the daemon wires").

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Logger } from 'pino';
import type { ApiErrorCode } from '../api/wire.ts';
import type { Host } from '../p2p/host.ts';
import { plural } from '../plural.ts';
import { which } from '../which.ts';
import type { CacheAuth } from './cache_auth.ts';
import { isStoreError, StoreError, type StoreErrorCode } from './errors.ts';
import {
  askHolders,
  type FetchOptions,
  type FetchProgress,
  type FetchReport,
  fetchByHashPart,
  fetchClosure,
  mayHold,
} from './fetch.ts';
import { type HttpCache, type ServeCompression, startHttpCache } from './http_cache.ts';
import { addPath } from './ingest.ts';
import { loadOrCreateStoreKey } from './key_file.ts';
import { formatPublicKey, parsePublicKey, TrustPolicy } from './keys.ts';
import { LocalStore } from './local_store.ts';
import { restoreNar } from './nar_fs.ts';
import { NixStore } from './nix_store.ts';
import { StoreClient, StoreServer } from './protocol.ts';
import {
  CLOSURE_PATHS_MAX,
  closureOf,
  type GcOptions,
  type GcReport,
  newCounters,
  type PathInfo,
  type Store,
  type StoreCounters,
  type StoreSummary,
} from './store.ts';
import { parseStorePath, STORE_DIR } from './store_path.ts';
import { checkUpstreams, fetchFromUpstreams } from './upstream.ts';
import { openVerifiedNar, type QuarantinedPath, verifyStore } from './verify.ts';

/** `auto`: the machine's Nix store when `nix` is installed, else the node-local store. */
export type StoreMode = 'auto' | 'nix' | 'local' | { readonly nixRoot: string };

/** Default size limit of the node-local store. */
export const LOCAL_STORE_BYTES_DEFAULT = 10 * 1024 ** 3;

export interface StoreServiceOptions {
  readonly dataDir: string;
  readonly host: Host;
  readonly peerId: string;
  readonly mode: StoreMode;
  readonly nixAvailable: boolean;
  readonly localMaxBytes?: number;
  /** The HTTP binary cache's address; undefined: no cache. */
  readonly cache?: { readonly host: string; readonly port: number };
  /** The cache's tokens (the replicated table) and whether reads need one; uploads always do. */
  readonly cacheAuth?: CacheAuth;
  /** How the cache serves NARs (default none). */
  readonly cacheCompression?: ServeCompression;
  /** Binary caches asked for a path no member holds (their keys go in trustedKeys). */
  readonly upstreams?: readonly string[];
  /** Keys trusted besides the members' store keys (e.g. `cache.nixos.org-1:...`). */
  readonly trustedKeys?: readonly string[];
  /** The other members (peer IDs), asked for closures. */
  readonly peers: () => readonly string[];
  /**
   * Whether the cluster marks a member down (no Raft answer for --node-down-after). A cache miss
   * waits for the answer of every member that is not down: a silent one makes it a 502, not a 404
   * (docs/store.md, "HTTP binary cache"). Default: none is down.
   */
  readonly down?: (peer: string) => boolean;
  readonly addrsOf: (peer: string) => readonly Multiaddr[];
  /** Closure roots the local store must keep (VMs running or about to). */
  readonly pins?: () => Iterable<string>;
  readonly log: Logger;
  readonly env?: NodeJS.ProcessEnv;
  /** Where the bulk listener binds (docs/store.md "Bulk transfers"); undefined: none. */
  readonly bulkHost?: string;
}

export class StoreService {
  readonly store: Store;
  readonly counters: StoreCounters;
  readonly publicKey: string;
  /** Uses of each cache token on this node since it started (not replicated: tokens.ts says why). */
  readonly tokenUses = new Map<string, number>();
  private readonly server: StoreServer;
  private readonly client: StoreClient;
  private readonly trust: TrustPolicy;
  /** Only the configured keys: a member's key vouches for what members build, not for upstreams. */
  private readonly upstreamTrust: TrustPolicy;
  private readonly o: StoreServiceOptions;
  private cache: HttpCache | undefined;
  /** Fetches in flight per root: a second caller joins the first and hears its progress too. */
  private readonly fetching = new Map<
    string,
    { done: Promise<FetchReport>; listeners: ((p: FetchProgress) => void)[] }
  >();

  private constructor(
    o: StoreServiceOptions,
    store: Store,
    counters: StoreCounters,
    server: StoreServer,
    publicKey: string,
  ) {
    this.o = o;
    this.store = store;
    this.counters = counters;
    this.server = server;
    this.publicKey = publicKey;
    this.client = new StoreClient({
      host: o.host,
      addrsOf: o.addrsOf,
      counters,
      log: (msg, fields) => o.log.debug(fields ?? {}, msg),
    });
    this.trust = new TrustPolicy([...(o.trustedKeys ?? [])]);
    this.upstreamTrust = new TrustPolicy([...(o.trustedKeys ?? [])]);
  }

  static async start(options: StoreServiceOptions): Promise<StoreService> {
    // The nix CLI's commands this layer runs (path-info, copy) need nix-command on Nix 2.8.
    const o: StoreServiceOptions = {
      ...options,
      env: options.env ?? {
        ...process.env,
        NIX_CONFIG: `${process.env.NIX_CONFIG ?? ''}\nexperimental-features = nix-command`,
      },
    };
    for (const k of o.trustedKeys ?? []) parsePublicKey(k); // a bad key fails the start, clearly
    checkUpstreams(o.upstreams ?? []);
    const counters = newCounters();
    const key = await loadOrCreateStoreKey(o.dataDir, o.peerId);
    const store = await openStore(o, counters);
    const server = new StoreServer({
      host: o.host,
      store,
      key,
      counters,
      warn: (msg, fields) => o.log.debug(fields ?? {}, msg),
      alert: (msg, fields) => o.log.warn(fields ?? {}, msg),
      ...(o.bulkHost !== undefined ? { bulkHost: o.bulkHost } : {}),
    });
    await server.start();
    const s = new StoreService(o, store, counters, server, formatPublicKey(key.publicKey));
    if (o.cache !== undefined) {
      s.cache = await startHttpCache({
        store,
        key,
        host: o.cache.host,
        port: o.cache.port,
        counters,
        // A miss that decided nothing is answered 502 without its reason: say it here.
        onMiss: (hashPart) =>
          s.fetchOnMiss(hashPart).catch((e: Error) => {
            if (isStoreError(e, 'UNAVAILABLE'))
              s.o.log.info({ hashPart, why: e.message }, 'cache miss undecided (answered 502)');
            throw e;
          }),
        // Uploads (nix copy --to) must be signed by a configured key or a member's store key.
        trust: s.trust,
        ...(o.cacheAuth !== undefined ? { auth: o.cacheAuth } : {}),
        ...(o.cacheCompression !== undefined ? { compression: o.cacheCompression } : {}),
        onTokenUse: (name) => s.tokenUses.set(name, (s.tokenUses.get(name) ?? 0) + 1),
      });
    }
    return s;
  }

  /** A cache miss: the members first, then the upstream caches (verified by configured keys only). */
  private async fetchOnMiss(hashPart: string): Promise<boolean | 'upstream'> {
    const members = await fetchByHashPart(hashPart, this.fetchOptions()).catch(memberFetchFailure);
    if (members.fetched) return true;
    const found = await fetchFromUpstreams(hashPart, {
      urls: this.o.upstreams ?? [],
      store: this.store,
      trust: this.upstreamTrust,
      counters: this.counters,
      findTool: which,
    });
    if (found) return 'upstream';
    const { silent } = members;
    if (silent.length > 0) {
      throw new StoreError(
        'UNAVAILABLE',
        `no member that answered holds it, and ${plural(silent.length, 'member')} that may did not answer: ${silent.join(', ')}`,
      );
    }
    return false;
  }

  get cacheUrl(): string | undefined {
    return this.cache?.url;
  }

  private fetchOptions(onProgress?: (p: FetchProgress) => void): FetchOptions {
    return {
      store: this.store,
      client: this.client,
      peers: this.o.peers,
      trust: this.trust,
      counters: this.counters,
      ...(this.o.down !== undefined ? { down: this.o.down } : {}),
      ...(onProgress !== undefined ? { onProgress } : {}),
    };
  }

  /** The path's info here, or undefined. */
  async info(path: string): Promise<PathInfo | undefined> {
    parseStorePath(path);
    return (await this.store.info([path])).get(path);
  }

  /**
   * Which members hold `path` (this node included when it does), and which did not answer and
   * may hold it too (members the cluster marks down are not counted).
   */
  async where(path: string): Promise<{ holders: string[]; unanswered: string[] }> {
    const { hashPart } = parseStorePath(path);
    const { holders, unanswered } = await askHolders(this.client, this.o.peers(), [hashPart]);
    const h = holders.get(hashPart);
    const peers = h?.path === path ? [...h.peers] : [];
    if ((await this.store.has([path])).has(path)) peers.unshift(this.o.peerId);
    return { holders: peers, unanswered: mayHold(unanswered, this.o.down) };
  }

  /** Fetches the closure of `path` from the members; concurrent callers share one fetch. */
  fetch(path: string, onProgress?: (p: FetchProgress) => void): Promise<FetchReport> {
    parseStorePath(path);
    const running = this.fetching.get(path);
    if (running !== undefined) {
      if (onProgress !== undefined) running.listeners.push(onProgress);
      return running.done;
    }
    const listeners = onProgress !== undefined ? [onProgress] : [];
    const o = this.fetchOptions((p) => {
      for (const l of listeners) l(p);
    });
    const done = fetchClosure([path], o)
      .then((report) => this.fillGaps(path, report, o))
      .finally(() => this.fetching.delete(path));
    this.fetching.set(path, { done, listeners });
    return done;
  }

  /**
   * A quarantined path leaves a gap in the closures that refer to it (its referrers stay), which
   * fetchClosure does not see when the root is present: fetch the missing references too.
   */
  private async fillGaps(path: string, report: FetchReport, o: FetchOptions): Promise<FetchReport> {
    if ((await this.store.quarantined()).length === 0) return report;
    const gaps = await missingInClosure(this.store, path);
    if (gaps.length === 0) return report;
    const more = await fetchClosure(gaps, o);
    const fromPeers = { ...report.fromPeers };
    for (const [p, n] of Object.entries(more.fromPeers)) fromPeers[p] = (fromPeers[p] ?? 0) + n;
    return {
      present: report.present,
      fetched: report.fetched + more.fetched,
      bytes: report.bytes + more.bytes,
      retries: report.retries + more.retries,
      fromPeers,
    };
  }

  /**
   * Makes the closure of `path` runnable here: fetched from the members if missing, and, for a
   * node-local store (no Nix on the machine), its paths written out at their /nix/store paths.
   */
  async ensureRunnable(path: string, onProgress?: (p: FetchProgress) => void): Promise<void> {
    await this.fetch(path, onProgress);
    if (this.store.kind === 'local') await materializeClosure(this.store, path);
  }

  /**
   * Makes the closure of `path` available here from the machine's Nix store (for a node whose
   * store is the node-local one; a Nix-backed node holds it already). Signed by this node's key
   * as it is served. Returns the number of paths imported.
   */
  async importFromNix(path: string): Promise<number> {
    parseStorePath(path);
    if (this.store.kind === 'nix') {
      if (!(await this.store.has([path])).has(path)) {
        throw new StoreError('NOT_FOUND', `${path} is not in this node's Nix store`);
      }
      return 0;
    }
    if (!this.o.nixAvailable) {
      throw new StoreError('NOT_FOUND', `${path}: this node has no Nix store to import from`);
    }
    const nix = await NixStore.open({
      stagingDir: join(this.o.dataDir, 'nix-import-staging'),
      ...(this.o.env !== undefined ? { env: this.o.env } : {}),
    });
    if (!(await nix.has([path])).has(path)) {
      throw new StoreError('NOT_FOUND', `${path} is not in the machine's Nix store`);
    }
    const infos = await closureOf(nix, [path]);
    const have = await this.store.has(infos.map((i) => i.path));
    let n = 0;
    for (const info of infos) {
      if (have.has(info.path)) continue;
      await addPath(this.store, info, nix.nar(info.path));
      n++;
    }
    return n;
  }

  /**
   * `pcr store verify`: checks every path's NAR (hash and size), quarantining the damaged; with
   * `repair`, fetches each quarantined path again from the members (verified as any fetch). A
   * Nix store's quarantined paths are checked again instead (Nix repairs its own store).
   */
  async verify(repair: boolean): Promise<VerifyResult> {
    const report = await verifyStore(this.store);
    const repaired: string[] = [];
    const failed: Record<string, string> = {};
    if (this.store instanceof NixStore) repaired.push(...(await this.store.recheck()));
    if (repair) {
      for (const q of await this.store.quarantined()) {
        if (this.store.kind === 'nix') {
          failed[q.path] =
            `Nix repairs its own store: nix-store --repair-path ${q.path} (with a member's cache as substituter), then pcr store verify`;
          continue;
        }
        try {
          await this.fetch(q.path);
          repaired.push(q.path);
        } catch (e) {
          failed[q.path] = (e as Error).message;
        }
      }
    }
    return {
      checked: report.checked,
      bytes: report.bytes,
      damaged: report.damaged,
      repaired,
      failed,
      quarantined: await this.store.quarantined(),
    };
  }

  /** `pcr store gc`: the node-local store frees what no VM here needs (the Nix store is Nix's). */
  async gc(o: GcOptions): Promise<GcReport> {
    if (!(this.store instanceof LocalStore)) {
      throw new StoreError(
        'UNSUPPORTED',
        "this node uses the machine's Nix store, which Nix collects: nix-collect-garbage (VM closures are kept by the VMs' GC roots)",
      );
    }
    return this.store.gc(o);
  }

  async stats(): Promise<
    StoreCounters & StoreSummary & { publicKey: string; cache?: string; cacheHitRatio: number }
  > {
    return {
      publicKey: this.publicKey,
      ...this.counters,
      cacheHitRatio: cacheHitRatio(this.counters),
      ...(await this.store.summary()),
      ...(this.cacheUrl !== undefined ? { cache: this.cacheUrl } : {}),
    };
  }

  async close(): Promise<void> {
    await this.cache?.close();
    await this.server.close();
  }
}

export interface VerifyResult {
  readonly checked: number;
  readonly bytes: number;
  /** Found damaged by this run. */
  readonly damaged: QuarantinedPath[];
  /** Quarantined paths fetched again (or, in a Nix store, found whole again). */
  readonly repaired: string[];
  /** Quarantined paths a repair could not restore, with why. */
  readonly failed: Record<string, string>;
  /** What remains quarantined: damage not repaired. */
  readonly quarantined: QuarantinedPath[];
}

/** Of the cache's narinfo lookups, the share answered (here, a member, an upstream); 0 before any. */
export function cacheHitRatio(c: StoreCounters): number {
  const hits = c.cacheLocalHits + c.cacheMemberHits + c.cacheUpstreamHits;
  const all = hits + c.cacheMisses;
  return all === 0 ? 0 : Math.round((hits / all) * 1000) / 1000;
}

/** Store errors that mean "the data was refused": it failed verification, or nobody trusted it. */
const REFUSED: readonly StoreErrorCode[] = [
  'DAMAGED',
  'HASH_MISMATCH',
  'SIZE_MISMATCH',
  'BAD_NAR',
  'BAD_SIGNATURE',
  'UNTRUSTED',
];

/**
 * A cache miss that a member holds but could not be fetched: unless the data was refused (a
 * definite no: damaged, unsigned, forged) or the closure is over the bound, nothing was decided
 * (the holder went away mid-transfer, its disk failed, this node's store is full), so the miss is
 * UNAVAILABLE, which the cache answers 502: a 404 Nix would remember for an hour.
 */
export function memberFetchFailure(e: unknown): never {
  const decided = apiCodeOfStoreError(e) === 'CORRUPT' || isStoreError(e, 'TOO_LARGE');
  if (decided || isStoreError(e, 'UNAVAILABLE')) throw e;
  throw new StoreError(
    'UNAVAILABLE',
    `a member holds it, but fetching it failed: ${(e as Error).message ?? String(e)}`,
  );
}

/**
 * The API code of a store operation's failure: CORRUPT when the data was refused (pcr exits 9),
 * NOT_FOUND when no member holds it (7), INVALID for a malformed path (2), else UNAVAILABLE (4).
 */
export function apiCodeOfStoreError(e: unknown): ApiErrorCode {
  const code = (e as { code?: unknown } | undefined)?.code as StoreErrorCode | undefined;
  if (code === undefined) return 'UNAVAILABLE';
  if (REFUSED.includes(code)) return 'CORRUPT';
  if (code === 'NOT_FOUND' || code === 'NO_HOLDER') return 'NOT_FOUND';
  if (code === 'BAD_STORE_PATH') return 'INVALID';
  return 'UNAVAILABLE';
}

/** References in the closure of `path` (present here) that are not present here. */
export async function missingInClosure(store: Store, path: string): Promise<string[]> {
  const seen = new Set<string>();
  const missing = new Set<string>();
  let frontier = [path];
  while (frontier.length > 0) {
    if (seen.size + frontier.length > CLOSURE_PATHS_MAX) {
      throw new StoreError('TOO_LARGE', `closure of ${path} exceeds ${CLOSURE_PATHS_MAX} paths`);
    }
    const infos = await store.info(frontier);
    const next: string[] = [];
    for (const p of frontier) {
      seen.add(p);
      const i = infos.get(p);
      if (i === undefined) {
        missing.add(p);
        continue;
      }
      for (const r of i.references) if (!seen.has(r)) next.push(r);
    }
    frontier = [...new Set(next)].filter((p) => !seen.has(p));
  }
  return [...missing];
}

/**
 * Writes the closure of `path` from `store` to `storeDir` (default /nix/store), references first,
 * each path atomically (restored beside it, then renamed into place). Paths already there are left
 * alone: store paths are immutable and named by their content's hash. Returns how many it wrote.
 */
export async function materializeClosure(
  store: Store,
  path: string,
  storeDir = STORE_DIR,
): Promise<number> {
  const infos = await closureOf(store, [path]);
  await mkdir(storeDir, { recursive: true });
  let n = 0;
  for (const info of infos) {
    const dest = join(storeDir, basename(info.path));
    if (existsSync(dest)) continue;
    const tmp = join(storeDir, `.pcr-restore-${randomBytes(8).toString('hex')}`);
    try {
      await restoreNar(await openVerifiedNar(store, info), tmp);
      // Hashed as it was restored: a damaged NAR is quarantined then, and must not be renamed
      // into place (a VM would run from it).
      if (!(await store.has([info.path])).has(info.path)) {
        throw new StoreError(
          'DAMAGED',
          `${info.path}: this node's copy is damaged and now quarantined (pcr store verify --repair)`,
        );
      }
      await rename(tmp, dest);
      n++;
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      if (existsSync(dest)) continue; // another restore of the same path won the race
      throw e;
    }
  }
  return n;
}

async function openStore(o: StoreServiceOptions, counters: StoreCounters): Promise<Store> {
  const mode = o.mode === 'auto' ? (o.nixAvailable ? 'nix' : 'local') : o.mode;
  if (mode === 'local') {
    const dir = join(o.dataDir, 'store');
    await mkdir(dir, { recursive: true });
    return LocalStore.open({
      dir,
      maxBytes: o.localMaxBytes ?? LOCAL_STORE_BYTES_DEFAULT,
      counters,
      onQuarantine: (q) => o.log.warn(q, 'store path damaged: quarantined'),
      ...(o.pins !== undefined ? { pins: o.pins } : {}),
    });
  }
  if (!o.nixAvailable) {
    throw new StoreError('NIX_FAILED', 'the Nix store was asked for, but nix is not installed');
  }
  const stagingDir = join(o.dataDir, 'nix-staging');
  if (/\s/.test(stagingDir)) {
    throw new StoreError(
      'NIX_FAILED',
      `the data dir ${o.dataDir} contains a space, which Nix's file:// import cannot take: use another --data-dir or --store local`,
    );
  }
  return NixStore.open({
    stagingDir,
    quarantineDir: join(o.dataDir, 'nix-quarantine'),
    counters,
    onQuarantine: (q) => o.log.warn(q, 'store path damaged: quarantined'),
    ...(typeof mode === 'object' ? { root: mode.nixRoot } : {}),
    ...(o.env !== undefined ? { env: o.env } : {}),
  });
}

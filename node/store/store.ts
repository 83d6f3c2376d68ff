// The Store interface every store implements (the machine's Nix store, the node-local store), the
// path metadata they share, the node's store counters, and closure helpers (references first).

import { StoreError } from './errors.ts';

export interface PathInfo {
  /** `/nix/store/<hash>-<name>` */
  path: string;
  /** Always `sha256:<nix32>`. */
  narHash: string;
  narSize: number;
  /** Full store paths, sorted. May include `path` itself (self-reference). */
  references: string[];
  deriver?: string;
  /** `keyname:base64(sig)` */
  sigs: string[];
  ca?: string;
}

/** A NAR that was received, hashed, size-checked and parsed, waiting in the staging dir. */
export interface StagedPath {
  readonly info: PathInfo;
  readonly file: string;
  /** The file was fsync'd when it was staged (commit need not sync it again). */
  readonly synced?: boolean;
}

/** A path found damaged: the reason names what differed. */
export interface QuarantinedPath {
  readonly path: string;
  readonly reason: string;
  /** When it was quarantined (ms since the epoch). */
  readonly atMs: number;
}

export interface StoreSummary {
  readonly kind: 'nix' | 'local';
  readonly paths: number;
  readonly bytes: number;
  /** Size limit (local store), undefined when unbounded. */
  readonly maxBytes?: number;
  /** Paths kept from eviction (the local store; Nix's own GC roots keep the Nix store's). */
  readonly pinned?: number;
  /** Paths quarantined (damaged) and not repaired yet. */
  readonly inQuarantine: number;
}

export interface Store {
  readonly kind: 'nix' | 'local';
  /** The subset of `paths` that is valid (complete and verified) here. */
  has(paths: readonly string[]): Promise<Set<string>>;
  /** Infos of those of `paths` that are valid here. */
  info(paths: readonly string[]): Promise<Map<string, PathInfo>>;
  /** Valid paths by hash part, for those held (narinfo and `have` requests name only these). */
  byHashParts(hashParts: readonly string[]): Promise<Map<string, string>>;
  /**
   * The path's NAR, uncompressed. Throws NOT_FOUND when the path is not valid here. `use: false`
   * reads without counting as a use (verify must not refresh every path's LRU time).
   */
  nar(path: string, o?: { readonly use?: boolean }): AsyncIterable<Uint8Array>;
  /** Every valid path's info (for `verify`). */
  list(): Promise<PathInfo[]>;
  /**
   * Drops a path whose NAR no longer matches its info: from then on it is not valid here (not
   * served, not announced as held); its files are kept aside with the reason until it is repaired
   * (committed again). Counted in `quarantined`. A path not valid here is left alone.
   */
  quarantine(path: string, reason: string): Promise<void>;
  /** Paths quarantined and not repaired since. */
  quarantined(): Promise<QuarantinedPath[]>;
  /** Where ingest writes NARs before commit (same filesystem as the store, for renames). */
  stagingDir(): string;
  /**
   * True when commit needs staged NARs durable: ingest then fsyncs each NAR as it finishes (in
   * parallel with the network, off the commit's path) and marks it `synced`.
   */
  readonly stagingFsync?: boolean;
  /**
   * Makes staged, verified paths valid, in the given order (references first), each atomically.
   * A path whose references are neither valid nor earlier in `items` is refused.
   */
  commit(items: readonly StagedPath[]): Promise<void>;
  summary(): Promise<StoreSummary>;
  /**
   * The closure of `roots`, references first, answered at once (closureOf's contract); a store
   * without it is walked level by level through `info`.
   */
  closure?(roots: readonly string[]): Promise<PathInfo[]>;
}

/** `pcr store gc`'s bounds: stop once this much is freed; only say what would go. */
export interface GcOptions {
  readonly maxFreedBytes?: number;
  readonly dryRun?: boolean;
}

/** What a gc removed (or, dry, would remove): referrers before references. */
export interface GcReport {
  readonly paths: string[];
  readonly bytes: number;
  readonly dryRun: boolean;
}

/** The node's store counters (for `pcr store stats` and Prometheus). One object per node. */
export interface StoreCounters {
  hits: number;
  misses: number;
  pathsServed: number;
  bytesServed: number;
  pathsFetched: number;
  bytesFetched: number;
  fetchRetries: number;
  rejected: number;
  evictions: number;
  /** NARs of this store found damaged (while serving, at open or by verify) and quarantined. */
  quarantined: number;
  /** HTTP cache narinfo lookups answered from this node's store. */
  cacheLocalHits: number;
  /** HTTP cache lookups missing here and fetched from a member (then answered). */
  cacheMemberHits: number;
  /** HTTP cache lookups that no member held, fetched from an upstream cache (then answered). */
  cacheUpstreamHits: number;
  /** HTTP cache lookups that no member could answer (404) or that are still fetching (503). */
  cacheMisses: number;
  /** NAR bytes the HTTP cache sent (a subset of bytesServed). */
  cacheBytesServed: number;
  /** Paths uploaded over HTTP (nix copy --to) and committed. */
  uploadsAccepted: number;
  /** Uploads (NAR or narinfo) refused: bad data, untrusted, missing references, over a limit. */
  uploadsRefused: number;
  /** NAR batches this node fetched over a bulk connection (bulk.ts). */
  bulkTransfers: number;
  /** NAR batches fetched over a `nars` stream (the peer offered no bulk connection, or it failed). */
  streamTransfers: number;
  /** Upload body bytes received (compressed, as sent), of NARs that passed their checks. */
  uploadBytesReceived: number;
  /** HTTP requests refused for their credential (none, unknown or revoked, under-scoped). */
  authRefused: number;
}

export function newCounters(): StoreCounters {
  return {
    hits: 0,
    misses: 0,
    pathsServed: 0,
    bytesServed: 0,
    pathsFetched: 0,
    bytesFetched: 0,
    fetchRetries: 0,
    rejected: 0,
    evictions: 0,
    quarantined: 0,
    cacheLocalHits: 0,
    cacheMemberHits: 0,
    cacheUpstreamHits: 0,
    cacheMisses: 0,
    cacheBytesServed: 0,
    uploadsAccepted: 0,
    uploadsRefused: 0,
    bulkTransfers: 0,
    streamTransfers: 0,
    uploadBytesReceived: 0,
    authRefused: 0,
  };
}

/** Orders infos so that every path comes after its references (self-references ignored). */
export function topoSort(infos: readonly PathInfo[]): PathInfo[] {
  const byPath = new Map(infos.map((i) => [i.path, i]));
  const out: PathInfo[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  for (const root of infos) {
    if (state.has(root.path)) continue;
    // Iterative DFS: closures can be deep (long dependency chains) and recursion would overflow.
    const stack: { info: PathInfo; next: number }[] = [{ info: root, next: 0 }];
    state.set(root.path, 'visiting');
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const refs = top.info.references;
      if (top.next < refs.length) {
        const r = refs[top.next++]!;
        if (r === top.info.path) continue;
        const ri = byPath.get(r);
        if (ri === undefined) continue;
        const s = state.get(r);
        if (s === 'visiting') {
          throw new StoreError('BAD_NARINFO', `reference cycle through ${r}`);
        }
        if (s === undefined) {
          state.set(r, 'visiting');
          stack.push({ info: ri, next: 0 });
        }
      } else {
        state.set(top.info.path, 'done');
        out.push(top.info);
        stack.pop();
      }
    }
  }
  return out;
}

/** Bound on the paths of one closure walk. */
export const CLOSURE_PATHS_MAX = 100_000;

/** A path a closure needs and the store does not hold (quarantined included). */
export function notInStore(path: string): StoreError {
  return new StoreError('NOT_FOUND', `${path} is not in this store`);
}

/** A closure over CLOSURE_PATHS_MAX. */
export function closureTooLarge(roots: readonly string[]): StoreError {
  return new StoreError('TOO_LARGE', `closure of ${roots[0]} exceeds ${CLOSURE_PATHS_MAX} paths`);
}

/**
 * The closure of `roots` in `store`, references first: from `store.closure` when the store has
 * one, else a walk of `info`, level by level. Throws NOT_FOUND on a missing path.
 */
export async function closureOf(store: Store, roots: readonly string[]): Promise<PathInfo[]> {
  if (store.closure !== undefined) return store.closure(roots);
  const seen = new Map<string, PathInfo>();
  let frontier = [...new Set(roots)];
  while (frontier.length > 0) {
    const infos = await store.info(frontier);
    const next = new Set<string>();
    for (const p of frontier) {
      const i = infos.get(p);
      if (i === undefined) throw notInStore(p);
      seen.set(p, i);
      for (const r of i.references) if (!seen.has(r) && !frontier.includes(r)) next.add(r);
    }
    if (seen.size + next.size > CLOSURE_PATHS_MAX) throw closureTooLarge(roots);
    frontier = [...next].filter((p) => !seen.has(p));
  }
  return topoSort([...seen.values()]);
}

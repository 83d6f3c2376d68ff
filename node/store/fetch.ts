// Closure fetch from peers: which paths of the closure are missing here, who holds them (query
// fan-out, docs/store.md), parallel NAR streams spread over the holders, every NAR verified as it
// arrives (hash, size, grammar) and every info's signature checked against the trust policy, a
// failed path retried from another holder, and a commit of everything in reference order at the
// end, or of nothing.

import { rm } from 'node:fs/promises';
import { plural } from '../plural.ts';
import { isStoreError, StoreError } from './errors.ts';
import { NarIngest } from './ingest.ts';
import { checkSignatures, type TrustPolicy } from './keys.ts';
import type { NarSinkAsync, StoreClient } from './protocol.ts';
import { NARS_PER_REQUEST_MAX } from './protocol.ts';
import {
  newCounters,
  type PathInfo,
  type StagedPath,
  type Store,
  type StoreCounters,
  topoSort,
} from './store.ts';
import { isHashPart, parseStorePath } from './store_path.ts';

/** NAR streams open at once for one fetch. */
export const FETCH_PARALLEL_MAX = 16;
export const FETCH_PARALLEL_DEFAULT = 8;
/** Holders tried per path before the fetch fails. */
export const FETCH_ATTEMPTS_MAX = 4;
/** Peers asked at once in a holder fan-out. */
export const HOLDER_PEERS_MAX = 32;
/** Small paths ride one stream together up to this many bytes (a big path goes alone). */
export const FETCH_BATCH_BYTES = 8 * 1024 * 1024;

export interface FetchOptions {
  readonly store: Store;
  readonly client: StoreClient;
  /** Peers to ask (the cluster members, without this node). */
  readonly peers: () => readonly string[];
  /** Configured trusted keys; with trustPeers, the peers' own store keys are added. */
  readonly trust: TrustPolicy;
  /** Trust the store keys of `peers()` (they are members: default true). */
  readonly trustPeers?: boolean;
  readonly parallel?: number;
  readonly attempts?: number;
  readonly counters?: StoreCounters;
  /** fsync each staged NAR as it finishes (default: what the store asks, `stagingFsync`). */
  readonly fsync?: boolean;
  /** Called once the missing part is known, then as bytes arrive and paths complete. */
  readonly onProgress?: (p: FetchProgress) => void;
  /**
   * Whether the cluster marks a peer down. A peer that did not answer and is not down may hold
   * what no peer that answered holds: the fetch is then UNAVAILABLE, not NO_HOLDER.
   */
  readonly down?: (peer: string) => boolean;
}

export interface FetchProgress {
  /** Paths of the closure missing here (to fetch), and those fetched so far. */
  readonly paths: number;
  readonly pathsDone: number;
  /** NAR bytes to fetch, and those received so far (retries not counted twice). */
  readonly bytes: number;
  readonly bytesDone: number;
}

export interface FetchReport {
  /** Paths of the closure that were already here. */
  readonly present: number;
  readonly fetched: number;
  readonly bytes: number;
  readonly retries: number;
  /** Paths fetched from each peer. */
  readonly fromPeers: Readonly<Record<string, number>>;
}

async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  f: (t: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await f(items[i]!);
      }
    }),
  );
  return out;
}

/** What the members answered about some hash parts: who holds which, and who did not answer. */
export interface HolderAnswers {
  readonly holders: Map<string, { path: string; peers: string[] }>;
  /** Peers whose query failed (unreachable, timed out, reset): they may hold any of them. */
  readonly unanswered: string[];
}

/** Who holds which of `hashParts`: asks every peer at once (HOLDER_PEERS_MAX at a time). */
export async function askHolders(
  client: StoreClient,
  peers: readonly string[],
  hashParts: readonly string[],
): Promise<HolderAnswers> {
  const want = hashParts.filter(isHashPart);
  const holders = new Map<string, { path: string; peers: string[] }>();
  const unanswered: string[] = [];
  const answers = await mapLimit(peers, HOLDER_PEERS_MAX, async (peer) => ({
    peer,
    paths: await client.have(peer, want).catch(() => undefined),
  }));
  for (const { peer, paths } of answers) {
    if (paths === undefined) unanswered.push(peer);
    for (const p of paths ?? []) {
      const hp = parseStorePath(p).hashPart;
      const e = holders.get(hp);
      if (e === undefined) holders.set(hp, { path: p, peers: [peer] });
      else if (e.path === p) e.peers.push(peer);
    }
  }
  return { holders, unanswered };
}

/** Of the peers that did not answer, those whose silence decides nothing: not marked down. */
export function mayHold(
  unanswered: readonly string[],
  down: ((peer: string) => boolean) | undefined,
): string[] {
  return unanswered.filter((p) => down?.(p) !== true);
}

/** Who holds which of `hashParts` (peers that did not answer count as holding nothing). */
export async function findHolders(
  client: StoreClient,
  peers: readonly string[],
  hashParts: readonly string[],
): Promise<Map<string, { path: string; peers: string[] }>> {
  return (await askHolders(client, peers, hashParts)).holders;
}

async function addPeerKeys(o: FetchOptions): Promise<void> {
  if (o.trustPeers === false) return;
  await mapLimit(o.peers(), HOLDER_PEERS_MAX, async (peer) => {
    try {
      o.trust.add(await o.client.key(peer));
    } catch {
      // Unreachable now: its paths will be untrusted unless another key signed them.
    }
  });
}

/**
 * Fetches what is missing of the closures of `roots` into `o.store`. `asked`: what the peers
 * already answered about the roots' hash parts (fetchByHashPart), so they are not asked again.
 */
export async function fetchClosure(
  roots: readonly string[],
  o: FetchOptions,
  asked?: HolderAnswers,
): Promise<FetchReport> {
  const counters = o.counters ?? newCounters();
  for (const r of roots) parseStorePath(r);
  const present = await o.store.has(roots);
  const missingRoots = roots.filter((r) => !present.has(r));
  const empty = { present: roots.length, fetched: 0, bytes: 0, retries: 0, fromPeers: {} };
  if (missingRoots.length === 0) return empty;
  const peers = o.peers();
  await addPeerKeys(o);
  const infos = await closureInfos(missingRoots, peers, o, asked);
  const missing = await missingAndTrusted(roots, infos, o, counters);
  const report = {
    present: infos.size - missing.length,
    fetched: 0,
    bytes: 0,
    retries: 0,
    fromPeers: {} as Record<string, number>,
  };
  if (missing.length === 0) return report;
  const download = new ClosureDownload(missing, o, counters, report);
  await download.run(peers);
  report.retries = Math.max(0, report.retries);
  await o.store.commit(download.stagedInOrder());
  return report;
}

/** Phase 1: the closure's infos, from a holder of each root. */
async function closureInfos(
  missingRoots: readonly string[],
  peers: readonly string[],
  o: FetchOptions,
  answered?: HolderAnswers,
): Promise<Map<string, PathInfo>> {
  const asked =
    answered ??
    (await askHolders(
      o.client,
      peers,
      missingRoots.map((r) => parseStorePath(r).hashPart),
    ));
  const silent = mayHold(asked.unanswered, o.down);
  const infos = new Map<string, PathInfo>();
  for (const root of missingRoots) {
    if (infos.has(root)) continue;
    const h = asked.holders.get(parseStorePath(root).hashPart);
    if (h === undefined || h.path !== root) {
      if (silent.length > 0) {
        throw new StoreError(
          'UNAVAILABLE',
          `no peer that answered holds ${root}, and ${plural(silent.length, 'peer')} that may did not answer: ${silent.join(', ')}`,
        );
      }
      throw new StoreError(
        'NO_HOLDER',
        `no peer holds ${root} (asked ${plural(peers.length, 'peer')})`,
      );
    }
    let last: unknown;
    for (const peer of h.peers) {
      try {
        for (const i of await o.client.closure(peer, [root]))
          if (!infos.has(i.path)) infos.set(i.path, i);
        last = undefined;
        break;
      } catch (e) {
        last = e;
      }
    }
    if (last !== undefined) throw last;
  }
  return infos;
}

/** Phase 2: what is missing here, checked to be trusted and closed under references. */
async function missingAndTrusted(
  roots: readonly string[],
  infos: ReadonlyMap<string, PathInfo>,
  o: FetchOptions,
  counters: StoreCounters,
): Promise<PathInfo[]> {
  const have = await o.store.has([...infos.keys()]);
  const missing = [...infos.values()].filter((i) => !have.has(i.path));
  for (const i of missing) {
    for (const r of i.references) {
      if (!infos.has(r) && !have.has(r)) {
        throw new StoreError(
          'PROTOCOL',
          `closure of ${roots[0]} is incomplete: ${i.path} refers to ${r}, which was not sent`,
        );
      }
    }
    try {
      checkSignatures(i, o.trust);
    } catch (e) {
      counters.rejected++;
      throw e;
    }
  }
  return missing;
}

/**
 * Phase 3: the holders of each missing path, then parallel NAR streams into staging, each path
 * verified as it arrives; a failed path goes back to the queue for another holder, up to
 * `attempts`. Either every path ends staged, or the staged files are removed and the fetch fails.
 */
class ClosureDownload {
  private readonly missing: readonly PathInfo[];
  private readonly o: FetchOptions;
  private readonly counters: StoreCounters;
  private readonly report: {
    fetched: number;
    bytes: number;
    retries: number;
    fromPeers: Record<string, number>;
  };
  private readonly progress: FetchProgress & { pathsDone: number; bytesDone: number };
  private holders = new Map<string, { path: string; peers: string[] }>();
  private readonly staged = new Map<string, StagedPath>();
  private readonly tried = new Map<string, Set<string>>();
  private readonly lastError = new Map<string, unknown>();
  private readonly inflight = new Map<string, number>();
  /** NAR bytes received per path, the most over its attempts (progress). */
  private readonly received = new Map<string, number>();
  private readonly attempts: number;
  /** Biggest first. */
  private readonly pending: PathInfo[];
  private readonly failed: PathInfo[] = [];
  private readonly parallel: number;
  private readonly batchPathsMax: number;

  constructor(
    missing: readonly PathInfo[],
    o: FetchOptions,
    counters: StoreCounters,
    report: ClosureDownload['report'],
  ) {
    this.missing = missing;
    this.o = o;
    this.counters = counters;
    this.report = report;
    this.progress = {
      paths: missing.length,
      pathsDone: 0,
      bytes: missing.reduce((n, i) => n + i.narSize, 0),
      bytesDone: 0,
    };
    this.attempts = Math.min(o.attempts ?? FETCH_ATTEMPTS_MAX, FETCH_ATTEMPTS_MAX);
    this.pending = [...missing].sort((a, b) => b.narSize - a.narSize);
    this.parallel = Math.max(1, Math.min(o.parallel ?? FETCH_PARALLEL_DEFAULT, FETCH_PARALLEL_MAX));
    // Spread small paths over every stream: one stream per holder would leave the others idle.
    this.batchPathsMax = Math.min(NARS_PER_REQUEST_MAX, Math.ceil(missing.length / this.parallel));
  }

  async run(peers: readonly string[]): Promise<void> {
    this.tell();
    this.holders = await findHolders(
      this.o.client,
      peers,
      this.missing.map((i) => parseStorePath(i.path).hashPart),
    );
    await Promise.all(Array.from({ length: this.parallel }, () => this.worker()));
    if (this.failed.length > 0 || this.staged.size !== this.missing.length) await this.fail();
  }

  /** The staged paths, references first (the order a store commits them in). */
  stagedInOrder(): StagedPath[] {
    return topoSort(this.missing).map((i) => this.staged.get(i.path)!);
  }

  private tell(): void {
    const p = this.progress;
    this.o.onProgress?.({ ...p, bytesDone: Math.min(p.bytesDone, p.bytes) });
  }

  private holdersOf(i: PathInfo): string[] {
    const h = this.holders.get(parseStorePath(i.path).hashPart);
    const all = h?.path === i.path ? h.peers : [];
    const t = this.tried.get(i.path);
    return all.filter((p) => t === undefined || !t.has(p));
  }

  /** The next batch: the biggest pending path, on its least busy untried holder, plus more. */
  private nextBatch(): { peer: string; batch: PathInfo[] } | undefined {
    const { pending, inflight } = this;
    while (pending.length > 0) {
      const first = pending.shift()!;
      const hs = this.holdersOf(first);
      if (hs.length === 0 || (this.tried.get(first.path)?.size ?? 0) >= this.attempts) {
        this.failed.push(first);
        continue;
      }
      const peer = hs.reduce((a, b) => ((inflight.get(a) ?? 0) <= (inflight.get(b) ?? 0) ? a : b));
      const batch = [first];
      let bytes = first.narSize;
      for (
        let j = 0;
        j < pending.length && bytes < FETCH_BATCH_BYTES && batch.length < this.batchPathsMax;
      ) {
        const c = pending[j]!;
        if (bytes + c.narSize <= FETCH_BATCH_BYTES && this.holdersOf(c).includes(peer)) {
          batch.push(c);
          bytes += c.narSize;
          pending.splice(j, 1);
        } else j++;
      }
      return { peer, batch };
    }
    return undefined;
  }

  private async worker(): Promise<void> {
    for (let job = this.nextBatch(); job !== undefined; job = this.nextBatch()) {
      const { peer, batch } = job;
      this.inflight.set(peer, (this.inflight.get(peer) ?? 0) + 1);
      const fails = await this.o.client.nars(peer, batch, (info) => this.sinkFor(info));
      this.inflight.set(peer, (this.inflight.get(peer) ?? 1) - 1);
      for (const info of batch) this.settle(peer, info, fails.get(info.path));
    }
  }

  /** Where one NAR goes: a staging file, verified as it is written; progress as bytes come. */
  private async sinkFor(info: PathInfo): Promise<NarSinkAsync> {
    const ing = await NarIngest.start(info, {
      dir: this.o.store.stagingDir(),
      fsync: this.o.fsync ?? this.o.store.stagingFsync === true,
    });
    let got = 0;
    // A retried path counts only the bytes beyond what an earlier attempt received.
    const count = (n: number) => {
      got += n;
      const before = this.received.get(info.path) ?? 0;
      if (got > before) {
        this.progress.bytesDone += got - before;
        this.received.set(info.path, got);
        this.tell();
      }
    };
    return {
      write: (c) => {
        count(c.byteLength);
        return ing.write(c);
      },
      writev: (cs) => {
        for (const c of cs) count(c.byteLength);
        return ing.writev(cs);
      },
      finish: async () => {
        this.staged.set(info.path, await ing.finish());
      },
      abort: (why) => ing.abort(why),
    };
  }

  /** Counts a path that arrived, or queues it again for another holder. */
  private settle(peer: string, info: PathInfo, e: unknown): void {
    const { counters, report } = this;
    if (e === undefined && this.staged.has(info.path)) {
      counters.pathsFetched++;
      counters.bytesFetched += info.narSize;
      this.progress.pathsDone++;
      this.tell();
      report.fetched++;
      report.bytes += info.narSize;
      report.fromPeers[peer] = (report.fromPeers[peer] ?? 0) + 1;
      return;
    }
    if (isStoreError(e) && ['HASH_MISMATCH', 'BAD_NAR', 'SIZE_MISMATCH'].includes(e.code)) {
      counters.rejected++;
    }
    let t = this.tried.get(info.path);
    if (t === undefined) this.tried.set(info.path, (t = new Set()));
    t.add(peer);
    this.lastError.set(
      info.path,
      e ?? new StoreError('PROTOCOL', `${peer} did not send ${info.path}`),
    );
    counters.fetchRetries++;
    report.retries++;
    this.pending.push(info);
  }

  /** Removes what was staged and throws the error of the first path that failed. */
  private async fail(): Promise<never> {
    for (const s of this.staged.values()) await rm(s.file, { force: true });
    const f = this.failed[0] ?? this.missing.find((i) => !this.staged.has(i.path))!;
    const why = this.lastError.get(f.path);
    throw new StoreError(
      isStoreError(why) && why.code !== 'NOT_FOUND' ? why.code : 'NO_HOLDER',
      `cannot fetch ${f.path} (${plural(this.failed.length, 'path')} failed; tried ${plural(this.tried.get(f.path)?.size ?? 0, 'holder')})${why === undefined ? ': no peer holds it' : `: ${(why as Error).message}`}`,
    );
  }
}

/**
 * For the HTTP cache's misses: if a peer holds the path with this hash part, fetch its closure
 * (`fetched`); otherwise the peers that did not answer and may hold it (`silent`: not `down`).
 */
export async function fetchByHashPart(
  hashPart: string,
  o: FetchOptions,
): Promise<{ fetched: boolean; silent: readonly string[] }> {
  const asked = await askHolders(o.client, o.peers(), [hashPart]);
  const h = asked.holders.get(hashPart);
  if (h === undefined) return { fetched: false, silent: mayHold(asked.unanswered, o.down) };
  await fetchClosure([h.path], o, asked);
  return { fetched: true, silent: [] };
}

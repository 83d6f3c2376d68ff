// Upstream caches: binary caches outside the cluster (the public NixOS cache, a company cache)
// that a node asks for a path no member holds, so a cluster behind one uplink downloads each path
// once. On a miss: the path's narinfo from the first upstream that has it, then the narinfos of
// its references that are not held here (each from the first upstream that has it), every one
// checked against the trust policy (the configured keys: `--trusted-key cache.nixos.org-1:...`),
// then the NARs (none, xz or zstd, decompressed by the program), each hashed, size-checked and
// parsed as it is staged, and the whole closure committed references first. Nothing is kept of a
// closure that fails anywhere. Only a 404 or 403 means "not there" (as Nix reads a cache); an
// upstream that cannot answer (5xx, no connection, a timeout) makes the lookup UNAVAILABLE, which
// the HTTP cache answers with a 502: a 404 would be remembered by Nix for an hour.

import { rm } from 'node:fs/promises';
import { StoreError } from './errors.ts';
import { NarIngest } from './ingest.ts';
import { checkSignatures, type TrustPolicy } from './keys.ts';
import { NARINFO_BYTES_MAX, type NarInfo, parseNarInfo, pathInfoOfNarInfo } from './narinfo.ts';
import {
  CLOSURE_PATHS_MAX,
  type StagedPath,
  type Store,
  type StoreCounters,
  topoSort,
} from './store.ts';
import { parseStorePath } from './store_path.ts';
import { throughProgram } from './through_program.ts';

/** Upstream caches a node may be given. */
export const UPSTREAMS_MAX = 8;
/** One upstream request (a narinfo; a NAR's headers) gets this long. */
export const UPSTREAM_REQUEST_MS = 30_000;

export interface UpstreamOptions {
  /** Base URLs (`https://cache.nixos.org`), asked in order. */
  readonly urls: readonly string[];
  readonly store: Store;
  /** The configured keys (not the members': an upstream path must be signed by a configured key). */
  readonly trust: TrustPolicy;
  readonly counters: StoreCounters;
  /** The xz and zstd programs (undefined: that compression is refused). */
  readonly findTool: (name: string) => string | undefined;
}

/** Checks a list of upstream URLs (at start: a bad one fails the start, clearly). */
export function checkUpstreams(urls: readonly string[]): void {
  if (urls.length > UPSTREAMS_MAX) {
    throw new StoreError('BAD_KEY', `at most UPSTREAMS_MAX (${UPSTREAMS_MAX}) upstream caches`);
  }
  for (const u of urls) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(u);
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || !['http:', 'https:'].includes(parsed.protocol)) {
      throw new StoreError('UNSUPPORTED', `upstream ${u}: an http:// or https:// binary cache URL`);
    }
  }
}

interface Found {
  readonly base: string;
  readonly info: NarInfo;
}

function baseOf(url: string): string {
  return url.replace(/\/+$/, '');
}

/** What Nix takes for "this cache does not have it" (an S3 bucket answers 403). */
function isAbsentStatus(status: number): boolean {
  return status === 404 || status === 403;
}

function unavailable(what: string, failures: readonly string[]): StoreError {
  return new StoreError(
    'UNAVAILABLE',
    `${what}: ${failures.join('; ')}; nothing was decided, ask again later`,
  );
}

/**
 * The narinfo of `hashPart` from the first upstream that has it; undefined when every upstream
 * answered that it does not. Throws UNAVAILABLE when none had it and one could not answer.
 */
async function narInfoFrom(urls: readonly string[], hashPart: string): Promise<Found | undefined> {
  const failures: string[] = [];
  for (const u of urls) {
    const base = baseOf(u);
    const res = await fetch(`${base}/${hashPart}.narinfo`, {
      signal: AbortSignal.timeout(UPSTREAM_REQUEST_MS),
    }).catch((e: unknown) => (e as Error).message);
    if (typeof res === 'string') {
      failures.push(`${base} could not be asked (${res})`);
      continue;
    }
    if (!res.ok) {
      await res.body?.cancel();
      if (!isAbsentStatus(res.status)) failures.push(`${base} answered ${res.status}`);
      continue;
    }
    const text = await res.text();
    if (Buffer.byteLength(text) > NARINFO_BYTES_MAX) continue;
    const info = parseNarInfo(text);
    if (parseStorePath(info.path).hashPart !== hashPart) {
      throw new StoreError('BAD_NARINFO', `${base}/${hashPart}.narinfo names ${info.path}`);
    }
    return { base, info };
  }
  if (failures.length > 0) throw unavailable(`${hashPart}.narinfo`, failures);
  return undefined;
}

/** The missing part of the closure of `root` as upstreams describe it, each signed by a trusted key. */
async function missingClosure(root: Found, o: UpstreamOptions): Promise<Found[]> {
  const found = new Map<string, Found>([[root.info.path, root]]);
  let frontier = [root];
  while (frontier.length > 0) {
    const refs = [...new Set(frontier.flatMap((f) => f.info.references))].filter(
      (r) => !found.has(r),
    );
    const held = await o.store.has(refs);
    const next: Found[] = [];
    for (const r of refs) {
      if (held.has(r)) continue;
      const f = await narInfoFrom(o.urls, parseStorePath(r).hashPart);
      if (f === undefined) {
        throw new StoreError('NO_HOLDER', `${r}: no upstream cache has it (a reference)`);
      }
      found.set(r, f);
      next.push(f);
    }
    if (found.size > CLOSURE_PATHS_MAX) {
      throw new StoreError('TOO_LARGE', `closure exceeds CLOSURE_PATHS_MAX (${CLOSURE_PATHS_MAX})`);
    }
    frontier = next;
  }
  for (const f of found.values()) checkSignatures(f.info, o.trust);
  return [...found.values()];
}

/** The NAR of `f`, decompressed, into staging (hashed, sized, parsed). */
async function stageNar(f: Found, o: UpstreamOptions): Promise<StagedPath> {
  const { info } = f;
  const tool =
    info.compression === 'none'
      ? undefined
      : o.findTool(info.compression === 'zstd' ? 'zstd' : 'xz');
  if (
    info.compression !== 'none' &&
    (tool === undefined || !['xz', 'zstd'].includes(info.compression))
  ) {
    throw new StoreError(
      'UNSUPPORTED',
      `${info.path}: compression ${info.compression} from ${f.base} (this node reads none, xz and zstd, with their programs)`,
    );
  }
  const res = await fetch(new URL(info.url, `${f.base}/`), {
    signal: AbortSignal.timeout(UPSTREAM_REQUEST_MS),
  }).catch((e: unknown) => {
    throw unavailable(`${info.path}'s NAR`, [
      `${f.base} could not be asked (${(e as Error).message})`,
    ]);
  });
  if (!res.ok || res.body === null) {
    await res.body?.cancel();
    if (!isAbsentStatus(res.status)) {
      throw unavailable(`${info.path}'s NAR`, [`${f.base} answered ${res.status}`]);
    }
    throw new StoreError('NO_HOLDER', `${info.path}: ${f.base} answers ${res.status} for its NAR`);
  }
  const body = res.body as unknown as AsyncIterable<Uint8Array>;
  const nar = tool === undefined ? body : throughProgram(tool, ['-dc'], body);
  const ing = await NarIngest.start(pathInfoOfNarInfo(info), {
    dir: o.store.stagingDir(),
    fsync: o.store.stagingFsync === true,
  });
  try {
    for await (const c of nar) await ing.write(c);
  } catch (e) {
    await ing.abort(e);
    // What the NAR's checks refuse stays refused; a connection cut mid-body decided nothing.
    if (e instanceof StoreError) throw e;
    throw unavailable(`${info.path}'s NAR`, [
      `${f.base} stopped sending (${(e as Error).message})`,
    ]);
  }
  const staged = await ing.finish();
  o.counters.bytesFetched += info.narSize;
  o.counters.pathsFetched++;
  return staged;
}

/**
 * On a miss no member could answer: fetches `hashPart`'s closure from the upstreams into the
 * store. True when the path is now here, false when no upstream has it. Throws when an upstream
 * has it but it cannot be trusted or does not verify (nothing is kept).
 */
export async function fetchFromUpstreams(hashPart: string, o: UpstreamOptions): Promise<boolean> {
  if (o.urls.length === 0) return false;
  const root = await narInfoFrom(o.urls, hashPart);
  if (root === undefined) return false;
  const found = await missingClosure(root, o);
  const byPath = new Map(found.map((f) => [f.info.path, f]));
  const order = topoSort(found.map((f) => f.info)).map((i) => byPath.get(i.path)!);
  const staged: StagedPath[] = [];
  try {
    for (const f of order) staged.push(await stageNar(f, o));
  } catch (e) {
    for (const s of staged) await rm(s.file, { force: true });
    throw e;
  }
  await o.store.commit(staged);
  return true;
}

// The node's Nix binary cache over HTTP: `/nix-cache-info`, `/<hash>.narinfo` (HEAD and GET) and
// `/nar/<hash>-<narhash>.nar`, uncompressed, from the node's store, every narinfo signed with the
// node's key. On a miss it asks peers first (the injected onMiss) because Nix remembers a 404 for
// an hour (narinfo-cache-negative-ttl): see docs/store.md for the exact rule. With a trust policy
// it also takes uploads from `nix copy --to` (PUT, upload.ts), each behind a push token
// (cache_auth.ts), checked before the body is read when the client waits for `100 Continue`.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { which } from '../which.ts';
import { encodeNix32 } from './base32.ts';
import { authorize, type CacheAuth, type CacheScope } from './cache_auth.ts';
import { isStoreError } from './errors.ts';
import { parseSha256 } from './hash.ts';
import { refuse, send } from './http_reply.ts';
import { type SecretKey, type TrustPolicy, withSignature } from './keys.ts';
import { formatNarInfo, nixCacheInfo, uncompressedNarInfo } from './narinfo.ts';
import { newCounters, type PathInfo, type Store, type StoreCounters } from './store.ts';
import { isHashPart, parseStorePath } from './store_path.ts';
import { throughProgram } from './through_program.ts';
import { parseNarUploadName, Uploads } from './upload.ts';
import { uploadHttp } from './upload_http.ts';
import { openVerifiedNar } from './verify.ts';

export const MISS_WAIT_MS_DEFAULT = 60_000;
/** zstd's level for served NARs (its default; the CPU it costs: docs/store.md). */
export const SERVE_ZSTD_ARGS: readonly string[] = ['-c', '-q', '-3'];
/** xz's level for a NAR served at the xz URL it was uploaded under (the fastest level). */
export const SERVE_XZ_ARGS: readonly string[] = ['-c', '-q', '-1'];

/**
 * How NARs are served: `none` always (the default), `remote`: zstd to clients not on loopback
 * (a client on this machine gains nothing from it), `zstd`: zstd to every client.
 */
export type ServeCompression = 'none' | 'remote' | 'zstd';
export const SERVE_COMPRESSIONS: readonly ServeCompression[] = ['none', 'remote', 'zstd'];

/** Whether a socket's remote address is this machine (IPv4, IPv6, IPv4-mapped). */
export function isLoopbackAddress(addr: string | undefined): boolean {
  if (addr === undefined) return false;
  const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return a === '::1' || /^127\./.test(a);
}

/** The compression of the narinfo a client gets. Pure. */
export function servedCompression(
  setting: ServeCompression,
  remoteAddress: string | undefined,
  zstdInstalled: boolean,
): 'none' | 'zstd' {
  if (!zstdInstalled || setting === 'none') return 'none';
  if (setting === 'remote' && isLoopbackAddress(remoteAddress)) return 'none';
  return 'zstd';
}
/** What a 503 or 502 tells Nix to wait before asking again. */
export const RETRY_AFTER_S = 5;

/**
 * A miss: nobody has it (404), still fetching (503), or a source could not be asked or failed
 * mid-fetch (502: UNAVAILABLE from upstream.ts or service.ts's memberFetchFailure).
 */
type Miss = 'absent' | 'wait' | 'unavailable';

/** A miss not decided yet: a 5xx, which Nix retries and does not remember (a 404 it would). */
function undecided(res: ServerResponse, r: 'wait' | 'unavailable', head: boolean): void {
  res.setHeader('Retry-After', String(RETRY_AFTER_S));
  if (r === 'wait') return send(res, 503, 'fetching from peers; try again\n', head);
  return send(
    res,
    502,
    'a member or an upstream cache holding it failed to answer; try again\n',
    head,
  );
}

export interface HttpCacheOptions {
  readonly store: Store;
  readonly key: SecretKey;
  /** Loopback by default: exposing the cache is an explicit choice. */
  readonly host?: string;
  readonly port?: number;
  readonly counters?: StoreCounters;
  /**
   * Called on a narinfo miss with the hash part: fetch it from peers into the store, resolve true
   * if it is now present, false if no peer holds it. May take long; the cache waits missWaitMs.
   */
  readonly onMiss?: (hashPart: string) => Promise<boolean | 'upstream'>;
  readonly missWaitMs?: number;
  readonly priority?: number;
  /** Uploads are taken (PUT) only with a trust policy: an upload must be signed by one of its keys. */
  readonly trust?: TrustPolicy;
  /** Tokens: uploads need a push token; reads need a read token when auth.readNeedsToken. */
  readonly auth?: CacheAuth;
  /** Called with a token's name each time a request used it (counted per node). */
  readonly onTokenUse?: (name: string) => void;
  /** Bound on one uploaded NAR, uncompressed (default: upload.ts, and the store's limit). */
  readonly uploadNarBytesMax?: number;
  /** Where upload decompressors are found (tests hide one). */
  readonly findTool?: (name: string) => string | undefined;
  /** How NARs are served (default none). */
  readonly compression?: ServeCompression;
}

export interface HttpCache {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

function narUrl(info: PathInfo): string {
  return `nar/${parseStorePath(info.path).hashPart}-${encodeNix32(parseSha256(info.narHash))}.nar`;
}

export async function startHttpCache(o: HttpCacheOptions): Promise<HttpCache> {
  const counters = o.counters ?? newCounters();
  const zstd = (o.findTool ?? which)('zstd');
  const misses = new Map<string, Promise<boolean | 'upstream'>>();
  const missWaitMs = o.missWaitMs ?? MISS_WAIT_MS_DEFAULT;

  async function lookup(hashPart: string): Promise<PathInfo | undefined> {
    const path = (await o.store.byHashParts([hashPart])).get(hashPart);
    if (path === undefined) return undefined;
    return (await o.store.info([path])).get(path);
  }

  /**
   * 'absent' only when peers were asked and nobody has it; 'wait' when still fetching;
   * 'unavailable' when a source could not be asked (UNAVAILABLE: nothing was decided).
   */
  async function resolve(hashPart: string): Promise<PathInfo | Miss> {
    const here = await lookup(hashPart);
    if (here !== undefined) {
      counters.hits++;
      counters.cacheLocalHits++;
      return here;
    }
    counters.misses++;
    const r = await resolveMiss(hashPart);
    if (typeof r === 'object' && r.from === 'upstream') counters.cacheUpstreamHits++;
    else if (typeof r === 'object') counters.cacheMemberHits++;
    else counters.cacheMisses++;
    return typeof r === 'object' ? r.info : r;
  }

  async function resolveMiss(
    hashPart: string,
  ): Promise<{ info: PathInfo; from: 'member' | 'upstream' } | Miss> {
    if (o.onMiss === undefined) return 'absent';
    let p = misses.get(hashPart);
    if (p === undefined) {
      p = o.onMiss(hashPart).finally(() => misses.delete(hashPart));
      misses.set(hashPart, p);
    }
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      p.then(
        (found) => (found === 'upstream' ? 'upstream' : found ? 'member' : 'absent'),
        (e: unknown) => (isStoreError(e, 'UNAVAILABLE') ? 'unavailable' : 'absent'),
      ),
      new Promise<'wait'>((r) => {
        timer = setTimeout(() => r('wait'), missWaitMs);
      }),
    ]).finally(() => clearTimeout(timer));
    if (outcome === 'wait' || outcome === 'absent' || outcome === 'unavailable') return outcome;
    const info = await lookup(hashPart);
    return info === undefined ? 'absent' : { info, from: outcome };
  }

  const uploads =
    o.trust !== undefined
      ? new Uploads({
          store: o.store,
          trust: o.trust,
          counters,
          ...(o.uploadNarBytesMax !== undefined ? { narBytesMax: o.uploadNarBytesMax } : {}),
          ...(o.findTool !== undefined ? { findTool: o.findTool } : {}),
        })
      : undefined;

  const puts = uploadHttp({ uploads, allowed, counters });

  /** The credential check of a request; on refusal the answer is sent and false returned. */
  function allowed(req: IncomingMessage, res: ServerResponse, scope: CacheScope): boolean {
    const a = authorize(o.auth, req.headers.authorization, scope);
    if (a.ok) {
      if (a.token !== undefined) o.onTokenUse?.(a.token);
      return true;
    }
    counters.authRefused++;
    if (a.status !== 403) res.setHeader('WWW-Authenticate', 'Basic realm="pcr cache"');
    refuse(res, a.status, a.message, req.method === 'HEAD');
    return false;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'PUT') return puts.put(req, res, url);
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(res, 405, 'GET, HEAD or PUT only\n');
    const head = req.method === 'HEAD';
    if (url === '/nix-cache-info') return send(res, 200, nixCacheInfo(o.priority), head);
    if (!allowed(req, res, 'read')) return;
    const ni = /^\/([0-9a-z]{32})\.narinfo$/.exec(url);
    if (ni !== null && isHashPart(ni[1]!)) return serveNarInfo(req, res, ni[1]!, head);
    const nar = /^\/nar\/([0-9a-z]{32})-([0-9a-z]{52})\.nar(\.zst)?$/.exec(url);
    if (nar !== null && isHashPart(nar[1]!)) return serveNar(res, url, nar[1]!, head);
    const uploaded = parseNarUploadName(url) && uploads?.uploadedPath(url.slice(1));
    if (uploaded) return serveUploaded(res, url, uploaded, head);
    return send(res, 404, 'not found\n', head);
  }

  /**
   * A NAR at the URL it was uploaded under (the uploader's Nix remembers that narinfo): the NAR
   * compressed again as the name says (Nix checks the NarHash, not the FileHash).
   */
  async function serveUploaded(
    res: ServerResponse,
    url: string,
    path: string,
    head: boolean,
  ): Promise<void> {
    const r = (await o.store.info([path])).get(path);
    const c = parseNarUploadName(url)!.compression;
    const tool = c === 'none' ? undefined : (o.findTool ?? which)(c === 'zstd' ? 'zstd' : 'xz');
    if (r === undefined || (c !== 'none' && tool === undefined))
      return send(res, 404, 'no such NAR\n', head);
    const nar = head ? [] : await openVerifiedNar(o.store, r).catch(() => undefined);
    if (nar === undefined) return send(res, 404, 'no such NAR (damaged here)\n', head);
    if (tool === undefined) return sendNar(res, nar, r, head);
    return serveCompressed(res, nar, r, tool, c === 'zstd' ? SERVE_ZSTD_ARGS : SERVE_XZ_ARGS, head);
  }

  /** `<hashPart>.narinfo`: signed by this node, compressed as `o.compression` says. */
  async function serveNarInfo(
    req: IncomingMessage,
    res: ServerResponse,
    hashPart: string,
    head: boolean,
  ): Promise<void> {
    const r = await resolve(hashPart);
    if (r === 'absent') return send(res, 404, 'not in this cache or on any peer\n', head);
    if (r === 'wait' || r === 'unavailable') return undecided(res, r, head);
    const signed = withSignature(o.key, r);
    const c = servedCompression(o.compression ?? 'none', req.socket.remoteAddress, !!zstd);
    // Compressed on the fly: no FileHash or FileSize to give (Nix checks the NarHash).
    const ni =
      c === 'zstd'
        ? { ...signed, url: `${narUrl(r)}.zst`, compression: 'zstd' }
        : uncompressedNarInfo(signed, narUrl(r));
    return send(res, 200, formatNarInfo(ni), head, 'text/x-nix-narinfo');
  }

  /** `nar/<hashPart>-<narHash>.nar[.zst]`: the NAR, hashed as it goes out. */
  async function serveNar(
    res: ServerResponse,
    url: string,
    hashPart: string,
    head: boolean,
  ): Promise<void> {
    // Nix keeps narinfos it got (narinfo-cache-positive-ttl, 30 days), so after this node
    // quarantined a path Nix asks for its NAR directly: a miss here asks the members too.
    const r = (await lookup(hashPart)) ?? (await resolve(hashPart));
    if (r === 'wait' || r === 'unavailable') return undecided(res, r, head);
    const zst = url.endsWith('.zst');
    if (r === 'absent' || narUrl(r) !== url.slice(1, zst ? -4 : undefined))
      return send(res, 404, 'no such NAR\n', head);
    if (zst && zstd === undefined)
      return send(res, 404, 'no zstd on this node: ask for the narinfo again\n', head);
    // Opened before the status line: a NAR found damaged at open is a 404, not a short body.
    const nar = head ? [] : await openVerifiedNar(o.store, r).catch(() => undefined);
    if (nar === undefined) return send(res, 404, 'no such NAR (damaged here)\n', head);
    if (zst) return serveCompressed(res, nar, r, zstd!, SERVE_ZSTD_ARGS, head);
    return sendNar(res, nar, r, head);
  }

  async function sendNar(
    res: ServerResponse,
    nar: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    r: PathInfo,
    head: boolean,
  ): Promise<void> {
    res.writeHead(200, {
      'Content-Type': 'application/x-nix-nar',
      'Content-Length': String(r.narSize),
    });
    if (head) return void res.end();
    await pipeline(Readable.from(nar), res);
    counters.pathsServed++;
    counters.bytesServed += r.narSize;
    counters.cacheBytesServed += r.narSize;
  }

  /** The NAR through a compressor, chunked (its length is known only at the end). */
  async function serveCompressed(
    res: ServerResponse,
    nar: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    r: PathInfo,
    tool: string,
    args: readonly string[],
    head: boolean,
  ): Promise<void> {
    res.writeHead(200, { 'Content-Type': 'application/x-nix-nar' });
    if (head) return void res.end();
    let sent = 0;
    async function* counted() {
      for await (const c of throughProgram(tool, args, nar)) {
        sent += c.length;
        yield c;
      }
    }
    await pipeline(Readable.from(counted()), res);
    counters.pathsServed++;
    counters.bytesServed += r.narSize;
    counters.cacheBytesServed += sent;
  }

  const fail = (res: ServerResponse) => (e: unknown) => {
    if (!res.headersSent) send(res, 500, `${(e as Error).message}\n`);
    else res.destroy(e as Error);
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch(fail(res));
  });
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    puts
      .precheck(req, res)
      .then((go) => {
        if (!go) return;
        res.writeContinue();
        return handle(req, res);
      })
      .catch(fail(res));
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => ok());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    port: addr.port,
    close: () =>
      new Promise<void>((r) => {
        uploads?.close();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

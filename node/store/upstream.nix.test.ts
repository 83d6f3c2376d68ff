// Upstream caches, with a local static cache written by the real Nix standing in for the public
// one (unreachable here): Nix asks a node's cache for a closure no member holds; the node fetches
// it from upstream (xz and zstd, as Nix wrote them), verifies it against the configured key,
// keeps it and serves it; a second client is served from the node without asking upstream. An
// upstream path signed by an untrusted key, or whose NAR was altered, is refused and nothing of
// its closure is kept.

import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { which } from '../which.ts';
import { startHttpCache } from './http_cache.ts';
import { formatPublicKey, formatSecretKey, generateSecretKey, TrustPolicy } from './keys.ts';
import { LocalStore } from './local_store.ts';
import { newCounters } from './store.ts';
import { parseStorePath } from './store_path.ts';
import { fetchFromUpstreams } from './upstream.ts';

const upKey = generateSecretKey('upstream-1');
const nodeKey = generateSecretKey('node-up-1');

/**
 * A static binary cache over HTTP; counts the requests it answers. `fail` may name a status to
 * answer a request with instead (an upstream in trouble).
 */
async function staticCache(
  dir: string,
  fail: (url: string) => number | undefined = () => undefined,
): Promise<{ url: string; hits: () => number; server: Server }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    const status = fail(req.url ?? '/');
    if (status !== undefined) return void res.writeHead(status).end('upstream trouble\n');
    const p = normalize(join(dir, (req.url ?? '/').split('?')[0]!));
    if (!p.startsWith(dir)) return void res.writeHead(403).end();
    stat(p).then(
      (st) => {
        res.writeHead(200, { 'Content-Length': String(st.size) });
        createReadStream(p).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits: () => hits,
    server,
  };
}

describeWithTools(['nix', 'nix-store', 'xz', 'zstd'], 'upstream caches', () => {
  let dir = '';
  let root = '';
  let closure: string[] = [];
  let env: NodeJS.ProcessEnv = {};
  const closers: (() => unknown)[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pcr-upstream-'));
    env = { ...nixEnv(), XDG_CACHE_HOME: join(dir, 'xdg') };
    root = await nixBuild(dir, CLOSURE_EXPR, `upstream${process.pid}${Date.now()}`);
    closure = (await nixClosure(root)).sort();
    await writeFile(join(dir, 'up.sk'), formatSecretKey(upKey));
    for (const c of ['xz', 'zstd']) {
      await execa(
        'nix',
        [
          'copy',
          '--to',
          `file://${join(dir, `up-${c}`)}?compression=${c}&secret-key=${join(dir, 'up.sk')}`,
          root,
        ],
        { env },
      );
    }
  });
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function node(
    name: string,
    upstream: string | string[],
    keys = [formatPublicKey(upKey.publicKey)],
  ) {
    const counters = newCounters();
    const store = await LocalStore.open({
      dir: join(dir, name),
      maxBytes: 2 ** 30,
      counters,
      fsync: false,
    });
    const urls = typeof upstream === 'string' ? [upstream] : upstream;
    const o = { urls, store, trust: new TrustPolicy(keys), counters, findTool: which };
    const cache = await startHttpCache({
      store,
      key: nodeKey,
      counters,
      onMiss: async (hp) => ((await fetchFromUpstreams(hp, o)) ? 'upstream' : false),
    });
    closers.push(() => cache.close());
    return { cache, store, counters, o };
  }

  for (const c of ['xz', 'zstd']) {
    it(`fetches a closure missing everywhere from upstream (${c}), keeps it and serves it`, async () => {
      const up = await staticCache(join(dir, `up-${c}`));
      closers.push(() => up.server.close());
      const n = await node(`n-${c}`, up.url);
      const trusted = `${env.NIX_CONFIG}\ntrusted-public-keys = ${formatPublicKey(nodeKey.publicKey)}`;
      for (const [i, before] of [
        [1, 0],
        [2, -1],
      ] as const) {
        const asked = up.hits();
        const dest = join(dir, `dest-${c}-${i}`);
        const e = { ...env, NIX_CONFIG: trusted, XDG_CACHE_HOME: join(dir, `xdg-${c}-${i}`) };
        await execa('nix', ['copy', '--from', n.cache.url, '--to', dest, root], { env: e });
        await execa('nix', ['store', 'verify', '--store', dest, '-r', root], { env: e });
        if (before === 0) expect(up.hits()).toBeGreaterThan(asked);
        else expect(up.hits()).toBe(asked); // the second client: served from the node alone
      }
      expect([...(await n.store.has(closure))].sort()).toEqual(closure);
      expect(n.counters.cacheUpstreamHits).toBeGreaterThanOrEqual(1);
      expect(n.counters.pathsFetched).toBe(closure.length);
    });
  }

  it('refuses an upstream path no configured key signed; keeps nothing', async () => {
    const up = await staticCache(join(dir, 'up-xz'));
    closers.push(() => up.server.close());
    const n = await node('n-untrusted', up.url, [
      formatPublicKey(generateSecretKey('other-1').publicKey),
    ]);
    await expect(fetchFromUpstreams(parseStorePath(root).hashPart, n.o)).rejects.toMatchObject({
      code: 'UNTRUSTED',
    });
    expect((await n.store.has(closure)).size).toBe(0);
    expect(await readdir(n.store.stagingDir())).toEqual([]);
    const missing = await fetch(`${n.cache.url}/${parseStorePath(root).hashPart}.narinfo`);
    expect(missing.status).toBe(404);
  });

  it('refuses an altered NAR from upstream; nothing of the closure is kept', async () => {
    const copy = join(dir, 'up-altered');
    await execa('cp', ['-r', join(dir, 'up-zstd'), copy]);
    // The narinfo of c, whose NAR we replace by another path's (a valid NAR, the wrong one).
    const c = closure.find((p) => p.includes('-pcr-c-'))!;
    const a = closure.find((p) => p.includes('-pcr-a-'))!;
    const urlOf = async (p: string) =>
      /^URL: (.*)$/m.exec(
        await readFile(join(copy, `${parseStorePath(p).hashPart}.narinfo`), 'utf8'),
      )![1]!;
    await execa('cp', [join(copy, await urlOf(a)), join(copy, await urlOf(c))]);
    const up = await staticCache(copy);
    closers.push(() => up.server.close());
    const n = await node('n-altered', up.url);
    await expect(fetchFromUpstreams(parseStorePath(root).hashPart, n.o)).rejects.toMatchObject({
      code: expect.stringMatching(/HASH_MISMATCH|SIZE_MISMATCH/),
    });
    expect((await n.store.has(closure)).size).toBe(0);
    expect(await readdir(n.store.stagingDir())).toEqual([]);
  });

  it('answers false when no upstream has the path', async () => {
    const up = await staticCache(join(dir, 'up-xz'));
    closers.push(() => up.server.close());
    const n = await node('n-none', up.url);
    expect(await fetchFromUpstreams('0'.repeat(31) + '1', n.o)).toBe(false);
  });

  it('a failing upstream is "try again" (502), never "not there" (404)', async () => {
    let failing = true;
    const up = await staticCache(join(dir, 'up-xz'), () => (failing ? 500 : undefined));
    closers.push(() => up.server.close());
    const n = await node('n-failing', up.url);
    const hp = parseStorePath(root).hashPart;
    await expect(fetchFromUpstreams(hp, n.o)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    const r = await fetch(`${n.cache.url}/${hp}.narinfo`);
    expect(r.status).toBe(502);
    expect(r.headers.get('retry-after')).toBe('5');
    expect((await n.store.has(closure)).size).toBe(0);

    // The real Nix: a 502 fails this copy but is not remembered, so once the upstream is back
    // the same client (the same narinfo disk cache) gets the closure. A 404 it would remember
    // for an hour (narinfo-cache-negative-ttl), and this second copy would fail.
    const trusted = `${env.NIX_CONFIG}\ntrusted-public-keys = ${formatPublicKey(nodeKey.publicKey)}\ndownload-attempts = 1`;
    const e = { ...env, NIX_CONFIG: trusted, XDG_CACHE_HOME: join(dir, 'xdg-failing') };
    const dest = join(dir, 'dest-failing');
    const first = await execa('nix', ['copy', '--from', n.cache.url, '--to', dest, root], {
      env: e,
      reject: false,
    });
    expect(first.exitCode).not.toBe(0);
    failing = false;
    await execa('nix', ['copy', '--from', n.cache.url, '--to', dest, root], { env: e });
    expect([...(await n.store.has(closure))].sort()).toEqual(closure);
  });

  it('a NAR an upstream cannot serve is UNAVAILABLE; nothing is kept', async () => {
    const up = await staticCache(join(dir, 'up-zstd'), (url) =>
      url.startsWith('/nar/') ? 503 : undefined,
    );
    closers.push(() => up.server.close());
    const n = await node('n-nar-failing', up.url);
    await expect(fetchFromUpstreams(parseStorePath(root).hashPart, n.o)).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    expect((await n.store.has(closure)).size).toBe(0);
    expect(await readdir(n.store.stagingDir())).toEqual([]);
  });

  it('an upstream that cannot be reached is passed over for the next', async () => {
    // A port nobody listens on: the connection is refused.
    const gone = createServer();
    await new Promise<void>((ok) => gone.listen(0, '127.0.0.1', ok));
    const deadUrl = `http://127.0.0.1:${(gone.address() as AddressInfo).port}`;
    await new Promise((ok) => gone.close(ok));
    const up = await staticCache(join(dir, 'up-xz'));
    closers.push(() => up.server.close());
    const n = await node('n-second', [deadUrl, up.url]);
    expect(await fetchFromUpstreams(parseStorePath(root).hashPart, n.o)).toBe(true);
    expect([...(await n.store.has(closure))].sort()).toEqual(closure);
    // Alone, it is UNAVAILABLE, and it says which upstream and why.
    const alone = await node('n-dead', deadUrl);
    await expect(fetchFromUpstreams(parseStorePath(root).hashPart, alone.o)).rejects.toThrow(
      /could not be asked/,
    );
  });
});

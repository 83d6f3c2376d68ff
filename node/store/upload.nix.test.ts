// Uploads with Nix's own client: `nix copy --to http://node` of a real closure (xz, the default,
// zstd and none), with a push token in a real netrc file, into a node-local store; then `nix copy
// --from` the same cache into a fresh store and `nix store verify -r`. And each refusal, with the
// status Nix shows and nothing half-imported: unsigned, signed by an unknown key, no or a wrong or
// revoked or read-only token, missing references, NarHash or file hash mismatch, path traversal
// in the name, over the size limit (at its edge), zstd without the zstd program.

import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { encodeNix32 } from './base32.ts';
import { type CacheToken, tokenHash } from './cache_auth.ts';
import { type HttpCache, startHttpCache } from './http_cache.ts';
import { formatPublicKey, formatSecretKey, generateSecretKey, TrustPolicy } from './keys.ts';
import { LocalStore } from './local_store.ts';
import { newCounters, type StoreCounters } from './store.ts';
import { parseStorePath } from './store_path.ts';

const ci = generateSecretKey('ci-1');
const sha256Nix32 = (b: Uint8Array) => encodeNix32(createHash('sha256').update(b).digest());
const nodeKey = generateSecretKey('node-1');

interface Setup {
  cache: HttpCache;
  store: LocalStore;
  counters: StoreCounters;
  tokens: Map<string, CacheToken>;
  uses: Map<string, number>;
}

/** A raw HTTP request (no URL normalisation: `..` reaches the server as sent). */
function raw(
  port: number,
  method: string,
  path: string,
  body: Uint8Array | string,
  token?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((ok, fail) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        headers: token !== undefined ? { Authorization: `Bearer ${token}` } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          ok({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
        );
      },
    );
    req.on('error', fail);
    req.end(body);
  });
}

describeWithTools(['nix', 'nix-store', 'xz', 'zstd'], 'uploads by nix copy --to', () => {
  let dir = '';
  let root = '';
  let closure: string[] = [];
  let env: NodeJS.ProcessEnv = {};
  let netrc = '';
  const PUSH = 'push-token-secret';
  const READ = 'read-token-secret';
  const open: Setup[] = [];

  async function setup(
    o: { maxBytes?: number; narMax?: number; noZstd?: boolean; fsync?: boolean } = {},
  ): Promise<Setup> {
    const sdir = await mkdtemp(join(dir, 'store-'));
    const counters = newCounters();
    const store = await LocalStore.open({
      dir: sdir,
      maxBytes: o.maxBytes ?? 2 ** 30,
      counters,
      fsync: o.fsync ?? false,
    });
    const tokens = new Map<string, CacheToken>([
      [tokenHash(PUSH), { name: 'ci', scopes: ['push'] }],
      [tokenHash(READ), { name: 'reader', scopes: ['read'] }],
    ]);
    const uses = new Map<string, number>();
    const cache = await startHttpCache({
      store,
      key: nodeKey,
      counters,
      trust: new TrustPolicy([formatPublicKey(ci.publicKey)]),
      auth: { lookup: (h) => tokens.get(h), readNeedsToken: false },
      onTokenUse: (n) => uses.set(n, (uses.get(n) ?? 0) + 1),
      ...(o.narMax !== undefined ? { uploadNarBytesMax: o.narMax } : {}),
      ...(o.noZstd === true
        ? { findTool: (n: string) => (n === 'zstd' ? undefined : `/usr/bin/${n}`) }
        : {}),
    });
    const s = { cache, store, counters, tokens, uses };
    open.push(s);
    return s;
  }

  function copyTo(url: string, paths: string[], extra: string[] = [], netrcFile = netrc) {
    return execa('nix', ['copy', '--to', url, ...extra, ...paths], {
      env: { ...env, NIX_CONFIG: `${env.NIX_CONFIG}\nnetrc-file = ${netrcFile}` },
      reject: false,
      all: true,
    });
  }

  async function held(s: Setup): Promise<string[]> {
    return [...(await s.store.has(closure))].sort();
  }

  async function stagingEmpty(s: Setup): Promise<void> {
    expect(await readdir(s.store.stagingDir())).toEqual([]);
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pcr-upload-'));
    env = { ...nixEnv(), XDG_CACHE_HOME: join(dir, 'xdg-cache') };
    root = await nixBuild(dir, CLOSURE_EXPR, `up${process.pid}${Date.now()}`);
    closure = (await nixClosure(root)).sort();
    netrc = join(dir, 'netrc');
    await writeFile(netrc, `machine 127.0.0.1 login pcr password ${PUSH}\n`);
    // Signed as a CI machine signs its builds (secret-key-files, or nix store sign afterwards).
    const sk = join(dir, 'ci.sk');
    await writeFile(sk, formatSecretKey(ci));
    await execa('nix', ['store', 'sign', '--key-file', sk, '-r', root], { env });
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.cache.close();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const compression of ['xz', 'zstd', 'none'] as const) {
    it(`takes a closure from nix copy --to (compression ${compression}); nix copy --from it back verifies`, async () => {
      const s = await setup({ fsync: compression === 'xz' });
      const url = compression === 'xz' ? s.cache.url : `${s.cache.url}?compression=${compression}`;
      const r = await copyTo(url, [root]);
      expect(r.exitCode, r.all).toBe(0);
      expect(await held(s)).toEqual(closure);
      expect(s.counters.uploadsAccepted).toBe(closure.length);
      expect(s.counters.uploadsRefused).toBe(0);
      expect(s.counters.uploadBytesReceived).toBeGreaterThan(0);
      expect(s.uses.get('ci')).toBeGreaterThanOrEqual(2 * closure.length);
      await stagingEmpty(s);
      // Back out through the cache, signed by the node; Nix checks every NAR and signature.
      const dest = join(dir, `dest-${compression}`);
      // Another client (its own narinfo disk cache): the narinfos as the node serves them.
      const back = {
        ...env,
        XDG_CACHE_HOME: join(dir, `xdg-from-${compression}`),
        NIX_CONFIG: `${env.NIX_CONFIG}\ntrusted-public-keys = ${formatPublicKey(nodeKey.publicKey)}`,
      };
      await execa('nix', ['copy', '--from', s.cache.url, '--to', dest, root], { env: back });
      await execa('nix', ['store', 'verify', '--store', dest, '-r', root], { env: back });
      // The uploader itself (its disk cache holds the narinfos it uploaded, naming the uploaded
      // URLs): served at those URLs, compressed again as they say.
      // Those narinfos carry the signatures as uploaded: the CI's own key.
      const mine = {
        ...env,
        NIX_CONFIG: `${env.NIX_CONFIG}\ntrusted-public-keys = ${formatPublicKey(ci.publicKey)}`,
      };
      const dest2 = join(dir, `dest-${compression}-uploader`);
      await execa('nix', ['copy', '--from', s.cache.url, '--to', dest2, root], { env: mine });
      await execa('nix', ['store', 'verify', '--store', dest2, '-r', root], { env: mine });
    });
  }

  it('refuses an upload whose signer is not trusted (403), and keeps nothing', async () => {
    const s = await setup();
    const path = (await execa('nix-store', ['--add', await unsignedFile()], { env })).stdout;
    const r = await copyTo(s.cache.url, [path]);
    expect(r.exitCode).not.toBe(0);
    expect(r.all).toContain('403');
    expect(r.all).toContain('is not signed by any trusted key');
    expect((await s.store.has([path])).size).toBe(0);
    expect(s.counters.uploadsRefused).toBe(1);
    await stagingEmpty(s);
  });

  async function unsignedFile(): Promise<string> {
    const f = join(dir, `unsigned-${Date.now()}-${Math.random()}.txt`);
    await writeFile(f, `unsigned ${f}\n`);
    return f;
  }

  it('refuses without a token (401), with an unknown one (401), a read token (403)', async () => {
    const s = await setup();
    const none = join(dir, 'netrc-none');
    await writeFile(none, '');
    let r = await copyTo(s.cache.url, [root], [], none);
    expect(r.exitCode).not.toBe(0);
    expect(r.all).toContain('401');
    expect(r.all).toContain('needs a push token');
    const wrong = join(dir, 'netrc-wrong');
    await writeFile(wrong, 'machine 127.0.0.1 login pcr password not-a-token\n');
    r = await copyTo(s.cache.url, [root], [], wrong);
    expect(r.all).toContain('unknown or was revoked');
    const reader = join(dir, 'netrc-read');
    await writeFile(reader, `machine 127.0.0.1 login pcr password ${READ}\n`);
    r = await copyTo(s.cache.url, [root], [], reader);
    expect(r.all).toContain('403');
    expect(r.all).toContain('not push');
    // Revoked: the table no longer has it.
    s.tokens.delete(tokenHash(PUSH));
    r = await copyTo(s.cache.url, [root]);
    expect(r.all).toContain('unknown or was revoked');
    expect(await held(s)).toEqual([]);
    expect(s.counters.authRefused).toBeGreaterThanOrEqual(4);
    await stagingEmpty(s);
  });

  it('bounds the NAR: one of exactly the limit is taken, one byte over is refused (413)', async () => {
    const leaf = closure.find((p) => p.includes('-pcr-a-'))!;
    const info = JSON.parse(
      (await execa('nix', ['path-info', '--json', leaf], { env })).stdout,
    ) as { narSize: number }[];
    const narSize = info[0]!.narSize;
    const over = await setup({ narMax: narSize - 1 });
    let r = await copyTo(`${over.cache.url}?compression=none`, [leaf]);
    expect(r.exitCode).not.toBe(0);
    expect(r.all).toContain('413');
    expect(r.all).toContain('upload limit');
    await stagingEmpty(over);
    const exact = await setup({ narMax: narSize });
    r = await copyTo(`${exact.cache.url}?compression=none`, [leaf]);
    expect(r.exitCode, r.all).toBe(0);
    expect((await exact.store.has([leaf])).has(leaf)).toBe(true);
  });

  it('refuses zstd with 415 when the zstd program is missing, and says what to do', async () => {
    const s = await setup({ noZstd: true });
    const r = await copyTo(`${s.cache.url}?compression=zstd`, [root]);
    expect(r.exitCode).not.toBe(0);
    expect(r.all).toContain('415');
    expect(r.all).toContain('compression=none');
    expect(await held(s)).toEqual([]);
  });

  describe('bad input by hand', () => {
    async function leafUpload(
      name = '-pcr-a-',
    ): Promise<{ path: string; nar: Buffer; narinfo: string }> {
      const path = closure.find((p) => p.includes(name))!;
      const nar = (await execa('nix-store', ['--dump', path], { env, encoding: 'buffer' }))
        .stdout as unknown as Buffer;
      const i = JSON.parse((await execa('nix', ['path-info', '--json', path], { env })).stdout)[0];
      const fh = sha256Nix32(nar);
      const narinfo = [
        `StorePath: ${path}`,
        `URL: nar/${fh}.nar`,
        'Compression: none',
        `NarHash: ${i.narHash}`,
        `NarSize: ${i.narSize}`,
        `References: ${(i.references as string[]).map((r) => r.slice('/nix/store/'.length)).join(' ')}`,
        ...(i.signatures as string[]).map((x) => `Sig: ${x}`),
        '',
      ].join('\n');
      return { path, nar, narinfo };
    }

    it('refuses a NarHash that does not match the NAR (400), a body not matching its name (400)', async () => {
      const s = await setup();
      const { path, nar, narinfo } = await leafUpload();
      const fh = sha256Nix32(nar);
      let r = await raw(s.cache.port, 'PUT', `/nar/${fh}.nar`, nar, PUSH);
      expect(r.status).toBe(200);
      const forged = narinfo.replace(/NarHash: .*/, `NarHash: sha256:${'0'.repeat(52)}`);
      const hp = parseStorePath(path).hashPart;
      r = await raw(s.cache.port, 'PUT', `/${hp}.narinfo`, forged, PUSH);
      expect(r.status).toBe(400);
      expect(r.body).toContain('HASH_MISMATCH');
      expect((await s.store.has([path])).size).toBe(0);
      // The NAR was claimed by that narinfo and deleted: the genuine narinfo now needs it again.
      r = await raw(s.cache.port, 'PUT', `/${hp}.narinfo`, narinfo, PUSH);
      expect(r.status).toBe(409);
      const other = Buffer.from(nar);
      other[other.length - 20] ^= 1;
      r = await raw(s.cache.port, 'PUT', `/nar/${fh}.nar`, other, PUSH);
      expect(r.status).toBe(400);
      expect(r.body).toMatch(/HASH_MISMATCH|BAD_NAR/);
      await stagingEmpty(s);
      r = await raw(s.cache.port, 'PUT', `/nar/${fh}.nar`, nar, PUSH);
      r = await raw(s.cache.port, 'PUT', `/${hp}.narinfo`, narinfo, PUSH);
      expect(r.status, r.body).toBe(200);
      expect((await s.store.has([path])).has(path)).toBe(true);
    });

    it('refuses a path traversal or any other name (400) and a narinfo for another path', async () => {
      const s = await setup();
      const { nar, narinfo } = await leafUpload();
      for (const name of [
        '/nar/../../../etc/passwd.nar',
        '/nar/..%2f..%2fx.nar',
        '/../x.narinfo',
        `/nar/${sha256Nix32(nar)}.nar.gz`,
        '/x/../0000000000000000000000000000000e.narinfo',
      ]) {
        const r = await raw(s.cache.port, 'PUT', name, nar, PUSH);
        expect(r.status, name).toBe(400);
        expect(r.body).toContain('not an upload name');
      }
      const r = await raw(s.cache.port, 'PUT', `/${'1'.repeat(32)}.narinfo`, narinfo, PUSH);
      expect(r.status).toBe(400);
      expect(r.body).toContain('carries the narinfo of');
      await stagingEmpty(s);
      expect(await readdir(dir)).not.toContain('passwd.nar');
    });

    it('refuses a path whose references it does not hold (409); takes it once they are there', async () => {
      const s = await setup();
      const b = await leafUpload('-pcr-b-');
      const a = await leafUpload('-pcr-a-');
      const put = async (u: typeof a) => {
        await raw(s.cache.port, 'PUT', `/nar/${sha256Nix32(u.nar)}.nar`, u.nar, PUSH);
        const hp = parseStorePath(u.path).hashPart;
        return raw(s.cache.port, 'PUT', `/${hp}.narinfo`, u.narinfo, PUSH);
      };
      let r = await put(b);
      expect(r.status).toBe(409);
      expect(r.body).toContain('references are not in this cache');
      expect((await s.store.has([b.path])).size).toBe(0);
      await stagingEmpty(s);
      r = await put(a);
      expect(r.status, r.body).toBe(200);
      r = await put(b);
      expect(r.status, r.body).toBe(200);
      expect((await s.store.has([a.path, b.path])).size).toBe(2);
    });

    it('refuses a body that does not decompress (400), and one that is no NAR (400)', async () => {
      const s = await setup();
      const garbage = Buffer.from('this is not xz data at all\n'.repeat(100));
      let r = await raw(s.cache.port, 'PUT', `/nar/${sha256Nix32(garbage)}.nar.xz`, garbage, PUSH);
      expect(r.status).toBe(400);
      expect(r.body).toContain('does not decompress');
      const notNar = (await execa('xz', ['-c'], { input: garbage, encoding: 'buffer' }))
        .stdout as unknown as Buffer;
      r = await raw(s.cache.port, 'PUT', `/nar/${sha256Nix32(notNar)}.nar.xz`, notNar, PUSH);
      expect(r.status).toBe(400);
      expect(r.body).toContain('BAD_NAR');
      await stagingEmpty(s);
      expect(s.counters.uploadsRefused).toBe(2);
    });

    it('a narinfo whose NAR was never uploaded is refused (409)', async () => {
      const s = await setup();
      const { path, narinfo } = await leafUpload();
      const r = await raw(
        s.cache.port,
        'PUT',
        `/${parseStorePath(path).hashPart}.narinfo`,
        narinfo,
        PUSH,
      );
      expect(r.status).toBe(409);
      expect(r.body).toContain('upload the NAR first');
    });
  });

  it('reads stay open by default; with readNeedsToken a narinfo needs a read or push token', async () => {
    const s = await setup();
    expect((await copyTo(s.cache.url, [root])).exitCode).toBe(0);
    const hp = parseStorePath(root).hashPart;
    expect((await raw(s.cache.port, 'GET', `/${hp}.narinfo`, '')).status).toBe(200);
    const counters = newCounters();
    const closed = await startHttpCache({
      store: s.store,
      key: nodeKey,
      counters,
      auth: { lookup: (h) => s.tokens.get(h), readNeedsToken: true },
    });
    try {
      // 400, not 401: Nix would take a 401 for "absent" and remember it for an hour.
      const refused = await raw(closed.port, 'GET', `/${hp}.narinfo`, '');
      expect(refused).toMatchObject({ status: 400, body: /needs a read token/ });
      expect((await raw(closed.port, 'GET', `/${hp}.narinfo`, '', 'bogus')).status).toBe(400);
      expect((await raw(closed.port, 'GET', `/${hp}.narinfo`, '', READ)).status).toBe(200);
      expect((await raw(closed.port, 'GET', `/${hp}.narinfo`, '', PUSH)).status).toBe(200);
      expect((await raw(closed.port, 'GET', '/nix-cache-info', '')).status).toBe(200);
      // This cache has no trust policy: it takes no uploads at all.
      expect((await raw(closed.port, 'PUT', `/${hp}.narinfo`, 'x', PUSH)).status).toBe(405);
      expect(counters.authRefused).toBe(2);
    } finally {
      await closed.close();
    }
  });
});

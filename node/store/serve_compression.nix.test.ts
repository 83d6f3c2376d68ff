// Serving compressed NARs: which clients get zstd (pure), and the real Nix copying a closure from
// a cache that serves zstd, verified by `nix store verify`; a cache on loopback with `remote`
// serves uncompressed; without the zstd program nothing is compressed.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSURE_EXPR, nixBuild } from '../../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { isLoopbackAddress, servedCompression, startHttpCache } from './http_cache.ts';
import { formatPublicKey, generateSecretKey } from './keys.ts';
import { NixStore } from './nix_store.ts';
import { newCounters } from './store.ts';
import { parseStorePath } from './store_path.ts';

describe('servedCompression', () => {
  it('zstd to remote clients with remote, to all with zstd, never without the program', () => {
    for (const a of ['127.0.0.1', '127.3.4.5', '::1', '::ffff:127.0.0.1']) {
      expect(isLoopbackAddress(a)).toBe(true);
      expect(servedCompression('remote', a, true)).toBe('none');
      expect(servedCompression('zstd', a, true)).toBe('zstd');
    }
    for (const a of ['10.0.0.2', '::ffff:192.168.1.4', 'fe80::1', undefined]) {
      expect(isLoopbackAddress(a)).toBe(false);
      expect(servedCompression('remote', a, true)).toBe('zstd');
      expect(servedCompression('none', a, true)).toBe('none');
      expect(servedCompression('zstd', a, false)).toBe('none');
    }
  });
});

describeWithTools(['nix', 'nix-store', 'zstd'], 'serving zstd to the real Nix', () => {
  let dir = '';
  let root = '';
  const key = generateSecretKey('serve-z-1');
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pcr-serve-zstd-'));
    root = await nixBuild(dir, CLOSURE_EXPR, `servez${process.pid}${Date.now()}`);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function cacheWith(compression: 'none' | 'remote' | 'zstd', noZstd = false) {
    const counters = newCounters();
    const store = await NixStore.open({
      stagingDir: join(dir, `st-${compression}`),
      env: nixEnv(),
    });
    const cache = await startHttpCache({
      store,
      key,
      counters,
      compression,
      ...(noZstd ? { findTool: () => undefined } : {}),
    });
    return { cache, counters };
  }

  it('Nix copies a closure served as zstd and verifies it', async () => {
    const { cache, counters } = await cacheWith('zstd');
    try {
      const hp = parseStorePath(root).hashPart;
      const ni = await (await fetch(`${cache.url}/${hp}.narinfo`)).text();
      expect(ni).toContain('Compression: zstd');
      expect(ni).toMatch(/^URL: nar\/[0-9a-z]{32}-[0-9a-z]{52}\.nar\.zst$/m);
      expect(ni).not.toContain('FileSize');
      const env = {
        ...nixEnv(`trusted-public-keys = ${formatPublicKey(key.publicKey)}`),
        XDG_CACHE_HOME: join(dir, 'xdg-z'),
      };
      const dest = join(dir, 'dest-z');
      await execa('nix', ['copy', '--from', cache.url, '--to', dest, root], { env });
      await execa('nix', ['store', 'verify', '--store', dest, '-r', root], { env });
      expect(counters.pathsServed).toBe(4);
      expect(counters.cacheBytesServed).toBeGreaterThan(0);
      // The c path holds 1,000 'x': compressed, what went out is smaller than the NARs.
      expect(counters.cacheBytesServed).toBeLessThan(counters.bytesServed);
    } finally {
      await cache.close();
    }
  });

  it('remote serves uncompressed on loopback; no zstd program, no zstd', async () => {
    const hp = parseStorePath(root).hashPart;
    for (const [setting, noZstd] of [
      ['remote', false],
      ['zstd', true],
    ] as const) {
      const { cache } = await cacheWith(setting, noZstd);
      try {
        const ni = await (await fetch(`${cache.url}/${hp}.narinfo`)).text();
        expect(ni, setting).toContain('Compression: none');
        const zst = await fetch(`${cache.url}/${/^URL: (.*)$/m.exec(ni)![1]}.zst`);
        expect(zst.status).toBe(noZstd ? 404 : 200);
      } finally {
        await cache.close();
      }
    }
  });
});

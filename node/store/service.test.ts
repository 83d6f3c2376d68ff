// Materializing a closure from the node-local store at its store paths (for running runners on a
// machine without Nix): byte for byte what Nix has, references first, idempotent, and a restore
// that fails leaves nothing at the path, nor does a damaged NAR (it is quarantined). And how a
// store failure becomes an API code (exit code).

import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { StoreError } from './errors.ts';
import { addPath } from './ingest.ts';
import { LocalStore } from './local_store.ts';
import { NixStore } from './nix_store.ts';
import { apiCodeOfStoreError, materializeClosure } from './service.ts';
import { closureOf, type Store } from './store.ts';
import { parseStorePath } from './store_path.ts';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-materialize-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describeWithTools(['nix', 'nix-store'], 'materializeClosure', () => {
  it('writes a closure out at its store paths, identical to Nix, once', async () => {
    const root = await nixBuild(dir, CLOSURE_EXPR, `materialize-${Date.now()}`);
    const nix = await NixStore.open({ stagingDir: join(dir, 'nix-staging'), env: nixEnv() });
    const local: Store = await LocalStore.open({
      dir: join(dir, 'local'),
      maxBytes: 1 << 30,
      fsync: false,
    });
    for (const info of await closureOf(nix, [root])) await addPath(local, info, nix.nar(info.path));
    const out = join(dir, 'out-store');
    expect(await materializeClosure(local, root, out)).toBe((await nixClosure(root)).length);
    expect(await materializeClosure(local, root, out)).toBe(0);
    expect((await readdir(out)).sort()).toEqual(
      (await nixClosure(root)).map((p) => basename(p)).sort(),
    );
    for (const p of await nixClosure(root)) {
      // Same tree, same bytes, same modes and links: compare the NARs Nix makes of both.
      const mine = await execa('nix-store', ['--dump', join(out, basename(p))], {
        encoding: 'buffer',
      });
      const theirs = await execa('nix-store', ['--dump', p], { encoding: 'buffer' });
      expect(Buffer.compare(mine.stdout as Uint8Array, theirs.stdout as Uint8Array)).toBe(0);
    }
  });

  it('a NAR damaged on disk is not written out: quarantined, nothing left at its path', async () => {
    const root = await nixBuild(dir, CLOSURE_EXPR, `materialize-damaged-${Date.now()}`);
    const nix = await NixStore.open({ stagingDir: join(dir, 'nix-staging'), env: nixEnv() });
    const local = await LocalStore.open({
      dir: join(dir, 'local-damaged'),
      maxBytes: 1 << 30,
      fsync: false,
    });
    for (const info of await closureOf(nix, [root])) await addPath(local, info, nix.nar(info.path));
    const victim = (await nixClosure(root)).find((p) => p.includes('-pcr-c-'))!;
    const narFile = join(dir, 'local-damaged', 'nar', `${parseStorePath(victim).hashPart}.nar`);
    const bytes = await readFile(narFile);
    bytes[bytes.indexOf('xxxxxxxx')] = 0x79;
    await writeFile(narFile, bytes);
    const out = join(dir, 'out-damaged');
    await expect(materializeClosure(local, root, out)).rejects.toMatchObject({ code: 'DAMAGED' });
    const names = await readdir(out);
    expect(names).not.toContain(basename(victim));
    expect(names.filter((n) => n.startsWith('.pcr-restore'))).toEqual([]);
    expect((await local.quarantined()).map((q) => q.path)).toEqual([victim]);
  });

  it('a path the store does not hold fails and leaves nothing behind', async () => {
    const local: Store = await LocalStore.open({
      dir: join(dir, 'empty'),
      maxBytes: 1 << 30,
      fsync: false,
    });
    const out = join(dir, 'out-empty');
    await expect(
      materializeClosure(local, '/nix/store/00000000000000000000000000000000-nothing', out),
    ).rejects.toThrow(/not in this store/);
    expect(await readdir(out).catch(() => [])).toEqual([]);
  });
});

describe('apiCodeOfStoreError', () => {
  it('refused data is CORRUPT, apart from not found (no holder), bad input and the rest', () => {
    for (const code of [
      'DAMAGED',
      'HASH_MISMATCH',
      'SIZE_MISMATCH',
      'BAD_NAR',
      'BAD_SIGNATURE',
      'UNTRUSTED',
    ] as const) {
      expect(apiCodeOfStoreError(new StoreError(code, 'x'))).toBe('CORRUPT');
    }
    expect(apiCodeOfStoreError(new StoreError('NO_HOLDER', 'x'))).toBe('NOT_FOUND');
    expect(apiCodeOfStoreError(new StoreError('NOT_FOUND', 'x'))).toBe('NOT_FOUND');
    expect(apiCodeOfStoreError(new StoreError('BAD_STORE_PATH', 'x'))).toBe('INVALID');
    expect(apiCodeOfStoreError(new StoreError('PROTOCOL', 'x'))).toBe('UNAVAILABLE');
    expect(apiCodeOfStoreError(new Error('stream reset'))).toBe('UNAVAILABLE');
  });
});

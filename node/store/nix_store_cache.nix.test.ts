// What a Nix store remembers of Nix's answers (docs/store.md "Nix store"): one fetch's repeated
// questions (closure, have, the NARs' infos) cost one `nix` process, a closure one query and not
// one per level; a path Nix collected, or a path added to the store directory within the clock
// tick of its listing, is never answered from memory. A chroot store under the real Nix.

import { mkdtemp, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { isStoreError } from './errors.ts';
import { NIX_RACY_MS, NixStore } from './nix_store.ts';
import { closureOf, type PathInfo, type Store } from './store.ts';
import { parseStorePath } from './store_path.ts';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-nix-cache-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A chroot store holding `paths` (copied by Nix itself), older than NIX_RACY_MS. */
async function chrootWith(name: string, paths: readonly string[]): Promise<NixStore> {
  const root = join(dir, name);
  await execa('nix', ['copy', '--no-check-sigs', '--no-recursive', '--to', root, ...paths], {
    env: nixEnv(),
  });
  // Entries changed within NIX_RACY_MS of a question are not remembered: let them age.
  await sleep(NIX_RACY_MS + 200);
  return NixStore.open({ root, stagingDir: join(dir, `${name}-staging`), env: nixEnv() });
}

/** The same store's closures walked level by level through `info` (closureOf without `closure`). */
function walked(store: NixStore): Store {
  return new Proxy(store, {
    get: (t, k) => (k === 'closure' ? undefined : Reflect.get(t, k, t)),
  }) as Store;
}

const paths = (infos: readonly PathInfo[]) => infos.map((i) => i.path);

async function notFound(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(isStoreError(e, 'NOT_FOUND')).toBe(true);
  return (e as Error).message;
}

describeWithTools(['nix', 'nix-store'], 'what a Nix store remembers', () => {
  it('one fetch costs one nix process; the closure is the walk, in one query', {
    timeout: 120_000,
  }, async () => {
    const top = await nixBuild(dir, CLOSURE_EXPR, `cache-${Date.now()}`);
    const closure = await nixClosure(top);
    const store = await chrootWith('one', closure);
    const n0 = store.nixProcesses;
    const infos = await closureOf(store, [top]);
    expect(store.nixProcesses - n0).toBe(1);
    // As a walk through info gets it (which asks Nix once per level), references first.
    const walk = await closureOf(walked(store), [top]);
    expect(new Set(paths(infos))).toEqual(new Set(closure));
    expect(infos).toEqual(walk);
    const seen = new Set<string>();
    for (const i of infos) {
      for (const r of i.references) if (r !== i.path) expect(seen.has(r)).toBe(true);
      seen.add(i.path);
    }

    // What a fetch asks next: who holds the paths, then their infos for the NARs.
    const n1 = store.nixProcesses;
    const held = await store.byHashParts(closure.map((p) => parseStorePath(p).hashPart));
    expect(new Set(held.values())).toEqual(new Set(closure));
    expect((await store.has(closure)).size).toBe(closure.length);
    expect([...(await store.info(closure)).keys()].sort()).toEqual([...closure].sort());
    expect(await closureOf(store, [top])).toEqual(infos);
    expect(store.nixProcesses).toBe(n1);

    // A quarantined path is not served from memory, nor is a closure through it.
    const a = closure.find((p) => p.includes('-pcr-a-'))!;
    await store.quarantine(a, 'test');
    expect((await store.has([a])).size).toBe(0);
    expect((await store.info([a])).size).toBe(0);
    expect(await notFound(closureOf(store, [top]))).toContain(a);

    // A root Nix does not hold is NOT_FOUND, as the walk says, not a failed nix command.
    const absent = `${top.slice(0, 11)}${'0'.repeat(32)}-absent`;
    expect(await notFound(closureOf(store, [absent]))).toContain(absent);
  });

  it('a path Nix collected is asked about again', { timeout: 120_000 }, async () => {
    const top = await nixBuild(dir, CLOSURE_EXPR, `gone-${Date.now()}`);
    const store = await chrootWith('gone', await nixClosure(top));
    expect((await store.info([top])).has(top)).toBe(true);
    const n0 = store.nixProcesses;
    expect((await store.info([top])).has(top)).toBe(true);
    expect(store.nixProcesses).toBe(n0);

    await execa('nix-store', ['--store', join(dir, 'gone'), '--delete', top], { env: nixEnv() });
    expect((await store.info([top])).has(top)).toBe(false);
    expect((await store.has([top])).has(top)).toBe(false);
    expect(store.nixProcesses).toBe(n0 + 2);
    expect(await notFound(closureOf(store, [top]))).toContain(top);
  });

  it('a path added in the clock tick of a listing is found', { timeout: 120_000 }, async () => {
    const top = await nixBuild(dir, CLOSURE_EXPR, `racy-${Date.now()}`);
    const closure = await nixClosure(top);
    const below = closure.filter((p) => p !== top);
    const store = await chrootWith('racy', below);
    const storeDir = join(dir, 'racy', 'nix', 'store');
    const hp = parseStorePath(top).hashPart;

    // The directory changed just now: its listing must not be kept.
    const t = new Date();
    await utimes(storeDir, t, t);
    const mtimeMs = (await stat(storeDir)).mtimeMs;
    expect((await store.byHashParts([hp])).size).toBe(0);
    // A path arrives and the directory's mtime stays the same (the same clock tick).
    await execa(
      'nix',
      ['copy', '--no-check-sigs', '--no-recursive', '--to', join(dir, 'racy'), top],
      { env: nixEnv() },
    );
    await utimes(storeDir, t, t);
    expect((await stat(storeDir)).mtimeMs).toBe(mtimeMs);
    expect((await store.byHashParts([hp])).get(hp)).toBe(top);

    // An old listing is kept while the directory is unchanged, and read again once it changes.
    const old = new Date(Date.now() - 60_000);
    await utimes(storeDir, old, old);
    expect((await store.byHashParts([hp])).get(hp)).toBe(top);
    await execa('nix-store', ['--store', join(dir, 'racy'), '--delete', top], { env: nixEnv() });
    expect((await store.byHashParts([hp])).size).toBe(0);
  });
});

// The node-local store: atomic imports (a bad NAR leaves nothing; a crash's leftovers are gone at
// open), the size limit with LRU eviction that spares pinned closures and referenced paths, and
// STORE_FULL when nothing more can go; a NAR damaged on disk is caught when served (at its first
// byte when its size changed, at its last when only its bytes did), by verify, or at open, and
// quarantined: never served again, not announced, counted, kept aside until a repair commits it.

import { createHash } from 'node:crypto';
import {
  mkdir,
  mkdtemp,
  open as openFile,
  readdir,
  readFile,
  rename,
  rm,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../../test/deploy/table.ts';
import { fileNar } from '../../test/store/nar_fixtures.ts';
import { knownGoodRoots } from '../state/deploy_pins.ts';
import { formatSha256 } from './hash.ts';
import { addPath, ingestNar } from './ingest.ts';
import { generateSecretKey, signPath, TrustPolicy } from './keys.ts';
import { LocalStore } from './local_store.ts';
import { newCounters, type PathInfo } from './store.ts';
import { openVerifiedNar, verifyStore } from './verify.ts';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-local-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
function path(
  name: string,
  contents: string,
  references: string[] = [],
): { info: PathInfo; nar: Buffer } {
  const nar = fileNar(contents);
  const hash = (n++).toString().padStart(32, '0');
  return {
    info: {
      path: `/nix/store/${hash}-${name}`,
      narHash: formatSha256(createHash('sha256').update(nar).digest()),
      narSize: nar.length,
      references: references.sort(),
      sigs: [],
    },
    nar,
  };
}

async function open(name: string, maxBytes = 1 << 20, pins: string[] = []) {
  const counters = newCounters();
  const store = await LocalStore.open({
    dir: join(dir, name),
    maxBytes,
    pins: () => pins,
    counters,
    fsync: false,
  });
  return { store, counters, pins };
}

describe('LocalStore', () => {
  it('adds a path and serves it back byte for byte, and it survives a reopen', async () => {
    const { store } = await open('basic');
    const p = path('hello', 'hello world');
    await addPath(store, p.info, [p.nar]);
    const back: Uint8Array[] = [];
    for await (const c of store.nar(p.info.path)) back.push(c);
    expect(Buffer.concat(back)).toEqual(p.nar);
    const again = await LocalStore.open({
      dir: join(dir, 'basic'),
      maxBytes: 1 << 20,
      fsync: false,
    });
    expect((await again.info([p.info.path])).get(p.info.path)).toEqual(p.info);
    const hp = p.info.path.slice(11, 43);
    expect((await again.byHashParts([hp, 'z'.repeat(32)])).get(hp)).toBe(p.info.path);
  });

  it('imports nothing when the hash, the size, the NAR or the signature is wrong', async () => {
    const { store } = await open('bad');
    const p = path('x', 'contents');
    await expect(
      addPath(store, { ...p.info, narHash: formatSha256(Buffer.alloc(32)) }, [p.nar]),
    ).rejects.toMatchObject({ code: 'HASH_MISMATCH' });
    await expect(
      addPath(store, { ...p.info, narSize: p.info.narSize + 8 }, [p.nar]),
    ).rejects.toMatchObject({ code: 'SIZE_MISMATCH' });
    await expect(
      addPath(store, { ...p.info, narSize: p.info.narSize - 8 }, [p.nar]),
    ).rejects.toMatchObject({ code: 'SIZE_MISMATCH' });
    const broken = Buffer.from(p.nar);
    broken.write('nix-archive-2', 8);
    await expect(
      addPath(
        store,
        { ...p.info, narHash: formatSha256(createHash('sha256').update(broken).digest()) },
        [broken],
      ),
    ).rejects.toMatchObject({ code: 'BAD_NAR' });
    const k = generateSecretKey('k-1');
    await expect(
      addPath(store, p.info, [p.nar], new TrustPolicy([k.publicKey])),
    ).rejects.toMatchObject({ code: 'UNTRUSTED' });
    await expect(
      addPath(
        store,
        { ...p.info, sigs: [signPath(k, { ...p.info, narSize: 1 })] },
        [p.nar],
        new TrustPolicy([k.publicKey]),
      ),
    ).rejects.toMatchObject({ code: 'BAD_SIGNATURE' });
    expect((await store.has([p.info.path])).size).toBe(0);
    expect(await readdir(store.stagingDir())).toEqual([]);
    expect(await readdir(join(dir, 'bad', 'nar'))).toEqual([]);
    await addPath(
      store,
      { ...p.info, sigs: [signPath(k, p.info)] },
      [p.nar],
      new TrustPolicy([k.publicKey]),
    );
    expect((await store.has([p.info.path])).size).toBe(1);
  });

  it('refuses a path whose references are missing', async () => {
    const { store } = await open('refs');
    const dep = path('dep', 'd');
    const top = path('top', 't', [dep.info.path]);
    await expect(addPath(store, top.info, [top.nar])).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await addPath(store, dep.info, [dep.nar]);
    await addPath(store, top.info, [top.nar]);
    expect((await store.has([top.info.path])).size).toBe(1);
  });

  it('drops what a crash left: staged files, NARs without narinfo, narinfo without NAR', async () => {
    const { store } = await open('crash');
    const p = path('kept', 'k');
    await addPath(store, p.info, [p.nar]);
    const q = path('torn', 'q');
    await ingestNar(q.info, [q.nar], { dir: store.stagingDir() });
    await writeFile(join(dir, 'crash', 'nar', `${'9'.repeat(32)}.nar`), 'orphan');
    await writeFile(
      join(dir, 'crash', 'info', `${'8'.repeat(32)}.narinfo`),
      'StorePath: /nix/store/x\n',
    );
    const again = await LocalStore.open({
      dir: join(dir, 'crash'),
      maxBytes: 1 << 20,
      fsync: false,
    });
    expect((await again.summary()).paths).toBe(1);
    expect(await readdir(join(dir, 'crash', 'tmp'))).toEqual([]);
    expect(await readdir(join(dir, 'crash', 'nar'))).toEqual([`${p.info.path.slice(11, 43)}.nar`]);
    expect(await readdir(join(dir, 'crash', 'info'))).toEqual([
      `${p.info.path.slice(11, 43)}.narinfo`,
    ]);
  });

  it('a crash mid-commit leaves a prefix of the batch, closed under references', async () => {
    // The states a crash can leave, rebuilt on disk from one committed batch a <- b <- c (c
    // refers to b, b to a): NARs moved and narinfos written to tmp/ but not renamed (nothing
    // visible), and the commit points reached for a only (a visible, alone).
    const a = path('a', 'a');
    const b = path('b', 'b', [a.info.path]);
    const c = path('c', 'c', [b.info.path]);
    const hp = (x: { info: PathInfo }) => x.info.path.slice(11, 43);
    for (const [name, renamed] of [
      ['mid-none', 0],
      ['mid-a', 1],
    ] as const) {
      const { store } = await open(name);
      const staged = [];
      for (const x of [a, b, c]) {
        staged.push(await ingestNar(x.info, [x.nar], { dir: store.stagingDir() }));
      }
      await store.commit(staged);
      const d = join(dir, name);
      for (const x of [a, b, c].slice(renamed)) {
        await rename(join(d, 'info', `${hp(x)}.narinfo`), join(d, 'tmp', `${hp(x)}.narinfo`));
      }
      const again = await LocalStore.open({ dir: d, maxBytes: 1 << 20, fsync: false });
      const visible = await again.has([a.info.path, b.info.path, c.info.path]);
      expect([...visible]).toEqual([a, b, c].slice(0, renamed).map((x) => x.info.path));
      expect(await readdir(join(d, 'tmp'))).toEqual([]);
      expect((await readdir(join(d, 'nar'))).sort()).toEqual(
        [a, b, c].slice(0, renamed).map((x) => `${hp(x)}.nar`),
      );
    }
  });

  it('at open, drops a path whose reference is gone, and the paths above it', async () => {
    const { store } = await open('closed');
    const a = path('a', 'a');
    const b = path('b', 'b', [a.info.path]);
    const c = path('c', 'c', [b.info.path]);
    const other = path('other', 'o');
    for (const x of [a, b, c, other]) await addPath(store, x.info, [x.nar]);
    // A lost narinfo (a disk that did not keep it, or a hand-deleted file) in the middle.
    await rm(join(dir, 'closed', 'info', `${a.info.path.slice(11, 43)}.narinfo`));
    const again = await LocalStore.open({
      dir: join(dir, 'closed'),
      maxBytes: 1 << 20,
      fsync: false,
    });
    const all = [a, b, c, other].map((x) => x.info.path);
    expect([...(await again.has(all))]).toEqual([other.info.path]);
    expect(await readdir(join(dir, 'closed', 'nar'))).toEqual([
      `${other.info.path.slice(11, 43)}.nar`,
    ]);
  });

  it('commits a batch with fsync on (NARs synced at ingest, narinfos before their rename)', async () => {
    const d = join(dir, 'synced');
    const store = await LocalStore.open({ dir: d, maxBytes: 1 << 20 });
    expect(store.stagingFsync).toBe(true);
    const xs = Array.from({ length: 40 }, (_, i) => path(`s${i}`, `s${i}`));
    const staged = [];
    for (const x of xs) {
      const st = await ingestNar(x.info, [x.nar], { dir: store.stagingDir(), fsync: true });
      expect(st.synced).toBe(true);
      staged.push(st);
    }
    await store.commit(staged);
    const again = await LocalStore.open({ dir: d, maxBytes: 1 << 20 });
    expect((await again.has(xs.map((x) => x.info.path))).size).toBe(40);
  });

  it('evicts least-recently-used paths to stay under maxBytes, counting evictions', async () => {
    const a = path('a', 'a'.repeat(1000));
    const b = path('b', 'b'.repeat(1000));
    const c = path('c', 'c'.repeat(1000));
    const { store, counters } = await open('lru', a.info.narSize * 2);
    await addPath(store, a.info, [a.nar]);
    await addPath(store, b.info, [b.nar]);
    for await (const _ of store.nar(a.info.path)); // a is now more recent than b
    await addPath(store, c.info, [c.nar]);
    expect([...(await store.has([a.info.path, b.info.path, c.info.path]))].sort()).toEqual(
      [a.info.path, c.info.path].sort(),
    );
    expect(counters.evictions).toBe(1);
    expect((await store.summary()).bytes).toBeLessThanOrEqual(a.info.narSize * 2);
  });

  it('never evicts a pinned closure or a referenced path; STORE_FULL when nothing can go', async () => {
    const dep = path('dep', 'd'.repeat(1000));
    const vm = path('vm', 'v'.repeat(1000), [dep.info.path]);
    const other = path('other', 'o'.repeat(1000));
    const pins: string[] = [];
    const { store } = await open('pins', dep.info.narSize * 3, pins);
    await addPath(store, dep.info, [dep.nar]);
    await addPath(store, vm.info, [vm.nar]);
    pins.push(vm.info.path);
    await addPath(store, other.info, [other.nar]);
    // Full: dep (oldest) is pinned through vm, vm is pinned, other is the only candidate.
    const next = path('next', 'n'.repeat(1000));
    await addPath(store, next.info, [next.nar]);
    expect(
      (await store.has([dep.info.path, vm.info.path, other.info.path, next.info.path])).size,
    ).toBe(3);
    expect((await store.has([other.info.path])).size).toBe(0);
    // Two more at once cannot fit: refused, and nothing was evicted for it.
    const big = path('big', 'b'.repeat(2500));
    await expect(addPath(store, big.info, [big.nar])).rejects.toMatchObject({ code: 'STORE_FULL' });
    expect((await store.has([next.info.path])).size).toBe(1);
    expect(await readdir(store.stagingDir())).toEqual([]);
    // Unpinned, dep is still safe while vm (which refers to it) is present: vm goes first.
    pins.length = 0;
    const last = path('last', 'l'.repeat(1000));
    const reading = store.nar(dep.info.path)[Symbol.asyncIterator]();
    await reading.next();
    await reading.return?.();
    await addPath(store, last.info, [last.nar]);
    // dep was used last but vm still refers to it: vm (least recently used of the leaves) goes.
    expect((await store.has([vm.info.path])).size).toBe(0);
    expect((await store.has([dep.info.path, next.info.path, last.info.path])).size).toBe(3);
  });
});

describe('LocalStore directory', () => {
  it('creates its layout', async () => {
    await mkdir(join(dir, 'layout'));
    await open('layout');
    expect((await readdir(join(dir, 'layout'))).sort()).toEqual([
      'info',
      'nar',
      'quarantine',
      'tmp',
    ]);
  });
});

/** Flips one byte of a NAR file in place: same size, same mtime resolution, other bytes. */
async function flipByte(file: string, offset: number): Promise<void> {
  const fh = await openFile(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

async function drain(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Uint8Array[] = [];
  for await (const c of chunks) out.push(c);
  return Buffer.concat(out);
}

describe('LocalStore: damage on disk', () => {
  const hp = (x: { info: PathInfo }) => x.info.path.slice(11, 43);

  it('a NAR whose bytes changed is served once, to its end, then quarantined: never again', async () => {
    const { store, counters } = await open('flip');
    const p = path('flip', 'some contents that will rot');
    const other = path('other', 'fine');
    for (const x of [p, other]) await addPath(store, x.info, [x.nar]);
    await flipByte(join(dir, 'flip', 'nar', `${hp(p)}.nar`), p.nar.length - 20);

    // The serve that finds it: every byte goes out (the receiver's hash check refuses them).
    const got = await drain(await openVerifiedNar(store, p.info));
    expect(got.length).toBe(p.nar.length);
    expect(got.equals(p.nar)).toBe(false);
    // From the moment the last byte was taken: not held, not listed, not served.
    expect((await store.has([p.info.path])).size).toBe(0);
    expect((await store.byHashParts([hp(p)])).size).toBe(0);
    expect((await store.info([p.info.path])).size).toBe(0);
    await expect(openVerifiedNar(store, p.info)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(counters.quarantined).toBe(1);
    const [q] = await store.quarantined();
    expect(q).toMatchObject({ path: p.info.path });
    expect(q!.reason).toMatch(/NAR hash is sha256:\w+ on disk, its NarHash is/);
    expect(await store.summary()).toMatchObject({
      paths: 1,
      bytes: other.info.narSize,
      inQuarantine: 1,
    });
    expect((await readdir(join(dir, 'flip', 'quarantine'))).sort()).toEqual(
      [`${hp(p)}.nar`, `${hp(p)}.narinfo`, `${hp(p)}.reason`].sort(),
    );
    // The other path is untouched and still served whole.
    expect((await drain(await openVerifiedNar(store, other.info))).equals(other.nar)).toBe(true);
    expect(counters.quarantined).toBe(1);
  });

  it('a serve stopped early (the receiver went away) judges nothing', async () => {
    const { store, counters } = await open('early', 8 << 20);
    const p = path('early', 'x'.repeat(3 << 20)); // several read chunks
    await addPath(store, p.info, [p.nar]);
    await flipByte(join(dir, 'early', 'nar', `${hp(p)}.nar`), p.nar.length - 20);
    for await (const _ of await openVerifiedNar(store, p.info)) break;
    expect((await store.has([p.info.path])).size).toBe(1);
    expect(counters.quarantined).toBe(0);
  });

  it('a NAR whose size changed is refused before its first byte (DAMAGED) and quarantined', async () => {
    const { store, counters } = await open('short');
    const p = path('short', 'truncated later');
    await addPath(store, p.info, [p.nar]);
    await truncate(join(dir, 'short', 'nar', `${hp(p)}.nar`), p.nar.length - 8);
    await expect(openVerifiedNar(store, p.info)).rejects.toMatchObject({ code: 'DAMAGED' });
    expect((await store.has([p.info.path])).size).toBe(0);
    expect(counters.quarantined).toBe(1);
    expect((await store.quarantined())[0]!.reason).toMatch(/bytes on disk, its NarSize is/);
    // A NAR file deleted while its path is listed: the same.
    const gone = path('gone', 'deleted later');
    await addPath(store, gone.info, [gone.nar]);
    await rm(join(dir, 'short', 'nar', `${hp(gone)}.nar`));
    await expect(openVerifiedNar(store, gone.info)).rejects.toMatchObject({ code: 'DAMAGED' });
    expect((await store.has([gone.info.path])).size).toBe(0);
    expect(counters.quarantined).toBe(2);
  });

  it('verify finds every damaged path without serving it, and leaves the LRU order alone', async () => {
    const { store, counters } = await open('verify');
    const xs = ['a', 'b', 'c', 'd'].map((n) => path(n, `contents of ${n}`));
    for (const x of xs) await addPath(store, x.info, [x.nar]);
    await flipByte(join(dir, 'verify', 'nar', `${hp(xs[1]!)}.nar`), 30);
    await writeFile(join(dir, 'verify', 'nar', `${hp(xs[3]!)}.nar`), 'short');
    const r = await verifyStore(store);
    expect(r.checked).toBe(4);
    expect(r.damaged.map((d) => d.path).sort()).toEqual(
      [xs[1]!.info.path, xs[3]!.info.path].sort(),
    );
    expect(counters.quarantined).toBe(2);
    expect([...(await store.has(xs.map((x) => x.info.path)))].sort()).toEqual(
      [xs[0]!.info.path, xs[2]!.info.path].sort(),
    );
    // A second run finds nothing new: the damaged are out of the store.
    expect((await verifyStore(store)).damaged).toEqual([]);
  });

  it('quarantine outlives a reopen, keeps the referrers, and a repair (commit again) ends it', async () => {
    const { store, counters } = await open('reopen');
    const dep = path('dep', 'a dependency');
    const top = path('top', 'uses dep', [dep.info.path]);
    for (const x of [dep, top]) await addPath(store, x.info, [x.nar]);
    await flipByte(join(dir, 'reopen', 'nar', `${hp(dep)}.nar`), 40);
    await verifyStore(store);
    expect(counters.quarantined).toBe(1);

    const again = await LocalStore.open({
      dir: join(dir, 'reopen'),
      maxBytes: 1 << 20,
      fsync: false,
    });
    expect((await again.has([dep.info.path])).size).toBe(0);
    // The referrer is whole: it stays (open does not drop it for a missing reference).
    expect((await again.has([top.info.path])).size).toBe(1);
    expect((await again.quarantined()).map((q) => q.path)).toEqual([dep.info.path]);
    expect((await again.summary()).inQuarantine).toBe(1);

    await addPath(again, dep.info, [dep.nar]); // what a repair's fetch commits
    expect((await again.has([dep.info.path])).size).toBe(1);
    expect(await again.quarantined()).toEqual([]);
    expect(await readdir(join(dir, 'reopen', 'quarantine'))).toEqual([]);
    expect((await drain(await openVerifiedNar(again, dep.info))).equals(dep.nar)).toBe(true);
  });

  it('at open, a narinfo whose NAR is missing or of the wrong size is quarantined, not dropped silently', async () => {
    const { store } = await open('atopen');
    const gone = path('gone', 'its NAR is deleted');
    const grown = path('grown', 'its NAR grows');
    const fine = path('fine', 'kept');
    for (const x of [gone, grown, fine]) await addPath(store, x.info, [x.nar]);
    await rm(join(dir, 'atopen', 'nar', `${hp(gone)}.nar`));
    await writeFile(
      join(dir, 'atopen', 'nar', `${hp(grown)}.nar`),
      Buffer.concat([grown.nar, Buffer.alloc(8)]),
    );
    const counters = newCounters();
    const again = await LocalStore.open({
      dir: join(dir, 'atopen'),
      maxBytes: 1 << 20,
      fsync: false,
      counters,
    });
    expect([...(await again.has([gone, grown, fine].map((x) => x.info.path)))]).toEqual([
      fine.info.path,
    ]);
    const q = new Map((await again.quarantined()).map((x) => [x.path, x.reason]));
    expect(q.get(gone.info.path)).toMatch(/NAR file is missing/);
    expect(q.get(grown.info.path)).toMatch(/bytes on disk, its NarSize is/);
    const reason = JSON.parse(
      await readFile(join(dir, 'atopen', 'quarantine', `${hp(grown)}.reason`), 'utf8'),
    );
    expect(reason).toMatchObject({ path: grown.info.path });
  });
});

describe('LocalStore gc (pcr store gc)', () => {
  async function filled(name: string) {
    const pins: string[] = [];
    const { store, counters } = await open(name, 1 << 20, pins);
    const lib = path('lib', 'l'.repeat(100));
    const vm = path('vm', 'v'.repeat(100), [lib.info.path]);
    const dep = path('dep', 'd'.repeat(200));
    const app = path('app', 'a'.repeat(300), [dep.info.path]);
    const old = path('old', 'o'.repeat(400));
    for (const p of [old, lib, vm, dep, app]) await addPath(store, p.info, [p.nar]);
    pins.push(vm.info.path);
    return { store, counters, lib, vm, dep, app, old };
  }

  it('frees all but the pinned closures, referrers before references; dry run frees nothing', async () => {
    const { store, counters, lib, vm, dep, app, old } = await filled('gc-all');
    const dry = await store.gc({ dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(new Set(dry.paths)).toEqual(new Set([old.info.path, app.info.path, dep.info.path]));
    expect(dry.paths.indexOf(app.info.path)).toBeLessThan(dry.paths.indexOf(dep.info.path));
    expect((await store.has([old.info.path, app.info.path, dep.info.path])).size).toBe(3);
    const r = await store.gc();
    expect(r.paths).toEqual(dry.paths);
    expect(r.bytes).toBe(old.info.narSize + app.info.narSize + dep.info.narSize);
    expect([...(await store.has([lib.info.path, vm.info.path, dep.info.path]))].sort()).toEqual(
      [lib.info.path, vm.info.path].sort(),
    );
    expect(counters.evictions).toBe(3);
    // Reopened: what gc removed stays removed, the rest is whole.
    const again = await LocalStore.open({
      dir: join(dir, 'gc-all'),
      maxBytes: 1 << 20,
      fsync: false,
    });
    expect((await again.summary()).paths).toBe(2);
  });

  it('stops once --max-freed is reached, least recently used first', async () => {
    const { store, old, app } = await filled('gc-max');
    // old was added first (least recently used): freeing 1 byte takes exactly it.
    const one = await store.gc({ maxFreedBytes: 1 });
    expect(one.paths).toEqual([old.info.path]);
    // Exactly app's size: app alone (its reference dep becomes free only after it).
    const exact = await store.gc({ maxFreedBytes: app.info.narSize });
    expect(exact.paths).toEqual([app.info.path]);
  });
});

describe("LocalStore pins from the deployment table (a deployment's known-good closures)", () => {
  it('keeps a known-good closure through eviction and gc, while a version not known-good goes', async () => {
    const lib1 = path('lib-1.0', 'l'.repeat(1000));
    const run1 = path('microvm-run-web', '1'.repeat(1000), [lib1.info.path]);
    const lib2 = path('lib-2.0', 'm'.repeat(1000));
    const run2 = path('microvm-run-web', '2'.repeat(1000), [lib2.info.path]);
    // The table as the state machine builds it: version 1 succeeded, version 2 still rolling out.
    const c = Cluster.of(3, ['microvm']);
    c.submit({ kernel: undefined, runner: run1.info.path, count: 2 });
    c.settle();
    c.submit({ kernel: undefined, runner: run2.info.path, count: 2 });
    expect(c.dep().good).toEqual([1]);
    expect(c.dep().rollout).toMatchObject({ to: 2, state: 'running' });
    const size = lib1.info.narSize;
    const counters = newCounters();
    const store = await LocalStore.open({
      dir: join(dir, 'deploy-pins'),
      maxBytes: size * 5,
      pins: () => knownGoodRoots(c.sm.deployments.list()),
      counters,
      fsync: false,
    });
    // Version 1's closure is the least recently used: without the pin it would go first.
    for (const p of [lib1, run1, lib2, run2]) await addPath(store, p.info, [p.nar]);
    const fillers = [1, 2, 3].map((i) => path(`filler-${i}`, String(i).repeat(1000)));
    for (const p of fillers) await addPath(store, p.info, [p.nar]);
    const held = async (ps: { info: PathInfo }[]) =>
      (await store.has(ps.map((p) => p.info.path))).size;
    expect(await held([lib1, run1])).toBe(2);
    expect(await held([lib2, run2])).toBe(0);
    expect(await held(fillers)).toBe(3);
    expect(counters.evictions).toBe(2);
    // pcr store gc: everything but the pinned closure goes (version 2's closure is back, and
    // evicted the two oldest fillers for its room).
    await addPath(store, lib2.info, [lib2.nar]);
    await addPath(store, run2.info, [run2.nar]);
    expect(await held([lib1, run1, lib2, run2, fillers[2]!])).toBe(5);
    const r = await store.gc();
    expect(new Set(r.paths)).toEqual(new Set([lib2, run2, fillers[2]!].map((p) => p.info.path)));
    expect((await store.summary()).paths).toBe(2);
    expect(await held([lib1, run1])).toBe(2);
  });
});

// Damage in a Nix store (a chroot store, the real Nix): a file changed under <root>/nix/store is
// found by the first serve of the path's NAR (our dumper, hashed as it flows) and by verify, as
// `nix store verify` finds it; the path is quarantined (no longer has/info/byHashParts here, also
// after a reopen) while Nix still calls it valid; once the files match again (what
// `nix-store --repair-path` does), recheck releases it.

import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { NixStore } from './nix_store.ts';
import { newCounters } from './store.ts';
import { parseStorePath } from './store_path.ts';
import { openVerifiedNar, verifyStore } from './verify.ts';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-verify-nix-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describeWithTools(['nix', 'nix-store'], 'a Nix store damaged on disk', () => {
  it('is caught when served and by verify, quarantined across a reopen, released once whole', {
    timeout: 120_000,
  }, async () => {
    const root = await nixBuild(dir, CLOSURE_EXPR, `verify-nix-${Date.now()}`);
    const chroot = join(dir, 'chroot');
    await execa('nix', ['copy', '--no-check-sigs', '--to', chroot, root], { env: nixEnv() });
    const closure = await nixClosure(root);
    const c = closure.find((p) => p.includes('-pcr-c-'))!;
    const a = closure.find((p) => p.includes('-pcr-a-'))!;
    const onDisk = (p: string, ...sub: string[]) =>
      join(chroot, 'nix', 'store', parseStorePath(p).baseName, ...sub);
    const open = (counters = newCounters()) =>
      NixStore.open({
        root: chroot,
        stagingDir: join(dir, 'staging'),
        quarantineDir: join(dir, 'quarantine'),
        env: nixEnv(),
        counters,
      });
    const counters = newCounters();
    const store = await open(counters);
    const cInfo = (await store.info([c])).get(c)!;

    // A file under the store changes (same length): Nix still calls the path valid.
    const kFile = onDisk(c, 'sub', 'deeper', 'k');
    const kBytes = await readFile(kFile);
    await chmod(kFile, 0o644);
    await writeFile(kFile, Buffer.from(kBytes.toString().replace('xxx', 'xyx')));
    const nixSays = await execa('nix', ['store', 'verify', '--store', chroot, c], {
      env: nixEnv(),
      reject: false,
    });
    expect(nixSays.exitCode).not.toBe(0);

    for await (const _ of await openVerifiedNar(store, cInfo));
    expect(counters.quarantined).toBe(1);
    expect((await store.has([c])).size).toBe(0);
    expect((await store.info([c])).size).toBe(0);
    expect((await store.byHashParts([parseStorePath(c).hashPart])).size).toBe(0);
    expect((await store.quarantined()).map((q) => q.path)).toEqual([c]);

    // Another path damaged, never served: verify finds it; the quarantine outlives a reopen.
    const aBytes = await readFile(onDisk(a));
    await chmod(onDisk(a), 0o644);
    await writeFile(onDisk(a), Buffer.from(aBytes.toString().toUpperCase()));
    const again = await open();
    expect((await again.has([c])).size).toBe(0);
    const report = await verifyStore(again);
    expect(report.checked).toBe(closure.length - 1);
    expect(report.damaged.map((d) => d.path)).toEqual([a]);
    expect((await again.summary()).inQuarantine).toBe(2);

    // Made whole again (by Nix's repair, here by hand): recheck releases both.
    await writeFile(kFile, kBytes);
    await writeFile(onDisk(a), aBytes);
    expect((await again.recheck()).sort()).toEqual([a, c].sort());
    expect((await again.has(closure)).size).toBe(closure.length);
    expect(await again.quarantined()).toEqual([]);
    expect(await (await open()).quarantined()).toEqual([]);
  });
});

// What a Nix store says it holds (`pcr store stats`): the paths Nix calls valid and the sum of
// their NAR sizes, counted against the NARs themselves (dumped and measured here), less the
// quarantined ones; a path committed or quarantined by this store shows at once, not after the
// summary's reuse time. A chroot store under the real Nix.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { ingestNar } from './ingest.ts';
import { NixStore } from './nix_store.ts';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-nix-summary-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The length of the NAR our dumper writes for `path` (what Nix records as its NarSize). */
async function narBytes(store: NixStore, path: string): Promise<number> {
  let n = 0;
  for await (const c of store.nar(path)) n += c.length;
  return n;
}

describeWithTools(['nix', 'nix-store'], 'the summary of a Nix store', () => {
  it('counts the valid paths and their NAR bytes; commits and quarantines show at once', {
    timeout: 120_000,
  }, async () => {
    const top = await nixBuild(dir, CLOSURE_EXPR, `summary-${Date.now()}`);
    const closure = await nixClosure(top);
    const machine = await NixStore.open({ stagingDir: join(dir, 'm-staging'), env: nixEnv() });
    const chroot = join(dir, 'chroot');
    // Everything but the top path, copied by Nix itself.
    const below = closure.filter((p) => p !== top);
    await execa('nix', ['copy', '--no-check-sigs', '--no-recursive', '--to', chroot, ...below], {
      env: nixEnv(),
    });
    const store = await NixStore.open({
      root: chroot,
      stagingDir: join(dir, 'staging'),
      env: nixEnv(),
    });
    const sizes = new Map<string, number>();
    for (const p of closure) sizes.set(p, await narBytes(machine, p));
    const sum = (ps: readonly string[]) => ps.reduce((n, p) => n + sizes.get(p)!, 0);

    expect(await store.summary()).toMatchObject({
      kind: 'nix',
      paths: below.length,
      bytes: sum(below),
      inQuarantine: 0,
    });
    expect(sum(below)).toBeGreaterThan(0);

    // A commit of ours counts at once.
    const info = (await machine.info([top])).get(top)!;
    const staged = await ingestNar(info, machine.nar(top), { dir: store.stagingDir() });
    await store.commit([staged]);
    expect(await store.summary()).toMatchObject({ paths: closure.length, bytes: sum(closure) });

    // A quarantined path is not held any more (as list() and the local store count).
    const a = closure.find((p) => p.includes('-pcr-a-'))!;
    await store.quarantine(a, 'test');
    const rest = closure.filter((p) => p !== a);
    expect(await store.summary()).toMatchObject({
      paths: rest.length,
      bytes: sum(rest),
      inQuarantine: 1,
    });
  });
});

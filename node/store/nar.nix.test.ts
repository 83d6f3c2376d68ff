// The formats against the real Nix: NAR bytes equal `nix-store --dump`, hashes equal
// `nix path-info`, narinfo text and signatures equal what `nix copy --to file://` writes with a
// secret key, and a NAR restored by us dumps back to the same bytes.

import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { Sha256Sink } from './hash.ts';
import {
  checkSignatures,
  formatSecretKey,
  generateSecretKey,
  parseSecretKey,
  signPath,
  TrustPolicy,
} from './keys.ts';
import { dumpNar, restoreNar } from './nar_fs.ts';
import { formatNarInfo, parseNarInfo, uncompressedNarInfo } from './narinfo.ts';
import { NixStore } from './nix_store.ts';
import { closureOf } from './store.ts';

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

describeWithTools(['nix', 'nix-store'], 'store formats against the real Nix', () => {
  let dir = '';
  let root = '';
  let closure: string[] = [];
  let store: NixStore;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pcr-nixfmt-'));
    root = await nixBuild(dir, CLOSURE_EXPR, `fmt${process.pid}${Date.now()}`);
    closure = await nixClosure(root);
    store = await NixStore.open({ stagingDir: join(dir, 'staging'), env: nixEnv() });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('builds a closure of four paths with references', () => {
    expect(closure.length).toBe(4);
  });

  it('writes NARs byte-identical to nix-store --dump, with the hash nix path-info reports', async () => {
    const infos = await store.info(closure);
    for (const p of closure) {
      const ours = await collect(dumpNar(p));
      const theirs = (
        await execa('nix-store', ['--dump', p], { env: nixEnv(), encoding: 'buffer' })
      ).stdout;
      expect(Buffer.compare(ours, Buffer.from(theirs))).toBe(0);
      const h = new Sha256Sink();
      h.update(ours);
      expect(h.digest()).toBe(infos.get(p)!.narHash);
      expect(ours.length).toBe(infos.get(p)!.narSize);
    }
  });

  it('restores a NAR to a tree that dumps back to the same bytes', async () => {
    const nar = await collect(dumpNar(root.replace(/-pcr-d-/, '-pcr-d-')));
    const c = closure.find((p) => p.includes('-pcr-c-'))!;
    const cNar = await collect(dumpNar(c));
    await restoreNar([cNar], join(dir, 'restored'));
    expect(Buffer.compare(await collect(dumpNar(join(dir, 'restored'))), cNar)).toBe(0);
    expect(nar.length).toBeGreaterThan(0);
  });

  it('writes narinfo and signatures identical to nix copy --to file:// with a secret key', async () => {
    const key = generateSecretKey('pcr-test-1');
    const keyFile = join(dir, 'sk');
    await execa('sh', ['-c', `printf %s '${formatSecretKey(key)}' > ${keyFile}`]);
    const cache = join(dir, 'cache');
    await execa(
      'nix',
      ['copy', '--to', `file://${cache}?compression=none&secret-key=${keyFile}`, root],
      { env: nixEnv() },
    );
    const infos = await closureOf(store, [root]);
    expect(infos.map((i) => i.path).sort()).toEqual([...closure].sort());
    const trust = new TrustPolicy([key.publicKey]);
    for (const info of infos) {
      const hp = info.path.slice('/nix/store/'.length, '/nix/store/'.length + 32);
      const theirs = await readFile(join(cache, `${hp}.narinfo`), 'utf8');
      const parsed = parseNarInfo(theirs);
      const signed = { ...info, sigs: [signPath(key, info)] };
      expect(parsed.sigs).toEqual(signed.sigs);
      checkSignatures(parsed, trust);
      const ours = formatNarInfo(uncompressedNarInfo(signed, parsed.url));
      expect(ours).toBe(theirs);
      expect(formatNarInfo(parsed)).toBe(theirs);
    }
    expect((await readdir(join(cache, 'nar'))).length).toBe(4);
  });

  it('reads keys made by nix key generate-secret and signs as nix store sign does', async () => {
    const sk = (
      await execa('nix', ['key', 'generate-secret', '--key-name', 'nixmade-1'], { env: nixEnv() })
    ).stdout;
    const key = parseSecretKey(sk);
    const pk = (
      await execa('nix', ['key', 'convert-secret-to-public'], { input: sk, env: nixEnv() })
    ).stdout.trim();
    expect(`${key.publicKey.name}:${Buffer.from(key.publicKey.bytes).toString('base64')}`).toBe(pk);
    const keyFile = join(dir, 'sk2');
    await execa('sh', ['-c', `printf %s '${sk}' > ${keyFile}`]);
    const target = closure.find((p) => p.includes('-pcr-b-'))!;
    await execa('nix', ['store', 'sign', '--key-file', keyFile, target], { env: nixEnv() });
    const info = (await store.info([target])).get(target)!;
    expect(info.sigs).toContain(signPath(key, { ...info, sigs: [] }));
  });
});

// `pcr store` against real node processes with node-local stores and the real Nix: push a
// closure from the machine's Nix store into node A's store and have B fetch it peer to peer;
// where/info/stats; C fetches with `pcr store fetch`; Nix copies the closure from B's binary
// cache into a fresh store and `nix store verify -r` passes; a path nobody holds is NOT_FOUND.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  closeClients,
  kill9,
  type NodeProc,
  pcr,
  secretFileOf,
  startCluster,
  until,
} from '../test/procs.ts';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../test/tools.ts';
import { NODE_INFO_FILE } from './identity.ts';

let base = '';
const procs: NodeProc[] = [];

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'pcr-store-cluster-'));
});
afterAll(async () => {
  await closeClients();
  for (const p of procs) if (p.child.exitCode === null) await kill9(p).catch(() => {});
  await rm(base, { recursive: true, force: true });
});

describeWithTools(['nix', 'nix-store'], 'pcr store on real node processes', () => {
  let a: NodeProc;
  let b: NodeProc;
  let c: NodeProc;
  let root = '';
  const cli = (p: NodeProc, args: string[]) =>
    pcr([...args, '--addr', p.addr, '--secret-file', secretFileOf(a)]);

  beforeAll(async () => {
    root = await nixBuild(base, CLOSURE_EXPR, `store-cluster-${Date.now()}`);
    // node-down-after 20 s (default 10): the last test checks what a member that does not answer
    // does before the leader marks it down, which must not race a slow machine.
    const args = ['--store', 'local', '--node-down-after', '20s'];
    [a, b, c] = (await startCluster(base, ['a', 'b', 'c'], args, procs)) as [
      NodeProc,
      NodeProc,
      NodeProc,
    ];
  }, 120_000);

  it('push imports a closure into A and B fetches it from A; where and info agree', {
    timeout: 120_000,
  }, async () => {
    const push = await cli(a, ['store', 'push', root, '--to', b.id, '--json']);
    expect(push.exitCode, push.stderr).toBe(0);
    const closure = await nixClosure(root);
    expect(JSON.parse(push.stdout)).toMatchObject({ imported: closure.length, replicated: [b.id] });
    const where = await cli(c, ['store', 'where', root, '--json']);
    expect(where.exitCode, where.stderr).toBe(0);
    expect((JSON.parse(where.stdout) as string[]).sort()).toEqual([a.id, b.id].sort());
    const info = await cli(b, ['store', 'info', root]);
    expect(info.exitCode, info.stderr).toBe(0);
    expect(info.stdout).toContain(`StorePath: ${root}`);
    expect(info.stdout).toMatch(/^NarHash: sha256:[0-9a-z]{52}$/m);
    const stats = JSON.parse((await cli(b, ['store', 'stats', '--json'])).stdout);
    expect(stats).toMatchObject({
      kind: 'local',
      pathsFetched: closure.length,
      paths: closure.length,
    });
    // Members move NARs over their bulk listeners (docs/store.md "Bulk transfers").
    expect(stats.bulkTransfers).toBeGreaterThan(0);
    expect(stats.streamTransfers).toBe(0);
  });

  it("pcr store fetch onto C; Nix copies the closure from B's binary cache and verifies it", {
    timeout: 120_000,
  }, async () => {
    const fetched = await cli(a, ['store', 'fetch', root, '--on', c.id.slice(0, 24), '--json']);
    expect(fetched.exitCode, fetched.stderr).toBe(0);
    expect(JSON.parse(fetched.stdout)).toMatchObject({ fetched: (await nixClosure(root)).length });
    const again = await cli(c, ['store', 'fetch', root]);
    expect(again.stdout).toMatch(/already here/);

    const info = JSON.parse(await readFile(join(b.dataDir, NODE_INFO_FILE), 'utf8')) as {
      cache: string;
    };
    const key = JSON.parse((await cli(b, ['store', 'stats', '--json'])).stdout).publicKey as string;
    const dest = join(base, 'chroot');
    const env = nixEnv(`trusted-public-keys = ${key}`);
    const copy = await execa('nix', ['copy', '--from', info.cache, '--to', dest, root], {
      env,
      reject: false,
    });
    expect(copy.exitCode, copy.stderr).toBe(0);
    const verify = await execa('nix', ['store', 'verify', '-r', '--store', dest, root], {
      env,
      reject: false,
    });
    expect(verify.exitCode, verify.stderr).toBe(0);
    expect((await nixClosure(root, dest)).sort()).toEqual((await nixClosure(root)).sort());
    // And as a substituter: realising the path in another fresh store substitutes it from B.
    const dest2 = join(base, 'chroot-substituted');
    const sub = await execa(
      'nix-store',
      ['--store', dest2, '--realise', root, '--option', 'substituters', info.cache],
      { env, reject: false },
    );
    expect(sub.exitCode, sub.stderr).toBe(0);
    expect(sub.stderr).toMatch(/copying path/);
    const verify2 = await execa('nix', ['store', 'verify', '-r', '--store', dest2, root], {
      env,
      reject: false,
    });
    expect(verify2.exitCode, verify2.stderr).toBe(0);
  });

  it("a node's binary cache fetches a missing path from the members before answering Nix", {
    timeout: 120_000,
  }, async () => {
    const fresh = await nixBuild(base, CLOSURE_EXPR, `store-cluster-miss-${Date.now()}`);
    const push = await cli(a, ['store', 'push', fresh]);
    expect(push.exitCode, push.stderr).toBe(0);
    const before = JSON.parse((await cli(c, ['store', 'stats', '--json'])).stdout);
    const info = JSON.parse(await readFile(join(c.dataDir, NODE_INFO_FILE), 'utf8')) as {
      cache: string;
    };
    const key = before.publicKey as string;
    const dest = join(base, 'chroot-miss');
    const env = nixEnv(`trusted-public-keys = ${key}`);
    const copy = await execa('nix', ['copy', '--from', info.cache, '--to', dest, fresh], {
      env,
      reject: false,
    });
    expect(copy.exitCode, copy.stderr).toBe(0);
    const after = JSON.parse((await cli(c, ['store', 'stats', '--json'])).stdout);
    expect(after.pathsFetched - before.pathsFetched).toBe((await nixClosure(fresh)).length);
    const verify = await execa('nix', ['store', 'verify', '-r', '--store', dest, fresh], {
      env,
      reject: false,
    });
    expect(verify.exitCode, verify.stderr).toBe(0);
  });

  it('a path no member holds is NOT_FOUND (exit 7); a malformed path is a usage error', async () => {
    const missing = '/nix/store/00000000000000000000000000000000-nothing';
    const r = await cli(b, ['store', 'fetch', missing]);
    expect(r.exitCode, r.stderr).toBe(7);
    expect(r.stderr).toMatch(/no peer holds/);
    const bad = await cli(b, ['store', 'where', '/tmp/not-a-store-path']);
    expect(bad.exitCode, bad.stderr).toBe(2);
  });

  // Last: it kills C.
  it('while a member does not answer, a path nobody else holds is undecided until it is marked down', {
    timeout: 120_000,
  }, async () => {
    const missing = '/nix/store/11111111111111111111111111111111-held-by-nobody';
    const narinfo = `${(JSON.parse(await readFile(join(b.dataDir, NODE_INFO_FILE), 'utf8')) as { cache: string }).cache}/${missing.slice(11, 43)}.narinfo`;
    expect((await fetch(narinfo)).status).toBe(404);
    await kill9(c);
    // C may hold it: not a 404 that Nix would remember for an hour, and `where` cannot say no.
    const where = await cli(b, ['store', 'where', missing]);
    expect(where.exitCode, where.stderr).toBe(4);
    expect(where.stderr).toMatch(/1 member did not answer/);
    expect((await fetch(narinfo)).status).toBe(502);
    // The leader marks C down after --node-down-after (20 s here): then a miss is a 404 again.
    await until(
      async () => ((await fetch(narinfo)).status === 404 ? true : undefined),
      60_000,
      'the cache to answer 404 once C is marked down',
    );
    const after = await cli(b, ['store', 'where', missing]);
    expect(after.exitCode, after.stderr).toBe(7);
  });
});

// A NAR damaged on disk in a real node's store (node-local stores, real processes, the real Nix
// for the closure and as the cache's client): the node that serves it once quarantines it, so its
// binary cache answers 404 (no other member holds it) and `pcr store where` lists it no more; the
// member that fetched it exits with the refused-data code (9), not the unreachable one (4);
// `pcr store stats` and the metrics count it; `pcr store verify` finds damage nobody asked for;
// `pcr store verify --repair` restores it from another member; and Nix, after one failed copy
// from a damaged node's cache, copies the closure on its next try (the cache refetches the NAR).

import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
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
} from '../test/procs.ts';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../test/tools.ts';
import { NODE_INFO_FILE } from './identity.ts';
import { formatSha256 } from './store/hash.ts';
import { parseStorePath } from './store/store_path.ts';

let base = '';
const procs: NodeProc[] = [];

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'pcr-store-damage-'));
});
afterAll(async () => {
  await closeClients();
  for (const p of procs) if (p.child.exitCode === null) await kill9(p).catch(() => {});
  await rm(base, { recursive: true, force: true });
});

/** The NAR file of `path` in a node's local store. */
function narFile(p: NodeProc, path: string): string {
  return join(p.dataDir, 'store', 'nar', `${parseStorePath(path).hashPart}.nar`);
}

/** Changes one byte inside a file's contents (the NAR still parses; its hash differs). */
async function rot(file: string): Promise<void> {
  const bytes = await readFile(file);
  const at = bytes.indexOf('xxxxxxxx');
  expect(at).toBeGreaterThan(0);
  bytes[at] = 0x79;
  await writeFile(file, bytes);
}

async function cacheOf(p: NodeProc): Promise<string> {
  return (JSON.parse(await readFile(join(p.dataDir, NODE_INFO_FILE), 'utf8')) as { cache: string })
    .cache;
}

describeWithTools(['nix', 'nix-store'], 'a NAR damaged on disk in a node of a cluster', () => {
  let a: NodeProc;
  let b: NodeProc;
  let c: NodeProc;
  let root = '';
  /** The closure's path with a file of a thousand x's: the one damaged. */
  let victim = '';
  const cli = (p: NodeProc, args: string[]) =>
    pcr([...args, '--addr', p.addr, '--secret-file', secretFileOf(a)]);
  const json = async (p: NodeProc, args: string[]) => {
    const r = await cli(p, [...args, '--json']);
    return { ...r, value: r.stdout === '' ? undefined : JSON.parse(r.stdout) };
  };

  beforeAll(async () => {
    root = await nixBuild(base, CLOSURE_EXPR, `store-damage-${Date.now()}`);
    victim = (await nixClosure(root)).find((p) => p.includes('-pcr-c-'))!;
    [a, b, c] = (await startCluster(base, ['a', 'b', 'c'], ['--store', 'local'], procs)) as [
      NodeProc,
      NodeProc,
      NodeProc,
    ];
  }, 120_000);

  it('is served once, then quarantined: refused with exit 9, not listed, 404, counted, repaired', {
    timeout: 300_000,
  }, async () => {
    const push = await cli(a, ['store', 'push', root]);
    expect(push.exitCode, push.stderr).toBe(0);
    await rot(narFile(a, victim));

    // B fetches from A, the only holder: A sends the NAR, B refuses it (its hash differs).
    const refused = await cli(b, ['store', 'fetch', root]);
    expect(refused.exitCode, refused.stderr).toBe(9);
    expect(refused.stderr).toMatch(/CORRUPT: HASH_MISMATCH/);

    // A hashed what it sent: from then on it neither serves nor announces the path.
    const where = await cli(c, ['store', 'where', victim]);
    expect(where.exitCode, where.stdout).toBe(7);
    const stats = (await json(a, ['store', 'stats'])).value;
    expect(stats).toMatchObject({ quarantined: 1, inQuarantine: 1 });
    const metrics = await (await fetch(a.metrics)).text();
    expect(metrics).toMatch(/^pcr_store_quarantined_total 1$/m);
    const cache = await cacheOf(a);
    const hp = parseStorePath(victim).hashPart;
    // No member holds it now: a true negative.
    expect((await fetch(`${cache}/${hp}.narinfo`)).status).toBe(404);

    // verify reports the damage that remains; --repair fetches it from a member that has it.
    const left = await json(a, ['store', 'verify']);
    expect(left.exitCode, left.stderr).toBe(9);
    expect(left.value.quarantined.map((q: { path: string }) => q.path)).toEqual([victim]);
    const pushC = await cli(c, ['store', 'push', root]);
    expect(pushC.exitCode, pushC.stderr).toBe(0);
    const repair = await json(a, ['store', 'verify', '--repair']);
    expect(repair.exitCode, repair.stderr).toBe(0);
    expect(repair.value).toMatchObject({ repaired: [victim], quarantined: [], failed: {} });
    const whereAfter = await json(b, ['store', 'where', victim]);
    expect([...whereAfter.value].sort()).toEqual([a.id, c.id].sort());
    // A serves it whole again, and B's fetch now succeeds.
    const narinfo = await (await fetch(`${cache}/${hp}.narinfo`)).text();
    const url = /^URL: (.*)$/m.exec(narinfo)![1]!;
    const narHash = /^NarHash: (.*)$/m.exec(narinfo)![1]!;
    const body = Buffer.from(await (await fetch(`${cache}/${url}`)).arrayBuffer());
    expect(formatSha256(createHash('sha256').update(body).digest())).toBe(narHash);
    const again = await cli(b, ['store', 'fetch', root]);
    expect(again.exitCode, again.stderr).toBe(0);
  });

  it('verify finds damage nobody was served; a fetch of a closure fills what was quarantined', {
    timeout: 180_000,
  }, async () => {
    // B holds the closure now (the previous test); cut one NAR short and rot another, both below
    // the root, which stays whole.
    const a0 = (await nixClosure(root)).find((p) => p.includes('-pcr-a-'))!;
    await truncate(narFile(b, a0), 16);
    await rot(narFile(b, victim));
    const found = await json(b, ['store', 'verify']);
    expect(found.exitCode, found.stderr).toBe(9);
    expect(found.value.damaged.map((d: { path: string }) => d.path).sort()).toEqual(
      [a0, victim].sort(),
    );
    expect(found.value.checked).toBe((await nixClosure(root)).length);
    // The root is here, its references are not: fetching it fetches them from the members.
    const fill = await json(b, ['store', 'fetch', root]);
    expect(fill.exitCode, fill.stderr).toBe(0);
    expect(fill.value.fetched).toBe(2);
    const clean = await json(b, ['store', 'verify']);
    expect(clean.exitCode, clean.stderr).toBe(0);
    expect(clean.value).toMatchObject({ damaged: [], quarantined: [] });
  });

  it("Nix fails once on a damaged node's cache, then copies the closure from it", {
    timeout: 180_000,
  }, async () => {
    await rot(narFile(b, victim));
    const cache = await cacheOf(b);
    const key = (await json(b, ['store', 'stats'])).value.publicKey as string;
    const env = nixEnv(`trusted-public-keys = ${key}`);
    const dest = join(base, 'chroot-after-damage');
    const first = await execa('nix', ['copy', '--from', cache, '--to', dest, root], {
      env,
      reject: false,
    });
    expect(first.exitCode).not.toBe(0);
    expect(first.stderr).toMatch(/hash mismatch/i);
    expect((await json(b, ['store', 'stats'])).value.inQuarantine).toBe(1);
    // Nix kept the narinfo; its NAR is now a miss at B, which fetches it from A or C first.
    const second = await execa('nix', ['copy', '--from', cache, '--to', dest, root], {
      env,
      reject: false,
    });
    expect(second.exitCode, second.stderr).toBe(0);
    const verify = await execa('nix', ['store', 'verify', '-r', '--store', dest, root], {
      env,
      reject: false,
    });
    expect(verify.exitCode, verify.stderr).toBe(0);
    expect((await json(b, ['store', 'stats'])).value.inQuarantine).toBe(0);
  });
});

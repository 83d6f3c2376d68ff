// Two and three nodes, each a real libp2p host with a store, against the real Nix: node B fetches
// node A's closure peer to peer (into a node-local store and into a Nix chroot store), Nix copies
// it from B's HTTP cache into a fresh store and `nix store verify -r` passes; a holder serving a
// corrupt NAR is refused once, quarantines it (never serves it again), and the path comes from
// another holder; an untrusted path is refused.

import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { generateKey } from '@libp2p/pnet';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { createHost, type Host } from '../p2p/host.ts';
import { fetchByHashPart, fetchClosure, findHolders } from './fetch.ts';
import { startHttpCache } from './http_cache.ts';
import { formatPublicKey, formatSecretKey, generateSecretKey, TrustPolicy } from './keys.ts';
import { LocalStore } from './local_store.ts';
import { NixStore } from './nix_store.ts';
import { StoreClient, StoreServer } from './protocol.ts';
import { closureOf, newCounters, type Store } from './store.ts';
import { parseStorePath } from './store_path.ts';

const psk = new Uint8Array(95);
generateKey(psk);

interface Node {
  host: Host;
  id: string;
  store: Store;
  server: StoreServer;
  client: StoreClient;
  key: ReturnType<typeof generateSecretKey>;
}

async function node(store: Store, name: string): Promise<Node> {
  const host = await createHost({
    privateKey: await generateKeyPair('Ed25519'),
    psk,
    listen: ['/ip4/127.0.0.1/tcp/0'],
  });
  const key = generateSecretKey(name);
  const server = new StoreServer({ host, store, key });
  await server.start();
  return {
    host,
    id: host.peerId.toString(),
    store,
    server,
    client: new StoreClient({ host }),
    key,
  };
}

describeWithTools(['nix', 'nix-store'], 'closures between nodes, checked by the real Nix', () => {
  let dir = '';
  let root = '';
  let closure: string[] = [];
  const nodes: Node[] = [];
  let a: Node;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pcr-p2p-store-'));
    root = await nixBuild(dir, CLOSURE_EXPR, `p2p${process.pid}${Date.now()}`);
    closure = await nixClosure(root);
    a = await node(
      await NixStore.open({ stagingDir: join(dir, 'a-staging'), env: nixEnv() }),
      'node-a-1',
    );
    nodes.push(a);
  });
  afterAll(async () => {
    for (const n of nodes) {
      await n.server.close();
      await n.host.stop();
    }
    await rm(dir, { recursive: true, force: true });
  });

  async function connect(b: Node): Promise<void> {
    for (const n of nodes) if (n !== b) await b.host.dial(n.host.getMultiaddrs());
  }

  it("B (node-local store) fetches A's closure; Nix copies it from B's HTTP cache and verifies it", async () => {
    const counters = newCounters();
    const b = await node(
      await LocalStore.open({ dir: join(dir, 'b'), maxBytes: 1 << 30, fsync: false, counters }),
      'node-b-1',
    );
    nodes.push(b);
    await connect(b);
    const holders = await findHolders(b.client, [a.id], [parseStorePath(root).hashPart]);
    expect(holders.get(parseStorePath(root).hashPart)?.peers).toEqual([a.id]);
    const report = await fetchClosure([root], {
      store: b.store,
      client: b.client,
      peers: () => [a.id],
      trust: new TrustPolicy(),
      counters,
    });
    expect(report.fetched).toBe(4);
    expect(counters.pathsFetched).toBe(4);
    expect((await b.store.has(closure)).size).toBe(4);
    // Nothing left in staging.
    expect(await readdir(b.store.stagingDir())).toEqual([]);
    // Fetching again is a no-op.
    const again = await fetchClosure([root], {
      store: b.store,
      client: b.client,
      peers: () => [a.id],
      trust: new TrustPolicy(),
    });
    expect(again.fetched).toBe(0);

    const cache = await startHttpCache({ store: b.store, key: b.key, counters });
    try {
      const dest = join(dir, 'chroot-from-b');
      const env = nixEnv(`trusted-public-keys = ${formatPublicKey(b.key.publicKey)}`);
      await execa('nix', ['copy', '--from', cache.url, '--to', dest, root], { env });
      await execa('nix', ['store', 'verify', '--store', dest, '-r', root], { env });
      expect((await nixClosure(root, dest)).sort()).toEqual([...closure].sort());
      expect(counters.pathsServed).toBe(4);
      // A path nobody has: 404 (no onMiss wired here).
      const r = await fetch(`${cache.url}/${'0'.repeat(32)}.narinfo`);
      expect(r.status).toBe(404);
    } finally {
      await cache.close();
    }
  });

  it("B (a Nix chroot store) fetches the closure; nix store verify -r passes with A's key trusted", async () => {
    const chroot = join(dir, 'chroot-b2');
    const b = await node(
      await NixStore.open({ root: chroot, stagingDir: join(dir, 'b2-staging'), env: nixEnv() }),
      'node-b2-1',
    );
    nodes.push(b);
    await connect(b);
    await fetchClosure([root], {
      store: b.store,
      client: b.client,
      peers: () => [a.id],
      trust: new TrustPolicy(),
    });
    const env = nixEnv(`trusted-public-keys = ${formatPublicKey(a.key.publicKey)}`);
    await execa('nix', ['store', 'verify', '--store', chroot, '-r', root], { env });
    const infos = await closureOf(b.store, [root]);
    expect(infos.length).toBe(4);
    for (const i of infos) expect(i.sigs.some((s) => s.startsWith('node-a-1:'))).toBe(true);
  });

  it('a holder with a corrupt NAR is refused once, quarantines it, and the path comes from another holder', async () => {
    // C holds the closure in a local store, then one NAR is altered on disk (same size).
    const c = await node(
      await LocalStore.open({ dir: join(dir, 'c'), maxBytes: 1 << 30, fsync: false }),
      'node-c-1',
    );
    nodes.push(c);
    await connect(c);
    await fetchClosure([root], {
      store: c.store,
      client: c.client,
      peers: () => [a.id],
      trust: new TrustPolicy(),
    });
    const victim = closure.find((p) => p.includes('-pcr-c-'))!;
    const narFile = join(dir, 'c', 'nar', `${parseStorePath(victim).hashPart}.nar`);
    const bytes = await readFile(narFile);
    // Inside a file's contents (the thousand x's), so the NAR still parses but its hash differs.
    const at = bytes.indexOf('xxxxxxxx');
    expect(at).toBeGreaterThan(0);
    bytes[at] = 0x79;
    await writeFile(narFile, bytes);

    // Only C holds it: the fetch refuses the NAR (HASH_MISMATCH) and imports nothing; C, having
    // hashed what it sent, quarantined it: it serves it no more and says so to nobody.
    const e2 = await node(
      await LocalStore.open({ dir: join(dir, 'e'), maxBytes: 1 << 30, fsync: false }),
      'node-e-1',
    );
    nodes.push(e2);
    await connect(e2);
    const counters = newCounters();
    await expect(
      fetchClosure([root], {
        store: e2.store,
        client: e2.client,
        peers: () => [c.id],
        trust: new TrustPolicy(),
        counters,
      }),
    ).rejects.toMatchObject({ code: 'HASH_MISMATCH' });
    expect(counters.rejected).toBe(1);
    expect((await e2.store.has(closure)).size).toBe(0);
    expect(await readdir(e2.store.stagingDir())).toEqual([]);
    expect((await c.store.has([victim])).size).toBe(0);
    expect((await c.store.quarantined()).map((q) => q.path)).toEqual([victim]);
    const holders = await findHolders(e2.client, [c.id, a.id], [parseStorePath(victim).hashPart]);
    expect(holders.get(parseStorePath(victim).hashPart)?.peers).toEqual([a.id]);

    // C first: C no longer offers the damaged path, so it comes from A, refused nowhere.
    const d = await node(
      await LocalStore.open({ dir: join(dir, 'd'), maxBytes: 1 << 30, fsync: false }),
      'node-d-1',
    );
    nodes.push(d);
    await connect(d);
    const dCounters = newCounters();
    const report = await fetchClosure([root], {
      store: d.store,
      client: d.client,
      peers: () => [c.id, a.id],
      trust: new TrustPolicy(),
      counters: dCounters,
      parallel: 1,
    });
    expect((await d.store.has(closure)).size).toBe(4);
    expect(report.fetched).toBe(4);
    expect(dCounters.rejected).toBe(0);
    expect(report.fromPeers[a.id]).toBeGreaterThanOrEqual(1);
  });

  it('refuses paths signed by nobody it trusts, and fetches nothing', async () => {
    const f = await node(
      await LocalStore.open({ dir: join(dir, 'f'), maxBytes: 1 << 30, fsync: false }),
      'node-f-1',
    );
    nodes.push(f);
    await connect(f);
    await expect(
      fetchClosure([root], {
        store: f.store,
        client: f.client,
        peers: () => [a.id],
        trust: new TrustPolicy(),
        trustPeers: false,
      }),
    ).rejects.toMatchObject({ code: 'UNTRUSTED' });
    // A trusted key with A's name but other bytes: the signature does not verify.
    const impostor = generateSecretKey('node-a-1');
    await expect(
      fetchClosure([root], {
        store: f.store,
        client: f.client,
        peers: () => [a.id],
        trust: new TrustPolicy([impostor.publicKey]),
        trustPeers: false,
      }),
    ).rejects.toMatchObject({ code: 'BAD_SIGNATURE' });
    expect((await f.store.has(closure)).size).toBe(0);
    expect(formatSecretKey(impostor)).toMatch(/^node-a-1:/);
  });

  it('the HTTP cache fetches a missing path from peers before answering', async () => {
    const g = await node(
      await LocalStore.open({ dir: join(dir, 'g'), maxBytes: 1 << 30, fsync: false }),
      'node-g-1',
    );
    nodes.push(g);
    await connect(g);
    const o = { store: g.store, client: g.client, peers: () => [a.id], trust: new TrustPolicy() };
    const cache = await startHttpCache({
      store: g.store,
      key: g.key,
      onMiss: async (h) => (await fetchByHashPart(h, o)).fetched,
    });
    try {
      const hp = parseStorePath(root).hashPart;
      const r = await fetch(`${cache.url}/${hp}.narinfo`);
      expect(r.status).toBe(200);
      expect(await r.text()).toContain(`StorePath: ${root}`);
      expect((await g.store.has(closure)).size).toBe(4);
      const none = await fetch(`${cache.url}/${'1'.repeat(32)}.narinfo`);
      expect(none.status).toBe(404);
    } finally {
      await cache.close();
    }
  });
});

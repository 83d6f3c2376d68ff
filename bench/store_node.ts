// A bench:store node in its own process (bench/store.ts starts two): a libp2p host with a store.
// `serve`: the machine's Nix store behind /pcr/store/1.0.0; prints {id, addrs, key} and runs until
// stdin closes. `fetch`: a node with an empty store (node-local, or a Nix chroot store) that dials
// the server, times a `have` query of the closure's hash parts, then times fetchClosure (over bulk
// connections, or with `bulk: false` over nars streams only).

import '../node/polyfill.ts';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { multiaddr } from '@multiformats/multiaddr';
import { createHost } from '../node/p2p/host.ts';
import { fetchClosure } from '../node/store/fetch.ts';
import { generateSecretKey, TrustPolicy } from '../node/store/keys.ts';
import { LocalStore } from '../node/store/local_store.ts';
import { NixStore } from '../node/store/nix_store.ts';
import { StoreClient, StoreServer } from '../node/store/protocol.ts';
import { newCounters, type Store } from '../node/store/store.ts';
import { parseStorePath } from '../node/store/store_path.ts';
import { nixEnv } from '../test/tools.ts';

interface Config {
  role: 'serve' | 'fetch';
  psk: string;
  dir: string;
  store?: 'local' | 'nix';
  peer?: string;
  addrs?: string[];
  roots?: string[];
  trust?: string[];
  haveQuery?: string[];
  /** fetch: ask for bulk connections (default true); false: nars streams only. */
  bulk?: boolean;
}

const c = JSON.parse(process.argv[2]!) as Config;
const host = await createHost({
  privateKey: await generateKeyPair('Ed25519'),
  psk: Buffer.from(c.psk, 'hex'),
  listen: ['/ip4/127.0.0.1/tcp/0'],
});

if (c.role === 'serve') {
  const store = await NixStore.open({ stagingDir: join(c.dir, 'staging'), env: nixEnv() });
  const key = generateSecretKey('bench-a-1');
  await new StoreServer({ host, store, key, bulkHost: '127.0.0.1' }).start();
  const out = {
    id: host.peerId.toString(),
    addrs: host.getMultiaddrs().map(String),
    key: `${key.name}:${Buffer.from(key.publicKey.bytes).toString('base64')}`,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.stdin.resume();
  process.stdin.on('end', async () => {
    await host.stop();
    process.exit(0);
  });
} else {
  await mkdir(c.dir, { recursive: true });
  const store: Store =
    c.store === 'nix'
      ? await NixStore.open({
          root: join(c.dir, 'chroot'),
          stagingDir: join(c.dir, 'staging'),
          env: nixEnv(),
        })
      : await LocalStore.open({
          dir: join(c.dir, 'store'),
          maxBytes: 2 ** 40,
          fsync: process.env.PCR_BENCH_NOFSYNC === undefined,
        });
  const counters = newCounters();
  const client = new StoreClient({
    host,
    addrsOf: () => c.addrs!.map((a) => multiaddr(a)),
    bulk: c.bulk !== false,
    counters,
  });
  await host.dial(c.addrs!.map((a) => multiaddr(a)));
  // Holder finding: one `have` round trip with the closure's hash parts (warm once, then timed).
  const hps = (c.haveQuery ?? []).map((p) => parseStorePath(p).hashPart);
  await client.have(c.peer!, hps.slice(0, 1));
  const h0 = performance.now();
  const held = await client.have(c.peer!, hps);
  const haveMs = performance.now() - h0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const report = await fetchClosure(c.roots!, {
    store,
    client,
    peers: () => [c.peer!],
    trust: new TrustPolicy(c.trust ?? []),
    trustPeers: false,
  });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const systemSeconds = cpu.system / 1e6;
  process.stdout.write(
    `${JSON.stringify({ seconds, cpuSeconds, systemSeconds, fetched: report.fetched, bytes: report.bytes, haveMs, haveAnswered: held.length, haveAsked: hps.length, bulkBatches: counters.bulkTransfers, streamBatches: counters.streamTransfers })}\n`,
  );
  await host.stop();
  process.exit(0);
}

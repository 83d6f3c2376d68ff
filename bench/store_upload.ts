// bench:store's upload rows: `nix copy --to` a node's binary cache (the cache in this process with
// a node-local store, Nix in its own, over loopback, a push token in a netrc file) beside the same
// `nix copy --to file://` on the same machine, the anchor: what Nix itself costs to write a cache,
// and `nix copy --to` an HTTP sink (answers 404 to reads, takes every PUT and drops it): what Nix's
// HTTP upload costs with a server that does nothing, so the rest is the node's work.
// Per compression: none (the node keeps NARs uncompressed), zstd, and xz (Nix's default; on the
// small-paths case only: on 256 MiB of random bytes it is minutes of CPU for nothing saved).

import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { tokenHash } from '../node/store/cache_auth.ts';
import { startHttpCache } from '../node/store/http_cache.ts';
import {
  formatPublicKey,
  formatSecretKey,
  generateSecretKey,
  TrustPolicy,
} from '../node/store/keys.ts';
import { LocalStore } from '../node/store/local_store.ts';
import { newCounters } from '../node/store/store.ts';
import { nixEnv } from '../test/tools.ts';

export interface UploadRow {
  readonly method: string;
  readonly seconds: number;
  /** Bytes the client sent (file:// : written), as compressed. */
  readonly wireBytes: number;
}

const TOKEN = 'bench-push-token';

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await f();
  return (performance.now() - t) / 1000;
}

/** An HTTP cache that holds nothing and takes every upload, dropping it. */
async function sink(): Promise<{ url: string; bytes: () => number; close: () => void }> {
  let bytes = 0;
  const server = createServer((req, res) => {
    if (req.url === '/nix-cache-info') return void res.end('StoreDir: /nix/store\n');
    req.on('data', (c: Buffer) => {
      if (req.method === 'PUT') bytes += c.length;
    });
    req.on('end', () => res.writeHead(req.method === 'PUT' ? 200 : 404).end());
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bytes: () => bytes,
    close: () => server.close(),
  };
}

/** Every compression's rows for the closure of `root`, signed here by a key the cache trusts. */
export async function uploadRows(
  dir: string,
  root: string,
  compressions: readonly ('none' | 'zstd' | 'xz')[],
): Promise<UploadRow[]> {
  await mkdir(dir, { recursive: true });
  const ci = generateSecretKey('bench-ci-1');
  const sk = join(dir, 'ci.sk');
  await writeFile(sk, formatSecretKey(ci));
  const netrc = join(dir, 'netrc');
  await writeFile(netrc, `machine 127.0.0.1 login pcr password ${TOKEN}\n`);
  const env = { ...nixEnv(`netrc-file = ${netrc}`), XDG_CACHE_HOME: join(dir, 'xdg') };
  await execa('nix', ['store', 'sign', '--key-file', sk, '-r', root], { env });
  const rows: UploadRow[] = [];
  for (const c of compressions) {
    const fileCache = join(dir, `file-${c}`);
    const fileS = await timed(() =>
      execa('nix', ['copy', '--to', `file://${fileCache}?compression=${c}`, root], { env }),
    );
    const du = await execa('du', ['-sb', join(fileCache, 'nar')]);
    rows.push({
      method: `nix copy --to file:// (${c})`,
      seconds: fileS,
      wireBytes: Number(du.stdout.split('\t')[0]),
    });
    await rm(fileCache, { recursive: true, force: true });

    const drop = await sink();
    const sinkS = await timed(() =>
      execa('nix', ['copy', '--to', `${drop.url}?compression=${c}`, root], { env }),
    );
    drop.close();
    rows.push({
      method: `nix copy --to http sink (${c})`,
      seconds: sinkS,
      wireBytes: drop.bytes(),
    });

    const counters = newCounters();
    const storeDir = join(dir, `store-${c}`);
    const store = await LocalStore.open({ dir: storeDir, maxBytes: 64 * 1024 ** 3, counters });
    const cache = await startHttpCache({
      store,
      key: generateSecretKey('bench-node-1'),
      counters,
      trust: new TrustPolicy([formatPublicKey(ci.publicKey)]),
      auth: {
        lookup: (h) => (h === tokenHash(TOKEN) ? { name: 'ci', scopes: ['push'] } : undefined),
        readNeedsToken: false,
      },
    });
    try {
      const s = await timed(() =>
        execa('nix', ['copy', '--to', `${cache.url}?compression=${c}`, root], { env }),
      );
      if (counters.uploadsRefused !== 0) throw new Error(`${c}: uploads refused`);
      rows.push({
        method: `nix copy --to pcr cache (${c})`,
        seconds: s,
        wireBytes: counters.uploadBytesReceived,
      });
    } finally {
      await cache.close();
      await rm(storeDir, { recursive: true, force: true });
    }
  }
  return rows;
}

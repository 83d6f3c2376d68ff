// bench:store's upload rows: `nix copy --to` a node's binary cache (the cache in this process with
// a node-local store, Nix in its own, over loopback, a push token in a netrc file) beside the same
// `nix copy --to file://` on the same machine, the anchor: what Nix itself costs to write a cache,
// and `nix copy --to` an HTTP sink (answers 404 to reads, takes every PUT and drops it): what Nix's
// HTTP upload costs with a server that does nothing, so the rest is the node's work. Then the
// other way: `nix copy --from` that cache into a fresh chroot store, served uncompressed and as
// zstd, with the bytes on the wire and the serving side's CPU (this process and its zstd
// children) per GiB of NAR.
// Per compression: none (the node keeps NARs uncompressed), zstd, and xz (Nix's default; on the
// small-paths case only: on 256 MiB of random bytes it is minutes of CPU for nothing saved).

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { tokenHash } from '../node/store/cache_auth.ts';
import { type ServeCompression, startHttpCache } from '../node/store/http_cache.ts';
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
  /** Bytes the client sent (file:// : written), as compressed; downloads: the cache sent. */
  readonly wireBytes: number;
  /** Downloads: CPU seconds of the serving side (this process and its children). */
  readonly serverCpuS?: number;
  /** Downloads: NAR bytes served (uncompressed). */
  readonly narBytes?: number;
}

/** CPU seconds of this process and of its children that ended (zstd), from /proc. */
async function cpuSeconds(): Promise<number> {
  const own = process.cpuUsage();
  const stat = (await readFile('/proc/self/stat', 'utf8')).split(') ')[1]!.split(' ');
  const ticks = Number(stat[13]) + Number(stat[14]); // cutime + cstime (fields 16, 17)
  return (own.user + own.system) / 1e6 + ticks / 100;
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
      if (c === 'none') {
        for (const served of ['none', 'zstd'] as const) {
          rows.push(await downloadRow(dir, store, root, served));
        }
      }
    } finally {
      await cache.close();
    }
  }
  return rows;
}

/** `nix copy --from` a cache over `store` serving `served`, into a fresh chroot store. */
async function downloadRow(
  dir: string,
  store: LocalStore,
  root: string,
  served: Exclude<ServeCompression, 'remote'>,
): Promise<UploadRow> {
  const key = generateSecretKey('bench-serve-1');
  const counters = newCounters();
  const cache = await startHttpCache({ store, key, counters, compression: served });
  const dest = join(dir, `from-${served}`);
  const env = {
    ...nixEnv(`trusted-public-keys = ${formatPublicKey(key.publicKey)}`),
    XDG_CACHE_HOME: join(dir, `xdg-from-${served}`),
  };
  try {
    const cpu0 = await cpuSeconds();
    const s = await timed(() =>
      execa('nix', ['copy', '--from', cache.url, '--to', dest, root], { env }),
    );
    const cpu = (await cpuSeconds()) - cpu0;
    return {
      method: `nix copy --from pcr cache (${served})`,
      seconds: s,
      wireBytes: counters.cacheBytesServed,
      serverCpuS: cpu,
      narBytes: counters.bytesServed,
    };
  } finally {
    await cache.close();
  }
}
